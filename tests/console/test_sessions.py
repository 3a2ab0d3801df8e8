"""Console sign-in, sessions, CSRF, headers and cookies, against a real gateway and Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console.browser import SECURITY_HEADERS, Console, audit, check_axe, shot, sign_in
from playwright.sync_api import Browser, Page, expect
from support.procs import ADMIN_TOKEN, CoreProcess, admin_headers


def _gateway(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe: str, **env: str
) -> Iterator[Console]:
    settings = {"VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01", **env}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("session")), settings).start()
    try:
        yield Console(gw, browser, axe)
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe_source: str
) -> Iterator[Console]:
    yield from _gateway(tmp_path_factory, browser, axe_source)


@pytest.fixture(scope="module")
def short_console(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe_source: str
) -> Iterator[Console]:
    """A gateway whose console sessions end after 2 idle seconds."""
    yield from _gateway(tmp_path_factory, browser, axe_source, VIVIFIED_CONSOLE_IDLE_TIMEOUT="2")


@pytest.fixture(scope="module")
def limited_console(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe_source: str
) -> Iterator[Console]:
    """A gateway of its own: its sign-in limiter is exhausted by the test."""
    yield from _gateway(tmp_path_factory, browser, axe_source)


def _mint(console: Console, scopes: list[str]) -> tuple[str, str]:
    """A new admin token (and its id) for the bootstrap admin."""
    with console.api() as c:
        users = c.get("/admin/users").json()["items"]
        uid = next(u["id"] for u in users if u["name"] == "bootstrap")
        r = c.post(f"/admin/users/{uid}/tokens", json={"name": "console", "scopes": scopes})
        assert r.status_code == 201, r.text
        body = r.json()
        return body["token"], body["id"]


def test_security_headers_on_every_console_response(console: Console, page: Page) -> None:
    responses = []
    page.on("response", lambda r: responses.append(r) if "/console" in r.url else None)
    sign_in(page)
    page.goto("/console/audit")
    page.goto("/console/no-such-page")
    urls = {r.url.split("/console", 1)[1] for r in responses}
    assert {"/login", "/", "/static/console.css", "/static/htmx.min.js", "/audit"} <= urls
    for r in responses:
        headers = r.all_headers()
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, (r.url, name, headers.get(name))
    expect(page.get_by_role("heading", level=1)).to_have_text("404 Not Found")
    check_axe(page)


def test_session_cookie_flags(console: Console, page: Page) -> None:
    sign_in(page)
    cookies = [c for c in page.context.cookies() if c["name"] == "vivified_console"]
    assert len(cookies) == 1
    cookie = cookies[0]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert cookie["secure"] is False  # plain HTTP, console_secure_cookies unset
    assert len(cookie["value"]) >= 43  # 256 random bits
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script sees it


def test_secure_cookie_when_the_setting_says_so(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser, axe_source: str
) -> None:
    for c in _gateway(
        tmp_path_factory, browser, axe_source, VIVIFIED_CONSOLE_SECURE_COOKIES="true"
    ):
        with httpx.Client(base_url=c.gw.url, trust_env=False, timeout=30) as http:
            r = http.post("/console/login", data={"token": ADMIN_TOKEN})
        assert r.status_code == 303, r.text
        flags = r.headers["set-cookie"].lower()
        assert "; secure" in flags
        assert "httponly" in flags
        assert "samesite=strict" in flags


def test_a_form_without_its_csrf_token_is_refused(console: Console, page: Page) -> None:
    sign_in(page)
    before = len(audit(console, action="registration_token_create"))
    for form in ({}, {"csrf": "forged"}):
        r = page.request.post("/console/tokens", form={"uses": "1", **form}, max_redirects=0)
        assert r.status == 403
        assert "csrf_failed" in r.text()
        assert r.headers["content-security-policy"] == SECURITY_HEADERS["content-security-policy"]
    r = page.request.post("/console/logout", form={}, max_redirects=0)
    assert r.status == 403
    assert "csrf_failed" in r.text()
    page.goto("/console/")  # still signed in: the forged sign-out changed nothing
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert len(audit(console, action="registration_token_create")) == before


def test_htmx_sends_the_csrf_header(console: Console, page: Page) -> None:
    sign_in(page)
    with page.expect_request("**/console/audit/verify") as req:
        page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#chain-result")).to_contain_text("Chain intact")
    assert req.value.headers.get("hx-request") == "true"
    csrf = page.locator("input[name=csrf]").first.input_value()
    assert req.value.headers.get("x-csrf-token") == csrf


def test_logout_ends_the_session(console: Console, page: Page) -> None:
    sign_in(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "vivified_console")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login\?ended=signed_out$"))
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    shot(page, "signed-out")
    # the old cookie is dead on the server, not only deleted in this browser
    with httpx.Client(base_url=console.gw.url, trust_env=False, timeout=30) as http:
        r = http.get("/console/", headers={"Cookie": f"vivified_console={cookie['value']}"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/login")
    actions = [r["action"] for r in audit(console, actor="admin:bootstrap", lane="admin")]
    assert "console.logout" in actions


def test_revoking_the_admin_token_ends_its_session_at_once(console: Console, page: Page) -> None:
    token, token_id = _mint(console, ["audit:read", "plugins:manage"])
    sign_in(page, token)
    page.goto("/console/plugins")
    expect(page.get_by_role("heading", name="Plugins")).to_be_visible()
    with console.api() as c:
        assert c.delete(f"/admin/tokens/{token_id}").status_code == 204
    page.goto("/console/plugins")
    expect(page).to_have_url(re.compile(r"/console/login\?ended=revoked$"))


def test_an_idle_session_goes_back_to_sign_in(short_console: Console) -> None:
    ctx = short_console.context()
    page = ctx.new_page()
    try:
        sign_in(page)
        page.goto("/console/audit")
        expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
        time.sleep(3)  # longer than the 2 s idle timeout: nothing to poll for
        page.goto("/console/audit")
        expect(page).to_have_url(re.compile(r"/console/login\?ended=expired$"))
        expect(page.get_by_role("status")).to_contain_text("Your session ended")
    finally:
        ctx.close()


def test_failed_sign_ins_are_rate_limited_and_audited(limited_console: Console) -> None:
    ctx = limited_console.context()
    page = ctx.new_page()
    wrong = "vva_not-a-real-token-0123456789"
    try:
        for _ in range(5):
            page.goto("/console/login")
            page.get_by_label("Admin API token").fill(wrong)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("unknown, revoked or expired")
            assert wrong not in page.content()  # never echoed back
            assert page.get_by_label("Admin API token").input_value() == ""
        check_axe(page)
        shot(page, "login-failed")
        page.get_by_label("Admin API token").fill(ADMIN_TOKEN)  # even the right one waits
        with page.expect_response("**/console/login") as resp:
            page.get_by_role("button", name="Sign in").click()
        assert resp.value.status == 429
        assert int(resp.value.headers["retry-after"]) >= 1
        expect(page.locator("code.reason")).to_have_text("rate_limited")
        assert ADMIN_TOKEN not in page.content()
        check_axe(page)
    finally:
        ctx.close()
    denied = audit(limited_console, action="console.login", decision="deny")
    reasons = sorted(r["reason"] for r in denied)
    assert reasons == ["invalid_admin_token"] * 5 + ["rate_limited"]
    assert {r["lane"] for r in denied} == {"admin"}
    log = limited_console.gw.log()
    assert wrong not in log
    assert ADMIN_TOKEN not in log


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", "admin_required", id="plugin"),
        pytest.param("", "invalid_admin_token", id="empty"),
        pytest.param("x" * 600, "invalid_admin_token", id="too-long"),
    ],
)
def test_sign_in_refusals_name_their_reason(console: Console, token: str, reason: str) -> None:
    with httpx.Client(base_url=console.gw.url, trust_env=False, timeout=30) as http:
        r = http.post("/console/login", data={"token": token})
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    if token:
        assert token not in r.text
    records = audit(console, action="console.login", decision="deny")
    assert reason in {r["reason"] for r in records}


def test_a_cross_site_form_is_refused(console: Console) -> None:
    with httpx.Client(base_url=console.gw.url, trust_env=False, timeout=30) as http:
        r = http.post(
            "/console/login",
            data={"token": ADMIN_TOKEN},
            headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
    assert r.status_code == 403
    assert "cross_origin" in r.text
    assert "set-cookie" not in r.headers


def test_admin_api_is_unchanged_by_a_console_session(console: Console) -> None:
    """The console cookie is no credential on /admin/: only Bearer tokens are."""
    with httpx.Client(base_url=console.gw.url, trust_env=False, timeout=30) as http:
        r = http.post("/console/login", data={"token": ADMIN_TOKEN})
        cookie = r.cookies.get("vivified_console")
        assert cookie
        http.cookies.clear()
        r = http.get("/admin/audit", headers={"Cookie": f"vivified_console={cookie}"})
    assert r.status_code == 401
    assert admin_headers()  # the API still takes the Bearer token (used by audit())
