"""Admins cannot give themselves or others power they do not hold (security issue 14, item 2).

Minting a token needs every requested scope held by the caller, and `admins:manage` when it
is for another admin; revoking another admin's token needs `admins:manage` and every scope
that token carries. Without `admins:manage` an admin manages only its own tokens. Refusals
are 403 problem+json with a stable `reason` and change nothing. Every test runs on both
registry backends: SQLite and a fresh PostgreSQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.audit import wait_for_audit
from support.backends import BACKENDS, registry_env, registry_url
from support.procs import CoreProcess, admin_headers

MANAGE = "admins:manage"
EGRESS = "egress:manage"
AUDIT = "audit:read"
ALL = ["plugins:manage", EGRESS, "grants:manage", AUDIT, "phi:read", MANAGE]
PEER_SCOPES = [EGRESS, AUDIT, MANAGE]
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Admin:
    name: str
    user_id: str
    token: str
    token_id: str

    @property
    def headers(self) -> dict[str, str]:
        return admin_headers(self.token)


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoreProcess]:
    """This module's gateway, once per registry backend (SQLite, a fresh PostgreSQL database)."""
    with registry_url(request.param) as url:
        proc = CoreProcess("gateway", Path(tmp_path_factory.mktemp("powers")), registry_env(url))
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()


@pytest.fixture
def c(gw: CoreProcess) -> Iterator[httpx.Client]:
    """A client with the bootstrap admin's token (every scope)."""
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30, headers=admin_headers()) as cl:
        yield cl


def _mint(c: httpx.Client, user_id: str, scopes: list[str] | None, ttl: int | None) -> Admin:
    body: dict[str, Any] = {"name": "t"}
    if scopes is not None:
        body["scopes"] = scopes
    if ttl is not None:
        body["ttl_seconds"] = ttl
    r = c.post(f"/admin/users/{user_id}/tokens", json=body)
    assert r.status_code == 201, r.text
    return Admin("", user_id, r.json()["token"], r.json()["id"])


