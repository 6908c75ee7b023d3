"""The console's Lighthouse gate, a step of .ci/run after pytest.

Starts a real Grove server (tests/browser/serving.py: the small fleet, SQLite, the loop
on), signs in by posting the login form as a browser would (its csrf first), then runs
Lighthouse 12 (tests/lighthouse/package.json, ``npm ci --prefix tests/lighthouse``) with
the desktop preset on Debian's Chromium against the five main pages, ``--runs`` times
each, and takes each score's median (Lighthouse's own advice: one run varies).

Exits 1 unless every page scores accessibility 1.0, best practices >= 0.95 and
performance >= 0.9, with Lighthouse's ``errors-in-console`` audit passing. A page that
does not answer 200 (not built yet) fails and says so. Sends nothing beyond 127.0.0.1:
Chromium resolves no other host.

    .venv/bin/python tests/lighthouse/run.py [--runs 3] [--page /status ...]
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository: `tests` is a package

import httpx  # noqa: E402

from tests.browser import serving  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PAGES = ("/", "/models/alpha", "/models/new", "/rules/think", "/status")
GATES = {"performance": 0.9, "accessibility": 1.0, "best-practices": 0.95}
CHROME_FLAGS = " ".join(
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        '--host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"',
    ]
)


class _Csrf(html.parser.HTMLParser):
    """The value of the login form's hidden ``csrf`` input."""

    def __init__(self) -> None:
        super().__init__()
        self.value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "input" and fields.get("name") == "csrf" and self.value is None:
            self.value = fields.get("value")


def sign_in(url: str, token: str) -> tuple[str | None, str]:
    """The ``Cookie`` header of a signed-in session, or None and why not."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        form = client.get("/login")
        if form.status_code != 200:
            return None, f"GET /login answered {form.status_code} (login page not built yet?)"
        parser = _Csrf()
        parser.feed(form.text)
        if not parser.value:
            return None, "the login form has no hidden csrf input"
        done = client.post("/login", data={"token": token, "csrf": parser.value})
        if done.status_code not in (302, 303) or "grove_session" not in client.cookies:
            return None, f"POST /login answered {done.status_code} without a grove_session"
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        return cookie, "signed in"


def lighthouse(url: str, headers: Path, out: Path) -> dict[str, float]:
    """One Lighthouse run: the category scores, and ``errors-in-console`` (1 or 0)."""
    command = [
        "npx",
        "--no",  # the pinned local install only: never fetch another
        "lighthouse",
        url,
        "--preset=desktop",
        "--output=json",
        f"--output-path={out}",
        "--quiet",
        f"--chrome-flags={CHROME_FLAGS}",
        f"--extra-headers={headers}",
    ]
    env = {**os.environ, "CHROME_PATH": CHROMIUM}
    done = subprocess.run(
        command, cwd=HERE, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"lighthouse {url} exited {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(out.read_text(encoding="utf-8"))
    if report.get("runtimeError"):
        raise RuntimeError(f"lighthouse {url}: {report['runtimeError']}")
    final = report.get("finalDisplayedUrl") or report.get("finalUrl")
    if final != url:
        raise RuntimeError(f"lighthouse {url} audited {final} instead (was the session lost?)")
    scores = {name: float(report["categories"][name]["score"] or 0) for name in GATES}
    scores["errors-in-console"] = float(report["audits"]["errors-in-console"]["score"] or 0)
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--page", action="append", help="a path to audit instead of the five")
    parser.add_argument(
        "--no-sign-in", action="store_true", help="audit as a signed-out visitor (to try it out)"
    )
    args = parser.parse_args()
    pages = tuple(args.page or PAGES)
    rows: list[tuple[str, str, dict[str, float] | None]] = []
    with tempfile.TemporaryDirectory(prefix="grove-lighthouse-") as scratch:
        root = Path(scratch)
        with serving.grove_server(root / "server") as server:
            headers = root / "headers.json"
            cookie: str | None = None
            if not args.no_sign_in:
                cookie, why = sign_in(server.url, server.token("operator"))
                if cookie is None:
                    print(f"cannot sign in: {why}")
                    for page in pages:
                        rows.append((page, "not signed in", None))
                    return _report(rows)
            headers.write_text(json.dumps({"Cookie": cookie} if cookie else {}), encoding="utf-8")
            for page in pages:
                answer = httpx.get(
                    f"{server.url}{page}", headers={"Cookie": cookie or ""}, timeout=30
                )
                if answer.status_code != 200:
                    note = " (not built yet?)" if answer.status_code == 404 else ""
                    rows.append((page, f"HTTP {answer.status_code}{note}", None))
                    continue
                runs = []
                try:
                    for run in range(args.runs):
                        out = root / f"{page.strip('/').replace('/', '_') or 'fleet'}-{run}.json"
                        runs.append(lighthouse(f"{server.url}{page}", headers, out))
                except RuntimeError as error:
                    print(error)
                    rows.append((page, "lighthouse failed", None))
                    continue
                median = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
                rows.append((page, "ok", median))
    return _report(rows)


def _report(rows: list[tuple[str, str, dict[str, float] | None]]) -> int:
    """Print the table; 0 when every page passed every gate."""
    names = [*GATES, "errors-in-console"]
    print(f"{'page':<16} {'status':<26} " + " ".join(f"{n:>17}" for n in names) + "  verdict")
    failed = False
    for page, status, scores in rows:
        if scores is None:
            failed = True
            cells = " ".join(f"{'-':>17}" for _ in names)
            print(f"{page:<16} {status:<26} {cells}  FAIL")
            continue
        misses = [n for n, floor in GATES.items() if scores[n] < floor]
        if scores["errors-in-console"] < 1:
            misses.append("errors-in-console")
        failed = failed or bool(misses)
        cells = " ".join(f"{scores[n]:>17.2f}" for n in names)
        verdict = "pass" if not misses else "FAIL: " + ", ".join(misses)
        print(f"{page:<16} {status:<26} {cells}  {verdict}")
    floors = ", ".join(f"{n} >= {floor}" for n, floor in GATES.items())
    print(f"gates (median of runs): {floors}, errors-in-console passes")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
