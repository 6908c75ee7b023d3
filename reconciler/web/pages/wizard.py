"""Placeholder: the wizard page is being built (issue 16)."""

from __future__ import annotations

from fastapi import APIRouter

from reconciler.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
