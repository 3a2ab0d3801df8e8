"""The same deployment on PostgreSQL: two gateways and two egress proxies on one fresh
database; keys rotate everywhere within a second and the one CA verifies both proxies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scaleout.rig import (
    Deployment,
    fetcher,
    fresh_token,
    jwt_header,
    start_deployment,
    stop_deployment,
    tls_through,
    within,
)
from support.egress import Upstreams, get_inside
from support.manifests import simple

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_deployment(
    tmp_path: Path, upstreams: Upstreams, ws_target: str, pg_database: str
) -> Iterator[Deployment]:
    dep = start_deployment(tmp_path, upstreams, ws_target, pg_database)
    yield dep
    stop_deployment(dep)


def test_keys_and_ca_are_shared_on_postgres(pg_deployment: Deployment, tmp_path: Path) -> None:
    dep = pg_deployment
    token = dep.register(simple("pg-keyed"))
    r = dep.admin(1, "POST", "/admin/keys/rotate")
    assert r.status_code == 200, r.text
    kid = r.json()["kid"]

    def signing_everywhere() -> bool:
        return all(
            jwt_header(fresh_token(gw, "pg-keyed", token))["kid"] == kid for gw in dep.gateways
        )

    within(signing_everywhere, 1.0, "both gateways sign with the new key")
    pems = [httpx.get(gw.url + "/egress/ca.pem", trust_env=False).content for gw in dep.gateways]
    assert pems[0] == pems[1]
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(pems[0])
    egress_token = fetcher(dep, "pg-fetcher")
    for proxy in dep.proxies:
        with tls_through(proxy, "pg-fetcher", egress_token, dep.up, cafile) as tls:
            assert get_inside(tls, dep.up) == 200
