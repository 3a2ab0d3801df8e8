"""Audit levels: order, the strictest party wins, what each level adds, what rules require."""

from __future__ import annotations

import pytest

from vivified.policy.audit_levels import (
    COMPLETE_FIELDS,
    DETAILED_FIELDS,
    added_fields,
    declared_level,
    effective_level,
    level_detail,
    records,
    required_level,
    strictest,
    wants_hash,
)


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        pytest.param(("none", "none"), "none", id="both-none"),
        pytest.param(("none", "basic"), "basic", id="none-basic"),
        pytest.param(("complete", "basic"), "complete", id="caller-complete"),
        pytest.param(("basic", "detailed"), "detailed", id="target-detailed"),
        pytest.param(("detailed",), "detailed", id="proxy-plugin-alone"),
        pytest.param(("bogus", "none"), "basic", id="unknown-counts-as-basic"),
        pytest.param((), "none", id="no-party"),
    ],
)
def test_strictest(levels: tuple[str, ...], expected: str) -> None:
    assert strictest(levels) == expected


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param({"compliance": {"audit_level": "complete"}}, "complete", id="declared"),
        pytest.param({"compliance": {"audit_level": "none"}}, "none", id="none-declared"),
        pytest.param({"compliance": {}}, "basic", id="no-level-basic"),
        pytest.param({}, "basic", id="no-compliance-basic"),
        pytest.param({"compliance": "x"}, "basic", id="bad-compliance-basic"),
    ],
)
def test_declared_level(manifest: dict[str, object], expected: str) -> None:
    assert declared_level(manifest) == expected


@pytest.mark.parametrize(
    ("declared", "traits", "classes", "expected"),
    [
        pytest.param("none", (), ("internal",), "none", id="none-where-nothing-requires"),
        pytest.param("none", ("audit_required",), (), "basic", id="audit-required-raises"),
        pytest.param("none", (), ("pii",), "basic", id="pii-data-raises"),
        pytest.param("basic", ("handles_phi",), ("phi",), "detailed", id="phi-raises"),
        pytest.param("complete", ("handles_phi",), ("phi",), "complete", id="higher-kept"),
    ],
)
def test_effective_level(
    declared: str, traits: tuple[str, ...], classes: tuple[str, ...], expected: str
) -> None:
    assert effective_level(declared, traits, classes) == expected
    assert strictest((expected, required_level(traits, classes))) == expected


@pytest.mark.parametrize(
    ("level", "decision", "recorded"),
    [
        pytest.param("none", "allow", False, id="none-skips-allowed"),
        pytest.param("none", "deny", True, id="none-records-denial"),
        pytest.param("basic", "allow", True, id="basic-records"),
        pytest.param("complete", "deny", True, id="complete-records-denial"),
    ],
)
def test_records(level: str, decision: str, recorded: bool) -> None:
    assert records(level, decision) is recorded


@pytest.mark.parametrize(
    ("level", "fields", "hashed"),
    [
        pytest.param("none", frozenset(), False, id="none"),
        pytest.param("basic", frozenset(), False, id="basic"),
        pytest.param("detailed", DETAILED_FIELDS, False, id="detailed"),
        pytest.param("complete", COMPLETE_FIELDS, True, id="complete"),
    ],
)
def test_added_fields(level: str, fields: frozenset[str], hashed: bool) -> None:
    assert added_fields(level) == fields
    assert wants_hash(level) is hashed
    facts = {f: 1 for f in COMPLETE_FIELDS} | {"secret": "x"}
    assert set(level_detail(level, facts)) == fields
