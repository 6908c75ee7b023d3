"""The console's byte budget and its no-third-party rule, without a browser: the
deterministic half of the Lighthouse gate (tests/lighthouse/run.py is the measured half).

- All JavaScript under reconciler/web/static, gzipped, stays under 30 KB: the pages are
  server-rendered and work without it.
- No template or static file names an external URL: the console loads nothing from
  another origin (the CSP would block it, and an air-gapped install must work). SVG/XML
  namespace names are not fetched, and a vendored file's licence comment may cite its
  home page.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from tests.conftest import REPO_ROOT

WEB = REPO_ROOT / "reconciler" / "web"
JS_BUDGET = 30 * 1024
TEXT_SUFFIXES = frozenset(
    {".html", ".jinja", ".j2", ".js", ".mjs", ".css", ".svg", ".json", ".webmanifest", ".xml"}
)
NAMESPACES = (
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/1999/xhtml",
)
URL = re.compile(r"https?://[^\s\"'<>)]*", re.IGNORECASE)
COMMENTS = re.compile(r"/\*.*?\*/|<!--.*?-->|\{#.*?#\}|(?<![:\"'])//[^\n]*", re.DOTALL)


def _files(suffixes: frozenset[str]) -> list[Path]:
    return sorted(
        path
        for path in WEB.rglob("*")
        if path.is_file() and path.suffix in suffixes and "__pycache__" not in path.parts
    )


def _vendored(path: Path) -> bool:
    return "vendor" in path.parts


def external_urls(path: Path) -> list[str]:
    """The URLs in ``path`` a browser could fetch from another origin."""
    text = path.read_text(encoding="utf-8")
    if _vendored(path):
        text = COMMENTS.sub("", text)  # a vendored licence header cites its home page
    return [url for url in URL.findall(text) if not url.startswith(NAMESPACES)]


def test_the_pages_javascript_stays_under_30_kb_gzipped() -> None:
    sizes = {
        str(path.relative_to(WEB)): len(gzip.compress(path.read_bytes(), compresslevel=9))
        for path in _files(frozenset({".js", ".mjs"}))
    }
    assert sum(sizes.values()) < JS_BUDGET, f"gzipped JS over {JS_BUDGET} bytes: {sizes}"


def test_no_template_or_static_file_names_an_external_url() -> None:
    found = {
        str(path.relative_to(WEB)): urls
        for path in _files(TEXT_SUFFIXES)
        if (urls := external_urls(path))
    }
    assert not found, f"external URLs (the console must load nothing from elsewhere): {found}"


def test_the_url_check_finds_what_it_must(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"></svg>'
        '<script src="https://cdn.example/htmx.js"></script>'
        "<!-- see http://docs.example/why -->",
        encoding="utf-8",
    )
    # in our own templates even a comment counts: it ends up in every page sent
    assert external_urls(page) == ["https://cdn.example/htmx.js", "http://docs.example/why"]
    vendored = tmp_path / "static" / "vendor" / "htmx.min.js"
    vendored.parent.mkdir(parents=True)
    vendored.write_text(
        "/* htmx 2.0.4, BSD-2-Clause, https://htmx.org */\n"
        'var a="https://unpkg.com/x";// https://github.com/bigskysoftware/htmx\n',
        encoding="utf-8",
    )
    assert external_urls(vendored) == ["https://unpkg.com/x"]
