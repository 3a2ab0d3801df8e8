"""The config API over HTTP: versions, validation, scopes, revisions and revert.

Every test runs on both registry backends: SQLite and a fresh PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.audit import wait_for_audit
from support.backends import BACKENDS, registry_env, registry_url
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoreProcess]:
    """This module's gateway, once per registry backend (SQLite, a fresh PostgreSQL database)."""
    with registry_url(request.param) as url:
        proc = CoreProcess("gateway", Path(tmp_path_factory.mktemp("cfg")), registry_env(url))
        proc.start()
        try:
            with httpx.Client(base_url=proc.url, trust_env=False, timeout=30) as c:
                m = simple(
                    "fetcher", traits=["external_service"], allowed_domains=["api.example.com"]
                )
                assert register(c, m, registration_token(c)).status_code == 201
                assert c.post("/plugins/fetcher/enable", headers=admin_headers()).status_code == 200
            yield proc
        finally:
            proc.stop()


@pytest.fixture
def c(gw: CoreProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30, headers=admin_headers()) as cl:
        yield cl


def scoped_token(c: httpx.Client, name: str, scopes: list[str]) -> str:
    r = c.post("/admin/users", json={"name": name, "scopes": scopes})
    assert r.status_code == 201, r.text
    r = c.post(f"/admin/users/{r.json()['id']}/tokens", json={"name": "t"})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def test_allowlist_starts_from_the_manifest_and_is_versioned(c: httpx.Client) -> None:
    r = c.get("/admin/plugins/fetcher/allowed-domains")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["domains"], body["mode"], body["requested"]) == (
        ["api.example.com"],
        "enforce",
        ["api.example.com"],
    )
    version = body["version"]
    assert r.headers["etag"] == f'"{version}"'
    r = c.put(
        "/admin/plugins/fetcher/allowed-domains",
        json={
            "domains": ["API.Example.com", "*.files.example.org"],
            "mode": "report",
            "comment": "widen for the files API",
        },
        headers={"If-Match": f'"{version}"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["domains"] == ["api.example.com", "*.files.example.org"]
    assert r.json()["version"] == version + 1
    stale = c.put(
        "/admin/plugins/fetcher/allowed-domains",
        json={"domains": [], "mode": "enforce"},
        headers={"If-Match": f'"{version}"'},
    )
    assert stale.status_code == 412
    assert stale.json()["reason"] == "stale_version"
    assert c.get("/admin/plugins/fetcher/allowed-domains").json()["version"] == version + 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(
            {"domains": ["localhost"], "mode": "enforce"}, "internal_name", id="localhost"
        ),
        pytest.param({"domains": ["10.0.0.1"], "mode": "enforce"}, "ip_literal", id="ip-literal"),
        pytest.param({"domains": ["co.uk"], "mode": "enforce"}, "public_suffix", id="suffix"),
        pytest.param({"domains": ["a.example.com", "A.example.com"]}, "duplicate_domain", id="dup"),
        pytest.param({"domains": [], "mode": "audit"}, "invalid_mode", id="bad-mode"),
        pytest.param({"domains": "x.example.com"}, "invalid_type", id="not-a-list"),
        pytest.param({"domains": [], "extra": 1}, "unknown_field", id="unknown-field"),
    ],
)
def test_invalid_allowlists_change_nothing(
    c: httpx.Client, body: dict[str, Any], code: str
) -> None:
    before = c.get("/admin/plugins/fetcher/allowed-domains").json()
    r = c.put("/admin/plugins/fetcher/allowed-domains", json=body)
    assert r.status_code == 422, r.text
    assert code in {e["code"] for e in r.json()["errors"]}
    assert c.get("/admin/plugins/fetcher/allowed-domains").json() == before


