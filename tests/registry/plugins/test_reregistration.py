"""Who may register a new id, who may register a known id again, and (over real HTTP) which
re-registrations of an approved plugin wait for an admin."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token

from vivified.registry.plugins.reregistration import (
    Credential,
    RegistryError,
    check_existing,
    check_new,
)

OPEN = Credential("open", "anonymous")
UNBOUND = Credential("registration_token", "regtoken:1", None, "1")
BOUND_ALPHA = Credential("registration_token", "regtoken:2", "alpha", "2")
BOUND_BETA = Credential("registration_token", "regtoken:3", "beta", "3")
ALPHA_TOKEN = Credential("plugin_token", "alpha", "alpha")
BETA_TOKEN = Credential("plugin_token", "beta", "beta")

CASES = [
    # (credential, new id allowed?, code when refused; known id allowed?, code when refused)
    pytest.param(OPEN, None, "plugin_id_taken", id="open"),
    pytest.param(UNBOUND, None, "plugin_id_taken", id="unbound-registration-token"),
    pytest.param(BOUND_ALPHA, None, None, id="registration-token-bound-to-it"),
    pytest.param(
        BOUND_BETA,
        "registration_token_bound",
        "registration_token_bound",
        id="registration-token-bound-elsewhere",
    ),
    pytest.param(ALPHA_TOKEN, "token_for_other_plugin", None, id="its-own-plugin-token"),
    pytest.param(
        BETA_TOKEN, "token_for_other_plugin", "plugin_id_taken", id="another-plugin's-token"
    ),
]


def refusal(check: object, cred: Credential) -> str | None:
    assert callable(check)
    try:
        check("alpha", cred)
    except RegistryError as exc:
        return exc.code
    return None


@pytest.mark.parametrize(("cred", "new", "known"), CASES)
def test_who_may_register_alpha(cred: Credential, new: str | None, known: str | None) -> None:
    assert refusal(check_new, cred) == new
    assert refusal(check_existing, cred) == known


_ids = itertools.count(1)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("rereg"))).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c:
            yield c
    finally:
        gw.stop()


def endpoints(items: str) -> dict[str, str]:
    return {"health": "/health", "items": items}


@pytest.mark.parametrize(
    ("before", "after", "widening"),
    [
        pytest.param("/api/items/{id}", {"endpoints": endpoints("/api/{rest:path}")},
                     ["endpoints.items"], id="param-to-catch-all"),
        pytest.param("/api/items/me", {"endpoints": endpoints("/api/items/{id}")},
                     ["endpoints.items"], id="literal-to-param"),
        pytest.param("/api/items/{id}", {"endpoints": endpoints("/api/items/{id}/{rest:path}")},
                     ["endpoints.items"], id="added-path-segment"),
        pytest.param("/api/items/{id}", {"base_url": "http://elsewhere.example.com:8000"},
                     ["base_url"], id="base-url-change"),
        pytest.param("/api/items/{id}", {"endpoints": endpoints("/api/items/me")}, [],
                     id="narrowing-literal"),
    ],
)  # fmt: skip
def test_reregistering_an_endpoint_template(
    client: httpx.Client, before: str, after: dict[str, Any], widening: list[str]
) -> None:
    pid = f"tpl-{next(_ids)}"
    first = register(client, simple(pid, endpoints=endpoints(before)), registration_token(client))
    assert (first.status_code, first.json()["status"]) == (201, "active"), first.text
    r = register(client, simple(pid, **after), first.json()["token"])
    assert r.status_code == 200, r.text
    status = "registered" if widening else "active"
    assert r.json()["status"] == status
    assert r.json()["diff"]["widened"] is bool(widening)
    assert r.json()["diff"]["widening"] == widening
    record = client.get(f"/plugins/{pid}", headers=admin_headers()).json()
    assert record["status"] == status
    if widening:
        pending = record["pending"]["diff"]
        assert (pending["widened"], pending["widening"]) == (True, widening)
        assert set(widening) <= set(pending["changed"])  # the admin sees old and new values
    else:
        assert record["pending"] is None


def test_a_catch_all_template_routes_nothing_until_approved(client: httpx.Client) -> None:
    """`items: /api/{rest:path}` instead of `/api/items/{id}` must not open every path under
    /api/ to callers at once."""
    pid = f"tpl-{next(_ids)}"
    first = register(client, simple(pid), registration_token(client))
    assert first.json()["status"] == "active", first.text
    caller = register(
        client, simple(f"caller-{pid}", dependencies=[pid]), registration_token(client)
    )
    assert caller.json()["status"] == "active", caller.text
    as_caller = {"Authorization": f"Bearer {caller.json()['token']}"}
    undeclared = client.get(f"/{pid}/admin/secrets", headers=as_caller)
    assert (undeclared.status_code, undeclared.json()["reason"]) == (404, "endpoint_not_declared")
    wider = simple(pid, endpoints=endpoints("/api/{rest:path}"))
    r = register(client, wider, first.json()["token"])
    assert (r.status_code, r.json()["status"]) == (200, "registered"), r.text
    assert r.json()["diff"]["changed"]["endpoints.items"] == {
        "old": "/api/items/{id}",
        "new": "/api/{rest:path}",
    }
    refused = client.get(f"/{pid}/admin/secrets", headers=as_caller)
    assert (refused.status_code, refused.json()["reason"]) == (503, "target_not_active")
