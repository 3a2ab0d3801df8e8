"""Fair sharing: the per-caller token bucket and concurrency cap (pure decisions, no clock).

A caller's bucket holds up to `burst(rate)` = twice its rate in tokens and refills at `rate`
tokens a second; a request takes one token or is refused with the seconds until one is back.
`rate` 0 means unlimited, as does a concurrency limit of 0. Buckets live per gateway process:
with N replicas (or workers) a caller may get up to N times its rate in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

BURST_FACTOR = 2.0
MAX_RATE = 1_000_000.0
MAX_CONCURRENCY = 1_000_000


@dataclass(frozen=True)
class Limits:
    """A caller's effective limits: requests per second (0 = unlimited) and calls at once."""

    rate: float = 0.0
    concurrency: int = 0


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at: float  # when `tokens` was counted (the caller's monotonic clock)


@dataclass(frozen=True)
class Taken:
    """The outcome of `take`: the new bucket, and when refused the seconds to wait."""

    bucket: Bucket | None
    retry_after: float | None = None

    def __bool__(self) -> bool:
        return self.retry_after is None


def burst(rate: float) -> float:
    """The bucket's size: bursts up to twice the rate (at least one request)."""
    return max(1.0, rate * BURST_FACTOR)


def take(bucket: Bucket | None, rate: float, now: float) -> Taken:
    """Take one token from `bucket` (None: a new, full bucket) refilled at `rate` per second."""
    if rate <= 0:
        return Taken(None)
    size = burst(rate)
    refill = 0.0 if bucket is None else max(0.0, now - bucket.at) * rate
    tokens = size if bucket is None else min(size, bucket.tokens + refill)
    if tokens >= 1.0:
        return Taken(Bucket(tokens - 1.0, now))
    return Taken(Bucket(tokens, now), (1.0 - tokens) / rate)


def retry_seconds(wait: float) -> int:
    """`Retry-After` is whole seconds: round up, at least 1."""
    return max(1, math.ceil(wait))


def over_concurrency(in_flight: int, limit: int) -> bool:
    """True when one more call would exceed `limit` calls at once (0 = unlimited)."""
    return limit > 0 and in_flight >= limit


def effective(default: Limits, override: dict[str, Any] | None) -> Limits:
    """The settings' default, with a plugin's stored override (a member null = the default)."""
    if not override:
        return default
    rate = override.get("rate")
    conc = override.get("concurrency")
    return Limits(
        float(rate) if rate is not None else default.rate,
        int(conc) if conc is not None else default.concurrency,
    )


def limits_problems(body: Any) -> list[dict[str, str]]:
    """What is wrong with a `{rate, concurrency}` override document (empty: valid)."""
    if not isinstance(body, dict):
        return [{"path": "", "code": "not_an_object", "message": "send {rate, concurrency}"}]
    out = [
        {"path": f"/{k}", "code": "unknown_member", "message": "known: rate, concurrency"}
        for k in body
        if k not in {"rate", "concurrency"}
    ]
    rate = body.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= MAX_RATE
    ):
        out.append(
            {
                "path": "/rate",
                "code": "invalid_rate",
                "message": f"requests per second, 0 to {MAX_RATE:.0f} (0 = unlimited), or null",
            }
        )
    conc = body.get("concurrency")
    if conc is not None and (
        isinstance(conc, bool) or not isinstance(conc, int) or not 0 <= conc <= MAX_CONCURRENCY
    ):
        out.append(
            {
                "path": "/concurrency",
                "code": "invalid_concurrency",
                "message": f"an integer, 0 to {MAX_CONCURRENCY} (0 = unlimited), or null",
            }
        )
    return out
