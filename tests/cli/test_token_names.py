"""Issue 13: token names are checked and unique, so no two tokens write as one git author."""

from __future__ import annotations

import pytest

from reconciler.gitops import authoring
from tests.conftest import Registry

BAD_NAMES = [
    "rt operator",
    "RT-operator",
    "-leading-dash",
    ".hidden",
    "",
    "a" * 65,
    "new\nline",
    "tab\tbed",
    "ünïcode",
    "semi;colon",
    "at@host",
    "bidi\u202eevil",
]


def _names(registry: Registry) -> list[str]:
    return [row[0] for row in registry.sql("SELECT name FROM api_tokens ORDER BY name")]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_token_name_is_refused_in_one_line(registry: Registry, name: str) -> None:
    result = registry.run("token", "create", "--role", "operator", "--name", name)
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("grove: token name ")
    assert result.err.count("\n") == 1 and "\u202e" not in result.err  # shown escaped
    assert _names(registry) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", ["a", "rt-operator", "ci.deploy_2", "0" + "x" * 63])
def test_good_names_are_taken_once(registry: Registry, name: str) -> None:
    first = registry.run("token", "create", "--role", "viewer", "--name", name)
    assert first.code == 0, first.err
    assert first.out.startswith("grove_")
    again = registry.run("token", "create", "--role", "admin", "--name", name)
    assert again.code == 1
    assert again.out == ""
    assert again.err == f"grove: a token named {name!r} exists; revoke it or pick another name\n"
    assert registry.run("token", "revoke", name).code == 0
    assert registry.run("token", "create", "--role", "viewer", "--name", name).code == 1
    assert _names(registry) == [name]


def test_no_two_identities_share_a_git_author() -> None:
    """Token names are used as they are; anything else (a command line user, a token
    named before names were checked) is marked so that it cannot look like one."""
    callers = [
        "rt-operator",
        "rt operator",
        "rt_operator",
        "rt:operator",
        "RT-operator",
        "cli-root-vm",
        "cli:root@vm",
        "cli:root vm",
        "python",
        "grove-analysis",
    ]
    authors = [authoring.Author.of(caller) for caller in callers]
    assert len({a.name for a in authors}) == len(callers)
    assert len({a.email for a in authors}) == len(callers)
    assert authoring.Author.of("rt-operator").name == "rt-operator"
    assert authoring.Author.of("cli:root@vm").name.startswith("cli-root-vm~")
    assert all("<" not in a.name and "\n" not in a.email for a in authors)
