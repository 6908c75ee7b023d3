"""Find literal secrets in parsed manifests without ever repeating them.

Called by `loading` on every document before schema validation, so a key
pasted into a manifest is reported even when the document is otherwise broken.
Pure: it looks at values and paths, returns where a secret seems to be and what
kind it looks like; the value itself never leaves this module.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

Path = tuple[str | int, ...]

# (kind shown to the operator, pattern). Kinds name the family, never the value.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an OpenAI or Anthropic style key (sk-...)", re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")),
    ("a Google API key (AIza...)", re.compile(r"\bAIza[0-9A-Za-z_-]{30,}")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.")),
    ("a bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}")),
)

_CREDENTIAL_KEY = re.compile(r"(?i)(key|token|secret|passw|credential|auth|bearer)")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_MIN_ENTROPY_BITS = 3.0
_MIN_LENGTH = 16


def _entropy(text: str) -> float:
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _credential_like(path: Path) -> bool:
    return any(isinstance(part, str) and _CREDENTIAL_KEY.search(part) for part in path)


def looks_secret(value: str, *, credential_field: bool) -> str | None:
    """The kind of secret ``value`` looks like, or None."""
    for kind, pattern in _PATTERNS:
        if pattern.search(value):
            return kind
    if (
        credential_field
        and len(value) >= _MIN_LENGTH
        and not any(ch.isspace() for ch in value)
        and not _ENV_NAME.match(value)
        and any(ch.isdigit() for ch in value)
        and any(ch.isalpha() for ch in value)
        and _entropy(value) >= _MIN_ENTROPY_BITS
    ):
        return "a high-entropy string in a credential field"
    return None


def scan(value: Any) -> Iterator[tuple[Path, str, bool]]:
    """Yield (path, kind, is_key) for every string leaf or mapping key that looks secret.

    For a key, ``path`` ends with the key itself; callers must not print it.
    """
    pending: list[tuple[Path, Any]] = [((), value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    kind = looks_secret(key, credential_field=False)
                    if kind is not None:
                        yield (*where, key), kind, True
                        continue
                pending.append(((*where, key), child))
        elif isinstance(item, list):
            pending.extend(((*where, index), child) for index, child in enumerate(item))
        elif isinstance(item, str):
            kind = looks_secret(item, credential_field=_credential_like(where))
            if kind is not None:
                yield where, kind, False


def shown_name(text: str, *, limit: int = 40) -> str:
    """A key or name for a message: quoted, shortened, and never a secret."""
    if looks_secret(text, credential_field=False) is not None:
        return "<redacted>"
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
