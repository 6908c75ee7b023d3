"""``-o/--output`` on the commands that print data beside plan and status (DESIGN
section 5): token, suspend and resume, protect and unprotect, db upgrade and downgrade,
reconcile --now. JSON and YAML documents, read back; text as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.reconciling.conftest import Registry, small_fleet


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the output does not depend on the database."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_token_create_prints_the_token_once_in_the_document(registry: Registry) -> None:
    made = registry.run("token", "create", "--role", "viewer", "--name", "ci", "-o", "json")
    assert made.code == 0 and made.err == ""
    document = json.loads(made.out)
    assert list(document) == ["name", "role", "token"]
    assert (document["name"], document["role"]) == ("ci", "viewer")
    assert document["token"].startswith("grove_") and made.out.count(document["token"]) == 1
    as_yaml = registry.run("token", "create", "--role", "admin", "--name", "ops", "-o", "yaml")
    assert yaml.safe_load(as_yaml.out)["role"] == "admin"
    plain = registry.run("token", "create", "--role", "viewer", "--name", "plain")
    assert plain.out.startswith("grove_") and plain.out.count("\n") == 1
    revoked = registry.run("token", "revoke", "ci", "--json")
    assert json.loads(revoked.out) == {"name": "ci", "revoked": True}


def test_suspend_resume_protect_and_unprotect_say_what_changed(registry: Registry) -> None:
    assert json.loads(registry.run("suspend", "-o", "json").out) == {
        "suspended": True,
        "changed": True,
    }
    assert yaml.safe_load(registry.run("suspend", "-o", "yaml").out)["changed"] is False
    assert json.loads(registry.run("resume", "--json").out)["suspended"] is False
    registry.fleet.commit("fleet", small_fleet())
    assert registry.run("reconcile").code == 0
    protected = json.loads(registry.run("protect", "alpha", "-o", "json").out)
    assert protected == {"kind": "AIModel", "id": "alpha", "protected": True, "changed": True}
    again = json.loads(registry.run("unprotect", "alpha", "--output", "json").out)
    assert (again["protected"], again["changed"]) == (False, True)
    assert registry.run("protect", "alpha").out == "AIModel/alpha protected\n"


def test_db_upgrade_downgrade_and_the_trigger(registry: Registry) -> None:
    already = json.loads(registry.run("db", "upgrade", "-o", "json").out)
    assert already["from"] == already["to"] and already["changed"] is False
    down = json.loads(registry.run("db", "downgrade", "base", "-o", "json").out)
    assert down == {"from": already["to"], "to": None, "changed": True}
    up = yaml.safe_load(registry.run("db", "upgrade", "-o", "yaml").out)
    assert up == {"from": None, "to": already["to"], "changed": True}
    trigger = json.loads(registry.run("reconcile", "--now", "-o", "json").out)
    assert trigger["leader"] is None and trigger["trigger"] >= 1


def test_json_and_a_different_output_disagree(registry: Registry) -> None:
    done = registry.run("suspend", "--json", "-o", "yaml")
    assert done.code == 1 and "disagree" in done.err