def new_admin(
    c: httpx.Client,
    prefix: str,
    scopes: list[str],
    *,
    token_scopes: list[str] | None = None,
    ttl: int | None = None,
) -> Admin:
    """A fresh admin user (minted by the bootstrap admin) and one token of it."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    r = c.post("/admin/users", json={"name": name, "scopes": scopes})
    assert r.status_code == 201, r.text
    tok = _mint(c, r.json()["id"], token_scopes, ttl)
    return Admin(name, tok.user_id, tok.token, tok.token_id)


def bootstrap(c: httpx.Client) -> Admin:
    """A fresh extra token of the bootstrap admin (the suite's own token is never revoked)."""
    users = c.get("/admin/users").json()["items"]
    uid = next(u["id"] for u in users if u["name"] == "bootstrap")
    tok = _mint(c, uid, None, None)
    return Admin("bootstrap", uid, tok.token, tok.token_id)


def tokens_of(c: httpx.Client, user_id: str) -> list[dict[str, Any]]:
    r = c.get(f"/admin/users/{user_id}/tokens")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def works(c: httpx.Client, token: str) -> bool:
    """Whether `token` still authenticates (listing one's own tokens needs no scope)."""
    r = c.get("/admin/users/me/tokens", headers=admin_headers(token))
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def assert_refused(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status
    assert body["reason"] == reason
    assert body["detail"]
    assert "vva_" not in r.text


MINT = [
    # caller user scopes, caller token scopes, caller token ttl, target, requested, ttl, outcome
    pytest.param(
        [MANAGE],
        None,
        None,
        "bootstrap",
        None,
        None,
        (403, "scope_not_held"),
        id="manage-only-for-bootstrap-default-scopes",
    ),
    pytest.param(
        [MANAGE],
        None,
        None,
        "bootstrap",
        ALL,
        None,
        (403, "scope_not_held"),
        id="manage-only-for-bootstrap-every-scope",
    ),
    pytest.param(
        [MANAGE],
        None,
        None,
        "bootstrap",
        [EGRESS],
        None,
        (403, "scope_not_held"),
        id="manage-only-for-bootstrap-one-scope-not-held",
    ),
    pytest.param(
        [MANAGE],
        None,
        None,
        "self",
        [EGRESS],
        None,
        (403, "scope_not_held"),
        id="manage-only-for-self-beyond-own-scopes",
    ),
    pytest.param(
        [MANAGE, EGRESS],
        [MANAGE],
        None,
        "self",
        [EGRESS],
        None,
        (403, "scope_not_held"),
        id="narrow-token-for-self-beyond-the-token",
    ),
    pytest.param(
        [MANAGE, EGRESS],
        [MANAGE],
        None,
        "self",
        None,
        None,
        (403, "scope_not_held"),
        id="narrow-token-for-self-default-scopes",
    ),
    pytest.param(
        [MANAGE, EGRESS],
        None,
        None,
        "peer",
        [EGRESS, AUDIT],
        None,
        (403, "scope_not_held"),
        id="manage-for-peer-one-scope-not-held",
    ),
    pytest.param(
        [EGRESS],
        None,
        None,
        "peer",
        [EGRESS],
        None,
        (403, "not_own_token"),
        id="no-manage-for-peer",
    ),
    pytest.param(
        [EGRESS],
        None,
        None,
        "bootstrap",
        [EGRESS],
        None,
        (403, "not_own_token"),
        id="no-manage-for-bootstrap",
    ),
    pytest.param(
        [EGRESS],
        None,
        600,
        "self",
        [EGRESS],
        None,
        (403, "outlives_own_token"),
        id="short-lived-token-mints-a-lasting-one",
    ),
    pytest.param(
        [EGRESS],
        None,
        600,
        "self",
        [EGRESS],
        3600,
        (403, "outlives_own_token"),
        id="short-lived-token-mints-a-longer-one",
    ),
    pytest.param(
        "bootstrap",
        None,
        None,
        "peer",
        ["phi:read"],
        None,
        (422, "user_lacks_scope"),
        id="bootstrap-for-peer-beyond-the-peer",
    ),
    pytest.param(
        [MANAGE],
        None,
        None,
        "self",
        [MANAGE],
        None,
        (201, ""),
        id="manage-only-for-self-within-own-scopes",
    ),
    pytest.param(
        [MANAGE, EGRESS],
        None,
        None,
        "peer",
        [EGRESS],
        None,
        (201, ""),
        id="manage-for-peer-within-own-scopes",
    ),
    pytest.param(
        [EGRESS, AUDIT],
        None,
        None,
        "self",
        [EGRESS],
        None,
        (201, ""),
        id="no-manage-for-self-narrower",
    ),
    pytest.param(
        [EGRESS],
        None,
        None,
        "me",
        None,
        None,
        (201, ""),
        id="no-manage-for-me-default-scopes",
    ),
    pytest.param(
        [EGRESS],
        None,
        600,
        "self",
        [EGRESS],
        300,
        (201, ""),
        id="short-lived-token-mints-a-shorter-one",
    ),
    pytest.param(
        "bootstrap",
        None,
        None,
        "peer",
        [EGRESS, MANAGE],
        None,
        (201, ""),
        id="bootstrap-for-peer",
    ),
]


@pytest.mark.parametrize(
    ("caller_scopes", "token_scopes", "caller_ttl", "target", "requested", "ttl", "outcome"),
    MINT,
)
def test_minting_needs_the_power_granted(
    c: httpx.Client,
    caller_scopes: list[str] | str,
    token_scopes: list[str] | None,
    caller_ttl: int | None,
    target: str,
    requested: list[str] | None,
    ttl: int | None,
    outcome: tuple[int, str],
) -> None:
    if caller_scopes == "bootstrap":
        caller = bootstrap(c)
        user_scopes = ALL
    else:
        assert isinstance(caller_scopes, list)
        caller = new_admin(c, "caller", caller_scopes, token_scopes=token_scopes, ttl=caller_ttl)
        user_scopes = caller_scopes
    owner = {
        "self": caller,
        "me": caller,
        "bootstrap": bootstrap(c) if target == "bootstrap" else caller,
        "peer": new_admin(c, "peer", PEER_SCOPES) if target == "peer" else caller,
    }[target]
    owner_scopes = {"bootstrap": ALL, "peer": PEER_SCOPES}.get(target, user_scopes)
    before = tokens_of(c, owner.user_id)
    body: dict[str, Any] = {"name": "minted"}
    if requested is not None:
        body["scopes"] = requested
    if ttl is not None:
        body["ttl_seconds"] = ttl
    path_id = "me" if target == "me" else owner.user_id
    r = c.post(f"/admin/users/{path_id}/tokens", json=body, headers=caller.headers)
    status, reason = outcome
    if status != 201:
        assert_refused(r, status, reason)
        assert tokens_of(c, owner.user_id) == before
        return
    assert r.status_code == 201, r.text
    minted = r.json()
    wanted = sorted(requested if requested is not None else owner_scopes)
    assert minted["scopes"] == wanted
    assert r.headers["cache-control"] == "no-store"
    after = tokens_of(c, owner.user_id)
    assert [t["id"] for t in after] == [t["id"] for t in before] + [minted["id"]]
    assert after[-1]["scopes"] == wanted
    assert works(c, minted["token"])
    mine = wait_for_audit(
        c,
        action="admin_token_create",
        target=f"admin:{owner.name}",
        where=lambda x: x["detail"].get("token_id") == minted["id"],
    )
    assert len(mine) == 1
    assert mine[0]["actor"] == f"admin:{caller.name}"
    assert mine[0]["detail"]["user_id"] == owner.user_id
    assert mine[0]["detail"]["scopes"] == wanted


def test_a_refused_mint_is_audited_as_denied(c: httpx.Client) -> None:
    caller = new_admin(c, "sneak", [MANAGE])
    boot = bootstrap(c)
    r = c.post(f"/admin/users/{boot.user_id}/tokens", json={}, headers=caller.headers)
    assert_refused(r, 403, "scope_not_held")
    denied = wait_for_audit(
        c, action="admin_token_create", decision="deny", actor=f"admin:{caller.name}"
    )
    assert [(x["target"], x["reason"], x["status"]) for x in denied] == [
        ("admin:bootstrap", "scope_not_held", 403)
    ]


REVOKE = [
    # caller user scopes, owner of the token, the token's scopes, outcome
    pytest.param([MANAGE], "bootstrap", None, (403, "scope_not_held"), id="manage-only-bootstrap"),
    pytest.param(
        [MANAGE, EGRESS],
        "peer",
        [EGRESS, AUDIT],
        (403, "scope_not_held"),
        id="manage-lacking-one-scope-of-the-token",
    ),
    pytest.param([EGRESS], "peer", [EGRESS], (403, "not_own_token"), id="no-manage-peer"),
    pytest.param(
        [EGRESS, AUDIT], "bootstrap", [EGRESS], (403, "not_own_token"), id="no-manage-bootstrap"
    ),
    pytest.param(
        [MANAGE, EGRESS, AUDIT],
        "peer",
        [EGRESS, AUDIT],
        (204, ""),
        id="manage-holding-every-scope-of-the-token",
    ),
    pytest.param([MANAGE], "peer", [MANAGE], (204, ""), id="manage-only-peer-manage-token"),
    pytest.param([EGRESS], "self", [EGRESS], (204, ""), id="no-manage-own-token"),
    pytest.param([MANAGE], "self", [MANAGE], (204, ""), id="manage-own-token"),
]


@pytest.mark.parametrize(("caller_scopes", "owner_kind", "token_scopes", "outcome"), REVOKE)
def test_revoking_needs_the_power_removed(
    c: httpx.Client,
    caller_scopes: list[str],
    owner_kind: str,
    token_scopes: list[str] | None,
    outcome: tuple[int, str],
) -> None:
    caller = new_admin(c, "revoker", caller_scopes)
    if owner_kind == "bootstrap":
        victim = bootstrap(c)
    elif owner_kind == "peer":
        victim = new_admin(c, "victim", PEER_SCOPES, token_scopes=token_scopes)
    else:
        victim = _mint(c, caller.user_id, token_scopes, None)
        victim = Admin(caller.name, victim.user_id, victim.token, victim.token_id)
    before = tokens_of(c, victim.user_id)
    r = c.delete(f"/admin/tokens/{victim.token_id}", headers=caller.headers)
    status, reason = outcome
    if status != 204:
        assert_refused(r, status, reason)
        assert tokens_of(c, victim.user_id) == before
        assert works(c, victim.token)
        return
    assert r.status_code == 204, r.text
    assert not works(c, victim.token)
    revoked = [t for t in tokens_of(c, victim.user_id) if t["id"] == victim.token_id]
    assert [t["revoked"] for t in revoked] == [True]
    records = wait_for_audit(c, action="admin_token_revoke", target=f"admin:{victim.name}")
    assert len(records) == 1
    assert records[0]["actor"] == f"admin:{caller.name}"
    assert records[0]["decision"] == "allow"
    assert records[0]["detail"]["token_id"] == victim.token_id
    assert records[0]["detail"]["user_id"] == victim.user_id
    if owner_kind != "self":
        assert works(c, caller.token)
    again = c.delete(f"/admin/tokens/{victim.token_id}", headers=admin_headers())
    assert_refused(again, 404, "not_found")


LIST = [
    pytest.param([EGRESS], "self", 200, "", id="no-manage-own-tokens"),
    pytest.param([EGRESS], "me", 200, "", id="no-manage-me"),
    pytest.param([EGRESS], "peer", 403, "not_own_token", id="no-manage-peer-tokens"),
    pytest.param([MANAGE], "peer", 200, "", id="manage-peer-tokens"),
]


@pytest.mark.parametrize(("caller_scopes", "whose", "status", "reason"), LIST)
def test_listing_tokens_of_others_needs_admins_manage(
    c: httpx.Client, caller_scopes: list[str], whose: str, status: int, reason: str
) -> None:
    caller = new_admin(c, "lister", caller_scopes)
    peer = new_admin(c, "listed", PEER_SCOPES)
    path_id = {"self": caller.user_id, "me": "me", "peer": peer.user_id}[whose]
    r = c.get(f"/admin/users/{path_id}/tokens", headers=caller.headers)
    if status != 200:
        assert_refused(r, status, reason)
        return
    assert r.status_code == 200, r.text
    owner = peer if whose == "peer" else caller
    assert [t["id"] for t in r.json()["items"]] == [owner.token_id]
    assert owner.token not in r.text


UNKNOWN = [
    pytest.param([MANAGE], "POST", "/admin/users/{x}/tokens", 404, "not_found", id="mint-manage"),
    pytest.param([EGRESS], "POST", "/admin/users/{x}/tokens", 403, "not_own_token", id="mint"),
    pytest.param([EGRESS], "GET", "/admin/users/{x}/tokens", 403, "not_own_token", id="list"),
    pytest.param([EGRESS], "DELETE", "/admin/tokens/{x}", 404, "not_found", id="revoke"),
]


@pytest.mark.parametrize(("caller_scopes", "method", "path", "status", "reason"), UNKNOWN)
def test_unknown_ids_are_clear_problems(
    c: httpx.Client, caller_scopes: list[str], method: str, path: str, status: int, reason: str
) -> None:
    caller = new_admin(c, "prober", caller_scopes)
    kwargs: dict[str, Any] = {"json": {}} if method == "POST" else {}
    r = c.request(method, path.format(x=uuid.uuid4().hex), headers=caller.headers, **kwargs)
    assert_refused(r, status, reason)


CREATE_USER = [
    pytest.param([MANAGE], [EGRESS], 403, "scope_not_held", id="manage-only-grants-egress"),
    pytest.param([MANAGE, EGRESS], [EGRESS, AUDIT], 403, "scope_not_held", id="one-not-held"),
    pytest.param([EGRESS], [], 403, "missing_scope", id="no-manage"),
    pytest.param([MANAGE, EGRESS], [EGRESS, MANAGE], 201, "", id="within-own-scopes"),
]


@pytest.mark.parametrize(("caller_scopes", "scopes", "status", "reason"), CREATE_USER)
def test_creating_users_grants_only_held_scopes(
    c: httpx.Client, caller_scopes: list[str], scopes: list[str], status: int, reason: str
) -> None:
    caller = new_admin(c, "creator", caller_scopes)
    name = f"created-{uuid.uuid4().hex[:8]}"
    r = c.post("/admin/users", json={"name": name, "scopes": scopes}, headers=caller.headers)
    names = [u["name"] for u in c.get("/admin/users").json()["items"]]
    if status != 201:
        assert_refused(r, status, reason)
        assert name not in names
        return
    assert r.status_code == 201, r.text
    assert r.json()["scopes"] == sorted(scopes)
    assert name in names
