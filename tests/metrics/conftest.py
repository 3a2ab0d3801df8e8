"""The metrics tests: one running core (two gateway workers, NATS, the egress proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from metrics.rig import Core, Hook, make_admin, wait_ready
from support.egress import _no_proxy_env, free_port, start_egress, upstreams
from support.events import consumers_ready
from support.manifests import seed, simple
from support.procs import (
    CoreProcess,
    enable,
    register_all,
)
from support.upstream import serve_in_thread
from support.waiting import eventually

from vivified.config.nats_server import ManagedNats

__all__ = ["_no_proxy_env", "core", "upstreams"]


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, upstreams: object) -> Iterator[Core]:
    tmp = Path(tmp_path_factory.mktemp("metrics"))
    nats = ManagedNats(tmp / "nats")
    url = nats.start()
    env = {
        "VIVIFIED_GATEWAY_WORKERS": "2",
        "VIVIFIED_NATS_URL": url,
        "VIVIFIED_DATABASE_URL": f"sqlite:///{tmp}/registry.db",
        "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01",
    }
    hook = Hook()
    gw = CoreProcess("gateway", tmp / "gw", env)
    eg_port = free_port()
    egress = None
    try:
        gw.start(timeout=120)
        wait_ready(gw)
        egress = start_egress(
            tmp / "egress",
            upstreams,
            env={"VIVIFIED_EGRESS_METRICS_PORT": str(eg_port)},  # type: ignore[arg-type]
        )
        with (
            serve_in_thread(hook.app()) as hook_url,
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
        ):
            endpoints = {"health": "/health", "items": "/api/items/{id}"}
            manifests = [
                simple("beta", base_url=hook_url, endpoints=endpoints),
                simple("alpha", dependencies=["beta"]),
                simple("gamma"),
                seed(
                    id="hr-app",
                    contracts=["HrPlugin"],
                    events={"publishes": ["UserCreated"]},
                ),
                seed(
                    id="acct",
                    contracts=["AccountingPlugin"],
                    base_url=hook_url,
                    endpoints={"events": "/events"},
                    events={"subscribes": ["UserCreated"]},
                ),
            ]
            tokens = register_all(c, manifests)
            enable(c, "hr-app", "acct")
            metrics_token = make_admin(c, "prometheus", ["metrics:read"])
            other = make_admin(c, "auditor", ["audit:read"])

            eventually(lambda: consumers_ready(gw, "acct"), 30, "acct's consumers")
            yield Core(gw, egress, eg_port, tokens, metrics_token, other, hook)
    finally:
        if egress is not None:
            egress.proc.stop()
        gw.stop()
        nats.stop()
