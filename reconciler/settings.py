"""Grove's settings: flags > environment (``GROVE_*``) > defaults.

Read once by the entry points (CLI, API) and passed down as a frozen object;
library code never reads the environment itself. Nothing here touches the
database, git or the network.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler import errors

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
    max_delete_ratio: float = Field(
        0.5, ge=0, le=1, description="Refuse plans removing more than this share of live objects."
    )


def _with_defaults(settings: Settings) -> Settings:
    if settings.db_url:
        return settings
    folder = settings.data_dir.rstrip("/") or "."
    return settings.model_copy(update={"db_url": f"sqlite:///{folder}/registry.db"})


def load(**overrides: Any) -> Settings:
    """Build settings; ``overrides`` are command-line flags, ``None`` meaning "not given"."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return _with_defaults(Settings(**given))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise errors.ConfigError(
            f"invalid setting {field} (GROVE_{field.upper()}): {first['msg']}"
        ) from None
