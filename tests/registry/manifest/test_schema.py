"""The manifest's JSON Schema (jsonschema is not installed: structural checks plus a tiny
evaluator for the parts the seed manifest touches)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from support.manifests import SEED_USER_MANAGEMENT, simple

from vivified.registry.manifest.rules import TOP_LEVEL_FIELDS
from vivified.registry.manifest.schema import manifest_json_schema


def test_dialect_and_required() -> None:
    schema = manifest_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"id", "name", "version", "contracts", "traits", "security"}
    assert schema["additionalProperties"] is False
    assert set(schema["patternProperties"]) == {"^x-"}
    assert set(schema["properties"]) == set(TOP_LEVEL_FIELDS)
    json.dumps(schema)


def test_nested_objects_are_closed() -> None:
    props = manifest_json_schema()["properties"]
    for name in ("security", "compliance", "health_check", "resources", "events"):
        assert props[name]["additionalProperties"] is False, name
    assert props["security"]["properties"]["authentication_required"] == {"const": True}
    assert props["resources"]["properties"]["memory_limit"]["type"] == "integer"


def test_returns_a_fresh_copy() -> None:
    first = manifest_json_schema()
    first["properties"].clear()
    assert manifest_json_schema()["properties"]


def _member(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The subschema an object member is checked against (`{"not": {}}` rejects)."""
    if key in schema.get("properties", {}):
        return dict(schema["properties"][key])
    if any(re.search(p, key) for p in schema.get("patternProperties", {})):
        return {}
    extra = schema.get("additionalProperties", True)
    return dict(extra) if isinstance(extra, dict) else ({} if extra else {"not": {}})


def _check(schema: dict[str, Any], value: Any) -> bool:
    """A minimal evaluator for the keywords this schema uses."""
    if "const" in schema and value != schema["const"]:
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "not" in schema and _check(schema["not"], value):
        return False
    kind = schema.get("type")
    if kind == "string":
        if not isinstance(value, str):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        return schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "array":
        if not isinstance(value, list) or len(value) < schema.get("minItems", 0):
            return False
        return all(_check(schema["items"], v) for v in value)
    if kind == "object":
        if not isinstance(value, dict):
            return False
        if any(k not in value for k in schema.get("required", ())):
            return False
        return all(_check(_member(schema, k), v) for k, v in value.items())
    return True


@pytest.mark.parametrize(
    ("manifest", "valid"),
    [
        pytest.param(SEED_USER_MANAGEMENT, True, id="seed"),
        pytest.param(simple("reports"), True, id="simple"),
        pytest.param({**SEED_USER_MANAGEMENT, "x-note": 1}, True, id="extension"),
        pytest.param({**SEED_USER_MANAGEMENT, "bogus": 1}, False, id="unknown-key"),
        pytest.param({**SEED_USER_MANAGEMENT, "id": "Bad"}, False, id="bad-id"),
        pytest.param({**SEED_USER_MANAGEMENT, "version": "1.0"}, False, id="bad-version"),
        pytest.param({**SEED_USER_MANAGEMENT, "traits": ["admin"]}, False, id="forbidden-trait"),
        pytest.param({**SEED_USER_MANAGEMENT, "contracts": []}, False, id="no-contracts"),
        pytest.param(
            {**SEED_USER_MANAGEMENT, "endpoints": {"a": "/../x"}}, False, id="endpoint-dotdot"
        ),
        pytest.param(
            {**SEED_USER_MANAGEMENT, "compliance": {"hipaa_controls": ["164.3(a)"]}},
            False,
            id="bad-hipaa",
        ),
    ],
)
def test_schema_agrees_with_validator_on_examples(manifest: dict[str, Any], valid: bool) -> None:
    assert _check(manifest_json_schema(), manifest) is valid
