"""The sign-in flow over HTTP against the real provider: what it grants, and every refusal a
clear page with its reason code plus one audit record."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from oidc.idp import (
    FixedPortGateway,
    IdentityProvider,
    admin_api,
    audit_records,
    browserless,
    query_of,
    sign_in_over_http,
)
from support.waiting import eventually


def _actor(idp: IdentityProvider, login: str) -> str:
    return f"admin:oidc:{idp.issuer}#{login}"


def _reason(page: httpx.Response) -> str:
    found = re.search(r'<code class="reason">([^<]+)</code>', page.text)
    return found.group(1) if found else ""


def _oidc_user(gw: FixedPortGateway, login: str) -> dict[str, Any]:
    with admin_api(gw.url) as c:
        r = c.get("/admin/oidc/users")
        assert r.status_code == 200, r.text
        users: list[dict[str, Any]] = r.json()["items"]
    return next(u for u in users if u["subject"] == login)


def _session_scopes(gw: FixedPortGateway, user_id: str) -> list[list[str]]:
    with admin_api(gw.url) as c:
        r = c.get(f"/admin/users/{user_id}/tokens")
        assert r.status_code == 200, r.text
        return [t["scopes"] for t in r.json()["items"] if not t["revoked"]]


def _denials(gw: FixedPortGateway, reason: str) -> list[dict[str, Any]]:
    return [
        r
        for r in audit_records(gw.url, action="console.login", decision="deny")
        if r["reason"] == reason
    ]


def test_sign_in_gives_a_console_session_with_exactly_the_mapped_scopes(
    idp: IdentityProvider, gateway: FixedPortGateway
) -> None:
    with browserless(gateway.url) as c:
        done = sign_in_over_http(c, "alice")
        assert done.response.status_code == 200, done.response.text
        assert str(done.response.url).startswith(gateway.url + "/console/oidc/callback?")
        assert 'http-equiv="refresh" content="0;url=/console/"' in done.response.text
        overview = c.get("/console/")
        assert overview.status_code == 200
        assert 'href="/console/audit"' in overview.text  # audit:read
        assert 'href="/console/plugins"' not in overview.text  # no plugins:manage
        assert c.get("/console/plugins").status_code == 403
    user = _oidc_user(gateway, "alice")
    assert user["email"] == "alice@example.com"
    assert user["issuer"] == idp.issuer
    assert ["audit:read"] in _session_scopes(gateway, user["id"])
    with admin_api(gateway.url) as api:  # no permanent grant: the user row holds no scope
        rows = api.get("/admin/users").json()["items"]
    assert next(u for u in rows if u["id"] == user["id"])["scopes"] == []
    records = eventually(
        lambda: [
            r
            for r in audit_records(gateway.url, action="console.login", decision="allow")
            if r["actor"] == _actor(idp, "alice")
        ],
        what="the sign-in's audit record",
    )
    assert records[0]["reason"] == "signed_in"


def _wrong_state(c: httpx.Client, gw: FixedPortGateway, idp: IdentityProvider) -> httpx.Response:
    url = sign_in_over_http(c, "alice", stop_at_callback=True).callback_url
    code = query_of(url)["code"]
    return c.get("/console/oidc/callback", params={"code": code, "state": "forged-state"})


def _no_pending(c: httpx.Client, gw: FixedPortGateway, idp: IdentityProvider) -> httpx.Response:
    url = sign_in_over_http(c, "alice", stop_at_callback=True).callback_url
    c.cookies.clear()  # another browser: the pending sign-in's cookie is not there
    return c.get(url)


def _replayed_code(c: httpx.Client, gw: FixedPortGateway, idp: IdentityProvider) -> httpx.Response:
    first = sign_in_over_http(c, "alice", stop_at_callback=True).callback_url
    assert c.get(first).status_code == 200  # the code is used once, successfully
    c.cookies.delete("vivified_console")  # signed out locally
    # A new sign-in in the same browser, answered with the old code.
    fresh = sign_in_over_http(c, "alice", stop_at_callback=True).callback_url
    params = {**query_of(fresh), "code": query_of(first)["code"]}
    return c.get("/console/oidc/callback", params=params)


def _wrong_nonce(c: httpx.Client, gw: FixedPortGateway, idp: IdentityProvider) -> httpx.Response:
    url = sign_in_over_http(c, "alice", stop_at_callback=True).callback_url
    state = query_of(url)["state"]
    with sqlite3.connect(gw.data_dir / "registry.db", timeout=30) as db:  # tamper the sign-in
        db.execute(
            "UPDATE oidc_pending_logins SET nonce = 'not-the-sent-nonce' WHERE state = ?", (state,)
        )
    return c.get(url)


def _login(
    login: str,
) -> Callable[[httpx.Client, FixedPortGateway, IdentityProvider], httpx.Response]:
    def run(c: httpx.Client, gw: FixedPortGateway, idp: IdentityProvider) -> httpx.Response:
        return sign_in_over_http(c, login).response

    return run


REFUSALS = [
    pytest.param(_wrong_state, 400, "state_mismatch", id="wrong-state"),
    pytest.param(_no_pending, 400, "no_pending_sign_in", id="callback-without-its-cookie"),
    pytest.param(_replayed_code, 401, "code_rejected", id="replayed-code"),
    pytest.param(_wrong_nonce, 401, "wrong_nonce", id="wrong-nonce"),
    pytest.param(_login("bob"), 403, "no_mapped_scopes", id="unmapped-group"),
    pytest.param(_login("carol"), 403, "email_domain_not_allowed", id="email-outside-domains"),
]


@pytest.mark.parametrize(("drive", "status", "reason"), REFUSALS)
def test_refused_sign_ins(
    idp: IdentityProvider,
    gateway: FixedPortGateway,
    drive: Callable[[httpx.Client, FixedPortGateway, IdentityProvider], httpx.Response],
    status: int,
    reason: str,
) -> None:
    before = len(_denials(gateway, reason))
    with browserless(gateway.url) as c:
        page = drive(c, gateway, idp)
        assert page.status_code == status, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert _reason(page) == reason
        assert "Sign-in refused" in page.text
        assert "Traceback" not in page.text
        assert "vivified_console" not in page.headers.get("set-cookie", "")
        assert c.get("/console/").status_code == 303  # no session
    eventually(lambda: len(_denials(gateway, reason)) == before + 1, what=f"a {reason} record")


def test_a_user_disabled_in_core_is_refused_despite_a_valid_provider_login(
    idp: IdentityProvider, gateway: FixedPortGateway
) -> None:
    with browserless(gateway.url) as c:
        assert sign_in_over_http(c, "dave").response.status_code == 200
        user = _oidc_user(gateway, "dave")
        with admin_api(gateway.url) as api:
            r = api.post(f"/admin/oidc/users/{user['id']}/disable")
            assert r.status_code == 200, r.text
            assert r.json()["disabled"] is True
        gone = c.get("/console/")  # the open session ends at once
        assert gone.status_code == 303
        assert gone.headers["location"] == "/console/login?ended=revoked"
        page = sign_in_over_http(c, "dave").response
        assert page.status_code == 403
        assert _reason(page) == "admin_disabled"
    eventually(
        lambda: any(r["actor"] == _actor(idp, "dave") for r in _denials(gateway, "admin_disabled")),
        what="the admin_disabled record",
    )
    with admin_api(gateway.url) as api:
        assert api.post(f"/admin/oidc/users/{user['id']}/enable").status_code == 200
    with browserless(gateway.url) as c:
        assert sign_in_over_http(c, "dave").response.status_code == 200


def test_only_admins_manage_oidc_users(gateway: FixedPortGateway) -> None:
    with browserless(gateway.url) as c:
        r = c.post("/admin/oidc/users/nope/disable")
        assert r.status_code == 401
    with admin_api(gateway.url) as api:
        r = api.post("/admin/oidc/users/no-such-user/disable")
        assert r.status_code == 404
        assert r.json()["reason"] == "not_found"
