"""The console's pages: one module per page, each an ``APIRouter`` of :class:`PageRoute`.

What every page shares is here: the console and session dependencies, the role
check, the posted form with its CSRF check, and :class:`PageRoute`, which turns
what a page raises into a page (a redirect to sign in, a 403, a 404, a 500 with a
way back) instead of the API's JSON problem or a stack trace.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute

from reconciler.base import errors, logs
from reconciler.store import sessions as stored
from reconciler.store.sessions import Session
from reconciler.web import sessions
from reconciler.web.console import OUTAGE, Console, secured

log = logging.getLogger("grove.web")


class NotFound(Exception):
    """The page's object does not exist: a 404 page."""


async def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


def _lookup(console: Console, secret: str) -> Session | None:
    with console.db.transaction() as connection:
        return stored.find(connection, secret)


async def current_session(request: Request, console: ConsoleDep) -> Session | None:
    """The caller's session, or None (no cookie, unknown, expired, revoked token, the
    registry unreadable for a session never seen by this process, or a token that may
    not use the console: a ``client`` token, which cannot sign in anyway)."""
    secret = request.cookies.get(sessions.COOKIE)
    if not secret or len(secret) > 128:
        return None
    try:
        session = await console.sessions.session(secret, functools.partial(_lookup, console))
    except OUTAGE as exc:
        console.outage.failed(exc)
        return None
    return session if session is not None and session.identity.allows("viewer") else None


async def signed_in(
    session: Annotated[Session | None, Depends(current_session)],
) -> Session:
    if session is None:
        raise sessions.SignInNeeded
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


def require(session: Session, role: str) -> None:
    """The server's own check of a write, whatever buttons the page showed."""
    if not session.identity.allows(role):
        raise sessions.Forbidden(
            f"this needs the {role} role; you are signed in as a {session.identity.role}"
        )


async def posted_form(request: Request, session: SignedIn) -> dict[str, str]:
    """The posted form of a signed-in caller, its CSRF token checked first."""
    form = await sessions.read_form(request)
    sessions.check_csrf(form, session.csrf)
    return form


Form = Annotated[dict[str, str], Depends(posted_form)]


def see_other(location: str) -> Response:
    return secured(RedirectResponse(location, status_code=303))


class PageRoute(APIRoute):
    """A page's route: what its handler or dependencies raise becomes a page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except sessions.SignInNeeded:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                if request.method != "GET":
                    target = "/"
                return see_other(f"/login?next={quote(target, safe='/')}")
            except sessions.Forbidden as exc:
                return _problem(request, 403, "Not allowed", str(exc))
            except sessions.BadForm as exc:
                return _problem(request, 400, "The form could not be read", str(exc))
            except NotFound as exc:
                return _problem(request, 404, "Not found", str(exc))
            except RequestValidationError as exc:  # a path or query parameter out of bounds
                where = ", ".join(
                    ".".join(str(p) for p in e.get("loc", ())[1:]) or "the address"
                    for e in exc.errors()[:3]
                )
                return _problem(
                    request, 400, "That address is not valid", f"Check {where} and try again."
                )
            except OUTAGE as exc:
                console: Console = request.app.state.console
                console.outage.failed(exc)
                return _problem(
                    request, 503, "The registry cannot be read", f"{exc}. Try again shortly."
                )
            except errors.GroveError as exc:
                return _problem(request, 502, "Grove could not do that", str(exc))
            except Exception as exc:  # a bug: a page with a way back, never a stack trace
                logs.event(log, "page-failed", level=logging.ERROR, path=request.url.path)
                log.exception("page failed", exc_info=exc)
                return _problem(
                    request,
                    500,
                    "Something went wrong",
                    "The console hit an unexpected error; it is in the server's log.",
                )

        return page


# paths that are never a console page: their 404 stays the API's problem document
NOT_PAGES = ("/api/", "/v1/", "/metrics", "/healthz", "/readyz", "/openapi.json", "/static/")


async def not_found_page(request: Request) -> Response | None:
    """The console's 404 page for a browser (it asks for HTML) that followed a link or a
    typed address to no page at all, with the header of its session; None for anything
    else, which gets the API's problem document as before."""
    if "text/html" not in request.headers.get("accept", "") or request.method not in (
        "GET",
        "HEAD",
    ):
        return None
    if request.url.path.startswith(NOT_PAGES):
        return None
    session = await current_session(request, request.app.state.console)
    detail = "There is no page at this address."
    return _problem(request, 404, "No such page", detail, session=session)


def _problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    session: Session | None = None,
) -> Response:
    """The error page; its header shows ``session``, else the last session this process
    saw for the caller's cookie (a page that failed may not have checked it)."""
    console: Console = request.app.state.console
    if session is None:
        secret = request.cookies.get(sessions.COOKIE)
        session = console.sessions.known(secret) if secret else None
    return console.page(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        session=session,
        status_code=status,
    )
