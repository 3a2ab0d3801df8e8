"""Several gateway processes on one port: `VIVIFIED_GATEWAY_WORKERS`.

The supervisor itself (first worker alone, then the rest with SO_REUSEPORT, restart on death
with a cap, graceful stop, `PROMETHEUS_MULTIPROC_DIR`) is `vivified.config.workers`, shared
with the egress proxy. What is the gateway's own: each worker runs `vivified gateway --worker`
(uvicorn on a SO_REUSEPORT socket, `vivified.gateway.serve`), shares the registry, the audit
chain, the event consumers and the health leases with the others, and `GET /metrics` on any
worker sums every worker's multiprocess files (`vivified.gateway.metrics`), so the supervisor
serves nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vivified.config import workers as shared
from vivified.config.workers import MAX_RESTARTS, RESTART_WINDOW, STOP_GRACE

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW", "STOP_GRACE", "Workers", "supervise"]


class Workers(shared.Workers):
    """The worker processes of one gateway; `passthrough` are the settings flags to repeat."""

    def __init__(self, count: int, passthrough: Sequence[str], run_dir: Path) -> None:
        super().__init__("gateway", count, shared.vivified_worker("gateway", passthrough), run_dir)


def supervise(count: int, port: int, port_file: str | None, passthrough: Sequence[str]) -> int:
    """Run `count` workers until SIGTERM/SIGINT; writes the shared port to `port_file`."""
    return shared.supervise(lambda run_dir: Workers(count, passthrough, run_dir), port, port_file)
