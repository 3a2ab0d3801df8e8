"""Failed console sign-ins are limited per client address across every gateway on one
registry (SQLite file or PostgreSQL): two gateways do not allow twice the attempts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.audit import wait_for_audit
from support.backends import BACKENDS, registry_url
from support.procs import ADMIN_TOKEN, CoreProcess

from vivified.registry.identity.sign_in_failures import LIMIT

WRONG = "vva_not-a-real-token-0123456789"


@pytest.fixture(params=BACKENDS)
def gateways(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[CoreProcess]]:
    """Two gateways (each with its own embedded NATS) on one registry."""
    with registry_url(request.param) as url:
        shared = url or f"sqlite:///{tmp_path}/shared-registry.db"
        env = {"VIVIFIED_DATABASE_URL": shared}
        pair = [CoreProcess("gateway", tmp_path / f"gw{i}", env) for i in range(2)]
        try:
            for gw in pair:  # the first one migrates the registry
                gw.start()
            yield pair
        finally:
            for gw in pair:
                gw.stop()


def _sign_in(gw: CoreProcess, token: str) -> httpx.Response:
    return httpx.post(gw.url + "/console/login", data={"token": token}, trust_env=False, timeout=30)


def test_failed_sign_ins_count_on_every_gateway_of_the_registry(
    gateways: list[CoreProcess],
) -> None:
    a, b = gateways
    turns = [(a, b)[i % 2] for i in range(LIMIT)]  # a, b, a, b, a: fewer than LIMIT at each
    for gw in turns:
        assert _sign_in(gw, WRONG).status_code == 401
    for gw in (a, b):
        held = _sign_in(gw, ADMIN_TOKEN)  # even the right token waits, on either gateway
        assert held.status_code == 429
        assert 1 <= int(held.headers["retry-after"]) <= 60
        assert "rate_limited" in held.text
        assert ADMIN_TOKEN not in held.text
    with httpx.Client(base_url=b.url, trust_env=False, timeout=30) as c:
        refused = wait_for_audit(
            c,
            count=2,
            action="console.login",
            decision="deny",
            where=lambda r: r["reason"] == "rate_limited",
        )
    assert len(refused) == 2
