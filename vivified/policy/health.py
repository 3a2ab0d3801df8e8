"""Health states from polls and heartbeats, and the auto-quarantine rule (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

UNKNOWN, HEALTHY, DEGRADED, UNHEALTHY = "unknown", "healthy", "degraded", "unhealthy"
STATES = (UNKNOWN, HEALTHY, DEGRADED, UNHEALTHY)
HEARTBEAT_STATUSES = {
    "healthy": HEALTHY,
    "ok": HEALTHY,
    "degraded": DEGRADED,
    "unhealthy": UNHEALTHY,
    "failing": UNHEALTHY,
}


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds: failures in a row before `degraded` / `unhealthy`; heartbeat timing."""

    degraded_after: int = 1
    unhealthy_after: int = 3
    heartbeat_interval: float = 30.0
    missed_heartbeats_degraded: int = 2
    missed_heartbeats_unhealthy: int = 4
    quarantine_enabled: bool = False
    quarantine_count: int = 3
    quarantine_window: float = 3600.0

    def __post_init__(self) -> None:
        if not 1 <= self.degraded_after <= self.unhealthy_after:
            raise ValueError("need 1 <= degraded_after <= unhealthy_after")
        if not 1 <= self.missed_heartbeats_degraded <= self.missed_heartbeats_unhealthy:
            raise ValueError("need 1 <= missed_heartbeats_degraded <= missed_heartbeats_unhealthy")
        if self.heartbeat_interval <= 0 or self.quarantine_window <= 0:
            raise ValueError("intervals must be positive")
        if self.quarantine_count < 1:
            raise ValueError("quarantine_count must be at least 1")


@dataclass(frozen=True)
class Health:
    """A plugin's health as core sees it."""

    state: str = UNKNOWN
    consecutive_failures: int = 0
    last_check: float | None = None
    last_heartbeat: float | None = None


def state_for_failures(failures: int, policy: HealthPolicy) -> str:
    if failures >= policy.unhealthy_after:
        return UNHEALTHY
    if failures >= policy.degraded_after:
        return DEGRADED
    return HEALTHY


def after_probe(current: Health, ok: bool, now: float, policy: HealthPolicy) -> Health:
    """One poll result: a success heals at once, failures count up to `unhealthy`."""
    failures = 0 if ok else current.consecutive_failures + 1
    return replace(
        current,
        state=state_for_failures(failures, policy),
        consecutive_failures=failures,
        last_check=now,
    )


def worst(a: str, b: str) -> str:
    """The worse of two states (`unknown` counts as better than any judged state)."""
    return a if STATES.index(a) >= STATES.index(b) else b


def after_heartbeat(
    current: Health, reported: str | None, now: float, policy: HealthPolicy, *, polled: bool
) -> Health:
    """A heartbeat proves liveness; the plugin may report itself degraded or unhealthy.

    For a plugin core polls (`polled`), polling has the last word on how good it is: a
    heartbeat can make the state worse but never better than its consecutive failed polls
    allow, and it leaves that count (and the poll time) alone; only a successful poll heals.
    For a plugin judged by heartbeats alone, a heartbeat resets the missed count."""
    state = HEARTBEAT_STATUSES.get((reported or "healthy").lower(), DEGRADED)
    if polled:
        allowed = state_for_failures(current.consecutive_failures, policy)
        return replace(current, state=worst(state, allowed), last_heartbeat=now)
    return replace(current, state=state, consecutive_failures=0, last_heartbeat=now, last_check=now)


def from_heartbeat_age(current: Health, now: float, policy: HealthPolicy) -> Health:
    """For plugins judged by heartbeats alone: missed intervals degrade, then condemn."""
    if current.last_heartbeat is None:
        return current
    missed = int((now - current.last_heartbeat) // policy.heartbeat_interval)
    if missed >= policy.missed_heartbeats_unhealthy:
        state = UNHEALTHY
    elif missed >= policy.missed_heartbeats_degraded:
        state = DEGRADED
    else:
        return current
    worse = STATES.index(state) > STATES.index(current.state)
    return replace(current, state=state, consecutive_failures=missed) if worse else current


def should_quarantine(unhealthy_since: Sequence[float], now: float, policy: HealthPolicy) -> bool:
    """True when the plugin turned `unhealthy` at least K times within the window."""
    if not policy.quarantine_enabled:
        return False
    recent = [t for t in unhealthy_since if now - t <= policy.quarantine_window]
    return len(recent) >= policy.quarantine_count
