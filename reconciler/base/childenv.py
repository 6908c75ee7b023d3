"""The environment of every child process Grove starts: an allow-list, never a copy.

A Grove server's environment holds the provider API keys (``ANTHROPIC_API_KEY``,
``OPENAI_API_KEY``, whatever a manifest's ``credentials.env`` names), the webhook
secret and the database URL. The processes it starts need none of them: git (every
command, GitPython's long-lived ``cat-file --batch`` processes included, see
``sources/git.py``) and the routing-log writer (``runtime/logwriter.py``, which gets
the database URL in its pipe). Each gets :func:`build` of its :class:`Allowed`:
the variables named there that are set, plus the values its caller adds, and
nothing else, so a key added to the server's environment tomorrow does not leak.

Pure: reads the mapping it is given (``os.environ`` by default); starts nothing.
The API's worker processes are not children in this sense: they are the server,
and make the provider calls that need the keys.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Allowed:
    """Variable names passed through when set, and name prefixes passed through."""

    names: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def __add__(self, other: Allowed) -> Allowed:
        return Allowed(self.names | other.names, self.prefixes + other.prefixes)

    def admits(self, name: str) -> bool:
        return name in self.names or name.startswith(self.prefixes)


# What any program needs to start, find its tools and speak the right language.
BASE = Allowed(
    frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"}),
    ("LC_",),
)

# coverage.py's measurement of subprocesses (pytest-cov, ``patch = subprocess``): its
# own variables only, so a measured test run starts the same children.
COVERAGE = Allowed(frozenset(), ("COVERAGE_", "COV_CORE_"))

# git: certificates, proxies and SSH agent for remotes; its configuration and identity.
GIT = (
    BASE
    + COVERAGE
    + Allowed(
        frozenset(
            {
                "SSH_AUTH_SOCK",
                "SSL_CERT_FILE",
                "SSL_CERT_DIR",
                "GIT_SSL_CAINFO",
                "GIT_SSL_CAPATH",
                "HTTPS_PROXY",
                "HTTP_PROXY",
                "ALL_PROXY",
                "NO_PROXY",
                "https_proxy",
                "http_proxy",
                "all_proxy",
                "no_proxy",
                "XDG_CONFIG_HOME",
                "GIT_CONFIG_GLOBAL",
                "GIT_CONFIG_NOSYSTEM",
                "GIT_AUTHOR_NAME",
                "GIT_AUTHOR_EMAIL",
                "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL",
            }
        )
    )
)

# The routing-log writer, a Python process of Grove's own: where the interpreter finds
# the package, and libpq's own settings (``PGPASSWORD``, ``PGSSLROOTCERT``, ...) for a
# database URL that leaves them out. Never PROMETHEUS_MULTIPROC_DIR: it keeps no metrics.
PYTHON = (
    BASE
    + COVERAGE
    + Allowed(
        frozenset(
            {
                "PYTHONPATH",
                "PYTHONHOME",
                "PYTHONSAFEPATH",
                "PYTHONUTF8",
                "PYTHONIOENCODING",
                "PYTHONDONTWRITEBYTECODE",
                "VIRTUAL_ENV",
                "SSL_CERT_FILE",
                "SSL_CERT_DIR",
            }
        ),
        ("PG",),
    )
)


def build(
    allowed: Allowed,
    extra: Mapping[str, str] | None = None,
    *,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables of ``source`` (``os.environ``) that ``allowed`` admits, then ``extra``."""
    values = os.environ if source is None else source
    return {
        **{name: value for name, value in values.items() if allowed.admits(name)},
        **(extra or {}),
    }
