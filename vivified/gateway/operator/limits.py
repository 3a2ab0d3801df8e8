"""Fair sharing on the operator lane and `POST /events`: per-caller rate and concurrency.

Each caller (a plugin id, known once its token verified) has a token bucket refilled at its
rate (`VIVIFIED_RATE_LIMIT`, bursts up to twice that) and a cap on its calls in flight
(`VIVIFIED_CONCURRENCY_LIMIT`); both 0 = unlimited. An admin's per-plugin override
(`PUT /admin/plugins/{id}/limits`, a versioned config document) replaces either; every
replica reads the overrides again after each snapshot swap, so a change propagates as every
other config change does. Buckets and counters live in this process only: with N replicas
or workers, a caller may get up to N times its limits in all. The math is in
`vivified.policy.rate_limits`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.config.settings import Settings
from vivified.gateway.operator.errors import LaneError
from vivified.policy.rate_limits import (
    Bucket,
    Limits,
    effective,
    over_concurrency,
    retry_seconds,
    take,
)
from vivified.registry.store.config_store import all_limits

log = logging.getLogger(__name__)
CONCURRENCY_RETRY_AFTER = 1


class CallerLimits:
    """This process's buckets and in-flight counts, per caller."""

    def __init__(
        self, default: Limits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.default = default or Limits()
        self.overrides: dict[str, dict[str, Any]] = {}
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._in_flight: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> CallerLimits:
        return cls(Limits(settings.rate_limit, settings.concurrency_limit))

    @property
    def active(self) -> bool:
        """False when nobody is limited (the default): the lane skips the bookkeeping."""
        return bool(self.default.rate or self.default.concurrency or self.overrides)

    def limits_for(self, caller: str) -> Limits:
        return effective(self.default, self.overrides.get(caller))

    def check_rate(self, caller: str) -> None:
        """Take one token of `caller`'s bucket, or raise LaneError `rate_limited`."""
        if not self.active:
            return
        rate = self.limits_for(caller).rate
        got = take(self._buckets.get(caller), rate, self._clock())
        if got.bucket is None:
            self._buckets.pop(caller, None)
        else:
            self._buckets[caller] = got.bucket
        if got.retry_after is not None:
            raise LaneError(
                "rate_limited",
                f"{caller} exceeds its {rate:g} requests per second; retry later",
                retry_after=retry_seconds(got.retry_after),
            )

    def acquire(self, caller: str) -> bool:
        """Count one more call of `caller` in flight (True: release it later), or raise
        LaneError `concurrency_limited`."""
        if not self.active:
            return False
        limit = self.limits_for(caller).concurrency
        if limit <= 0:
            return False
        held = self._in_flight.get(caller, 0)
        if over_concurrency(held, limit):
            raise LaneError(
                "concurrency_limited",
                f"{caller} already has {held} calls in flight (its limit); retry later",
                retry_after=CONCURRENCY_RETRY_AFTER,
            )
        self._in_flight[caller] = held + 1
        return True

    def release(self, caller: str) -> None:
        left = self._in_flight.get(caller, 0) - 1
        if left > 0:
            self._in_flight[caller] = left
        else:
            self._in_flight.pop(caller, None)

    def admit(self, caller: str) -> bool:
        """Rate, then concurrency: True when a slot is held (release it when done)."""
        self.check_rate(caller)
        return self.acquire(caller)

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Read the per-plugin overrides again (after every snapshot swap)."""
        try:
            self.overrides = await all_limits(sessions)
        except Exception:  # the last good overrides stay in force
            log.exception("reading the limits overrides failed; keeping the last ones")
