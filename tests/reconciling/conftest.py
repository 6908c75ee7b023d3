"""A fleet repository wired to a registry database (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.conftest import Registry, model_yaml, rule_yaml

__all__ = ["Registry", "small_fleet"]


def small_fleet() -> dict[str, str]:
    """Three models and a rule: enough for every change kind."""
    return {
        "models/alpha.yaml": model_yaml("alpha", priority="90", fallbacks="[beta]"),
        "models/beta.yaml": model_yaml("beta", priority="50"),
        "models/gamma.yaml": model_yaml("gamma", priority="10"),
        "rules/think.yaml": rule_yaml("think", minScore="0.5"),
    }
