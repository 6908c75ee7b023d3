"""Every exception class of the package sits in the one tree errors.py draws.

The classes are found by importing every module of ``reconciler``, so a new
exception class anywhere fails here until it derives from ``errors.GroveError``
and has its line in the tree (or joins the allow-list below, saying why).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import reconciler
from reconciler.api import problems
from reconciler.base import errors

# Outside the tree on purpose; errors.py's docstring says why for each as well.
OUTSIDE = {
    # an HTTP answer a route raises, already holding its status and code; no service's
    # `except errors.GroveError` may catch it
    "reconciler.api.problems.ApiError",
    # private control flow: raised and caught inside authoring's rollback, never seen
    "reconciler.gitops.authoring._NothingToRollBack",
    # private control flow: raised and caught inside store.integrity.check
    "reconciler.store.integrity._Failed",
    # the console's page answers (a sign-in redirect, a 403, a 400, a 404 page), raised by
    # a page and turned into a page by web.pages.PageRoute, like ApiError for the API
    "reconciler.web.sessions.SignInNeeded",
    "reconciler.web.sessions.Forbidden",
    "reconciler.web.sessions.BadForm",
    "reconciler.web.pages.NotFound",
    # the gateway's answers in its callers' formats (OpenAI's, Anthropic's), like ApiError:
    # the token check's 401/403 as handed over by the API, and any refusal of a /v1 call
    "reconciler.gateway.Refused",
    "reconciler.gateway.common.GatewayError",
}
NOT_IMPORTABLE = {"reconciler.store.migrations.env"}  # an alembic script: runs under alembic


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(reconciler.__path__, "reconciler."):
        if module.name in NOT_IMPORTABLE:
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.startswith("reconciler")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


CLASSES = _exception_classes()


def _tree_name(name: str) -> str:
    """How the tree names a class: bare when it lives in errors.py, else with its module."""
    return name.removeprefix("reconciler.base.errors.").removeprefix("reconciler.")


def _drawn() -> dict[str, int]:
    """Each class the docstring's tree draws, and the column its name starts at."""
    lines = (errors.__doc__ or "").splitlines()
    block = lines[lines.index("    GroveError") :]
    block = block[: block.index("")]
    columns = {"GroveError": block[0].index("GroveError")}
    for line in block[1:]:
        if "── " in line:  # not a comment's second line
            name = line.split("── ", 1)[1].split()[0]
            columns[name] = line.index(name)
    return columns


DRAWN = _drawn()


def test_the_walk_finds_the_classes_it_should() -> None:
    assert "reconciler.base.errors.GroveError" in CLASSES
    assert "reconciler.providers.base.ProviderError" in CLASSES
    assert CLASSES.keys() >= OUTSIDE, "an allow-listed class is gone: drop it from OUTSIDE"


@pytest.mark.parametrize("name", sorted(CLASSES.keys() - OUTSIDE))
def test_every_exception_derives_from_the_root(name: str) -> None:
    assert issubclass(CLASSES[name], errors.GroveError), (
        f"{name} must derive from errors.GroveError (or a family under it)"
    )


@pytest.mark.parametrize("name", sorted(CLASSES.keys() - OUTSIDE))
def test_every_exception_is_drawn_under_its_parent(name: str) -> None:
    """A class has its line in errors.py's tree, one level (4 columns) under its nearest
    Grove base's line."""
    drawn = _tree_name(name)
    assert drawn in DRAWN, f"{drawn} has no line in the tree of errors.py's docstring"
    cls = CLASSES[name]
    if cls is errors.GroveError:
        return
    parent = next(b for b in cls.__mro__[1:] if issubclass(b, errors.GroveError))
    parent_name = _tree_name(f"{parent.__module__}.{parent.__qualname__}")
    assert DRAWN[drawn] == DRAWN[parent_name] + 4, f"{drawn} is not drawn under {parent_name}"


def test_answers_cover_only_classes_of_the_tree() -> None:
    for cls in problems.ANSWERS:
        assert issubclass(cls, errors.GroveError)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.UsageError("x"), 400, "bad-request"),
        (errors.DatabaseUnreadable("x"), 503, "database-not-ready"),
        (errors.LockBusy("x"), 503, "unavailable"),
        (errors.GroveError("x"), 500, "internal"),
    ],
)
def test_an_error_is_answered_by_its_nearest_class(
    error: errors.GroveError, status: int, code: str
) -> None:
    answer = problems.answer_for(error)
    assert (answer.status, answer.code) == (status, code)
