"""The console's per-minute history: deltas between snapshots and the p99 estimate."""

from __future__ import annotations

import math

import pytest

from vivified.gateway.metrics.history import SLOTS, History, LaneTotals, quantile

INF = math.inf


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        pytest.param((), 0.99, None, id="no-buckets"),
        pytest.param(((0.1, 0.0), (INF, 0.0)), 0.99, None, id="no-observations"),
        pytest.param(((0.1, 100.0), (1.0, 100.0), (INF, 100.0)), 0.99, 0.099, id="first-bucket"),
        pytest.param(((0.1, 50.0), (1.0, 100.0), (INF, 100.0)), 0.5, 0.1, id="bucket-edge"),
        pytest.param(((0.1, 0.0), (1.0, 100.0), (INF, 100.0)), 0.99, 0.991, id="interpolated"),
        pytest.param(((0.1, 0.0), (1.0, 0.0), (INF, 10.0)), 0.99, 1.0, id="past-the-last-bound"),
    ],
)
def test_quantile(
    buckets: tuple[tuple[float, float], ...], q: float, expected: float | None
) -> None:
    got = quantile(q, buckets)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_minutes_are_differences_and_the_ring_keeps_an_hour() -> None:
    h = History()
    for minute in range(SLOTS + 10):
        total = LaneTotals(
            10.0 * minute, 1.0 * minute, ((0.01, 10.0 * minute), (INF, 10.0 * minute))
        )
        h.add({"operator": total}, now=60.0 * minute)
    now = LaneTotals(10.0 * (SLOTS + 10) + 4, 1.0 * (SLOTS + 10), ())
    (lane,) = h.view({"operator": now}, now=60.0 * (SLOTS + 10))
    assert lane["lane"] == "operator"
    assert len(lane["rows"]) == SLOTS
    assert [r["requests"] for r in lane["rows"][:-1]] == [10] * (SLOTS - 1)
    assert [r["denials"] for r in lane["rows"][:-1]] == [1] * (SLOTS - 1)
    assert lane["rows"][0]["p99"] == pytest.approx(0.0099)
    assert lane["rows"][-1]["requests"] == 14  # the minute in progress
    assert len(lane["bars"]) == SLOTS
    assert max(b["h"] for b in lane["bars"]) == 80.0


def test_a_fresh_process_shows_its_totals_so_far() -> None:
    (lane,) = History().view({"events": LaneTotals(3.0, 1.0, ())})
    assert [(r["requests"], r["denials"], r["p99"]) for r in lane["rows"]] == [(3, 1, None)]
