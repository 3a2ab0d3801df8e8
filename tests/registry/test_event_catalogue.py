"""The canonical event catalogue."""

from __future__ import annotations

import json

import pytest

from vivified.registry.event_catalogue import (
    CATALOGUE,
    can_receive,
    catalogue_json,
    data_problems,
    event_type,
)


def test_catalogue_has_the_canonical_types() -> None:
    names = {e.type for e in CATALOGUE}
    assert {
        "UserCreated",
        "UserUpdated",
        "UserDeleted",
        "PluginRegistered",
        "PluginStatusChanged",
        "AuditAlert",
    } <= names
    assert len(names) == len(CATALOGUE)


@pytest.mark.parametrize(
    ("name", "classification"),
    [
        pytest.param("UserCreated", "pii", id="user-created"),
        pytest.param("UserUpdated", "pii", id="user-updated"),
        pytest.param("UserDeleted", "pii", id="user-deleted"),
        pytest.param("PluginRegistered", "internal", id="plugin-registered"),
        pytest.param("PluginStatusChanged", "internal", id="plugin-status"),
        pytest.param("AuditAlert", "internal", id="audit-alert"),
    ],
)
def test_classifications(name: str, classification: str) -> None:
    et = event_type(name)
    assert et is not None
    assert et.classification == classification
    assert et.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert et.schema["type"] == "object"
    assert set(et.schema["required"]) <= set(et.schema["properties"])


@pytest.mark.parametrize("name", [pytest.param(n, id=repr(n)) for n in ("Nope", "", None, 1)])
def test_unknown_types(name: object) -> None:
    assert event_type(name) is None


def test_catalogue_json_shape() -> None:
    body = json.loads(json.dumps(catalogue_json()))
    assert [t["type"] for t in body["types"]] == [e.type for e in CATALOGUE]
    for t in body["types"]:
        assert set(t) == {"type", "version", "classification", "schema"}
    body["types"][0]["schema"]["type"] = "changed"
    assert CATALOGUE[0].schema["type"] == "object"


@pytest.mark.parametrize(
    ("traits", "classification", "expected"),
    [
        pytest.param([], "public", True, id="public-anyone"),
        pytest.param([], "internal", True, id="internal-anyone"),
        pytest.param([], "pii", False, id="pii-nobody"),
        pytest.param(["handles_pii"], "pii", True, id="pii-pii"),
        pytest.param(["handles_phi"], "pii", True, id="pii-phi"),
        pytest.param(["handles_pii"], "phi", False, id="phi-pii"),
        pytest.param(["handles_phi"], "phi", True, id="phi-phi"),
        pytest.param([], "confidential", False, id="confidential-nobody"),
        pytest.param(["audit_required"], "confidential", True, id="confidential-audit"),
        pytest.param(["handles_pii"], "confidential", True, id="confidential-pii"),
        pytest.param(["handles_phi"], "secret", False, id="unknown-class"),
    ],
)
def test_can_receive(traits: list[str], classification: str, expected: bool) -> None:
    assert can_receive(traits, classification) is expected


SHA = "0" * 64
PROBLEMS = [
    # (type, data, the (path, code) of every problem; [] = valid)
    pytest.param("FileStored", {"file_id": "f", "size": 1}, [], id="minimal"),
    pytest.param(
        "FileStored",
        {"file_id": "f", "size": 0, "sha256": SHA, "stored_at": "2026-12-02T06:00:00Z", "x": 1},
        [],
        id="full-with-extra-field",
    ),
    pytest.param("FileStored", {"file_id": "f", "size": 10**30}, [], id="big-integer"),
    pytest.param("FileStored", {"file_id": "f", "size": 1.0}, [], id="integral-float"),
    pytest.param("FileStored", {"size": 1}, [("/data", "schema_required")], id="missing-required"),
    pytest.param(
        "FileStored", {"file_id": "f", "size": True}, [("/data/size", "schema_type")], id="bool"
    ),
    pytest.param(
        "FileStored", {"file_id": "f", "size": 1.5}, [("/data/size", "schema_type")], id="frac"
    ),
    pytest.param(
        "FileStored", {"file_id": "f", "size": -1}, [("/data/size", "schema_minimum")], id="min"
    ),
    pytest.param(
        "FileStored",
        {"file_id": "", "size": 1},
        [("/data/file_id", "schema_minLength")],
        id="empty-id",
    ),
    pytest.param(
        "FileStored",
        {"file_id": "f" * 201, "size": 1},
        [("/data/file_id", "schema_maxLength")],
        id="long-id",
    ),
    pytest.param(
        "FileStored",
        {"file_id": "f", "size": 1, "sha256": "A" * 64},
        [("/data/sha256", "schema_pattern")],
        id="pattern",
    ),
    pytest.param(
        "FileStored",
        {"file_id": "f", "size": 1, "stored_at": "2026-13-02"},
        [("/data/stored_at", "schema_format")],
        id="date-time",
    ),
    pytest.param(
        "UserCreated",
        {"user_id": "u", "username": "n", "email": "nope"},
        [("/data/email", "schema_format")],
        id="email",
    ),
    pytest.param(
        "UserCreated",
        {"user_id": "u", "username": "n", "roles": ["a", "a"]},
        [("/data/roles", "schema_uniqueItems")],
        id="unique-items",
    ),
    pytest.param(
        "UserCreated",
        {"user_id": "u", "username": "n", "roles": ["a", 1, "b", 2]},
        [("/data/roles/1", "schema_type"), ("/data/roles/3", "schema_type")],
        id="items",
    ),
    pytest.param(
        "UserCreated",
        {"user_id": 7},
        [("/data", "schema_required"), ("/data/user_id", "schema_type")],
        id="several",
    ),
    pytest.param(
        "MessageSent",
        {"message_id": "m", "channel": "pigeon"},
        [("/data/channel", "schema_enum")],
        id="enum",
    ),
    pytest.param("AuditAlert", [], [("/data", "schema_type")], id="not-an-object"),
    pytest.param(
        "UserUpdated",
        {"user_id": "u", "a/b~c": 1, "attributes": {"k": [1, {"n": None}]}},
        [],
        id="free-form-attributes",
    ),
]


@pytest.mark.parametrize(("name", "data", "expected"), PROBLEMS)
def test_data_problems(name: str, data: object, expected: list[tuple[str, str]]) -> None:
    problems = data_problems(name, data)
    assert [(p["path"], p["code"]) for p in problems] == expected
    assert all(p["message"] for p in problems)


def test_every_schema_compiles_as_2020_12() -> None:
    for e in CATALOGUE:
        assert data_problems(e.type, {}) != [], e.type  # every type requires something
