"""Registration, re-registration and lifecycle over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from support.audit import wait_for_audit
from support.backends import BACKENDS, registry_env, registry_url
from support.manifests import seed, simple
from support.procs import CoreProcess, admin_headers, register, registration_token

_ids = itertools.count(1)


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoreProcess]:
    """This module's gateway, once per registry backend (overrides the folder's SQLite one)."""
    with registry_url(request.param) as url:
        proc = CoreProcess("gateway", Path(tmp_path_factory.mktemp("gw")), registry_env(url))
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()


def fresh_id(prefix: str = "plug") -> str:
    return f"{prefix}-{next(_ids)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_seed_manifest_registers_and_token_verifies_against_jwks(client: httpx.Client) -> None:
    token = registration_token(client)
    r = register(client, seed(), token)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == "user-management"
    assert body["status"] == "registered"  # handles_pii: waits for an admin
    assert body["risk"]["level"] in {"medium", "high", "critical"}
    jwks = client.get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(body["token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        body["token"], jwt.PyJWK(key).key, algorithms=["EdDSA"], audience="vivified"
    )
    assert claims["sub"] == "user-management"
    assert {"iss", "aud", "iat", "nbf", "exp", "jti", "gen"} <= set(claims)
    record = client.get("/plugins/user-management", headers=bearer(body["token"])).json()
    assert record["status"] == "registered"
    assert "token" not in str(record).lower().replace("token_", "")


def test_low_risk_plugin_is_auto_approved(client: httpx.Client) -> None:
    pid = fresh_id()
    r = register(client, simple(pid), registration_token(client))
    assert r.status_code == 201
    assert r.json()["status"] == "active"


def test_registration_without_credential_is_401(client: httpx.Client) -> None:
    r = client.post("/plugins/register", json=simple(fresh_id()))
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["reason"] == "missing_token"


def test_rejected_registration_stores_nothing_and_keeps_the_token_use(
    client: httpx.Client,
) -> None:
    pid = fresh_id()
    token = registration_token(client)
    bad = simple(pid, version="one", traits=["root"])
    r = register(client, bad, token)
    assert r.status_code == 422
    codes = {e["code"] for e in r.json()["errors"]}
    assert {"invalid_version", "forbidden_trait"} <= codes
    assert client.get(f"/plugins/{pid}", headers=admin_headers()).status_code == 404
    # The one use of the token was not spent on the rejected attempt.
    assert register(client, simple(pid), token).status_code == 201


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param(b"{not json", "application/json", 400, id="malformed-json"),
        pytest.param(b"", "application/json", 400, id="empty-body"),
        pytest.param(b"[1, 2]", "application/json", 422, id="json-array"),
        pytest.param(b'{"id": NaN}', "application/json", 400, id="nan-constant"),
        pytest.param(b'{"id": "a", "x": -1e400}', "application/json", 400, id="float-overflow"),
        pytest.param(b"x" * (1024 * 1024 + 1), "application/json", 413, id="over-1mib"),
        pytest.param(b"{}", "text/plain", 415, id="wrong-media-type"),
    ],
)
def test_bad_bodies(client: httpx.Client, body: bytes, content_type: str, status: int) -> None:
    token = registration_token(client)
    r = client.post(
        "/plugins/register",
        content=body,
        headers={**bearer(token), "Content-Type": content_type},
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == status
    assert "Traceback" not in r.text


def test_registration_token_bound_to_another_id_is_403(client: httpx.Client) -> None:
    token = registration_token(client, plugin_id=fresh_id("bound"))
    r = register(client, simple(fresh_id()), token)
    assert r.status_code == 403
    assert r.json()["reason"] == "registration_token_bound"


def test_used_up_registration_token_is_401(client: httpx.Client) -> None:
    token = registration_token(client, uses=1)
    assert register(client, simple(fresh_id()), token).status_code == 201
    r = register(client, simple(fresh_id()), token)
    assert r.status_code == 401
    assert r.json()["reason"] == "invalid_registration_token"


def test_id_held_by_another_owner_is_409(client: httpx.Client) -> None:
    pid = fresh_id()
    assert register(client, simple(pid), registration_token(client)).status_code == 201
    r = register(client, simple(pid), registration_token(client))
    assert r.status_code == 409
    assert r.json()["reason"] == "plugin_id_taken"


def _register_active(client: httpx.Client, pid: str, **changes: Any) -> str:
    r = register(client, simple(pid, **changes), registration_token(client))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "active"
    token: str = r.json()["token"]
    return token


def test_reregistration_with_own_token_revokes_the_old_one(client: httpx.Client) -> None:
    pid = fresh_id()
    old = _register_active(client, pid)
    r = register(client, simple(pid, version="1.0.1"), old)
    assert r.status_code == 200
    new = r.json()["token"]
    assert r.json()["status"] == "active"  # same powers: accepted at once
    assert client.get(f"/plugins/{pid}", headers=bearer(new)).status_code == 200
    refused = client.get(f"/plugins/{pid}", headers=bearer(old))
    assert refused.status_code == 401
    assert refused.json()["reason"] == "revoked"


def test_widening_reregistration_waits_for_approval_with_diff(client: httpx.Client) -> None:
    pid = fresh_id()
    token = _register_active(client, pid)
    wider = simple(pid, dependencies=["user-management"])
    r = register(client, wider, token)
    assert r.status_code == 200
    assert r.json()["status"] == "registered"
    assert "dependencies" in str(r.json()["diff"])
    record = client.get(f"/plugins/{pid}", headers=admin_headers()).json()
    assert record["status"] == "registered"
    assert record["pending"]["diff"]["widened"] is True
    enabled = client.post(f"/plugins/{pid}/enable", headers=admin_headers())
    assert enabled.status_code == 200
    assert enabled.json()["status"] == "active"
    assert enabled.json()["pending"] is None


def test_narrowing_reregistration_is_accepted_at_once(client: httpx.Client) -> None:
    pid = fresh_id()
    token = _register_active(client, pid, traits=["audit_required", "caching"])
    r = register(client, simple(pid, traits=["audit_required"]), token)
    assert r.status_code == 200
    assert r.json()["status"] == "active"


def test_lifecycle_disable_enable_reregister_unregister(client: httpx.Client) -> None:
    pid = fresh_id()
    token = _register_active(client, pid)
    assert client.post(f"/plugins/{pid}/disable", headers=admin_headers()).json()["status"] == (
        "disabled"
    )
    refused = client.post(f"/plugins/{pid}/token", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["reason"] == "revoked"
    assert client.post(f"/plugins/{pid}/enable", headers=admin_headers()).status_code == 200
    # The old token stays dead after re-enabling; a bound registration token gets a new one.
    assert client.post(f"/plugins/{pid}/token", headers=bearer(token)).status_code == 401
    r = register(client, simple(pid), registration_token(client, plugin_id=pid))
    assert r.status_code == 200
    new = r.json()["token"]
    refreshed = client.post(f"/plugins/{pid}/token", headers=bearer(new))
    assert refreshed.status_code == 200
    assert set(refreshed.json()) == {"token", "expires_at"}
    # The presented token stays valid until it expires.
    assert client.get(f"/plugins/{pid}", headers=bearer(new)).status_code == 200
    assert client.delete(f"/plugins/{pid}", headers=bearer(new)).status_code == 204
    gone = client.get(f"/plugins/{pid}", headers=bearer(refreshed.json()["token"]))
    assert gone.status_code == 401
    assert gone.json()["reason"] == "unknown_plugin"


def test_plugin_cannot_read_or_delete_another_plugin(client: httpx.Client) -> None:
    a, b = fresh_id(), fresh_id()
    token_a = _register_active(client, a)
    _register_active(client, b)
    assert client.get(f"/plugins/{b}", headers=bearer(token_a)).status_code == 403
    assert client.delete(f"/plugins/{b}", headers=bearer(token_a)).status_code == 403
    assert client.get("/plugins", headers=bearer(token_a)).status_code == 403


def test_admin_routes_need_the_admin_token(client: httpx.Client) -> None:
    assert client.get("/plugins").status_code == 401
    wrong = client.get("/plugins", headers=bearer("not-the-admin-token-at-all-xx"))
    assert wrong.status_code == 401
    listed = client.get("/plugins", headers=admin_headers())
    assert listed.status_code == 200
    assert all("risk" in p for p in listed.json()["items"])


def test_no_endpoint_returns_a_token_again(client: httpx.Client) -> None:
    pid = fresh_id()
    token = _register_active(client, pid)
    for path in (f"/plugins/{pid}", "/plugins", "/admin/registration-tokens"):
        r = client.get(path, headers=admin_headers())
        assert r.status_code == 200
        assert token not in r.text


def test_a_name_is_recorded_as_claimed_until_a_credential_vouches_for_it(
    client: httpx.Client,
) -> None:
    pid = fresh_id("claim")
    # No credential: the id is only a claim in the trail.
    assert client.post("/plugins/register", json=simple(pid)).status_code == 401
    (anonymous,) = wait_for_audit(client, action="register", target=f"claimed:{pid}")
    assert (anonymous["actor"], anonymous["reason"]) == ("anonymous", "missing_token")
    # A checked credential: the same id is recorded as it is, even when the manifest fails.
    r = register(client, simple(pid, version="one"), registration_token(client))
    assert r.status_code == 422
    (checked,) = wait_for_audit(client, action="register", target=pid)
    assert (checked["decision"], checked["reason"]) == ("deny", "invalid_manifest")
    assert checked["actor"].startswith("regtoken:")
    # A token refresh with a token that does not verify: the path's id is a claim too.
    refused = client.post(f"/plugins/{pid}/token", headers=bearer("not-a-plugin-token"))
    assert refused.status_code == 401
    (refresh,) = wait_for_audit(client, action="token_refresh", target=f"claimed:{pid}")
    assert (refresh["actor"], refresh["reason"]) == ("anonymous", refused.json()["reason"])


def test_a_token_refresh_records_who_asked_for_which_plugin(client: httpx.Client) -> None:
    pid, other = fresh_id("own"), fresh_id("other")
    token, other_token = _register_active(client, pid), _register_active(client, other)
    # Another plugin's (valid) token: refused, recorded as that plugin asking for this one.
    refused = client.post(f"/plugins/{pid}/token", headers=bearer(other_token))
    assert (refused.status_code, refused.json()["reason"]) == (403, "token_for_other_plugin")
    (denied,) = wait_for_audit(client, action="token_refresh", actor=other)
    assert (denied["target"], denied["decision"], denied["reason"], denied["status"]) == (
        pid,
        "deny",
        "token_for_other_plugin",
        403,
    )
    # Its own token: a fresh one, recorded as the plugin refreshing its own.
    assert client.post(f"/plugins/{pid}/token", headers=bearer(token)).status_code == 200
    (allowed,) = wait_for_audit(client, action="token_refresh", actor=pid)
    assert (allowed["target"], allowed["decision"], allowed["reason"], allowed["status"]) == (
        pid,
        "allow",
        "token_refreshed",
        200,
    )
