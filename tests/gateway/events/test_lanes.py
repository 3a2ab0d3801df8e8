"""Ordering lanes of the event stream: which events must stay in order together."""

from __future__ import annotations

import pytest

from vivified.gateway.events.stream import lane_of, ordering_key


@pytest.mark.parametrize(
    ("event", "key"),
    [
        pytest.param({"type": "UserCreated", "subject": "u1"}, "u1", id="subject-wins"),
        pytest.param({"type": "UserUpdated", "subject": "u1"}, "u1", id="any-type-same-entity"),
        pytest.param({"type": "FileStored"}, "FileStored", id="no-subject-orders-by-type"),
        pytest.param({"type": "FileStored", "subject": ""}, "FileStored", id="empty-subject"),
    ],
)
def test_ordering_key(event: dict[str, str], key: str) -> None:
    assert ordering_key(event) == key


def test_one_entity_stays_in_one_lane_and_keys_spread() -> None:
    a = {"type": "UserCreated", "subject": "u1"}
    b = {"type": "UserDeleted", "subject": "u1"}
    assert lane_of(a, 8) == lane_of(b, 8)
    lanes = {lane_of({"type": "UserCreated", "subject": f"u{i}"}, 8) for i in range(200)}
    assert lanes == set(range(8))
    assert {lane_of({"type": "X", "subject": f"u{i}"}, 1) for i in range(50)} == {0}
