"""The console gate: what a page said that a person would call an error.

The autouse ``console_gate`` fixture (tests/browser/conftest.py) watches every context
made by pytest-playwright's ``context``/``new_context`` fixtures and fails the test at
teardown unless each thing recorded was expected, and each expectation was seen
(PyScript's ``check_js_errors(*expected)`` works the same way). Recorded, as lines of
the form ``kind: text``:

- ``console.error: ...`` and ``console.warning: ...``: console messages (a CSP violation
  and a failed resource load are console errors in Chromium);
- ``pageerror: ...``: an uncaught exception, its message;
- ``requestfailed: GET URL net::ERR_...``: a request that got no response;
- ``response: 404 GET URL``: a sub-resource (not a navigation) answered with 400 or more.

An expectation is a string equal to a line or to its text after ``kind: ``, or an
``re.Pattern`` that fully matches either. Only a page's own background work cut by
leaving it is ignored (``net::ERR_ABORTED``): an ``EventSource`` cut by navigating away
or closing the page, the favicon fetched after the load event, and a live refresh (the
page fetching its own ``live`` fragment) in flight when a form was sent.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, ConsoleMessage, Request, Response, WebError

Expectation = str | re.Pattern[str]


@dataclasses.dataclass(frozen=True)
class Record:
    kind: str
    text: str

    @property
    def line(self) -> str:
        return f"{self.kind}: {self.text}"

    def matches(self, expected: Expectation) -> bool:
        if isinstance(expected, re.Pattern):
            return bool(expected.fullmatch(self.text) or expected.fullmatch(self.line))
        return expected in (self.text, self.line)


class ConsoleGate:
    """Records what watched contexts report; :meth:`problems` says what was not expected."""

    def __init__(self, expected: Iterable[Expectation] = ()) -> None:
        self.records: list[Record] = []
        self.expected: list[Expectation] = list(expected)
        self.allowed: list[Expectation] = []
        self.contexts: list[BrowserContext] = []

    def expect(self, *messages: Expectation) -> None:
        """Declare messages this test provokes on purpose (each must then be seen)."""
        self.expected.extend(messages)

    def allow(self, *messages: Expectation) -> None:
        """Declare messages this test may provoke that need not be seen: Chromium reports
        a navigation answered with 400 or more ("Failed to load resource: ... 422") after
        ``page.goto``, but after a form's POST only on some runs."""
        self.allowed.extend(messages)

    def watch(self, context: BrowserContext) -> BrowserContext:
        context.on("console", self._console)
        context.on("weberror", self._weberror)
        context.on("requestfailed", self._requestfailed)
        context.on("response", self._response)
        self.contexts.append(context)
        return context

    def close_pages(self) -> None:
        """Close every watched context: a server must not stop under an open page, whose
        live stream would then fail (and be recorded)."""
        for context in self.contexts:
            context.close()

    def problems(self, *, require_expected: bool = True) -> list[str]:
        """Lines recorded that no expectation covers, then expectations never seen."""
        out = [
            f"unexpected {r.line}"
            for r in self.records
            if not any(r.matches(e) for e in [*self.expected, *self.allowed])
        ]
        if require_expected:
            out.extend(
                f"expected but not seen: {e.pattern if isinstance(e, re.Pattern) else e}"
                for e in self.expected
                if not any(r.matches(e) for r in self.records)
            )
        return out

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.records.append(Record(f"console.{message.type}", message.text))

    def _weberror(self, error: WebError) -> None:
        self.records.append(Record("pageerror", error.error.message))

    def _requestfailed(self, request: Request) -> None:
        failure = request.failure or "failed"
        if failure == "net::ERR_ABORTED" and (
            request.resource_type == "eventsource"
            or _is_favicon(request.url)
            or _is_live_refresh(request)
        ):
            # the page went away and cut its own stream, the icon Chromium fetches after
            # the load event (a test that navigates at once cuts it), or a live refresh
            # the stream asked for just before a form was sent (console.js starts none
            # after a submit, but one in flight is cut by the navigation): nothing a
            # person sees
            return
        self.records.append(Record("requestfailed", f"{request.method} {request.url} {failure}"))

    def _response(self, response: Response) -> None:
        request = response.request
        if response.status >= 400 and not request.is_navigation_request():
            self.records.append(
                Record("response", f"{response.status} {request.method} {response.url}")
            )


def _is_live_refresh(request: Request) -> bool:
    """The page fetching its own live fragment (console.js, ``X-Grove-Fragment: live``)."""
    return request.resource_type == "fetch" and (request.headers.get("x-grove-fragment") == "live")


def _is_favicon(url: str) -> bool:
    path = urlsplit(url).path
    return path == "/favicon.ico" or path.startswith("/static/favicon.")
