"""The console's admin pages end to end: a real gateway and egress proxy on one registry,
NATS for change notices and events, Chromium driving the pages, axe-core on each of them."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console.admin_world import Hook, World, admin_get, audit_rows, until
from console.browser import Console, check_axe, shot, sign_in
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from playwright.sync_api import Browser, Page, expect
from support.manifests import seed, simple
from support.procs import (
    CoreProcess,
    admin_headers,
    enable,
    register,
    register_all,
    registration_token,
)
from support.upstream import serve_in_thread

from vivified.config.nats_server import ManagedNats

AUDIT_ONLY = "auditor"
EVENTS_ENV = {"VIVIFIED_EVENT_RETRY_BASE": "0.05", "VIVIFIED_EVENT_MAX_ATTEMPTS": "2"}


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe_source: str
) -> Iterator[World]:
    root = Path(tmp_path_factory.mktemp("admin-pages"))
    nats = ManagedNats(root / "nats")
    url = nats.start()
    env = {
        **EVENTS_ENV,
        "VIVIFIED_NATS_URL": url,
        "VIVIFIED_DATABASE_URL": f"sqlite:///{root}/registry.db",
        "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01",
        "VIVIFIED_HEALTH_INTERVAL": "3600",
        "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": "60",  # only the change notice explains speed
        "VIVIFIED_EGRESS_DNS_TIMEOUT": "1",
    }
    procs: list[CoreProcess] = []
    hook = Hook()
    try:
        gw = CoreProcess("gateway", root / "gw", env).start()
        procs.append(gw)
        eg = CoreProcess("egress", root / "eg", env).start()
        procs.append(eg)
        with (
            serve_in_thread(hook.app()) as hook_url,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            manifests = [
                simple("fetcher", traits=["external_service"], allowed_domains=["x.example.net"]),
                simple("reverter", traits=["external_service"], allowed_domains=["x.example.net"]),
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
            enable(c, *tokens)
            r = c.post(
                "/admin/users",
                json={"name": AUDIT_ONLY, "scopes": ["audit:read"]},
                headers=admin_headers(),
            )
            assert r.status_code == 201, r.text
            r = c.post(
                f"/admin/users/{r.json()['id']}/tokens", json={"name": "t"}, headers=admin_headers()
            )
            assert r.status_code == 201, r.text
            world = World(Console(gw, browser, axe_source), eg, hook, tokens, r.json()["token"])
            doc = {
                "allowed_ports": [443, gw.port],
                "allowed_networks": ["127.0.0.1/32"],
                "host_overrides": {"api.example.com": "127.0.0.1"},
            }
            r = c.patch(
                "/admin/egress",
                content=json.dumps(doc),
                headers={**admin_headers(), "Content-Type": "application/merge-patch+json"},
            )
            assert r.status_code == 200, r.text
            assert until(lambda: world.probe() == "host_not_allowed"), world.probe()
            yield world
    finally:
        for p in reversed(procs):
            p.stop()
        nats.stop()


@pytest.fixture
def console(world: World) -> Console:
    return world.console


def test_egress_page_and_allowlist_edit_reach_the_egress_proxy_within_a_second(
    world: World, page: Page
) -> None:
    sign_in(page)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Egress").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Egress settings")
    expect(page.get_by_label("Host overrides")).to_have_value("api.example.com = 127.0.0.1")
    page.get_by_label("Passthrough domains").fill("pass.example.org")
    page.get_by_label("Response filters").fill('{"default": {"max_body_bytes": 100000}}')
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    doc = admin_get(world, "/admin/egress")
    assert doc["host_overrides"] == {"api.example.com": "127.0.0.1"}
    assert doc["passthrough_domains"] == ["pass.example.org"]
    assert doc["allowed_ports"] == [443, world.gw.port]
    assert doc["response_filters"] == {"default": {"max_body_bytes": 100000}}
    check_axe(page)
    shot(page, "egress")
    assert world.probe() == "host_not_allowed"

    page.goto("/console/plugins/fetcher")
    form = page.get_by_role("form", name="Egress allowlist")
    form.get_by_label("Allowed domains").fill("api.example.com")
    form.get_by_label("Mode").select_option("enforce")
    form.get_by_role("button", name="Save allowlist").click()
    expect(page.get_by_role("status")).to_contain_text("Save allowlist: done")
    # Well inside the proxy's 60 s periodic reload: only the change notice can have done it.
    assert until(lambda: world.probe() == "200", bound=10), world.probe()
    check_axe(page)
    shot(page, "plugin-extras")
    updates = until(lambda: audit_rows(world, action="allowlist_update", target="fetcher"))
    assert (updates[0]["actor"], updates[0]["decision"]) == ("admin:bootstrap", "allow")


def test_allowlist_if_match_conflict_is_shown_and_changes_nothing(world: World, page: Page) -> None:
    sign_in(page)
    page.goto("/console/plugins/reverter")
    form = page.get_by_role("form", name="Egress allowlist")
    form.get_by_label("Allowed domains").fill("mine.example.com")
    with world.api() as c:  # someone else saves first
        r = c.put(
            "/admin/plugins/reverter/allowed-domains",
            json={"domains": ["theirs.example.com"], "mode": "report"},
        )
        assert r.status_code == 200, r.text
    form.get_by_role("button", name="Save allowlist").click()
    expect(page.get_by_role("alert")).to_contain_text("Someone else changed this allowlist")
    expect(page.get_by_label("Allowed domains")).to_have_value("mine.example.com")
    got = admin_get(world, "/admin/plugins/reverter/allowed-domains")
    assert (got["domains"], got["mode"]) == (["theirs.example.com"], "report")
    check_axe(page)
    shot(page, "allowlist-conflict")
    refused = until(
        lambda: audit_rows(world, action="allowlist_update", target="reverter", decision="deny")
    )
    assert (refused[0]["reason"], refused[0]["status"]) == ("stale_version", 412)


def test_egress_if_match_conflict_is_shown(world: World, page: Page) -> None:
    sign_in(page)
    page.goto("/console/egress")
    before = admin_get(world, "/admin/egress")
    with world.api() as c:
        body = {k: v for k, v in before.items() if k != "version"}
        r = c.put("/admin/egress", json=body | {"blocked_domains": ["bad.example.net"]})
        assert r.status_code == 200, r.text
    page.get_by_label("Blocked domains").fill("other.example.net")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Someone else changed the egress settings")
    assert admin_get(world, "/admin/egress")["blocked_domains"] == ["bad.example.net"]
    check_axe(page)
    shot(page, "egress-conflict")


def test_invalid_egress_document_lists_problems_with_pointers(page: Page) -> None:
    sign_in(page)
    page.goto("/console/egress")
    page.get_by_label("Allowed networks").fill("not-a-network")
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("/allowed_networks/0")
    expect(alert).to_contain_text("cidr")


def test_revert_a_revision(world: World, page: Page) -> None:
    with world.api() as c:
        r = c.put(
            "/admin/plugins/reverter/allowed-domains",
            json={"domains": ["revert-me.example.com"], "mode": "enforce", "comment": "to revert"},
        )
        assert r.status_code == 200, r.text
    sign_in(page)
    page.get_by_role("link", name="Revisions").click()
    table = page.get_by_role("table", name="Revisions, newest first")
    row = table.get_by_role("row").filter(has_text="to revert")
    expect(row).to_contain_text("admin:bootstrap")
    check_axe(page)
    shot(page, "revisions")
    row.get_by_role("link").first.click()
    expect(page.get_by_role("table", name="What changed")).to_contain_text("revert-me.example.com")
    check_axe(page)
    shot(page, "revision")
    page.get_by_role("button", name="Revert").click()
    expect(page.get_by_role("status")).to_contain_text("Reverted revision")
    got = admin_get(world, "/admin/plugins/reverter/allowed-domains")
    assert "revert-me.example.com" not in got["domains"]
    reverted = until(lambda: audit_rows(world, action="allowlist_update", target="reverter"))
    assert reverted[0]["actor"] == "admin:bootstrap"


def test_audit_export_streams_both_formats_with_the_filters(world: World, page: Page) -> None:
    sign_in(page)
    page.goto("/console/audit")
    page.get_by_label("Lane").fill("registry")
    page.get_by_label("Decision").select_option("allow")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"lane=registry.*decision=allow"))
    expected = [r["id"] for r in audit_rows(world, lane="registry", decision="allow")]
    assert expected
    for fmt, link in (("jsonl", "JSON Lines"), ("csv", "CSV")):
        href = page.get_by_role("link", name=link, exact=True).get_attribute("href")
        assert href
        assert "lane=registry" in href
        assert f"format={fmt}" in href
        r = page.request.get(href)
        assert r.status == 200, r.text()
        assert "attachment" in r.headers["content-disposition"]
        if fmt == "jsonl":
            rows = [json.loads(line) for line in r.text().splitlines()]
        else:
            rows = list(csv.DictReader(io.StringIO(r.text())))
        assert rows
        assert {(x["lane"], x["decision"]) for x in rows} == {("registry", "allow")}
        assert [int(x["id"]) for x in rows] == expected
    bad = page.request.get("/console/audit/export?format=xml")
    assert bad.status == 422
    assert "bad_query" in bad.text()


def test_grants_create_explain_and_delete(world: World, page: Page) -> None:
    sign_in(page)
    page.get_by_role("link", name="Grants").click()
    create = page.get_by_role("region", name="Create a grant")
    create.get_by_label("Caller").fill("fetcher")
    create.get_by_label("Target").fill("reverter")
    create.get_by_label("Methods (blank: any)").fill("GET")
    create.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("Grant created")
    table = page.get_by_role("table", name=re.compile("Who may call whom"))
    expect(table).to_contain_text("reverter")
    explain = page.get_by_role("form", name="Explain a call")
    explain.get_by_label("Caller").fill("fetcher")
    explain.get_by_label("Target (plugin or contract)").fill("reverter")
    explain.get_by_label("Path").fill("/api/items/1")
    explain.get_by_role("button", name="Explain").click()
    expect(page.locator("#explained")).to_contain_text("allow")
    with world.api() as c:
        api = c.get(
            "/admin/policy/explain",
            params={"caller": "fetcher", "target": "reverter", "path": "/api/items/1"},
        ).json()
    expect(page.locator("#explained code.reason")).to_have_text(api["reason"])
    check_axe(page)
    shot(page, "grants")
    page.goto("/console/grants")
    page.get_by_role("button", name="Delete grant fetcher to reverter").click()
    expect(page.get_by_role("status")).to_contain_text("Grant deleted")
    actions = [r["action"] for r in audit_rows(world, actor="admin:bootstrap", lane="admin")]
    assert {"grant_create", "grant_delete"} <= set(actions)


def test_admin_token_created_shown_once_and_revoked(world: World, page: Page) -> None:
    sign_in(page)
    page.get_by_role("link", name="Admins").click()
    page.get_by_label("Name").fill("ops")
    page.get_by_label("audit:read").check()
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("status")).to_contain_text("Added ops")
    check_axe(page)
    shot(page, "admins")
    page.get_by_role("link", name="Tokens of ops").click()
    page.get_by_label("Label").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("Token", exact=True).input_value()
    assert token.startswith("vva_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    check_axe(page)
    shot(page, "admin-user")
    with httpx.Client(base_url=world.gw.url, trust_env=False, timeout=10) as c:
        assert c.get("/admin/audit", headers=admin_headers(token)).status_code == 200
        page.goto(page.url.removesuffix("/tokens"))
        assert token not in page.content()  # shown once only
        page.get_by_role("button", name="Revoke laptop").click()
        expect(page.get_by_role("status")).to_contain_text("Revoked token")
        r = c.get("/admin/audit", headers=admin_headers(token))
        assert r.status_code == 401
        assert r.json()["reason"] == "invalid_admin_token"
    actions = [r["action"] for r in audit_rows(world, actor="admin:bootstrap", lane="admin")]
    assert {"admin_user_create", "admin_token_create", "admin_token_revoke"} <= set(actions)


def test_a_token_wider_than_its_minter_is_refused_and_audited(world: World, page: Page) -> None:
    with world.api() as c:
        users = c.get("/admin/users").json()["items"]
    auditor = next(u for u in users if u["name"] == AUDIT_ONLY)
    sign_in(page)
    page.goto(f"/console/admins/{auditor['id']}")
    page.get_by_label("Lifetime, seconds (blank: no expiry)").fill("59")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("alert")).to_contain_text("from 60 to")
    assert page.get_by_label("Token", exact=True).count() == 0


def _jwt_parts(token: str) -> tuple[dict[str, str], bytes, bytes]:
    def unb64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    head, body, sig = token.split(".")
    return json.loads(unb64(head)), f"{head}.{body}".encode(), unb64(sig)


def test_rotate_keys_from_the_console(world: World, page: Page) -> None:
    before = {k["kid"] for k in admin_get(world, "/.well-known/jwks.json")["keys"]}
    sign_in(page)
    page.get_by_role("link", name="Keys").click()
    check_axe(page)
    page.get_by_role("button", name="Rotate").click()
    expect(page.get_by_role("status")).to_contain_text("Rotated")
    kid = page.get_by_role("status").locator("code").inner_text()
    shot(page, "keys")
    jwks = admin_get(world, "/.well-known/jwks.json")["keys"]
    assert {k["kid"] for k in jwks} == before | {kid}
    with httpx.Client(base_url=world.gw.url, trust_env=False, timeout=30) as c:
        r = register(c, simple("after-rotate"), registration_token(c))
    assert r.status_code == 201, r.text
    header, signed, signature = _jwt_parts(r.json()["token"])
    assert header["kid"] == kid
    jwk = next(k for k in jwks if k["kid"] == kid)
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    Ed25519PublicKey.from_public_bytes(raw).verify(signature, signed)  # raises when wrong
    rotated = until(lambda: audit_rows(world, action="keys_rotate", target=kid))
    assert rotated[0]["actor"] == "admin:bootstrap"


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        pytest.param("admin", 200, None, id="keys-manage"),
        pytest.param("auditor", 403, "missing_scope", id="audit-only"),
    ],
)
def test_rotate_keys_api(world: World, token: str, status: int, reason: str | None) -> None:
    bearer = admin_headers() if token == "admin" else admin_headers(world.audit_token)
    before = {k["kid"] for k in admin_get(world, "/.well-known/jwks.json")["keys"]}
    with httpx.Client(base_url=world.gw.url, trust_env=False, timeout=10) as c:
        r = c.post("/admin/keys/rotate", headers=bearer)
    assert r.status_code == status, r.text
    after = {k["kid"] for k in admin_get(world, "/.well-known/jwks.json")["keys"]}
    if reason is None:
        assert set(r.json()) == {"kid"}
        assert after == before | {r.json()["kid"]}
    else:
        assert r.json()["reason"] == reason
        assert after == before


def test_dead_letter_replay_and_discard(world: World, page: Page) -> None:
    world.hook.up = False
    ids = [f"dl-{time.monotonic_ns()}-{i}" for i in range(2)]
    for eid in ids:
        world.publish(eid)

    def dead() -> dict[str, int]:
        return {d["event"]["id"]: d["seq"] for d in world.dead_letters() if d["event"]["id"] in ids}

    assert until(lambda: len(dead()) == 2, bound=20), dead()
    world.hook.up = True
    seqs = dead()
    sign_in(page)
    page.get_by_role("link", name="Events").click()
    expect(page.get_by_role("table", name=re.compile("no subscriber accepted"))).to_contain_text(
        ids[0]
    )
    check_axe(page)
    shot(page, "events")
    page.get_by_role("button", name=f"Replay dead letter {seqs[ids[0]]}").click()
    expect(page.get_by_role("status")).to_contain_text("Replayed dead letter")
    assert ids[0] in world.hook.got
    with httpx.Client(base_url=world.gw.url, trust_env=False, timeout=10) as c:
        url = f"/admin/events/dead-letters/{seqs[ids[1]]}"
        assert c.delete(url, headers=admin_headers(world.audit_token)).status_code == 403
        r = c.delete(url, headers=admin_headers())
        assert r.status_code == 204, r.text
        again = c.delete(url, headers=admin_headers())
        assert again.status_code == 404
        assert again.json()["reason"] == "not_found"
    assert dead() == {}
    assert ids[1] not in world.hook.got
    discarded = until(lambda: audit_rows(world, action="dead_letter_discard"))
    assert discarded[0]["actor"] == "admin:bootstrap"
    assert discarded[0]["detail"]["event"] == ids[1]


def test_manifest_check_lists_every_problem_with_its_pointer(page: Page) -> None:
    sign_in(page)
    page.get_by_role("link", name="Manifest check").click()
    bad = simple("Bad_Id", version="one") | {"endpoints": {"health": 5}}
    page.get_by_label("Manifest").fill(json.dumps(bad))
    page.get_by_role("button", name="Check").click()
    pointers = page.locator("table.problems code.pointer").all_inner_texts()
    assert "/id" in pointers
    assert "/version" in pointers
    assert any(p.startswith("/endpoints") for p in pointers)
    check_axe(page)
    shot(page, "manifest-check")
    page.get_by_label("Manifest").fill("{not json")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("malformed_json")


def test_audit_only_admin_sees_no_admin_pages_and_is_refused_server_side(
    world: World, page: Page
) -> None:
    sign_in(page, world.audit_token)
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Audit")).to_be_visible()
    expect(nav.get_by_role("link", name="Manifest check")).to_be_visible()
    for name in ("Egress", "Revisions", "Grants", "Events", "Admins", "Keys"):
        expect(nav.get_by_role("link", name=name)).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.input_value()
    version = admin_get(world, "/admin/egress")["version"]
    for path in ("/console/egress", "/console/keys/rotate", "/console/grants"):
        r = page.request.post(path, form={"csrf": csrf, "enabled": ""}, max_redirects=0)
        assert r.status == 403, path
        assert "missing_scope" in r.text()
    assert admin_get(world, "/admin/egress")["version"] == version
    page.goto("/console/egress")
    expect(page.get_by_role("heading", level=1)).to_have_text("403 Forbidden")
    expect(page.locator("code.reason")).to_have_text("missing_scope")
