"""What the chain hashes of a record's `detail` is exactly what the database gives back (its
JSON, decoded): the fast path for plain values must agree with the JSON round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vivified.registry.audit.chain import canonical_detail


@pytest.mark.parametrize(
    "detail",
    [
        pytest.param({}, id="empty"),
        pytest.param({"a": 1, "b": "x", "c": None, "d": True, "e": 1.5}, id="scalars"),
        pytest.param({"resolved": ["10.0.0.1", "10.0.0.2"], "port": 443}, id="list-of-scalars"),
        pytest.param({"resolved": []}, id="empty-list"),
        pytest.param({"pair": ("a", 1)}, id="tuple-becomes-list"),
        pytest.param({"policy": {"grant": None, "traits": ["x"]}}, id="nested-object"),
        pytest.param({"items": [{"a": 1}, [2, 3]]}, id="list-of-containers"),
        pytest.param({"when": 3 + 0j}, id="non-json-value-as-text"),
    ],
)
def test_detail_is_hashed_as_stored(detail: dict[str, Any]) -> None:
    stored = json.loads(json.dumps(detail, default=str))
    canonical = canonical_detail(detail)
    assert canonical == stored
    assert json.dumps(canonical, sort_keys=True) == json.dumps(stored, sort_keys=True)
    assert type(canonical.get("pair", [])) is list  # a tuple is never hashed as one
