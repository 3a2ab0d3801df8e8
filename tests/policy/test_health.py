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
    assert after_heartbeat(Health(), reported, 5.0, POLICY, polled=False).state == expected


def polled(results: list[bool]) -> Health:
    h = Health()
    for i, ok in enumerate(results):
        h = after_probe(h, ok, float(i), POLICY)
    return h


@pytest.mark.parametrize(
    ("polls", "reported", "expected", "failures"),
    [
        pytest.param([False] * 3, "healthy", UNHEALTHY, 3, id="healthy-beat-keeps-poll-unhealthy"),
        pytest.param([False] * 3, None, UNHEALTHY, 3, id="empty-beat-keeps-poll-unhealthy"),
        pytest.param([False] * 3, "degraded", UNHEALTHY, 3, id="degraded-beat-keeps-unhealthy"),
        pytest.param([False] * 4, "ok", UNHEALTHY, 4, id="ok-beat-keeps-four-failures"),
        pytest.param([False], "healthy", DEGRADED, 1, id="healthy-beat-keeps-poll-degraded"),
        pytest.param([False, False], "ok", DEGRADED, 2, id="ok-beat-keeps-two-failures"),
        pytest.param([False], "unhealthy", UNHEALTHY, 1, id="beat-may-worsen-degraded"),
        pytest.param([True], "degraded", DEGRADED, 0, id="beat-may-worsen-healthy"),
        pytest.param([True], "failing", UNHEALTHY, 0, id="beat-may-condemn-healthy"),
        pytest.param([True], "sparkly", DEGRADED, 0, id="unknown-status-worsens"),
        pytest.param([True], "healthy", HEALTHY, 0, id="healthy-polls-healthy-beat"),
        pytest.param([False] * 3 + [True], "ok", HEALTHY, 0, id="after-polls-recover"),
        pytest.param([], "healthy", HEALTHY, 0, id="not-yet-polled"),
    ],
)
def test_heartbeat_cannot_lift_a_polled_plugin_above_its_polls(
    polls: list[bool], reported: str | None, expected: str, failures: int
) -> None:
    before = polled(polls)
    after = after_heartbeat(before, reported, 50.0, POLICY, polled=True)
    assert (after.state, after.consecutive_failures) == (expected, failures)
    assert (after.last_heartbeat, after.last_check) == (50.0, before.last_check)


def test_polls_still_count_on_after_a_healthy_heartbeat() -> None:
    h = after_heartbeat(polled([False] * 2), "healthy", 2.5, POLICY, polled=True)
    h = after_probe(h, False, 3.0, POLICY)
    assert (h.state, h.consecutive_failures) == (UNHEALTHY, 3)
    assert after_probe(h, True, 4.0, POLICY).state == HEALTHY


def test_a_self_reported_bad_state_is_lifted_by_the_next_healthy_beat() -> None:
    h = after_heartbeat(polled([True]), "unhealthy", 1.5, POLICY, polled=True)
    assert h.state == UNHEALTHY
    assert after_heartbeat(h, "healthy", 2.0, POLICY, polled=True).state == HEALTHY


def test_heartbeat_only_plugins_heal_with_a_beat() -> None:
    missed = Health(state=UNHEALTHY, consecutive_failures=5, last_heartbeat=1.0)
    h = after_heartbeat(missed, "healthy", 60.0, POLICY, polled=False)
    assert (h.state, h.consecutive_failures, h.last_check) == (HEALTHY, 0, 60.0)


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
    h = after_heartbeat(Health(), "healthy", 100.0, POLICY, polled=False)
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
