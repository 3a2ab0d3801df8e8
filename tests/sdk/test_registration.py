"""Registration against a real gateway: token file, re-registration, refusals, retries,
token refresh across its lifetime."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sdk.helpers import Gateway, free_port, until
from support.manifests import simple
from vivified_sdk import (
    Backoff,
    CoreUnreachable,
    Plugin,
    RegistrationRefused,
)

FAST = Backoff(initial=0.1, max_delay=0.5, max_elapsed=30)


def write_manifest(tmp_path: Path, manifest: dict[str, Any]) -> Path:
    path = tmp_path / f"{manifest['id']}.json"
    path.write_text(json.dumps(manifest))
    return path


def make_plugin(gw: Gateway, tmp_path: Path, manifest: dict[str, Any], **kw: Any) -> Plugin:
    kw.setdefault("heartbeat_interval", None)
    kw.setdefault("backoff", FAST)
    return Plugin(
        gateway_url=gw.url,
        manifest_path=write_manifest(tmp_path, manifest),
        state_dir=tmp_path / "state",
        **kw,
    )


async def test_register_saves_a_0600_token_and_a_restart_reregisters_with_it(
    gateway: Gateway, tmp_path: Path
) -> None:
    regtoken = gateway.registration_token(uses=1)  # one use: a restart must not need it
    manifest = simple("sdk-reg")
    async with make_plugin(gateway, tmp_path, manifest, registration_token=regtoken) as first:
        assert first.registration is not None
        assert (first.registration.http_status, first.registration.created) == (201, True)
        assert first.registration.status == "active"
        token_file = tmp_path / "state" / "token.json"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert json.loads(token_file.read_text())["token"] == first.token
        assert (await first.heartbeat())["state"] == "healthy"
        token1 = first.token
    async with make_plugin(gateway, tmp_path, manifest, registration_token=regtoken) as again:
        assert again.registration is not None
        assert (again.registration.http_status, again.registration.created) == (200, False)
        assert again.token != token1
        assert json.loads(token_file.read_text())["token"] == again.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


async def test_an_invalid_manifest_shows_every_problem(gateway: Gateway, tmp_path: Path) -> None:
    manifest = simple("sdk-bad", version="one", traits=[], bogus=1)
    plugin = make_plugin(
        gateway, tmp_path, manifest, registration_token=gateway.registration_token()
    )
    with pytest.raises(RegistrationRefused) as info:
        async with plugin:
            pass
    exc = info.value
    assert (exc.status, exc.reason) == (422, "invalid_manifest")
    paths = {e.path for e in exc.errors}
    assert {"/version", "/traits", "/bogus"} <= paths
    for item in exc.errors:  # every problem, with path, code and message, in the message
        assert item.code
        assert item.message
        assert f"{item.path}: {item.message} [{item.code}]" in str(exc)


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        pytest.param("vvr_not-a-real-token-0123456789", "invalid_registration_token", id="forged"),
        pytest.param(None, "missing_token", id="none"),
    ],
)
async def test_a_bad_credential_is_refused_with_its_reason(
    gateway: Gateway, tmp_path: Path, credential: str | None, reason: str
) -> None:
    plugin = make_plugin(gateway, tmp_path, simple("sdk-cred"), registration_token=credential)
    with pytest.raises(RegistrationRefused) as info:
        await plugin.start()
    await plugin.stop()
    assert info.value.status == 401
    assert info.value.reason == reason
    assert not (tmp_path / "state" / "token.json").exists()


async def test_registration_retries_while_core_is_down_then_succeeds(
    fresh_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = fresh_gateway()
    plugin = make_plugin(gw, tmp_path, simple("sdk-late"), registration_token=None)
    gw.env["VIVIFIED_REGISTRATION"] = "open"
    task = asyncio.create_task(plugin.start())
    await asyncio.sleep(1.0)  # core is not there yet: the SDK keeps trying
    assert not task.done()
    await asyncio.to_thread(gw.start)
    registration = await asyncio.wait_for(task, 30)
    try:
        assert (registration.http_status, registration.status) == (201, "active")
    finally:
        await plugin.stop()


async def test_registration_gives_up_after_its_bounded_budget(tmp_path: Path) -> None:
    plugin = Plugin(
        gateway_url=f"http://127.0.0.1:{free_port()}",
        manifest=simple("sdk-never"),
        registration_token="x" * 30,
        state_dir=tmp_path,
        heartbeat_interval=None,
        backoff=Backoff(initial=0.05, max_delay=0.2, max_elapsed=1.0),
    )
    started = time.monotonic()
    with pytest.raises(CoreUnreachable, match="register: core unreachable after"):
        await plugin.start()
    await plugin.stop()
    assert time.monotonic() - started < 5


async def test_the_token_is_swapped_before_it_expires(
    fresh_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = fresh_gateway(VIVIFIED_TOKEN_TTL="60").start()
    plugin = make_plugin(
        gw,
        tmp_path,
        simple("sdk-ttl"),
        registration_token=gw.registration_token(),
        refresh_ratio=0.1,  # 6 s into a 60 s lifetime
    )
    async with plugin:
        first = plugin.token
        info = plugin.token_info
        assert info is not None
        assert 55 <= info.lifetime <= 61
        await until(lambda: plugin.token != first, bound=20)
        second = plugin.token
        assert json.loads((tmp_path / "state" / "token.json").read_text())["token"] == second
        async with httpx.AsyncClient(base_url=gw.url, trust_env=False) as c:
            r = await c.get("/plugins/sdk-ttl", headers={"Authorization": f"Bearer {second}"})
            assert r.status_code == 200, r.text
            assert r.json()["id"] == "sdk-ttl"
        assert (await plugin.heartbeat())["state"] == "healthy"
