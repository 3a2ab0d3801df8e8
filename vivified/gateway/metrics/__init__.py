"""Prometheus metrics of the gateway: the series (`series`), the state sampler and the
console's per-process history (`sampler`, `history`), and `GET /metrics` (`endpoint`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vivified.gateway.metrics.sampler import Sampler
from vivified.gateway.metrics.series import GatewayMetrics

if TYPE_CHECKING:
    from vivified.gateway.core import Core

__all__ = ["GatewayMetrics", "Sampler", "attach"]


def attach(core: Core) -> None:
    """Give a started core its metrics (unless `VIVIFIED_METRICS=false`): the series, the
    audit writer's and the dispatcher's hooks, and the sampler."""
    if not core.settings.metrics:
        return
    metrics = GatewayMetrics(core.snapshot)
    core.audit.on_batch = metrics.audit_batch_done
    if core.dispatcher is not None:
        core.dispatcher.on_record = metrics.delivery
    core.metrics = metrics
    core.sampler = Sampler(core, metrics)
    core.sampler.start()
