"""Per-target circuit breakers: stop sending to a target that keeps failing, probe later."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreakers:
    """`threshold` consecutive failures open a target's circuit for `cooldown` seconds; then one
    probe request is let through (half-open): success closes it, failure re-opens it."""

    def __init__(self, *, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._circuits: dict[str, Circuit] = {}

    def retry_after(self, target: str, now: float | None = None) -> float | None:
        """None when a request may go to `target`; else seconds until the next probe."""
        c = self._circuits.get(target)
        if c is None or c.opened_at is None:
            return None
        now = time.monotonic() if now is None else now
        remaining = c.opened_at + self.cooldown - now
        if remaining > 0:
            return remaining
        if c.probing:
            return 1.0  # one probe at a time
        c.probing = True
        return None

    def success(self, target: str) -> None:
        c = self._circuits.get(target)
        if c is not None:
            c.failures, c.opened_at, c.probing = 0, None, False

    def failure(self, target: str, now: float | None = None) -> None:
        c = self._circuits.setdefault(target, Circuit())
        c.failures += 1
        if c.probing or c.failures >= self.threshold:
            c.opened_at = time.monotonic() if now is None else now
            c.probing = False

    def state(self, target: str) -> str:
        c = self._circuits.get(target)
        if c is None or c.opened_at is None:
            return "closed"
        return "half_open" if c.probing else "open"
