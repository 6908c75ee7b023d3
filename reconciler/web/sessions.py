"""Sign-in for the console: a server-side session made from an API token, and CSRF.

The browser holds a random secret in the ``grove_session`` cookie (HttpOnly,
SameSite=Strict; Secure when the console is reached over https); the registry
holds its digest and the session's CSRF secret (`store.sessions`). Every form
carries that CSRF secret in a hidden ``csrf`` field, and a POST without the right
one is refused with a 403 before anything else is read. The sign-in form itself,
which has no session yet, uses a double-submit cookie (``grove_signin``).

Sessions are looked up through :class:`SessionCache`, like API tokens through
``api.deps.IdentityCache``: a few seconds fresh, and, while the registry cannot
be read, a session checked within the outage window stays signed in, so the
console can show its last snapshot under a banner instead of a sign-in page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import Request, Response

from reconciler.base import errors
from reconciler.store.sessions import Session

COOKIE = "grove_session"
SIGN_IN_COOKIE = "grove_signin"  # the sign-in form's double-submit CSRF secret
SESSION_TTL_S = 12 * 3600
MAX_FORM_BYTES = 256 * 1024  # a manifest in the wizard is the largest form
OUTAGE = (errors.DatabaseUnavailable, errors.DatabaseUnreadable)


class SignInNeeded(Exception):
    """No valid session: the page answers a redirect to the sign-in form."""


class Forbidden(Exception):
    """The session's role does not allow this, or the form's CSRF token is wrong: 403."""


class BadForm(Exception):
    """The posted form cannot be read (too large, not a form): 400."""


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, the whole site; Secure when reached over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def drop_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="strict")


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionCache:
    """Looked-up sessions for ``ttl_s``, keyed by the cookie's digest; one lookup per
    cookie at a time; known sessions kept through an outage of the registry for
    ``outage_window_s`` after their last successful check."""

    def __init__(
        self, ttl_s: float = 5.0, outage_window_s: float = 600.0, size: int = 4096
    ) -> None:
        self.ttl_s = ttl_s
        self.outage_window_s = outage_window_s
        self.size = size
        self._entries: dict[str, tuple[float, Session]] = {}
        self._checks: dict[str, asyncio.Task[Session | None]] = {}

    async def session(self, secret: str, lookup: Callable[[str], Session | None]) -> Session | None:
        key = _key(secret)
        now = time.monotonic()
        found = self._entries.get(key)
        if found is not None and now - found[0] < self.ttl_s:
            return found[1]
        running = self._checks.get(key)
        if running is None or running.get_loop() is not asyncio.get_running_loop():
            running = asyncio.create_task(self._check(key, secret, lookup))
            self._checks[key] = running
        return await asyncio.shield(running)

    async def _check(
        self, key: str, secret: str, lookup: Callable[[str], Session | None]
    ) -> Session | None:
        try:
            session = await asyncio.to_thread(lookup, secret)
        except OUTAGE:
            found = self._entries.get(key)
            if found is not None and time.monotonic() - found[0] < self.outage_window_s:
                return found[1]
            raise
        finally:
            self._checks.pop(key, None)
        if session is None:
            self._entries.pop(key, None)
            return None
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), session)
        return session

    def known(self, secret: str) -> Session | None:
        """The session last seen for ``secret``, however old (an error page's header)."""
        found = self._entries.get(_key(secret))
        return found[1] if found else None

    def forget(self, secret: str) -> None:
        self._entries.pop(_key(secret), None)


async def read_form(request: Request) -> dict[str, str]:
    """The posted ``application/x-www-form-urlencoded`` fields (the last of repeated
    names wins, except names ending in ``[]``, which keep every value joined by
    newlines). The body limits of the app already bound its size; this bounds it again
    for forms."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":  # not our form: it has no CSRF token
        raise Forbidden("this is not the console's form: it carries no CSRF token")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadForm(f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=500)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm(f"the form cannot be read: {exc}") from None
    return {
        name: "\n".join(values) if name.endswith("[]") else values[-1]
        for name, values in parsed.items()
    }


def check_csrf(form: dict[str, str], expected: str) -> None:
    given = form.get("csrf", "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")


def new_sign_in_secret() -> str:
    return secrets.token_urlsafe(24)
