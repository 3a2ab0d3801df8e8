"""The demo's story: each lane allowed and refused, as it happens, then the audit chain.

A small plugin of the demo's own (`demo-driver`, built on the SDK like any plugin) plays the
user: it depends on `user-management` and `human-resources` but not on `accounting`.

1. operator lane, allowed: `demo-driver` -> `identity` (the IdentityPlugin alias);
2. operator lane, denied: `demo-driver` -> `accounting` (no dependency, no grant yet);
3. event lane: `demo-driver` asks `human-resources` to add a user, which publishes
   `UserCreated`; `accounting` receives it, asks `identity` for the profile and fetches a
   rate from `rates.example.org` through the egress proxy (the admin grants `demo-driver`
   read access to `accounting` to see the account it opened);
4. egress: `accounting`'s allowed request in the audit trail, then `demo-driver` (no
   allowlist) refused by the proxy;
5. audit: `GET /admin/audit/verify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from vivified.devkit.demo import Stack

DRIVER_ID = "demo-driver"
REFUSED_URL = "http://www.example.net/"


def driver_manifest() -> dict[str, Any]:
    return {
        "id": DRIVER_ID,
        "name": "Demo driver",
        "version": "1.0.0",
        "description": "Plays the user in `vivified demo`",
        "contracts": ["DemoPlugin"],
        "traits": ["handles_pii", "audit_required"],
        "dependencies": ["user-management", "human-resources"],
        "allowed_domains": [],
        "endpoints": {"health": "/health"},
        "security": {"authentication_required": True, "data_classification": ["pii", "internal"]},
        "compliance": {"hipaa_controls": ["164.312(b)"], "audit_level": "detailed"},
    }


async def until(check: Callable[[], Awaitable[Any]], bound: float) -> Any:
    """Poll `check` until it returns something truthy, at most `bound` seconds."""
    deadline = time.monotonic() + bound
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


class Story:
    def __init__(self, stack: Stack, admin: httpx.AsyncClient) -> None:
        self.stack = stack
        self.admin = admin
        self.failures: list[str] = []
        self.account: dict[str, Any] | None = None  # what accounting opened for the new user

    def step(self, lane: str, ok: bool, verdict: str, text: str) -> None:
        self.stack.say(lane, verdict if ok else f"FAILED({verdict})", text)
        if not ok:
            self.failures.append(f"{lane} {verdict}")

    async def run(self) -> bool:
        from vivified_sdk import Backoff, CoreError, Plugin

        token = (
            await self.admin.post(
                "/admin/registration-tokens", json={"plugin_id": DRIVER_ID, "uses": 1}
            )
        ).json()["token"]
        driver = Plugin(
            gateway_url=self.stack.gateway_url,
            manifest=driver_manifest(),
            registration_token=token,
            state_dir=self.stack.data_dir / "plugins" / DRIVER_ID,
            egress_proxy=self.stack.egress,
            heartbeat_interval=None,
            backoff=Backoff(initial=0.2, max_delay=1, max_elapsed=20),
        )
        async with driver:
            enabled = await self.admin.post(f"/plugins/{DRIVER_ID}/enable")
            self.stack.say(
                "lifecycle", "APPROVED", f"{DRIVER_ID}: {enabled.json().get('status')} (SDK)"
            )
            await self.operator(driver, CoreError)
            await self.events(driver, CoreError)
            await self.egress(driver)
        await self.audit()
        return not self.failures

    async def operator(self, driver: Any, core_error: type[Exception]) -> None:
        try:
            r = await driver.call("identity", "GET", "users/42")
            p = r.json()
            self.step(
                "operator lane",
                r.status_code == 200 and p.get("user_id") == "42",
                "ALLOWED",
                f"{DRIVER_ID} -> GET /identity/users/42 -> {r.status_code} "
                f"(user-management: department={p.get('department')}, manager={p.get('manager')})",
            )
        except core_error as exc:
            self.step("operator lane", False, "ALLOWED", f"{DRIVER_ID} -> identity: {exc}")
        try:
            r = await driver.call("accounting", "GET", "accounts")
            self.step("operator lane", False, "DENIED", f"accounting answered {r.status_code}")
        except core_error as exc:
            status, reason = getattr(exc, "status", 0), getattr(exc, "reason", "")
            self.step(
                "operator lane",
                status == 403 and reason == "not_permitted",
                "DENIED",
                f"{DRIVER_ID} -> GET /accounting/accounts -> {status} {reason}: "
                f"{getattr(exc, 'detail', '')}",
            )

    async def events(self, driver: Any, core_error: type[Exception]) -> None:
        username = f"ada{int(time.time()) % 100000}"
        try:
            r = await driver.call(
                "human-resources",
                "POST",
                "users",
                json={"username": username, "email": f"{username}@example.org"},
            )
            body = r.json()
        except core_error as exc:
            self.step("event lane", False, "PUBLISHED", f"POST /human-resources/users: {exc}")
            return
        user_id, event_id = body["user"]["user_id"], body["event"]["id"]
        self.step(
            "event lane",
            r.status_code == 201 and bool(event_id),
            "PUBLISHED",
            f"human-resources: UserCreated {event_id} for {user_id} "
            f"(POST /human-resources/users by {DRIVER_ID} -> {r.status_code})",
        )
        grant = await self.admin.post(
            "/admin/grants", json={"caller": DRIVER_ID, "target": "accounting", "methods": ["GET"]}
        )
        self.stack.say(
            "admin",
            "GRANTED" if grant.status_code == 201 else f"FAILED({grant.status_code})",
            f"{DRIVER_ID} may GET accounting (POST /admin/grants -> {grant.status_code})",
        )

        async def account() -> dict[str, Any] | None:
            try:
                got = await driver.call("accounting", "GET", f"accounts/{user_id}")
            except core_error:
                return None  # the grant is not everywhere yet, or no account yet
            doc: dict[str, Any] = got.json()
            return doc

        acct = await until(account, 30)
        self.step(
            "event lane",
            bool(acct) and acct.get("event_id") == event_id,
            "DELIVERED",
            f"accounting: UserCreated {event_id} -> account for {user_id} "
            + (
                f"(profile from identity: department={acct.get('department')}, "
                f"cost_center={acct.get('cost_center')})"
                if acct
                else "(no account within 30 s)"
            ),
        )
        self.account = acct

    async def egress(self, driver: Any) -> None:
        acct = self.account

        async def allowed_record() -> dict[str, Any] | None:
            r = await self.admin.get(
                "/admin/audit", params={"lane": "egress", "actor": "accounting", "limit": 20}
            )
            items = r.json().get("items", []) if r.status_code == 200 else []
            return next((i for i in items if i.get("decision") == "allow"), None)

        record = await until(allowed_record, 10) if acct else None
        self.step(
            "egress",
            bool(acct) and record is not None,
            "ALLOWED",
            f"accounting -> {acct.get('rate_source') if acct else '?'} -> "
            + (
                f"1 USD = {acct.get('rate')} {acct.get('currency')} "
                f"(audit #{record.get('id')}: {record.get('decision')} {record.get('reason')})"
                if acct and record
                else "no allowed egress request seen"
            ),
        )
        web = await driver.egress_client()
        r = await web.get(REFUSED_URL)
        reason = r.headers.get("x-vivified-egress-error", "")
        detail = ""
        with contextlib.suppress(ValueError):
            detail = str(r.json().get("detail", ""))
        self.step(
            "egress",
            r.status_code == 403 and reason == "host_not_allowed",
            "REFUSED",
            f"{DRIVER_ID} -> {REFUSED_URL} -> {r.status_code} {reason}: {detail}",
        )

    async def audit(self) -> None:
        r = await self.admin.get("/admin/audit/verify")
        doc = r.json() if r.status_code == 200 else {}
        self.step(
            "audit",
            bool(doc.get("ok")),
            "VERIFIED",
            f"hash chain {'intact' if doc.get('ok') else 'BROKEN'}: "
            f"{doc.get('checked')} records checked (GET /admin/audit/verify)",
        )


async def run_story(stack: Stack) -> bool:
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, headers=stack.admin_headers, trust_env=False, timeout=30
    ) as admin:
        story = Story(stack, admin)
        try:
            return await story.run()
        except Exception as exc:  # a step that broke outright: say which, fail the story
            stack.say("demo", "FAILED", f"{type(exc).__name__}: {exc}")
            return False
