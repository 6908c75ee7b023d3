"""The console's static files: read once, served with a content hash in their URL.

A handful of small files (the stylesheet, the script, the icon) do not need a
static-file server: they are loaded at import, and their URLs carry a hash of
their content (``/static/console.css?v=3f2a…``), so browsers may cache them for a
year and a new release is fetched at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from importlib import resources

TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    digest: str


def _load() -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    folder = resources.files("reconciler.web") / "static"
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in TYPES:
            body = entry.read_bytes()
            found[entry.name] = Asset(body, TYPES[suffix], hashlib.sha256(body).hexdigest()[:16])
    return found


FILES = _load()


def url(name: str) -> str:
    """The URL of a static file, with its content hash (a template names a missing file:
    a KeyError at render, caught by the tests that render every page)."""
    return f"/static/{name}?v={FILES[name].digest}"
