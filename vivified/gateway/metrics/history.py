"""The console overview's last hour: per-minute snapshots of the lanes' counters.

PER PROCESS: the ring buffer lives in this gateway process and reads this process's own
counter values (with several workers, each worker keeps its own hour and a console page shows
the worker that served it). Prometheus, which sums the workers, is the fleet-wide view.

Nothing is added to the hot path: once a minute the sampler reads the counters
(`Counter.collect()`), and the page turns the differences between snapshots into a rate,
denials and a p99 (estimated from the histogram buckets, as `histogram_quantile` does).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

SLOTS = 60  # minutes shown
CHART_W, CHART_H = 600, 80


@dataclass(frozen=True)
class LaneTotals:
    """Cumulative counts of one lane at one moment."""

    requests: float = 0.0
    denials: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound, cumulative count)


@dataclass
class Minute:
    at: float
    lanes: dict[str, LaneTotals] = field(default_factory=dict)


def _samples(metric: MetricWrapperBase) -> Iterable[Any]:
    for family in metric.collect():
        yield from family.samples


def counter_totals(metric: MetricWrapperBase, deny: Any) -> tuple[float, float]:
    """(all, denied) of a counter's `_total` samples; `deny(labels)` says which are denials."""
    total = denied = 0.0
    for s in _samples(metric):
        if s.name.endswith("_total"):
            total += s.value
            if deny(s.labels):
                denied += s.value
    return total, denied


def bucket_totals(metric: MetricWrapperBase) -> tuple[tuple[float, float], ...]:
    """A histogram's cumulative buckets, summed over its label children."""
    sums: dict[float, float] = {}
    for s in _samples(metric):
        if s.name.endswith("_bucket"):
            le = float(s.labels["le"])
            sums[le] = sums.get(le, 0.0) + s.value
    return tuple(sorted(sums.items()))


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Estimate the q-quantile from cumulative buckets (linear inside a bucket)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            inside = count - lower_count
            part = (rank - lower_count) / inside if inside else 0.0
            return lower_bound + (bound - lower_bound) * part
        lower_bound, lower_count = bound, count
    return lower_bound


def _delta(new: LaneTotals, old: LaneTotals) -> LaneTotals:
    olds = dict(old.buckets)
    return LaneTotals(
        max(0.0, new.requests - old.requests),
        max(0.0, new.denials - old.denials),
        tuple((le, max(0.0, n - olds.get(le, 0.0))) for le, n in new.buckets),
    )


class History:
    """A ring of per-minute snapshots (at most `SLOTS` + 1)."""

    def __init__(self) -> None:
        self.ring: deque[Minute] = deque(maxlen=SLOTS + 1)

    def add(self, lanes: dict[str, LaneTotals], now: float | None = None) -> None:
        self.ring.append(Minute(time.time() if now is None else now, lanes))

    def view(
        self, current: dict[str, LaneTotals], now: float | None = None
    ) -> list[dict[str, Any]]:
        """Per lane: per-minute requests, denials and p99 (seconds) over the last hour, the
        last point being the minute in progress; plus the bars of a small SVG chart."""
        now = time.time() if now is None else now
        points = [*self.ring, Minute(now, current)]
        out = []
        for lane in current:
            rows = []
            for old, new in itertools.pairwise(points):
                d = _delta(new.lanes.get(lane, LaneTotals()), old.lanes.get(lane, LaneTotals()))
                rows.append(
                    {
                        "at": time.strftime("%H:%M", time.gmtime(new.at)),
                        "requests": int(d.requests),
                        "denials": int(d.denials),
                        "p99": quantile(0.99, d.buckets),
                    }
                )
            if not rows:  # nothing recorded yet: the totals so far, as one point
                d = current[lane]
                rows.append(
                    {
                        "at": time.strftime("%H:%M", time.gmtime(now)),
                        "requests": int(d.requests),
                        "denials": int(d.denials),
                        "p99": quantile(0.99, d.buckets),
                    }
                )
            out.append({"lane": lane, "rows": rows[-SLOTS:], "bars": bars(rows[-SLOTS:])})
        return out


def bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rectangles for an SVG bar chart: requests (full bar) with denials over it."""
    top = max((r["requests"] for r in rows), default=0) or 1
    width = CHART_W / SLOTS
    out = []
    for i, r in enumerate(rows):
        x = (SLOTS - len(rows) + i) * width
        h = CHART_H * r["requests"] / top
        dh = CHART_H * r["denials"] / top
        out.append(
            {
                "x": round(x, 1),
                "w": round(max(width - 1, 1), 1),
                "y": round(CHART_H - h, 1),
                "h": round(h, 1),
                "dy": round(CHART_H - dh, 1),
                "dh": round(dh, 1),
                "title": f"{r['at']}: {r['requests']} requests, {r['denials']} denied",
            }
        )
    return out
