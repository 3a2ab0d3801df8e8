"""The per-caller token bucket and concurrency cap (vivified.policy.rate_limits)."""

from __future__ import annotations

from typing import Any

import pytest

from vivified.policy.rate_limits import (
    Bucket,
    Limits,
    effective,
    limits_problems,
    over_concurrency,
    retry_seconds,
    take,
)


@pytest.mark.parametrize(
    ("bucket", "rate", "now", "allowed", "tokens", "wait"),
    [
        pytest.param(None, 0.0, 0.0, True, None, None, id="rate-0-is-unlimited"),
        pytest.param(None, 5.0, 0.0, True, 9.0, None, id="new-bucket-holds-twice-the-rate"),
        pytest.param(None, 0.2, 0.0, True, 0.0, None, id="slow-rate-still-allows-one"),
        pytest.param(Bucket(0.0, 0.0), 5.0, 0.0, False, 0.0, 0.2, id="empty-refused"),
        pytest.param(Bucket(0.5, 0.0), 5.0, 0.0, False, 0.5, 0.1, id="half-token-waits-half"),
        pytest.param(Bucket(0.0, 0.0), 5.0, 0.2, True, 0.0, None, id="refills-at-rate"),
        pytest.param(Bucket(0.0, 0.0), 5.0, 100.0, True, 9.0, None, id="refill-capped-at-burst"),
        pytest.param(Bucket(3.0, 10.0), 5.0, 9.0, True, 2.0, None, id="clock-backwards-no-gain"),
    ],
)
def test_token_bucket(
    bucket: Bucket | None,
    rate: float,
    now: float,
    allowed: bool,
    tokens: float | None,
    wait: float | None,
) -> None:
    got = take(bucket, rate, now)
    assert bool(got) is allowed
    assert (got.bucket.tokens if got.bucket else None) == pytest.approx(tokens)
    assert got.retry_after == pytest.approx(wait)


def test_a_burst_of_twice_the_rate_then_refusal() -> None:
    bucket: Bucket | None = None
    outcomes = []
    for _ in range(12):
        got = take(bucket, 5.0, 0.0)
        bucket = got.bucket
        outcomes.append(bool(got))
    assert outcomes == [True] * 10 + [False] * 2


@pytest.mark.parametrize(
    ("in_flight", "limit", "over"),
    [
        pytest.param(100, 0, False, id="0-is-unlimited"),
        pytest.param(1, 2, False, id="room-left"),
        pytest.param(2, 2, True, id="at-the-limit"),
    ],
)
def test_concurrency(in_flight: int, limit: int, over: bool) -> None:
    assert over_concurrency(in_flight, limit) is over


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [pytest.param(0.01, 1, id="at-least-1"), pytest.param(1.2, 2, id="rounds-up")],
)
def test_retry_after_whole_seconds(wait: float, seconds: int) -> None:
    assert retry_seconds(wait) == seconds


@pytest.mark.parametrize(
    ("override", "limits"),
    [
        pytest.param(None, Limits(10.0, 4), id="no-override"),
        pytest.param({"rate": 2, "concurrency": None}, Limits(2.0, 4), id="rate-only"),
        pytest.param({"rate": None, "concurrency": 1}, Limits(10.0, 1), id="concurrency-only"),
        pytest.param({"rate": 0, "concurrency": 0}, Limits(0.0, 0), id="override-to-unlimited"),
    ],
)
def test_effective_limits(override: dict[str, Any] | None, limits: Limits) -> None:
    assert effective(Limits(10.0, 4), override) == limits


@pytest.mark.parametrize(
    ("body", "codes"),
    [
        pytest.param({"rate": 5, "concurrency": 2}, [], id="valid"),
        pytest.param({"rate": None, "concurrency": None}, [], id="nulls-mean-default"),
        pytest.param([], ["not_an_object"], id="not-an-object"),
        pytest.param({"rate": -1}, ["invalid_rate"], id="negative-rate"),
        pytest.param({"rate": True}, ["invalid_rate"], id="boolean-rate"),
        pytest.param({"concurrency": 1.5}, ["invalid_concurrency"], id="fractional-concurrency"),
        pytest.param({"burst": 3}, ["unknown_member"], id="unknown-member"),
    ],
)
def test_override_validation(body: Any, codes: list[str]) -> None:
    assert [p["code"] for p in limits_problems(body)] == codes
