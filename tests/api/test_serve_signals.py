"""``grove serve`` handles SIGTERM and SIGINT itself (they stop the reconcile loop too);
uvicorn's own handlers, which re-raise the signal after shutdown, stay out of it."""

from __future__ import annotations

import signal

import uvicorn

from reconciler.api import _Server


def test_the_server_leaves_signal_handling_to_grove() -> None:
    def grove_handler(_signum: int, _frame: object) -> None:
        return None

    server = _Server(uvicorn.Config(app=grove_handler))
    previous = {sig: signal.signal(sig, grove_handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with server.capture_signals():
            assert signal.getsignal(signal.SIGTERM) is grove_handler
            assert signal.getsignal(signal.SIGINT) is grove_handler
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
