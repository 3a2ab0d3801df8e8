"""Health state rules: polls, heartbeats and auto-quarantine."""

from __future__ import annotations

import pytest

from vivified.policy.health import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    UNKNOWN,
    Health,
    HealthPolicy,
    after_heartbeat,
    after_probe,
    from_heartbeat_age,
    should_quarantine,
)

POLICY = HealthPolicy(heartbeat_interval=10)


def walk(results: list[bool]) -> list[str]:
    h = Health()
    states = []
    for i, ok in enumerate(results):
        h = after_probe(h, ok, float(i), POLICY)
        states.append(h.state)
    return states


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        pytest.param([True], [HEALTHY], id="first-success-healthy"),
        pytest.param([False], [DEGRADED], id="one-failure-degraded"),
        pytest.param([False, False], [DEGRADED, DEGRADED], id="two-failures-degraded"),
        pytest.param([False] * 3, [DEGRADED, DEGRADED, UNHEALTHY], id="three-failures-unhealthy"),
        pytest.param(
            [False] * 3 + [True], [DEGRADED, DEGRADED, UNHEALTHY, HEALTHY], id="one-success-heals"
        ),
        pytest.param(
            [True, False, True, False],
            [HEALTHY, DEGRADED, HEALTHY, DEGRADED],
            id="success-resets-the-count",
        ),
    ],
)
def test_probe_walks_the_states(results: list[bool], expected: list[str]) -> None:
    assert walk(results) == expected


def test_probe_counts_failures_and_time() -> None:
    h = after_probe(after_probe(Health(), False, 1.0, POLICY), False, 2.0, POLICY)
    assert (h.consecutive_failures, h.last_check) == (2, 2.0)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        pytest.param(None, HEALTHY, id="no-status-is-healthy"),
        pytest.param("ok", HEALTHY, id="ok"),
        pytest.param("DEGRADED", DEGRADED, id="degraded-any-case"),
        pytest.param("unhealthy", UNHEALTHY, id="self-reported-unhealthy"),
        pytest.param("sparkly", DEGRADED, id="unknown-status-is-degraded"),
    ],
)
def test_heartbeat_status(reported: str | None, expected: str) -> None:
    assert after_heartbeat(Health(), reported, 5.0).state == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(5, HEALTHY, id="fresh"),
        pytest.param(19, HEALTHY, id="one-missed-interval-tolerated"),
        pytest.param(20, DEGRADED, id="two-missed-degraded"),
        pytest.param(39, DEGRADED, id="three-missed-still-degraded"),
        pytest.param(40, UNHEALTHY, id="four-missed-unhealthy"),
    ],
)
def test_heartbeat_age(age: float, expected: str) -> None:
    h = after_heartbeat(Health(), "healthy", 100.0)
    assert from_heartbeat_age(h, 100.0 + age, POLICY).state == expected


def test_heartbeat_age_without_heartbeats_changes_nothing() -> None:
    assert from_heartbeat_age(Health(), 1e9, POLICY).state == UNKNOWN


def test_heartbeat_age_never_improves_a_state() -> None:
    h = Health(state=UNHEALTHY, last_heartbeat=100.0)
    assert from_heartbeat_age(h, 125.0, POLICY).state == UNHEALTHY


@pytest.mark.parametrize(
    ("enabled", "times", "now", "expected"),
    [
        pytest.param(False, [1, 2, 3], 4, False, id="off-by-default"),
        pytest.param(True, [1, 2], 4, False, id="below-count"),
        pytest.param(True, [1, 2, 3], 4, True, id="count-reached"),
        pytest.param(True, [1, 2, 3], 3602, False, id="oldest-outside-window"),
    ],
)
def test_quarantine(enabled: bool, times: list[float], now: float, expected: bool) -> None:
    policy = HealthPolicy(quarantine_enabled=enabled, quarantine_count=3, quarantine_window=3600)
    assert should_quarantine(times, now, policy) is expected


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"degraded_after": 0}, id="degraded-zero"),
        pytest.param({"degraded_after": 4, "unhealthy_after": 3}, id="degraded-after-unhealthy"),
        pytest.param({"heartbeat_interval": 0}, id="zero-interval"),
        pytest.param({"missed_heartbeats_degraded": 5}, id="heartbeat-thresholds-inverted"),
        pytest.param({"quarantine_count": 0}, id="quarantine-count-zero"),
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        HealthPolicy(**kwargs)  # type: ignore[arg-type]
