"""What a Stalled condition says about an invalid head: the count, then the first three
errors in file and line order with file:line, then how many more (issue 14)."""

from __future__ import annotations

from reconciler.base.diagnostics import Diagnostic, Severity
from reconciler.gitops import reconciling


def test_the_first_three_errors_in_order_and_a_count_of_the_rest() -> None:
    found = [
        Diagnostic("manifests/b.yaml", 9, "S002", "payload: missing required field 'name'"),
        Diagnostic("manifests/a.yaml", 4, "S002", "payload: missing required field 'provider'"),
        Diagnostic("manifests/c.yaml", 1, "Y001", "not YAML\u202e"),  # a bidi control
        Diagnostic("manifests/a.yaml", 2, "S002", "meta: missing required field 'version'"),
        Diagnostic("manifests/z.yaml", 1, "S002", "late", severity=Severity.WARNING),
        Diagnostic("manifests/d.yaml", 3, "S002", "payload: missing required field 'name'"),
    ]
    assert reconciling.invalid_message(found) == (
        "5 manifest error(s); first: "
        "manifests/a.yaml:2: S002 meta: missing required field 'version'; "
        "manifests/a.yaml:4: S002 payload: missing required field 'provider'; "
        "manifests/b.yaml:9: S002 payload: missing required field 'name'; "
        "and 2 more (grove validate lists them all)"
    )


def test_one_error_is_named_alone() -> None:
    one = [Diagnostic("m.yaml", 3, "Y001", "a line\nbreak")]
    assert (
        reconciling.invalid_message(one)
        == "1 manifest error(s); first: m.yaml:3: Y001 a line\\nbreak"
    )
    assert reconciling.invalid_message([]) == "0 manifest error(s)"
