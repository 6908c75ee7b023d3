"""A fleet repository behind HTTPS with a password: git's smart HTTP protocol served by
``git http-backend`` on loopback, TLS from a test CA, basic authentication.

The credentials in ``https://user:password@host/...`` must reach the server and
nothing else: not the clone's config file, not an error message.
"""

from __future__ import annotations

import base64
import http.server
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from reconciler.base import errors
from reconciler.manifests.loading import Limits
from reconciler.sources.git import GitSource, WorkTree, split_credentials
from tests.conftest import FleetRepo

USER, PASSWORD = "grove", "s3cret-pa$$word"
QUOTED = "s3cret-pa%24%24word"  # as it appears in a URL
LIMITS = Limits(max_file_bytes=1 << 20, max_tree_bytes=1 << 24, max_files=1000, max_depth=32)


class _GitOverHttp(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        self.server.seen.append(self.headers.get("Authorization", ""))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Authorization") != self.server.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="fleet"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": USER,  # authenticated: http-backend then accepts pushes
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    expected: str
    seen: list[str]


@pytest.fixture
def https_fleet(
    fleet: FleetRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, _Server]]:
    fleet.commit("fleet", {"models/a.yaml": "meta: {id: a, type: AIModel, version: '1'}\n"})
    root = tmp_path / "served"
    root.mkdir()
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(root / "fleet.git"))
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("GIT_SSL_CAINFO", str(bundle))
    server = _Server(("127.0.0.1", 0), _GitOverHttp)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.root = root
    server.expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/fleet.git", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _with_password(url: str, password: str = QUOTED) -> str:
    return url.replace("https://", f"https://{USER}:{password}@")


def _files_under(folder: Path) -> str:
    return "\n".join(
        path.read_text(errors="replace") for path in folder.rglob("*") if path.is_file()
    )


def test_split_credentials_moves_them_out_of_the_url() -> None:
    url, env = split_credentials(f"https://{USER}:{QUOTED}@git.example.com:8443/org/fleet.git")
    assert url == "https://git.example.com:8443/org/fleet.git"
    header = env["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: Basic ")
    assert base64.b64decode(header).decode() == f"{USER}:{PASSWORD}"
    assert env["GIT_CONFIG_KEY_1"] == "http.followRedirects"
    for plain in ("https://git.example.com/f.git", "ssh://git@host/f.git", "file:///srv/f.git"):
        assert split_credentials(plain) == (plain, {})


def test_a_mirror_fetched_with_a_password_keeps_it_off_disk(
    https_fleet: tuple[str, _Server], fleet: FleetRepo, tmp_path: Path
) -> None:
    url, server = https_fleet
    source = GitSource(_with_password(url), data_dir=str(tmp_path / "data"), limits=LIMITS)
    source.fetch()
    assert source.resolve("HEAD") == fleet.head()
    fleet.commit("second", {"models/b.yaml": "meta: {id: b, type: AIModel, version: '1'}\n"})
    fleet.git("push", "-q", str(server.root / "fleet.git"), "main")
    source.fetch()  # an existing mirror fetches with the same credentials
    assert source.resolve("HEAD") == fleet.head()
    assert server.expected in server.seen
    stored = _files_under(tmp_path / "data")
    assert PASSWORD not in stored and QUOTED not in stored
    assert server.expected.split()[1] not in stored  # nor its base64 form


def test_a_wrong_password_is_refused_and_never_shown(
    https_fleet: tuple[str, _Server], tmp_path: Path
) -> None:
    url, _ = https_fleet
    source = GitSource(
        _with_password(url, "wrong-guess-123"), data_dir=str(tmp_path / "data"), limits=LIMITS
    )
    with pytest.raises(errors.GroveError) as failed:
        source.fetch()
    assert "wrong-guess-123" not in str(failed.value)
    assert "localhost" in str(failed.value)


def test_a_work_tree_pushes_with_a_password_it_does_not_store(
    https_fleet: tuple[str, _Server], tmp_path: Path
) -> None:
    url, server = https_fleet
    tree = WorkTree(_with_password(url), tmp_path / "work")
    tree.prepare()
    (tmp_path / "work" / "manifests" / "models" / "c.yaml").write_text(
        "meta: {id: c, type: AIModel, version: '1'}\n"
    )
    sha = tree.commit("add c", author="api:bob", email="bob@grove.invalid")
    assert sha is not None and tree.push()
    served = subprocess.run(
        ["git", "-C", str(server.root / "fleet.git"), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert served == sha
    tree.prepare()  # again, on the existing clone
    stored = (tmp_path / "work" / ".git" / "config").read_text()
    assert PASSWORD not in stored and QUOTED not in stored and "localhost" in stored


def test_a_clone_with_credentials_in_its_url_is_cleaned_on_first_use(
    fleet: FleetRepo, tmp_path: Path
) -> None:
    """A work tree cloned by an older Grove kept ``https://user:password@...`` in its
    config; the first prepare of a new WorkTree rewrites the URL, later ones do not."""
    fleet.commit("fleet", {"models/a.yaml": "meta: {id: a}\n"})
    bare = tmp_path / "fleet.git"
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(bare))
    clone = tmp_path / "work"
    WorkTree(str(bare), clone).prepare()
    subprocess.run(
        ["git", "remote", "set-url", "origin", "https://old:s3cret@example.invalid/fleet.git"],
        cwd=clone,
        check=True,
    )
    tree = WorkTree(str(bare), clone)
    tree.prepare()  # fetches from the real remote again: the stale URL is gone
    config = (clone / ".git" / "config").read_text()
    assert "s3cret" not in config
    assert str(bare.resolve()) in config
    other = tmp_path / "other.git"  # a URL changed after the first use is left alone
    fleet.git("clone", "-q", "--bare", str(fleet.root), str(other))
    subprocess.run(["git", "remote", "set-url", "origin", str(other)], cwd=clone, check=True)
    tree.prepare()
    assert str(other) in (clone / ".git" / "config").read_text()