def test_egress_document_put_validate_and_412(c: httpx.Client) -> None:
    r = c.get("/admin/egress")
    assert r.status_code == 200
    doc = {k: v for k, v in r.json().items() if k != "version"}
    version = r.json()["version"]
    doc["blocked_domains"] = [*doc.get("blocked_domains", []), "evil.example.net"]
    r = c.put("/admin/egress", json=doc, headers={"If-Match": f'"{version}"'})
    assert r.status_code == 200, r.text
    assert "evil.example.net" in r.json()["blocked_domains"]
    bad = dict(doc, allowed_networks=["not-a-network"])
    r = c.put("/admin/egress", json=bad)
    assert r.status_code == 422
    assert c.get("/admin/egress").json()["version"] == version + 1
    r = c.put("/admin/egress", json=doc, headers={"If-Match": f'"{version}"'})
    assert r.status_code == 412
    r = c.put("/admin/egress", json=doc, headers={"If-Match": "three"})
    assert r.status_code == 400


def _current(c: httpx.Client, path: str) -> dict[str, Any]:
    """What GET answers at `path`, without its version: a body PUT would accept."""
    return {k: v for k, v in c.get(path).json().items() if k not in {"version", "requested"}}


EGRESS, ALLOWLIST, LIMITS = (
    "/admin/egress",
    "/admin/plugins/fetcher/allowed-domains",
    "/admin/plugins/fetcher/limits",
)


@pytest.mark.parametrize(
    ("path", "change", "if_match", "action", "target", "reason", "status"),
    [
        pytest.param(
            EGRESS,
            {"allowed_networks": ["x"]},
            None,
            "egress_update",
            "egress",
            "invalid",
            422,
            id="egress-invalid",
        ),
        pytest.param(
            EGRESS,
            {"version": -1},
            None,
            "egress_update",
            "egress",
            "invalid",
            422,
            id="egress-bad-version-member",
        ),
        pytest.param(
            EGRESS, {}, '"9999"', "egress_update", "egress", "stale_version", 412, id="egress-stale"
        ),
        pytest.param(
            ALLOWLIST,
            {"domains": ["10.0.0.1"]},
            None,
            "allowlist_update",
            "fetcher",
            "invalid",
            422,
            id="allowlist-invalid",
        ),
        pytest.param(
            ALLOWLIST,
            {"requested": ["x.example.com"]},
            None,
            "allowlist_update",
            "fetcher",
            "read_only_member",
            409,
            id="allowlist-read-only",
        ),
        pytest.param(
            ALLOWLIST,
            {},
            '"9999"',
            "allowlist_update",
            "fetcher",
            "stale_version",
            412,
            id="allowlist-stale",
        ),
        pytest.param(
            LIMITS,
            {"rate": -1},
            None,
            "limits_update",
            "fetcher",
            "invalid",
            422,
            id="limits-invalid",
        ),
        pytest.param(
            LIMITS,
            {},
            '"9999"',
            "limits_update",
            "fetcher",
            "stale_version",
            412,
            id="limits-stale",
        ),
    ],
)
def test_a_refused_config_write_is_audited_with_its_reason(
    c: httpx.Client,
    path: str,
    change: dict[str, Any],
    if_match: str | None,
    action: str,
    target: str,
    reason: str,
    status: int,
) -> None:
    """A body that fails validation is recorded as `invalid`, any other refusal by its code."""
    body = {**_current(c, path), **change}
    headers = {"If-Match": if_match} if if_match else {}
    r = c.put(path, json=body, headers=headers)
    assert r.status_code == status, r.text
    rid = r.headers["x-vivified-request-id"]
    (record,) = wait_for_audit(
        c, action=action, decision="deny", where=lambda a: a["request_id"] == rid
    )
    assert (record["target"], record["reason"], record["status"]) == (target, reason, status)


