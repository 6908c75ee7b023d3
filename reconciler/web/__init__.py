"""The console: server-rendered pages over the same services as the API (DESIGN.md
section 10).

Jinja2 templates, one per page, every page a full render that works without
JavaScript; a small script of our own only refreshes an open page's live region
(server-sent events, polling when they fail) and adds keyboard shortcuts. No
inline script or style, so the Content-Security-Policy stays strict.

`mount` adds the pages to the API's app (``api.create_app``): the console sits
below the API in the layers and knows nothing of it.
"""

from __future__ import annotations

from fastapi import FastAPI

from reconciler.web import pages
from reconciler.web.console import Console
from reconciler.web.pages import fleet as fleet_page
from reconciler.web.pages import live as live_page
from reconciler.web.pages import model as model_page
from reconciler.web.pages import rules as rules_page
from reconciler.web.pages import signin as signin_page
from reconciler.web.pages import status as status_page
from reconciler.web.pages import wizard as wizard_page

# Imported under other names: ``reconciler.web.fleet`` (and ``.wizard``) name the pages'
# helper modules, which a bare ``from ... import fleet`` here would hide.
# /models/new before /models/{model_id}: the first matching route answers.
PAGES = (
    signin_page.router,
    fleet_page.router,
    wizard_page.router,
    model_page.router,
    rules_page.router,
    status_page.router,
    live_page.router,
)


def mount(app: FastAPI, console: Console) -> None:
    app.state.console = console
    # the app's 404 for an address that is no route: a page for a browser (api.problems)
    app.state.not_found_page = pages.not_found_page
    for router in PAGES:
        app.include_router(router)


__all__ = ["Console", "mount"]
