"""``/login`` and ``/logout``: a session from an API token, and its end.

The token is checked like an API call's (`store.tokens.verify`, constant time) and
never kept: the session row holds the token's id, so revoking the token ends the
session. A ``client`` token (an application's, for the data plane only) is refused,
with a message at the field. ``next`` is followed only when it is a path of this server.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from reconciler.store import sessions as stored
from reconciler.store import tokens
from reconciler.store.sessions import Session
from reconciler.web import sessions
from reconciler.web.console import OUTAGE, Console
from reconciler.web.pages import ConsoleDep, PageRoute, current_session, see_other

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else (another host, a scheme,
    ``//evil``, a backslash) goes to the fleet page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 for c in target) or len(target) > 2000:
        return "/"
    return target


def _form(
    request: Request,
    console: Console,
    *,
    next_path: str,
    error: str = "",
    status_code: int = 200,
) -> Response:
    secret = request.cookies.get(sessions.SIGN_IN_COOKIE) or sessions.new_sign_in_secret()
    response = console.page(
        request,
        "login.html",
        {"next": next_path, "sign_in_csrf": secret, "error": error},
        session=None,
        status_code=status_code,
    )
    sessions.set_cookie(response, request, sessions.SIGN_IN_COOKIE, secret, 3600)
    return response


@router.get("/login")
async def login_form(
    request: Request,
    console: ConsoleDep,
    session: Annotated[Session | None, Depends(current_session)],
    next: str | None = None,
) -> Response:
    if session is not None:
        return see_other(_safe_next(next))
    return _form(request, console, next_path=_safe_next(next))


# A client token is an application's: it may call the data plane and nothing else.
CLIENT_REFUSED = (
    "That is a client token, for applications: it may only call the data plane "
    "(POST /api/routing/execute and /v1), not sign in to the console. Sign in with a "
    "viewer, operator or admin token."
)


def _sign_in(console: Console, token: str) -> tuple[str, Session] | str | None:
    """A new session for ``token`` (its secret and the session); None for an unknown or
    revoked token; the role of a token whose role may not sign in (``client``)."""
    with console.db.transaction(write=True) as connection:
        identity = tokens.verify(connection, token)
        if identity is None:
            return None
        if not identity.allows("viewer"):
            return identity.role
        return stored.create(connection, identity, ttl_s=sessions.SESSION_TTL_S)


@router.post("/login")
async def login(request: Request, console: ConsoleDep) -> Response:
    form = await sessions.read_form(request)
    sessions.check_csrf(form, request.cookies.get(sessions.SIGN_IN_COOKIE, ""))
    next_path = _safe_next(form.get("next"))
    token = form.get("token", "").strip()
    if not token:
        return _form(
            request, console, next_path=next_path, error="Enter an API token.", status_code=422
        )
    if not tokens.well_formed(token):
        return _form(
            request,
            console,
            next_path=next_path,
            error="That is not a Grove token: they look like grove_<16 hex>_<secret>, "
            "as printed by grove up or grove token create.",
            status_code=422,
        )
    try:
        made = await asyncio.to_thread(_sign_in, console, token)
    except OUTAGE as exc:
        console.outage.failed(exc)
        return _form(
            request,
            console,
            next_path=next_path,
            error="Signing in needs the registry database, which cannot be read now. "
            "Try again shortly.",
            status_code=503,
        )
    if made is None:
        return _form(
            request,
            console,
            next_path=next_path,
            error="That token is unknown or revoked.",
            status_code=422,  # a form shown again: answered 200 (Console.page)
        )
    if isinstance(made, str):
        return _form(
            request, console, next_path=next_path, error=CLIENT_REFUSED, status_code=422
        )  # at the field, as every sign-in error (answered 200: Console.page)
    secret, _ = made
    response = see_other(next_path)
    sessions.set_cookie(response, request, sessions.COOKIE, secret, sessions.SESSION_TTL_S)
    sessions.drop_cookie(response, sessions.SIGN_IN_COOKIE)
    return response


def _sign_out(console: Console, secret: str) -> None:
    with console.db.transaction(write=True) as connection:
        stored.end(connection, secret)


@router.post("/logout")
async def logout(
    request: Request,
    console: ConsoleDep,
    session: Annotated[Session | None, Depends(current_session)],
) -> Response:
    secret = request.cookies.get(sessions.COOKIE, "")
    if session is not None:
        form = await sessions.read_form(request)
        sessions.check_csrf(form, session.csrf)
        console.sessions.forget(secret)
        await asyncio.to_thread(functools.partial(_sign_out, console, secret))
    response = see_other("/login")
    sessions.drop_cookie(response, sessions.COOKIE)
    return response
