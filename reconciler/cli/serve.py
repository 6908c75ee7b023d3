"""``grove serve`` (API, console and reconcile loop) and ``grove up`` (the embedded default)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from reconciler.base import childenv, errors
from reconciler.base import settings as settings_module
from reconciler.base.settings import Settings
from reconciler.cli.common import common_options, grove
from reconciler.cli.registry import actor, parse_duration
from reconciler.manifests import addresses

UP_TOKEN_NAME = "grove-up-admin"  # noqa: S105 - a token name, not a token

review_branches_option = click.option(
    "--review-branches",
    is_flag=True,
    help="Writes through the API and the console push a branch grove/review/... for "
    "review instead of committing on the fleet branch, and apply nothing until it is "
    "merged; rollbacks still apply at once [env GROVE_REVIEW_BRANCHES].",
)


def _with_review_branches(settings: Settings, review_branches: bool) -> Settings:
    """The flag turns review branches on; without it GROVE_REVIEW_BRANCHES decides."""
    if review_branches:
        return settings.model_copy(update={"review_branches": True})
    return settings


def _check_port(host: str, port: int) -> None:
    """Fail in one line, before anything is started or printed, when HOST:PORT cannot be
    listened on (uvicorn would log a bind error only after the loop had started)."""
    refused = addresses.cannot_listen(host, port)
    if refused is not None and refused.in_use:
        raise errors.UsageError(
            f"{refused.reason} (another grove up or serve?); stop it or pick another --port"
        )
    if refused is not None:
        raise errors.UsageError(refused.reason)


def _run_serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    interval: str,
    loop: bool,
    announce: str | None = None,
) -> int:
    """Hand over to ``python -m reconciler.api`` in this process (exec).

    The CLI and the API are sibling entry points that never import each other;
    the settings travel in the environment, and signals reach the server directly.
    ``announce`` is printed by the server once it listens, so that a command
    copied from it works at once; it travels in a pipe, not in the environment or
    the command line, because it may hold a token.
    """
    parse_duration(interval)  # a bad value is a usage error here, not in the server
    if announce is None:  # grove up checked before it made a token: if the port has
        _check_port(host, port)  # been taken since, the server says so, with the token
    for name, value in settings.model_dump().items():
        if value is not None:
            os.environ[f"GROVE_{name.upper()}"] = str(value)
    argv = [
        sys.executable,
        "-m",
        "reconciler.api",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--interval",
        interval,
    ]
    if not loop:
        argv.append("--no-loop")
    if announce is not None:
        argv += ["--announce-fd", str(_pipe_holding(announce))]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module
    return 0  # pragma: no cover - execv does not return


@grove.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="API worker processes.",
)
@click.option(
    "--interval",
    default="30s",
    show_default=True,
    help="How often the reconcile loop fetches a remote source.",
)
@click.option("--no-loop", is_flag=True, help="Serve only; run the reconcile loop elsewhere.")
@review_branches_option
@common_options
def serve_command(
    host: str,
    port: int,
    workers: int,
    interval: str,
    no_loop: bool,
    review_branches: bool,
    settings: Settings,
) -> int:
    """Serve the API (and, unless --no-loop, the reconcile loop) on HOST:PORT."""
    from reconciler.gitops import reconciling

    settings = _with_review_branches(settings, review_branches)
    reconciling.open_database(settings).dispose()  # fail early, in one line, if unmigrated
    return _run_serve(settings, host, port, workers, interval, not no_loop)


@grove.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--seed",
    default="manifests",
    show_default=True,
    type=click.Path(),
    help="Folder to seed the fleet repository from on the first run.",
)
@review_branches_option
def up_command(host: str, port: int, seed: str, review_branches: bool) -> int:
    """The embedded default: SQLite, a fleet repository under .grove/, an admin token, serve."""
    from reconciler.gitops import reconciling
    from reconciler.store import engine, migrating, tokens

    _check_port(host, port)
    data = Path(os.environ.get("GROVE_DATA_DIR", ".grove")).resolve()
    fleet = data / "fleet.git"
    fresh = not fleet.exists()
    if fresh:
        _seed(fleet, Path(seed))
    # its own fleet, not one a .grove/ further up records (flags and GROVE_* still count)
    settings = settings_module.load(discover=False, repo=str(fleet), ref="HEAD")
    settings = _with_review_branches(settings, review_branches)
    settings = settings.model_copy(update={"data_dir": str(data)})
    if not os.environ.get("GROVE_DB_URL"):
        settings = settings.model_copy(update={"db_url": f"sqlite:///{data}/registry.db"})
    database = reconciling.open_database(settings, require_schema=False)
    migrating.upgrade(database)
    token = None
    with database.transaction(write=True) as connection:
        existing = tokens.listing(connection)
        active = [t for t in existing if str(t["name"]).startswith(UP_TOKEN_NAME)]
        if not any(not t["revoked"] for t in active):
            taken = {t["name"] for t in existing}  # a revoked name stays taken
            number = 1
            name = UP_TOKEN_NAME
            while name in taken:
                number += 1
                name = f"{UP_TOKEN_NAME}-{number}"
            token = tokens.create(connection, name=name, role="admin", created_by=actor())
    database.dispose()
    source = reconciling.open_source(settings)
    reconciler = reconciling.Reconciler(settings, source, reconciling.open_database(settings))
    outcome = reconciler.reconcile(actor=actor())
    source.close()  # its git processes would outlive the exec below as zombies
    # every grove command run in this folder or below now talks about this fleet
    settings_module.write_fleet_file(settings)
    url = f"http://{host}:{port}"
    shown = engine.redact(settings.db_url)  # a PostgreSQL password is never printed
    # the URL from GROVE_DB_URL is not repeated (it may hold one): the command names it;
    # without it, the config.json written above gives a command run here the registry
    db_option = ' --db "$GROVE_DB_URL"' if os.environ.get("GROVE_DB_URL") else ""
    lines = [
        f"Grove is up at {url}",
        f"  fleet repository: {fleet} ({'seeded from ' + seed if fresh else 'existing'})",
        f"  registry: {shown}; {outcome.state} at {(outcome.revision or '')[:12]}",
        f"  admin token (shown once, keep it): {token}"
        if token
        else "  admin token: printed at the first run; another: "
        f"{program()} token create --role admin --name NAME{db_option}",
        f"  console: {url}/ (sign in with an admin, operator or viewer token)",
        f"  try: curl -H 'Authorization: Bearer <token>' "
        f"'{url}/api/models/discover?capability=reasoning'",
    ]
    return _run_serve(settings, host, port, 1, "30s", True, announce="\n".join(lines) + "\n")


def program() -> str:
    """How to run grove again from this folder, as the user ran it: ``grove`` when that
    is the command PATH finds, else the path they typed (relative to this folder when it
    is below it, e.g. ``.venv/bin/grove``), or ``python -m reconciler`` for a module run."""
    typed = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if typed is None or typed.name == "__main__.py" or not typed.is_file():
        on_path = shutil.which("grove")
        return "grove" if on_path else f"{shlex.quote(sys.executable)} -m reconciler"
    found = shutil.which(typed.name)
    if found and Path(found).samefile(typed):
        return typed.name
    absolute = typed.absolute()  # as typed: a symlink is not resolved
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(absolute))
    shown = str(relative)
    return shlex.quote(shown if os.sep in shown else f".{os.sep}{shown}")


def _pipe_holding(text: str) -> int:
    """A pipe's reading end, inheritable, with ``text`` in it and the writing end closed.
    The text must fit in the pipe at once (its only reader is this process, after exec):
    at least 4 KiB on Linux, even for a user over the pipe quota."""
    data = text.encode()
    if len(data) > 4096:
        raise errors.UsageError(f"grove up's announcement is too long ({len(data)} bytes)")
    read, write = os.pipe()
    try:
        os.set_blocking(write, False)  # never hang here: a short write is an error
        if os.write(write, data) != len(data):
            raise errors.UsageError("grove up's announcement did not fit in a pipe")
    except BlockingIOError:
        os.close(read)
        raise errors.UsageError("grove up's announcement did not fit in a pipe") from None
    finally:
        os.close(write)
    os.set_inheritable(read, True)
    return read


def _seed(fleet: Path, seed: Path) -> None:
    if not seed.is_dir():
        raise errors.UsageError(f"{seed} is not a folder of manifests to seed the fleet from")
    fleet.parent.mkdir(parents=True, exist_ok=True)
    author = {"NAME": "grove", "EMAIL": "grove@localhost"}
    env = childenv.build(  # git gets no API key: an allow-list, not the environment
        childenv.GIT,
        {
            f"GIT_{role}_{part}": value
            for role in ("AUTHOR", "COMMITTER")
            for part, value in author.items()
        },
    )

    def git(*args: str, cwd: Path) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "--quiet", "--bare", "-b", "main", str(fleet), cwd=fleet.parent)
    with tempfile.TemporaryDirectory() as work:
        clone = Path(work) / "seed"
        git("clone", "--quiet", str(fleet), str(clone), cwd=Path(work))
        target = clone / "manifests"
        target.mkdir()
        for source in sorted(seed.rglob("*")):
            if source.is_file() and not source.is_symlink():
                destination = target / source.relative_to(seed)
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(source.read_bytes())
        schemas = Path("schemas")
        if schemas.is_dir():
            for schema in schemas.glob("*.schema.json"):
                (clone / "schemas").mkdir(exist_ok=True)
                (clone / "schemas" / schema.name).write_bytes(schema.read_bytes())
        git("add", "--all", cwd=clone)
        git("commit", "--quiet", "-m", f"grove up: seed the fleet from {seed}", cwd=clone)
        git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=clone)
