"""The three example plugins end to end: real core (`vivified up`: gateway, egress, NATS),
the examples as child processes, a local stand-in for rates.example.org. Driven only through
the plugins' public endpoints and core's HTTP API (a test plugin built on the SDK)."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vivified_sdk import Backoff, CoreError, Plugin

from vivified.devkit import demo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[demo.Stack]:
    s = demo.Stack(tmp_path_factory.mktemp("examples"), "examples-admin-" + "x" * 24, io.StringIO())
    try:
        demo.start_core(s)
        demo.start_rates(s)
        with httpx.Client(
            base_url=s.gateway_url, headers=s.admin_headers, trust_env=False, timeout=30
        ) as admin:
            demo.open_egress(admin, s)
            for pid in demo.EXAMPLES:
                demo.start_example(admin, s, pid, ROOT / "examples")
            for pid in demo.EXAMPLES:
                demo.approve(admin, s, pid)
            demo.wait_subscribed(admin, "accounting")
        yield s
    finally:
        s.stop()


def admin(s: demo.Stack) -> httpx.Client:
    return httpx.Client(base_url=s.gateway_url, headers=s.admin_headers, trust_env=False)


def make_tester(s: demo.Stack, tmp_path: Path, **changes: Any) -> Plugin:
    """A plugin of the test's own, approved by the admin once registered."""
    pid = f"tester-{uuid.uuid4().hex[:6]}"
    manifest: dict[str, Any] = {
        "id": pid, "name": "Tester", "version": "1.0.0", "description": "drives the examples",
        "contracts": ["TesterPlugin"], "traits": ["handles_pii", "audit_required"],
        "dependencies": ["user-management", "human-resources"], "allowed_domains": [],
        "endpoints": {"health": "/health"},
        "security": {"authentication_required": True, "data_classification": ["pii"]},
        "compliance": {"hipaa_controls": [], "audit_level": "detailed"},
    }  # fmt: skip
    manifest.update(changes)
    with admin(s) as a:
        token = demo.registration_token(a, pid)
    return Plugin(
        gateway_url=s.gateway_url,
        manifest=manifest,
        registration_token=token,
        state_dir=tmp_path / pid,
        egress_proxy=s.egress,
        heartbeat_interval=None,
        backoff=Backoff(initial=0.1, max_delay=0.5, max_elapsed=20),
    )


async def approved(s: demo.Stack, plugin: Plugin) -> Plugin:
    await plugin.start()
    with admin(s) as a:
        assert a.post(f"/plugins/{plugin.id}/enable").json()["status"] == "active"
    return plugin


def poll(check: Any, bound: float = 20) -> Any:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize(
    ("plugin_id", "body"),
    [
        pytest.param(
            "user-management", {"status": "healthy", "plugin": "user-management"}, id="user-mgmt"
        ),
        pytest.param(
            "human-resources", {"status": "healthy", "plugin": "human-resources"}, id="hr"
        ),
        pytest.param("accounting", {"status": "healthy", "plugin": "accounting"}, id="accounting"),
    ],
)
def test_health_and_docs_are_public_api_needs_cores_assertion(
    stack: demo.Stack, plugin_id: str, body: dict[str, str]
) -> None:
    base = stack.plugins[plugin_id]
    assert httpx.get(base + "/health", trust_env=False).json() == body
    assert httpx.get(base + "/docs.md", trust_env=False).text.startswith("# ")
    direct = httpx.get(base + "/api/users/1", trust_env=False)  # around core: refused
    assert direct.status_code == 401
    assert direct.json()["reason"] == "invalid_assertion"


def test_manifests_are_valid_and_the_plugins_active(stack: demo.Stack) -> None:
    with admin(stack) as a:
        for pid, folder in demo.EXAMPLES.items():
            declared = json.loads((ROOT / "examples" / folder / "manifest.json").read_text())
            got = a.get(f"/plugins/{pid}").json()
            assert got["status"] == "active"
            assert got["manifest"]["traits"] == declared["traits"]