def test_revisions_record_who_what_and_revert_restores_exactly(c: httpx.Client) -> None:
    start = c.get("/admin/plugins/fetcher/allowed-domains").json()
    r = c.put(
        "/admin/plugins/fetcher/allowed-domains",
        json={"domains": ["only.example.com"], "mode": "enforce", "comment": "narrow"},
    )
    assert r.status_code == 200, r.text
    revs = c.get("/admin/config/revisions", params={"object": "plugin:fetcher:allowed-domains"})
    latest = revs.json()["items"][0]
    assert latest["actor"] == "admin:bootstrap"
    assert latest["comment"] == "narrow"
    assert latest["after"]["domains"] == ["only.example.com"]
    assert "only.example.com" in latest["diff"]["domains"]["added"]
    assert c.get(f"/admin/config/revisions/{latest['id']}").json() == latest
    r = c.post(f"/admin/config/revisions/{latest['id']}/revert", json={})
    assert r.status_code == 200, r.text
    now = c.get("/admin/plugins/fetcher/allowed-domains").json()
    assert (now["domains"], now["mode"]) == (start["domains"], start["mode"])
    assert c.post("/admin/config/revisions/999999/revert").status_code == 404
    ids = [x["id"] for x in c.get("/admin/config/revisions").json()["items"]]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/admin/egress", id="get-egress"),
        pytest.param("PUT", "/admin/egress", id="put-egress"),
        pytest.param("GET", "/admin/plugins/fetcher/allowed-domains", id="get-allowlist"),
        pytest.param("PUT", "/admin/plugins/fetcher/allowed-domains", id="put-allowlist"),
        pytest.param("GET", "/admin/config/revisions", id="revisions"),
        pytest.param("POST", "/admin/config/revisions/1/revert", id="revert"),
    ],
)
def test_config_routes_need_the_egress_scope(
    c: httpx.Client, gw: CoreProcess, method: str, path: str
) -> None:
    name = (
        "auditor-" + path.strip("/").replace("/", "-").replace("admin-", "")[:30] + method.lower()
    )
    token = scoped_token(c, name, ["audit:read"])
    with httpx.Client(base_url=gw.url, trust_env=False) as anon:
        assert anon.request(method, path, json={}).status_code == 401
        r = anon.request(method, path, json={}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
        assert r.json()["reason"] == "missing_scope"


def test_admin_tokens_are_listed_without_secret_and_revocable(
    c: httpx.Client, gw: CoreProcess
) -> None:
    token = scoped_token(c, "ops", ["egress:manage"])
    users = c.get("/admin/users").json()["items"]
    uid = next(u["id"] for u in users if u["name"] == "ops")
    listed = c.get(f"/admin/users/{uid}/tokens").json()["items"]
    assert token not in str(listed)
    with httpx.Client(
        base_url=gw.url, trust_env=False, headers={"Authorization": f"Bearer {token}"}
    ) as ops:
        assert ops.get("/admin/egress").status_code == 200
        r = ops.post("/admin/users", json={"name": "sneaky", "scopes": ["admins:manage"]})
        assert r.status_code == 403
        assert c.delete(f"/admin/tokens/{listed[0]['id']}").status_code == 204
        assert ops.get("/admin/egress").status_code == 401


def test_grants_need_the_grants_scope(c: httpx.Client, gw: CoreProcess) -> None:
    token = scoped_token(c, "egress-only", ["egress:manage"])
    with httpx.Client(
        base_url=gw.url, trust_env=False, headers={"Authorization": f"Bearer {token}"}
    ) as other:
        r = other.post("/admin/grants", json={"caller": "fetcher", "target": "fetcher"})
        assert (r.status_code, r.json()["reason"]) == (403, "missing_scope")
    granted = scoped_token(c, "granter", ["grants:manage"])
    r = httpx.post(
        gw.url + "/admin/grants",
        json={"caller": "fetcher", "target": "fetcher"},
        headers={"Authorization": f"Bearer {granted}"},
        trust_env=False,
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/admin/config/revisions/999999999999999999999999", id="get-huge"),
        pytest.param(
            "POST", "/admin/config/revisions/999999999999999999999999/revert", id="revert-huge"
        ),
        pytest.param("GET", "/admin/config/revisions/9223372036854775808", id="get-2-pow-63"),
        pytest.param("GET", "/admin/config/revisions/-1", id="get-negative"),
        pytest.param("GET", "/admin/config/revisions/one", id="get-non-numeric"),
        pytest.param("POST", "/admin/config/revisions/0/revert", id="revert-zero"),
    ],
)
def test_a_revision_that_cannot_exist_is_404_and_changes_nothing(
    c: httpx.Client, method: str, path: str
) -> None:
    before = c.get("/admin/config/revisions").json()["items"]
    r = c.request(method, path, json={})
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.json()["status"], r.json()["reason"]) == (404, "not_found")
    assert c.get("/admin/config/revisions").json()["items"] == before
