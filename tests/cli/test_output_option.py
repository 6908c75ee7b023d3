"""``-o/--output text|json`` on every command that prints data, ``--format`` and
``--json`` kept as synonyms (DESIGN section 5). Real git repository and registry."""

from __future__ import annotations

import json

from tests.conftest import model_yaml
from tests.reconciling.conftest import Registry, small_fleet


def test_apply_and_reconcile_print_one_json_document(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    applied = registry.run("apply", "-o", "json")
    assert applied.code == 0
    document = json.loads(applied.out)
    assert document["state"] == "applied"
    assert document["revision"] == registry.fleet.head()
    assert document["applied"]["changes"] == 4 and document["plan"]["counts"] == {"create": 4}
    again = json.loads(registry.run("reconcile", "--json").out)
    assert (again["state"], again["applied"]) == ("in-sync", None)
    registry.fleet.commit("break", {"models/beta.yaml": model_yaml("beta", priority='"x"')})
    broken = registry.run("reconcile", "--output", "json")
    assert broken.code == 1
    report = json.loads(broken.out)
    assert report["state"] == "invalid" and report["diagnostics"][0]["code"] == "S003"


def test_plan_and_db_check_take_the_synonyms(registry: Registry) -> None:
    registry.fleet.commit("fleet", small_fleet())
    planned = registry.run("plan", "--format", "json")
    assert planned.code == 2 and json.loads(planned.out)["counts"] == {"create": 4}
    assert registry.run("plan", "--json").out == planned.out
    checked = registry.run("db", "check", "--format", "json")
    assert checked.code == 0 and json.loads(checked.out)["healthy"] is True


def test_watch_refuses_an_output_format(registry: Registry) -> None:
    done = registry.run("reconcile", "--watch", "-o", "json")
    assert done.code == 1 and done.err.startswith("grove: --watch logs")