async def test_identity_alias_serves_extended_profiles(stack: demo.Stack, tmp_path: Path) -> None:
    async with await approved(stack, make_tester(stack, tmp_path)) as plugin:
        r = await plugin.call("identity", "GET", "users/u-7")
        profile = r.json()
    assert profile["user_id"] == "u-7"
    assert {"department", "manager", "attributes"} <= profile.keys()
    assert profile["requested_by"] == plugin.id  # the caller core vouched for


async def test_pii_target_refuses_a_caller_without_the_trait(
    stack: demo.Stack, tmp_path: Path
) -> None:
    plain = make_tester(
        stack,
        tmp_path,
        traits=["audit_required"],
        security={"authentication_required": True, "data_classification": ["internal"]},
        compliance={"hipaa_controls": [], "audit_level": "basic"},
    )
    async with await approved(stack, plain) as plugin:
        with pytest.raises(CoreError) as refused:
            await plugin.call("identity", "GET", "users/u-7")
    assert refused.value.status == 403
    assert refused.value.reason == "pii_trait_required"


async def test_new_user_reaches_accounting_with_profile_and_rate(
    stack: demo.Stack, tmp_path: Path
) -> None:
    async with await approved(stack, make_tester(stack, tmp_path)) as plugin:
        r = await plugin.call("human-resources", "POST", "users", json={"username": "grace"})
        assert r.status_code == 201
        created = r.json()
        user_id, event_id = created["user"]["user_id"], created["event"]["id"]
        assert created["created_by"] == plugin.id
        with pytest.raises(CoreError) as denied:  # no dependency, no grant
            await plugin.call("accounting", "GET", f"accounts/{user_id}")
        assert (denied.value.status, denied.value.reason) == (403, "not_permitted")
        with admin(stack) as a:
            grant = a.post("/admin/grants", json={"caller": plugin.id, "target": "accounting"})
            assert grant.status_code == 201, grant.text

        async def account() -> dict[str, Any] | None:
            try:
                doc: dict[str, Any] = (
                    await plugin.call("accounting", "GET", f"accounts/{user_id}")
                ).json()
                return doc
            except CoreError:
                return None

        deadline = time.monotonic() + 30
        acct = await account()
        while acct is None and time.monotonic() < deadline:
            acct = await account()
    assert acct is not None, "accounting never opened the account"
    assert acct["event_id"] == event_id
    assert acct["published_by"] == "human-resources"
    assert acct["department"]  # from identity, through the operator lane
    assert acct["rate"] == 0.92
    assert acct["currency"] == "EUR"
    assert acct["rate_source"].startswith("http://rates.example.org:")
    with admin(stack) as a:

        def allowed_egress() -> bool:  # the egress proxy writes its audit records in batches
            audit = a.get("/admin/audit", params={"lane": "egress", "actor": "accounting"})
            return any(i["decision"] == "allow" for i in audit.json()["items"])

        poll(allowed_egress)
        assert a.get("/admin/audit/verify").json()["ok"] is True


async def test_hr_refuses_a_bad_user_with_problem_json(stack: demo.Stack, tmp_path: Path) -> None:
    async with await approved(stack, make_tester(stack, tmp_path)) as plugin:
        with pytest.raises(CoreError) as bad:
            await plugin.call("human-resources", "POST", "users", json={"username": "Not Ok!"})
    assert bad.value.status == 422
    assert bad.value.reason == "invalid_user"
    assert [e.path for e in bad.value.errors] == ["/username"]


async def test_accounting_cannot_reach_a_domain_off_its_allowlist(
    stack: demo.Stack, tmp_path: Path
) -> None:
    egress = make_tester(stack, tmp_path)
    async with await approved(stack, egress) as plugin:
        web = await plugin.egress_client()
        r = await web.get(f"http://rates.example.org:{stack.rates_port}/v1/latest")
    assert r.status_code == 403  # the tester has no allowlist: the stand-in is accounting's
    assert r.headers["x-vivified-egress-error"] == "host_not_allowed"
