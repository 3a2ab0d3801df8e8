"""Read your writes across replicas: what a change made through one process allows is allowed
by every other process as soon as its writer has answered, before any change notice arrives.

Gateway 1 and proxy 1 run on a nats-server of their own and reload their snapshots only every
60 s, so no notice of what happens through gateway 0 ever reaches them: only the registry's
revision, read when their snapshot would refuse, can explain what they allow here. Without it
each of these tests fails (unknown_plugin, revoked, plugin_not_active, publisher_not_active,
host_not_allowed, not_permitted, invalid_grant). A revocation is not confirmed this way:
allowing on a stale picture is what the change notice bounds (test_revocation.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scaleout.rig import Deployment, fresh_token, start_deployment, stop_deployment, tls_through
from support.backends import registry_url
from support.egress import Upstreams, basic, get_inside, raw_exchange
from support.manifests import simple
from support.procs import admin_headers, register, registration_token


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def apart(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstreams: Upstreams,
    ws_target: str,
) -> Iterator[Deployment]:
    """The rig on a shared SQLite file, or on a PostgreSQL database of its own."""
    base = Path(tmp_path_factory.mktemp("apart"))
    with registry_url(request.param) as pg:
        url = pg or f"sqlite:///{base}/shared-registry.db"
        dep = start_deployment(base, upstreams, ws_target, url, apart=True)
        yield dep
        stop_deployment(dep)


@pytest.fixture(scope="module")
def cafile(apart: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(tmp_path_factory.mktemp("ca")) / "ca.pem"
    ca = httpx.get(apart.gateways[0].url + "/egress/ca.pem", trust_env=False)
    path.write_bytes(ca.content)
    return path


def register_on_0(dep: Deployment, manifest: dict[str, object], *, enable: bool = False) -> str:
    """Register (and enable) through gateway 0 only, without waiting for anyone: the token."""
    with dep.client(0) as c:
        r = register(c, manifest, registration_token(c))
        assert r.status_code == 201, r.text
        if enable:
            e = c.post(f"/plugins/{manifest['id']}/enable", headers=admin_headers())
            assert (e.status_code, e.json()["status"]) == (200, "active"), e.text
    token: str = r.json()["token"]
    return token


def own_record(dep: Deployment, i: int, pid: str, token: str) -> httpx.Response:
    with dep.client(i) as c:
        return c.get(f"/plugins/{pid}", headers={"Authorization": f"Bearer {token}"})


def plain_through(dep: Deployment, pid: str, token: str, host: str) -> tuple[int, str]:
    """A plain-HTTP GET through proxy 1: the status and the refusal's reason header, if any."""
    target = f"{host}:{dep.up.http_port}"
    request = (
        f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n"
        f"Proxy-Authorization: {basic(pid, token)}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, headers, _body, sock = raw_exchange(dep.proxies[1].port, request)
    sock.close()
    return status, headers.get("x-vivified-egress-error", "")


def fetcher_manifest(pid: str) -> dict[str, object]:
    return simple(pid, traits=["external_service"], allowed_domains=["api.example.com"])


def enable_on_0(dep: Deployment, pid: str) -> None:
    r = dep.admin(0, "POST", f"/plugins/{pid}/enable")
    assert (r.status_code, r.json()["status"]) == (200, "active"), r.text


def test_a_plugin_enabled_through_one_gateway_is_served_by_the_others_at_once(
    apart: Deployment, cafile: Path
) -> None:
    token = register_on_0(apart, fetcher_manifest("ryw-fetch"))  # waits for an admin
    r = own_record(apart, 1, "ryw-fetch", token)
    assert (r.status_code, r.json()["status"]) == (200, "registered"), r.text
    refused = plain_through(apart, "ryw-fetch", token, "api.example.com")
    assert refused == (403, "plugin_not_active")
    enable_on_0(apart, "ryw-fetch")
    assert own_record(apart, 1, "ryw-fetch", token).json()["status"] == "active"
    with tls_through(apart.proxies[1], "ryw-fetch", token, apart.up, cafile) as tls:
        assert get_inside(tls, apart.up) == 200


def test_a_publisher_enabled_through_one_gateway_publishes_through_another_at_once(
    apart: Deployment,
) -> None:
    manifest = fetcher_manifest("ryw-pub") | {"events": {"publishes": ["FileStored"]}}
    token = register_on_0(apart, manifest)  # waits for an admin
    event = {"type": "FileStored", "data": {"file_id": "ryw-2", "size": 2}}
    with apart.client(1) as c:
        auth = {"Authorization": f"Bearer {token}"}
        refused = c.post("/events", json=event, headers=auth)
        assert (refused.status_code, refused.json()["reason"]) == (
            403,
            "publisher_not_active",
        ), refused.text
        enable_on_0(apart, "ryw-pub")
        published = c.post("/events", json=event, headers=auth)
        assert published.status_code == 202, published.text


def test_a_token_issued_through_one_gateway_is_accepted_by_the_others_at_once(
    apart: Deployment, cafile: Path
) -> None:
    old = register_on_0(apart, fetcher_manifest("ryw-again"), enable=True)
    with apart.client(0) as c:  # registering again with its own token raises its generation
        manifest = own_record(apart, 0, "ryw-again", old).json()["manifest"]
        r = register(c, manifest, old)
        assert r.status_code == 200, r.text
    new: str = r.json()["token"]
    assert new != old
    with tls_through(apart.proxies[1], "ryw-again", new, apart.up, cafile) as tls:
        assert get_inside(tls, apart.up) == 200
    refreshed = fresh_token(apart.gateways[1], "ryw-again", new)
    assert own_record(apart, 1, "ryw-again", refreshed).status_code == 200


def test_an_allowlist_widened_through_one_gateway_applies_at_once_elsewhere(
    apart: Deployment,
) -> None:
    token = register_on_0(apart, fetcher_manifest("ryw-widen"), enable=True)
    assert plain_through(apart, "ryw-widen", token, "files.example.org") == (
        403,
        "host_not_allowed",
    )
    r = apart.admin(
        0,
        "PUT",
        "/admin/plugins/ryw-widen/allowed-domains",
        json={"domains": ["api.example.com", "files.example.org"], "mode": "enforce"},
    )
    assert r.status_code == 200, r.text
    assert plain_through(apart, "ryw-widen", token, "files.example.org") == (200, "")


def test_calls_events_and_grants_right_after_registering_pass_another_gateway(
    apart: Deployment,
) -> None:
    base = f"http://127.0.0.1:{apart.up.http_port}"
    register_on_0(apart, simple("ryw-target", base_url=base))
    caller = register_on_0(
        apart,
        simple("ryw-caller", dependencies=["ryw-target"], events={"publishes": ["FileStored"]}),
    )
    stranger = register_on_0(apart, simple("ryw-stranger"))
    with apart.client(1) as c:
        call = c.get("/ryw-target/items/7", headers={"Authorization": f"Bearer {caller}"})
        assert call.status_code == 200, call.text
        assert call.json()["path"] == "/api/items/7"
        event = {"type": "FileStored", "data": {"file_id": "ryw-1", "size": 1}}
        published = c.post("/events", json=event, headers={"Authorization": f"Bearer {caller}"})
        assert published.status_code == 202, published.text
        refused = c.get("/ryw-target/items/7", headers={"Authorization": f"Bearer {stranger}"})
        assert (refused.status_code, refused.json()["reason"]) == (403, "not_permitted"), (
            refused.text
        )
    r = apart.admin(
        0, "POST", "/admin/grants", json={"caller": "ryw-stranger", "target": "ryw-target"}
    )
    assert r.status_code == 201, r.text
    with apart.client(1) as c:
        call = c.get("/ryw-target/items/8", headers={"Authorization": f"Bearer {stranger}"})
        assert call.status_code == 200, call.text
    register_on_0(apart, simple("ryw-late"))
    r = apart.admin(1, "POST", "/admin/grants", json={"caller": "ryw-late", "target": "ryw-target"})
    assert r.status_code == 201, r.text  # validated on what the registry holds, not a notice ago
