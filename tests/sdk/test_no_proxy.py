"""The SDK's calls to core never go through HTTP_PROXY/HTTPS_PROXY set for egress: the egress
proxy would refuse them (`gateway_via_proxy`), and here the proxy is a dead port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sdk.helpers import Gateway, free_port
from support.manifests import simple
from vivified_sdk import Backoff, Plugin
from vivified_sdk.assertion import fetch_jwks


@pytest.fixture
def dead_proxy_env(monkeypatch: pytest.MonkeyPatch) -> str:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
        monkeypatch.setenv(name.lower(), dead)
    return dead


async def test_sdk_calls_to_core_ignore_proxy_environment(
    gateway: Gateway, tmp_path: Path, dead_proxy_env: str
) -> None:
    manifest = simple("sdk-noproxy")
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest))
    plugin = Plugin(
        gateway_url=gateway.url,
        manifest_path=path,
        state_dir=tmp_path / "state",
        registration_token=gateway.registration_token(),
        heartbeat_interval=None,
        backoff=Backoff(initial=0.1, max_delay=0.2, max_elapsed=3),
    )
    async with plugin:
        assert plugin.registration is not None
        assert plugin.registration.status == "active"
        assert (await plugin.heartbeat())["state"] == "healthy"
    jwks = fetch_jwks(gateway.url, timeout=5)
    assert jwks["keys"]
    assert all(k["kty"] == "OKP" for k in jwks["keys"])
