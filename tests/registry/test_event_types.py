"""The canonical event catalogue."""

from __future__ import annotations

import json

import pytest

from vivified.registry.event_types import CATALOGUE, can_receive, catalogue_json, event_type


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
