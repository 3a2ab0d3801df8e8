"""The console's pages end to end: a real gateway, real plugins, a real upstream, Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console.browser import Console, audit, check_axe, shot, sign_in
from playwright.sync_api import Browser, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.manifests import seed, simple
from support.procs import CoreProcess, admin_headers, register, register_all
from support.upstream import serve_in_thread

ENDPOINTS = {"health": "/health", "items": "/api/items/{id}"}
AUDIT_ONLY = "audit-only"
PHI = {
    "traits": ["handles_phi", "audit_required"],
    "security": {"authentication_required": True, "data_classification": ["phi", "internal"]},
    "compliance": {
        "hipaa_controls": ["164.312(a)", "164.308(a)(1)(ii)(D)"],
        "audit_level": "detailed",
        "data_retention_days": 2190,
    },
}


async def item(request: Request) -> Response:
    return JSONResponse({"item": request.path_params["id"], "served": "upstream"})


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


UPSTREAM = Starlette(routes=[Route("/api/items/{id}", item), Route("/health", health)])


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


class World:
    def __init__(self, console: Console, tokens: dict[str, str], audit_token: str) -> None:
        self.console = console
        self.tokens = tokens
        self.audit_token = audit_token

    def call(self, caller: str, path: str) -> httpx.Response:
        with httpx.Client(base_url=self.console.gw.url, timeout=30, trust_env=False) as c:
            return c.get(path, headers={"Authorization": f"Bearer {self.tokens[caller]}"})


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe_source: str
) -> Iterator[World]:
    env = {"VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01", "VIVIFIED_HEALTH_INTERVAL": "3600"}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("console")), env).start()
    try:
        with (
            serve_in_thread(UPSTREAM) as url,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            manifests = [
                seed(id="pii-store", base_url=url, endpoints=ENDPOINTS, contracts=["StorePlugin"]),
                seed(id="pii-reader", dependencies=["pii-store"], contracts=["ReaderPlugin"]),
                seed(id="phi-vault", base_url=url, endpoints=ENDPOINTS, contracts=["VaultPlugin"])
                | PHI,
                simple("widener", base_url=url, endpoints=ENDPOINTS),
                # never acted upon: the filter tests read them
                seed(id="pii-waiting", contracts=["WaitingPlugin"]),
                seed(id="phi-idle", contracts=["IdlePlugin"]) | PHI,
                simple("gamma", version="2.0.0"),
            ]
            tokens = register_all(c, manifests)
            r = c.post("/plugins/pii-reader/enable", headers=admin_headers())
            assert r.status_code == 200, r.text
            # widener asks for more than was approved: a pending widening
            wider = simple("widener", base_url=url, endpoints={**ENDPOINTS, "extra": "/api/extra"})
            r = register(c, wider, tokens["widener"])
            assert r.status_code == 200, r.text
            assert r.json()["diff"]["widened"], r.text
            # an admin who may only read the audit trail
            r = c.post(
                "/admin/users",
                json={"name": AUDIT_ONLY, "scopes": ["audit:read"]},
                headers=admin_headers(),
            )
            assert r.status_code == 201, r.text
            user_id = r.json()["id"]
            r = c.post(
                f"/admin/users/{user_id}/tokens", json={"name": "t"}, headers=admin_headers()
            )
            assert r.status_code == 201, r.text
            yield World(Console(gw, browser, axe_source), tokens, r.json()["token"])
    finally:
        gw.stop()


@pytest.fixture
def console(world: World) -> Console:
    return world.console


def test_signed_out_console_goes_to_sign_in(page: Page) -> None:
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    check_axe(page)
    shot(page, "login")


def test_overview_shows_counts_lanes_chain_and_denials(world: World, page: Page) -> None:
    world.call("pii-reader", "/phi-vault/items/1")  # refused: a denial to show
    sign_in(page)
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Overview")).to_be_visible()
    expect(main.get_by_role("table", name="By status")).to_contain_text("registered")
    expect(main.get_by_text("Proxy lane (egress)")).to_be_visible()
    expect(main.get_by_role("table", name=re.compile("latest refused"))).to_contain_text("deny")
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#chain-result")).to_contain_text("Chain intact")
    nav = page.get_by_role("navigation", name="Console")
    for name in ("Overview", "Plugins", "Registration tokens", "Audit"):
        expect(nav.get_by_role("link", name=name)).to_be_visible()
    check_axe(page)
    shot(page, "overview")


def test_approve_a_waiting_plugin_and_its_lane_call_succeeds(world: World, page: Page) -> None:
    before = world.call("pii-reader", "/pii-store/items/7")
    assert before.status_code == 503, before.text
    sign_in(page)
    page.get_by_role("link", name="Plugins", exact=True).click()
    page.get_by_role("link", name="pii-store").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("pii-store")
    expect(page.get_by_text("handles_pii").first).to_be_visible()
    check_axe(page)
    page.get_by_role("link", name="Approve").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Approve")
    expect(page.get_by_role("heading", level=1)).to_contain_text("pii-store")
    check_axe(page)
    shot(page, "confirm")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approve: done")
    expect(page.locator(".status").first).to_have_text("active")
    after = eventually(
        lambda: (r := world.call("pii-reader", "/pii-store/items/7")).is_success and r
    )
    assert after, "the lane call did not succeed after approval"
    assert after.json() == {"item": "7", "served": "upstream"}
    records = eventually(lambda: audit(world.console, action="enable", target="pii-store"))
    assert records[0]["actor"] == "admin:bootstrap"
    assert (records[0]["lane"], records[0]["decision"]) == ("registry", "allow")


def test_phi_approval_needs_a_written_reason_that_is_audited(world: World, page: Page) -> None:
    sign_in(page)
    page.goto("/console/plugins/phi-vault/approve")
    check_axe(page)
    page.evaluate("document.getElementById('reason').removeAttribute('required')")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("reason")
    with world.console.api() as c:
        assert c.get("/plugins/phi-vault").json()["status"] == "registered"
    page.get_by_label(re.compile("Reason")).fill("Ward 7 pilot, ticket CHG-42")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approve: done")
    reasons = eventually(lambda: audit(world.console, action="console.phi_reason"))
    assert reasons[0]["detail"] == {"action": "approve", "reason": "Ward 7 pilot, ticket CHG-42"}
    assert reasons[0]["actor"] == "admin:bootstrap"
    enabled = audit(world.console, action="enable", target="phi-vault")
    assert enabled
    assert enabled[0]["request_id"] == reasons[0]["request_id"]


def test_pending_widening_is_shown_with_approve(page: Page) -> None:
    sign_in(page)
    page.goto("/console/plugins/widener")
    pending = page.get_by_role("table", name="Changes against the approved manifest")
    expect(pending).to_contain_text("endpoints")
    expect(pending).to_contain_text("extra")
    expect(page.get_by_role("link", name="Approve")).to_be_visible()
    check_axe(page)
    shot(page, "plugin")


def test_disable_and_unregister_go_through_a_confirmation(world: World, page: Page) -> None:
    sign_in(page)
    page.goto("/console/plugins/gamma")
    page.get_by_role("link", name="Disable").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Disable .*gamma"))
    page.get_by_role("button", name="Disable").click()
    expect(page.locator(".status").first).to_have_text("disabled")
    page.get_by_role("link", name="Enable").click()
    page.get_by_role("button", name="Enable").click()
    expect(page.locator(".status").first).to_have_text("active")
    page.get_by_role("link", name="Unregister").click()
    page.get_by_role("button", name="Unregister").click()
    expect(page.get_by_role("status")).to_contain_text("Unregistered gamma")
    with world.console.api() as c:
        assert c.get("/plugins/gamma").status_code == 404
    actions = [r["action"] for r in audit(world.console, target="gamma", lane="registry")]
    assert actions[:3] == ["unregister", "enable", "disable"]


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        pytest.param("status=registered", {"pii-waiting", "phi-idle"}, {"pii-reader"}, id="status"),
        pytest.param("trait=handles_pii", {"pii-reader", "pii-waiting"}, {"widener"}, id="trait"),
        pytest.param("classification=phi", {"phi-idle"}, {"pii-reader"}, id="classification"),
        pytest.param("risk=low", {"widener"}, {"phi-idle", "pii-reader"}, id="risk"),
        pytest.param("version=1.0.0", {"pii-reader"}, set(), id="version"),
        pytest.param("health=unknown", {"pii-reader"}, set(), id="health"),
    ],
)
def test_plugins_table_filters_by_query_string(
    page: Page, query: str, shown: set[str], hidden: set[str]
) -> None:
    sign_in(page)
    page.goto(f"/console/plugins?{query}")
    table = page.get_by_role("table", name=re.compile("plugins$"))
    for pid in shown:
        expect(table.get_by_role("link", name=pid, exact=True)).to_be_visible()
    for pid in hidden:
        expect(table.get_by_role("link", name=pid, exact=True)).to_have_count(0)


def test_plugins_table_sorts_and_shows_badges(page: Page) -> None:
    sign_in(page)
    page.goto("/console/plugins")
    check_axe(page)
    shot(page, "plugins")
    ids = page.locator("table.plugins tbody tr td:first-child a").all_inner_texts()
    assert ids == sorted(ids)
    page.get_by_role("link", name="Id", exact=True).click()
    expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    ids_desc = page.locator("table.plugins tbody tr td:first-child a").all_inner_texts()
    assert ids_desc == sorted(ids, reverse=True)
    row = page.get_by_role("row").filter(has_text="pii-store")
    expect(row.locator(".badge.handles_pii")).to_be_visible()


def test_registration_token_created_shown_once_and_revoked(world: World, page: Page) -> None:
    sign_in(page)
    page.get_by_role("link", name="Registration tokens").click()
    page.get_by_label("Plugin id (optional)").fill("newcomer")
    page.get_by_role("button", name="Create").click()
    token = page.get_by_label("Token", exact=True).input_value()
    assert token.startswith("vvr_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    check_axe(page)
    shot(page, "tokens")
    page.goto("/console/tokens")
    assert token not in page.content()  # shown once only
    row = page.get_by_role("row").filter(has_text="newcomer")
    row.get_by_role("button", name=re.compile("^Revoke")).click()
    expect(page.get_by_role("status")).to_contain_text("Revoked")
    expect(page.get_by_role("row").filter(has_text="newcomer")).to_contain_text("revoked")
    with httpx.Client(base_url=world.console.gw.url, timeout=30, trust_env=False) as c:
        r = register(c, simple("newcomer"), token)
    assert r.status_code == 401, r.text
    assert r.json()["reason"] == "invalid_registration_token"
    actions = [r["action"] for r in audit(world.console, actor="admin:bootstrap", lane="admin")]
    assert "registration_token_create" in actions
    assert "registration_token_revoke" in actions


def test_audit_filters_pages_and_verifies_the_chain(world: World, page: Page) -> None:
    sign_in(page)
    page.get_by_role("link", name="Audit", exact=True).click()
    page.get_by_label("Lane").fill("registry")
    page.get_by_label("Decision").select_option("allow")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"lane=registry.*decision=allow"))
    rows = page.locator("table.records tbody tr")
    expect(rows.first).to_contain_text("registry")
    lanes = page.locator("table.records tbody tr td:nth-child(4)").all_inner_texts()
    assert lanes
    assert set(lanes) == {"registry"}
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#chain-result")).to_contain_text("Chain intact")
    check_axe(page)
    shot(page, "audit")
    with world.console.api() as c:  # enough records for a second page
        for _ in range(3):
            c.get("/admin/audit/verify")
    page.goto("/console/audit")
    first_ids = page.locator("table.records tbody tr td:first-child").all_inner_texts()
    if len(first_ids) == 50:
        page.get_by_role("link", name="Older records").click()
        older = page.locator("table.records tbody tr td:first-child").all_inner_texts()
        assert older
        assert int(older[0]) < int(first_ids[-1])


def test_phi_details_are_hidden_without_phi_read(world: World, page: Page) -> None:
    world.call("pii-reader", "/phi-vault/items/secret-path")
    sign_in(page, world.audit_token)
    page.goto("/console/audit?target=phi-vault")
    rows = page.locator("table.records tbody tr")
    expect(rows.first).to_contain_text("phi-vault")
    expect(rows.first).to_contain_text("hidden: needs phi:read")
    assert "secret-path" not in page.content()


def test_audit_only_admin_sees_no_plugin_actions_and_is_refused_server_side(
    world: World, page: Page
) -> None:
    sign_in(page, world.audit_token)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Audit")).to_be_visible()
    expect(nav.get_by_role("link", name="Plugins")).to_have_count(0)
    expect(nav.get_by_role("link", name="Registration tokens")).to_have_count(0)
    expect(page.get_by_role("heading", name="Plugins")).to_have_count(0)
    check_axe(page)
    csrf = page.locator("input[name=csrf]").first.input_value()
    r = page.request.post("/console/plugins/widener/approve", form={"csrf": csrf}, max_redirects=0)
    assert r.status == 403
    assert "missing_scope" in r.text()
    page.goto("/console/plugins")
    expect(page.get_by_role("heading", level=1)).to_have_text("403 Forbidden")
    expect(page.locator("code.reason")).to_have_text("missing_scope")
    with world.console.api() as c:
        assert c.get("/plugins/widener").json()["pending"]
