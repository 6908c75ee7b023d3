"""Grove's settings: flags > environment (``GROVE_*``) > the fleet file > defaults.

Read once by the entry points (CLI, API) and passed down as a frozen object;
library code never reads the environment itself. Nothing here touches the
database, git or the network.

The fleet file, ``.grove/config.json``, is written by ``grove up``
(:func:`write_fleet_file`): its fleet repository, ref, manifests path, registry
URL (never with a password) and data folder. Every command run in that folder
or below finds it by looking upwards from the current folder, as git finds
``.git``, and takes its values as defaults (DESIGN section 5).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler.base import errors

MIB = 1024 * 1024

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``2m``, ``500ms``, ``1h`` or plain seconds; more than zero.
    Raises ValueError with a one-line message for anything else."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 2m or 500ms")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Settings(BaseSettings):
    """Every knob an operator can turn, with the environment variable that sets it."""

    model_config = SettingsConfigDict(
        env_prefix="GROVE_",
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
    )

    repo: str = Field(".", description="Fleet repository: a path or a URL (GROVE_REPO).")
    ref: str = Field("HEAD", description="Git ref to reconcile (GROVE_REF).")
    path: str = Field("manifests", description="Manifests folder inside the repo (GROVE_PATH).")
    db_url: str = Field(
        "",
        description="Registry database URL (GROVE_DB_URL); default "
        "sqlite:///<data dir>/registry.db, i.e. sqlite:///.grove/registry.db.",
    )
    data_dir: str = Field(".grove", description="Grove's own data folder (GROVE_DATA_DIR).")
    save_snapshot: bool = Field(
        True,
        description="Keep the routing snapshot in <data dir>/snapshot.json, served while the "
        "registry cannot be read at a start (GROVE_SAVE_SNAPSHOT); grove route never writes it.",
    )
    allow_local_endpoints: bool = Field(
        False,
        description="Admit http:// and loopback/private endpoints; development and tests only.",
    )
    max_file_bytes: int = Field(1 * MIB, gt=0, description="Size cap of one manifest file.")
    max_tree_bytes: int = Field(64 * MIB, gt=0, description="Size cap of all manifests together.")
    max_files: int = Field(50_000, gt=0, description="Cap on the number of manifest files.")
    max_depth: int = Field(32, gt=0, le=1000, description="Cap on YAML nesting depth.")
    fetch_timeout_s: int = Field(
        60, gt=0, le=3600, description="Cap on one git clone or fetch of a remote source."
    )
    poll_interval_s: float = Field(
        2.0, gt=0, le=300, description="How often a loop polls the state serial and triggers."
    )
    pg_listen: bool = Field(
        True,
        description="Use PostgreSQL LISTEN/NOTIFY to wake loops; false behind transaction-pooling "
        "proxies such as PgBouncer (polling alone then keeps replicas current).",
    )
    lease_ttl_s: float = Field(
        15.0, gt=0, le=3600, description="Leader lease of the reconcile loop; renewed at 1/3."
    )
    analysis_interval_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="How often the loop's leader judges open rollouts against their SLO.",
    )
    resolve_endpoints: bool = Field(
        True, description="At registration, refuse endpoint names resolving to private addresses."
    )
    webhook_secret: str | None = Field(
        None, description="HMAC secret of POST /api/hooks/git (GROVE_WEBHOOK_SECRET).", repr=False
    )
    max_body_bytes: int = Field(1 * MIB, gt=0, description="Cap on API request bodies.")
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Time to send a request's headers; the connection closes."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Time to send a body after its headers; 408, closed."
    )
    keep_alive_s: int = Field(
        5, gt=0, le=3600, description="How long an idle kept-alive connection stays open."
    )
    token_outage_window_s: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="While the registry database cannot be read, a token verified within "
        "this many seconds keeps working (0: none does); revocation cannot reach a server "
        "that cannot read the database (GROVE_TOKEN_OUTAGE_WINDOW_S).",
    )
    stream_idle_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A streamed answer (/v1 with stream: true) fails when its provider sends "
        "nothing for this long; the model's timeoutMs still bounds the whole call "
        "(GROVE_STREAM_IDLE_S).",
    )
    console_overview_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="While a console page is open, its live stream plans the branch head "
        "again this often, so that drift made elsewhere shows without a reload; pages "
        "reuse a plan for 5 s, or this long when shorter (GROVE_CONSOLE_OVERVIEW_S).",
    )
    max_delete_ratio: float = Field(
        0.5, ge=0, le=1, description="Refuse plans removing more than this share of live objects."
    )
    review_branches: bool = Field(
        False,
        description="Writes through the API and the console (register, update, state changes, "
        "remove) push a branch of their own for review instead of committing on the fleet "
        "branch, and apply nothing; a rollback still commits and applies at once "
        "(GROVE_REVIEW_BRANCHES, grove serve/up --review-branches).",
    )


def _with_defaults(settings: Settings) -> Settings:
    if settings.db_url:
        return settings
    folder = settings.data_dir.rstrip("/") or "."
    return settings.model_copy(update={"db_url": f"sqlite:///{folder}/registry.db"})


def load(*, discover: bool = True, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` are command-line flags, ``None`` meaning "not given".
    With ``discover``, the fleet file found from the current folder fills in what neither
    a flag nor a ``GROVE_*`` variable gives."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if discover:
        for key, value in fleet_defaults().items():
            if key not in given and not os.environ.get(f"GROVE_{key.upper()}"):
                given[key] = value
    try:
        return _with_defaults(Settings(**given))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise errors.ConfigError(
            f"invalid setting {field} (GROVE_{field.upper()}): {first['msg']}"
        ) from None


# ---------------------------------------------------------------- the fleet file of grove up

FLEET_FILE = "config.json"
DATA_FOLDER = ".grove"
_FLEET_KEYS = ("repo", "ref", "path", "db_url", "data_dir")
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def without_password(url: str) -> str:
    """``url`` with no password, in its user part or in its query: what may be written to
    disk (a PostgreSQL password then comes from ``GROVE_DB_URL``, ``PGPASSWORD`` or
    ``~/.pgpass``). A URL without a host (``sqlite:///...``) is returned as it is."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    userinfo, at, host = parts.netloc.rpartition("@")  # a raw @ in a password stays left
    netloc = f"{userinfo.split(':', 1)[0]}@{host}" if at else host
    query = "&".join(
        item
        for item in parts.query.split("&")
        if item and item.split("=", 1)[0].lower() not in _SECRET_PARAMETERS
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def find_fleet_file(start: Path | None = None) -> Path | None:
    """The fleet file that applies in ``start`` (default: the current folder):
    ``$GROVE_DATA_DIR/config.json`` when that variable is set, else the first
    ``.grove/config.json`` in ``start`` or a folder above it."""
    configured = os.environ.get("GROVE_DATA_DIR")
    if configured:
        candidate = Path(configured) / FLEET_FILE
        return candidate if candidate.is_file() else None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / DATA_FOLDER / FLEET_FILE
        if candidate.is_file():
            return candidate
    return None


def fleet_defaults(start: Path | None = None) -> dict[str, str]:
    """The settings the fleet file of ``start`` gives (empty when there is none)."""
    found = find_fleet_file(start)
    if found is None:
        return {}
    try:
        data = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise errors.ConfigError(
            f"{found}: not a fleet file written by grove up ({exc}); "
            "delete it (the next grove up writes it again) or pass --repo and --db"
        ) from None
    if not isinstance(data, dict):
        raise errors.ConfigError(
            f"{found}: not a fleet file written by grove up (not a JSON object); "
            "delete it (the next grove up writes it again) or pass --repo and --db"
        )
    return {key: data[key] for key in _FLEET_KEYS if isinstance(data.get(key), str) and data[key]}


def write_fleet_file(settings: Settings) -> Path:
    """Record the fleet of ``settings`` in ``<data_dir>/config.json`` (atomically: a
    temporary file renamed over it), the registry URL without its password."""
    folder = Path(settings.data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    values = {
        "repo": settings.repo,
        "ref": settings.ref,
        "path": settings.path,
        "db_url": without_password(settings.db_url),
        "data_dir": str(folder),
    }
    text = json.dumps({"writtenBy": "grove up", **values}, indent=2) + "\n"
    target = folder / FLEET_FILE
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{FLEET_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
