"""The config documents' own rules, without a database: RFC 7396 merge patches, the read-only
version member, the members a full write must name, an allowlist's validation, and the retry
of a merge patch that lost a race."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vivified.config.documents import (
    MAX_DOMAINS,
    MAX_PATCH_DEPTH,
    PATCH_ATTEMPTS,
    ConfigError,
    Document,
    merge_patch,
    missing_members,
    patch_object,
    retry_patch,
    validate_allowlist,
    version_member,
    without_comment,
)
from vivified.registry.store.config_store import Versioned

# RFC 7396, Appendix A: (target, patch, result)
RFC_7396_EXAMPLES = [
    pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace-a-member"),
    pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add-a-member"),
    pytest.param({"a": "b"}, {"a": None}, {}, id="null-removes"),
    pytest.param({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}, id="null-removes-only-it"),
    pytest.param({"a": ["b"]}, {"a": "c"}, {"a": "c"}, id="array-replaced-by-scalar"),
    pytest.param({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}, id="scalar-replaced-by-array"),
    pytest.param(
        {"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="nested-merge"
    ),
    pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="arrays-are-not-merged"),
    pytest.param(["a", "b"], ["c", "d"], ["c", "d"], id="array-target-replaced"),
    pytest.param({"a": "b"}, ["c"], ["c"], id="object-replaced-by-array"),
    pytest.param({"a": "foo"}, None, None, id="null-patch-is-null"),
    pytest.param({"a": "foo"}, "bar", "bar", id="string-patch-replaces"),
    pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="existing-null-kept"),
    pytest.param([1, 2], {"a": "b", "c": None}, {"a": "b"}, id="object-patch-on-array"),
    pytest.param({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="nested-null-on-new"),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_patch_follows_rfc_7396(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_changes_neither_input() -> None:
    target, patch = {"a": {"b": [1]}}, {"a": {"c": [2]}, "d": [3]}
    merged = merge_patch(target, patch)
    merged["a"]["c"].append(9)
    merged["d"].append(9)
    assert (target, patch) == ({"a": {"b": [1]}}, {"a": {"c": [2]}, "d": [3]})


def _nested(levels: int) -> dict[str, Any]:
    """A patch of `levels` objects, one inside the other."""
    patch: dict[str, Any] = {"x": 1}
    for _ in range(levels - 1):
        patch = {"a": patch}
    return patch


def test_a_merge_patch_nests_at_most_max_patch_depth_levels() -> None:
    assert merge_patch({}, _nested(MAX_PATCH_DEPTH)) == _nested(MAX_PATCH_DEPTH)
    with pytest.raises(ConfigError) as refused:
        merge_patch({}, _nested(MAX_PATCH_DEPTH + 1))
    assert refused.value.code == "invalid_body"
    assert [e["code"] for e in refused.value.errors or ()] == ["too_deep"]


@pytest.mark.parametrize(
    ("body", "if_match", "rest", "expected"),
    [
        pytest.param({"a": 1}, None, {"a": 1}, None, id="no-member-no-if-match"),
        pytest.param({"a": 1}, 4, {"a": 1}, 4, id="if-match-alone"),
        pytest.param({"a": 1, "version": 3}, None, {"a": 1}, 3, id="member-works-as-if-match"),
        pytest.param({"a": 1, "version": 3}, 3, {"a": 1}, 3, id="both-agree"),
        pytest.param({"version": 0}, None, {}, 0, id="version-zero"),
        pytest.param(["not", "an", "object"], 2, ["not", "an", "object"], 2, id="not-an-object"),
    ],
)
def test_the_version_member_is_read_only_and_works_as_if_match(
    body: Any, if_match: int | None, rest: Any, expected: int | None
) -> None:
    assert version_member(body, if_match) == (rest, expected)


@pytest.mark.parametrize(
    ("body", "if_match", "code"),
    [
        pytest.param({"version": 3}, 4, "stale_version", id="if-match-disagrees"),
        pytest.param({"version": -1}, None, "invalid_body", id="negative"),
        pytest.param({"version": "3"}, None, "invalid_body", id="a-string"),
        pytest.param({"version": True}, None, "invalid_body", id="a-boolean"),
        pytest.param({"version": 1.5}, None, "invalid_body", id="a-float"),
    ],
)
def test_a_bad_or_differing_version_member_is_refused(
    body: dict[str, Any], if_match: int | None, code: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        version_member(body, if_match)
    assert refused.value.code == code


def test_a_full_write_must_name_every_member() -> None:
    members = {"domains": [], "mode": "enforce"}
    assert missing_members({"domains": [], "mode": "report"}, members) == []
    problems = missing_members({"mode": "report"}, members)
    assert [(p["path"], p["code"]) for p in problems] == [("/domains", "missing_member")]
    assert "PATCH" in problems[0]["message"]
    assert missing_members("not an object", members) == []  # refused as a type elsewhere


def test_a_merge_patch_is_an_object_and_its_comment_travels_beside_it() -> None:
    assert patch_object({"mode": "report", "comment": "why"}, "an allowlist") == {"mode": "report"}
    with pytest.raises(ConfigError) as refused:
        patch_object(["mode"], "an allowlist")
    assert (refused.value.code, refused.value.errors) == (
        "invalid_body",
        [{"path": "", "code": "invalid_type", "message": "expected a JSON object"}],
    )


@pytest.mark.parametrize(
    ("body", "document"),
    [
        pytest.param({"mode": "report", "comment": "why"}, {"mode": "report"}, id="dropped"),
        pytest.param({"mode": "report"}, {"mode": "report"}, id="none"),
        pytest.param(["comment"], ["comment"], id="not-an-object-as-it-is"),
    ],
)
def test_a_comment_travels_beside_a_document_not_in_it(body: Any, document: Any) -> None:
    assert without_comment(body) == document


def test_an_allowlist_is_normalised() -> None:
    body = {"domains": ["API.Example.com", "*.example.org"], "mode": "report", "comment": "c"}
    assert validate_allowlist(body, ()) == (["api.example.com", "*.example.org"], "report")
    assert validate_allowlist({"domains": []}, ()) == ([], "enforce")


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        pytest.param("domains", [("", "invalid_type")], id="not-an-object"),
        pytest.param(
            {"domains": [], "owner": "x"}, [("/owner", "unknown_field")], id="unknown-field"
        ),
        pytest.param({"domains": [], "mode": "audit"}, [("/mode", "invalid_mode")], id="mode"),
        pytest.param({"mode": "enforce"}, [("/domains", "invalid_type")], id="no-domains"),
        pytest.param({"domains": "a.example.com"}, [("/domains", "invalid_type")], id="a-string"),
        pytest.param(
            {"domains": [f"d{i}.example.com" for i in range(MAX_DOMAINS + 1)]},
            [("/domains", "invalid_type")],
            id="too-many",
        ),
        pytest.param(
            {"domains": ["a.example.com", "A.example.com"]},
            [("/domains/1", "duplicate_domain")],
            id="duplicate-after-normalising",
        ),
        pytest.param(
            {"domains": ["10.0.0.1", "ok.example.com", 7]},
            [("/domains/0", "ip_literal"), ("/domains/2", "not_a_string")],
            id="each-bad-entry-named",
        ),
        pytest.param(
            {"domains": ["bad.example.net"]}, [("/domains/0", "blocked_domain")], id="blocked"
        ),
    ],
)
def test_an_invalid_allowlist_is_refused_with_every_problem(
    body: Any, problems: list[tuple[str, str]]
) -> None:
    with pytest.raises(ConfigError) as refused:
        validate_allowlist(body, ("bad.example.net",))
    assert refused.value.code == "invalid_body" if body == "domains" else "invalid_allowlist"
    assert [(e["path"], e["code"]) for e in refused.value.errors or ()] == problems


class _Store:
    """A document whose writes lose `losses` races before one lands."""

    def __init__(self, losses: int) -> None:
        self.version, self.value, self.losses = 1, {"mode": "enforce"}, losses
        self.writes: list[int] = []

    async def load(self) -> Versioned:
        return Versioned(dict(self.value), self.version)

    async def write(self, current: Document, body: Document, version: int) -> Versioned:
        self.writes.append(version)
        if self.losses or version != self.version:
            self.losses = max(0, self.losses - 1)
            self.version += 1  # another writer got there first
            raise ConfigError("stale_version", "the object changed")
        self.value, self.version = merge_patch(current, body), self.version + 1
        return Versioned(self.value, self.version)


@pytest.mark.parametrize("losses", range(PATCH_ATTEMPTS), ids=lambda n: f"{n}-races-lost")
def test_a_patch_without_a_version_is_retried_on_the_new_current(losses: int) -> None:
    store = _Store(losses)
    got = asyncio.run(retry_patch({"mode": "report"}, None, store.load, store.write))
    assert got.value == {"mode": "report"}
    assert store.writes == list(range(1, losses + 2))  # each try on the version it loaded


def test_a_patch_stops_after_patch_attempts_lost_races() -> None:
    store = _Store(PATCH_ATTEMPTS)
    with pytest.raises(ConfigError) as refused:
        asyncio.run(retry_patch({"mode": "report"}, None, store.load, store.write))
    assert refused.value.code == "stale_version"
    assert len(store.writes) == PATCH_ATTEMPTS


@pytest.mark.parametrize(
    "patch", [{"mode": "report"}, {"mode": "report", "version": 1}], ids=["if-match", "member"]
)
def test_a_patch_with_a_version_is_never_retried(patch: Document) -> None:
    store = _Store(1)
    with pytest.raises(ConfigError) as refused:
        asyncio.run(
            retry_patch(patch, 1 if "version" not in patch else None, store.load, store.write)
        )
    assert refused.value.code == "stale_version"
    assert store.writes == [1]
