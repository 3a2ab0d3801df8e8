"""Config documents round-trip: GET's answer PUT back is accepted, PUT is a full replace
(missing members are 422, never a silent wipe), PATCH is a JSON Merge Patch (RFC 7396), and
the query parameters of admin list routes are validated (422 `invalid_query`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token

MERGE = {"Content-Type": "application/merge-patch+json"}
EGRESS_MEMBERS = [
    "allowed_networks",
    "allowed_ports",
    "blocked_domains",
    "enabled",
    "host_overrides",
    "passthrough_domains",
    "response_filters",
]
ALLOWLIST = "/admin/plugins/fetcher/allowed-domains"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    proc = CoreProcess("gateway", Path(tmp_path_factory.mktemp("cfg-rt"))).start()
    with httpx.Client(base_url=proc.url, trust_env=False, timeout=30) as c:
        m = simple("fetcher", traits=["external_service"], allowed_domains=["api.example.com"])
        assert register(c, m, registration_token(c)).status_code == 201
        assert c.post("/plugins/fetcher/enable", headers=admin_headers()).status_code == 200
    yield proc
    proc.stop()


@pytest.fixture
def c(gw: CoreProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30, headers=admin_headers()) as cl:
        yield cl


BASE_DOC: dict[str, Any] = {
    "enabled": True,
    "blocked_domains": ["bad.example.net"],
    "allowed_networks": ["10.8.0.0/16"],
    "host_overrides": {"api.example.com": "10.8.0.5", "files.example.org": "10.8.0.6"},
    "allowed_ports": [80, 443],
    "passthrough_domains": [],
    "response_filters": {"default": {"max_body_bytes": 1000}},
}


def reset_egress(c: httpx.Client) -> int:
    """Put BASE_DOC in force; its version."""
    r = c.put("/admin/egress", json=BASE_DOC)
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


# -- GET -> PUT round trip -------------------------------------------------------------------


def test_the_egress_document_as_read_is_accepted_back_unchanged(c: httpx.Client) -> None:
    reset_egress(c)
    got = c.get("/admin/egress")
    assert got.status_code == 200
    assert sorted(k for k in got.json() if k != "version") == EGRESS_MEMBERS
    put = c.put("/admin/egress", json=got.json())  # `version` included: a read-only member
    assert put.status_code == 200, put.text
    assert put.json() == {**got.json(), "version": got.json()["version"] + 1}
    again = c.put(  # with If-Match naming the same version as the body: fine too
        "/admin/egress", json=put.json(), headers={"If-Match": put.headers["etag"]}
    )
    assert again.status_code == 200, again.text


def test_the_allowlist_as_read_is_accepted_back_unchanged(c: httpx.Client) -> None:
    got = c.get(ALLOWLIST)
    assert got.status_code == 200
    assert set(got.json()) == {"domains", "mode", "requested", "version"}
    put = c.put(ALLOWLIST, json=got.json())
    assert put.status_code == 200, put.text
    assert put.json()["domains"] == got.json()["domains"]
    assert put.json()["version"] == got.json()["version"] + 1


@pytest.mark.parametrize(
    ("path", "change", "status", "reason"),
    [
        pytest.param(
            "/admin/egress", {"version": -1}, 422, "invalid_body", id="egress-bad-version"
        ),
        pytest.param("/admin/egress", {"version": "1"}, 422, "invalid_body", id="egress-text"),
        pytest.param("/admin/egress", "stale", 412, "stale_version", id="egress-stale-version"),
        pytest.param(ALLOWLIST, "stale", 412, "stale_version", id="allowlist-stale-version"),
        pytest.param(
            ALLOWLIST, {"requested": ["x.example.com"]}, 409, "read_only_member", id="requested"
        ),
    ],
)
def test_a_read_only_member_that_differs_is_refused_and_changes_nothing(
    c: httpx.Client, path: str, change: Any, status: int, reason: str
) -> None:
    before = c.get(path).json()
    body = dict(before)
    if change == "stale":  # `version` works like If-Match
        body["version"] = before["version"] - 1 if before["version"] > 0 else 999
    else:
        body.update(change)
    r = c.put(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason
    assert r.headers["content-type"].startswith("application/problem+json")
    assert c.get(path).json() == before


def test_if_match_and_a_differing_version_member_are_412(c: httpx.Client) -> None:
    got = c.get("/admin/egress").json()
    r = c.put(
        "/admin/egress",
        json={**got, "version": got["version"] + 5},
        headers={"If-Match": f'"{got["version"]}"'},
    )
    assert (r.status_code, r.json()["reason"]) == (412, "stale_version")


# -- PUT is a full replace -------------------------------------------------------------------


def test_a_put_missing_members_is_422_listing_them_and_changes_nothing(c: httpx.Client) -> None:
    reset_egress(c)
    before = c.get("/admin/egress").json()
    r = c.put("/admin/egress", json={"blocked_domains": ["x.example.net"]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "invalid_egress_document"
    missing = sorted(e["path"] for e in body["errors"] if e["code"] == "missing_member")
    assert missing == sorted(f"/{m}" for m in EGRESS_MEMBERS if m != "blocked_domains")
    assert c.get("/admin/egress").json() == before

    allow_before = c.get(ALLOWLIST).json()
    r = c.put(ALLOWLIST, json={"domains": ["api.example.com"]})
    assert r.status_code == 422, r.text
    assert [(e["path"], e["code"]) for e in r.json()["errors"]] == [("/mode", "missing_member")]
    assert c.get(ALLOWLIST).json() == allow_before


# -- PATCH: JSON Merge Patch -----------------------------------------------------------------

EGRESS_PATCHES = [
    pytest.param({"enabled": False}, {"enabled": False}, id="replace-a-member"),
    pytest.param(
        {"blocked_domains": ["a.example.net"]},
        {"blocked_domains": ["a.example.net"]},
        id="arrays-are-replaced-whole",
    ),
    pytest.param(
        {"host_overrides": {"files.example.org": None, "new.example.com": "10.8.0.7"}},
        {"host_overrides": {"api.example.com": "10.8.0.5", "new.example.com": "10.8.0.7"}},
        id="objects-merge-null-removes-a-key",
    ),
    pytest.param(
        {"response_filters": {"default": {"allowed_content_types": ["text/*"]}}},
        {
            "response_filters": {
                "default": {"max_body_bytes": 1000, "allowed_content_types": ["text/*"]}
            }
        },
        id="nested-merge",
    ),
    pytest.param(
        {"allowed_networks": None}, {"allowed_networks": []}, id="null-member-back-to-default"
    ),
    pytest.param({}, {}, id="empty-patch-changes-nothing"),
]


@pytest.mark.parametrize(("patch", "changed"), EGRESS_PATCHES)
def test_patch_egress_merges(
    c: httpx.Client, patch: dict[str, Any], changed: dict[str, Any]
) -> None:
    version = reset_egress(c)
    r = c.patch("/admin/egress", json=patch, headers=MERGE)
    assert r.status_code == 200, r.text
    expected = {**BASE_DOC, **changed}
    assert {k: v for k, v in r.json().items() if k != "version"} == expected
    assert r.json()["version"] == version + 1
    assert r.headers["etag"] == f'"{version + 1}"'
    got = c.get("/admin/egress").json()
    assert {k: v for k, v in got.items() if k != "version"} == expected


@pytest.mark.parametrize(
    ("patch", "headers", "status", "reason"),
    [
        pytest.param({"enabled": False}, {}, 415, "unsupported_media_type", id="plain-json"),
        pytest.param(
            {"allowed_ports": [0]}, MERGE, 422, "invalid_egress_document", id="invalid-result"
        ),
        pytest.param({"nope": 1}, MERGE, 422, "invalid_egress_document", id="unknown-member"),
        pytest.param([1], MERGE, 422, "invalid_body", id="not-an-object"),
        pytest.param({"version": 0}, MERGE, 412, "stale_version", id="stale-version-member"),
        pytest.param(
            {"enabled": False}, {**MERGE, "If-Match": '"0"'}, 412, "stale_version", id="if-match"
        ),
    ],
)
def test_bad_patches_change_nothing(
    c: httpx.Client, patch: Any, headers: dict[str, str], status: int, reason: str
) -> None:
    reset_egress(c)
    before = c.get("/admin/egress").json()
    r = c.patch("/admin/egress", json=patch, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason
    assert c.get("/admin/egress").json() == before


ALLOWLIST_PATCHES = [
    pytest.param({"mode": "report"}, ["api.example.com"], "report", id="mode-only"),
    pytest.param(
        {"domains": ["a.example.com", "b.example.com"]},
        ["a.example.com", "b.example.com"],
        "enforce",
        id="domains-replaced",
    ),
    pytest.param({"mode": None}, ["api.example.com"], "enforce", id="null-mode-default"),
    pytest.param({"domains": None}, [], "enforce", id="null-domains-empty"),
]


@pytest.mark.parametrize(("patch", "domains", "mode"), ALLOWLIST_PATCHES)
def test_patch_allowlist_merges(
    c: httpx.Client, patch: dict[str, Any], domains: list[str], mode: str
) -> None:
    r = c.put(ALLOWLIST, json={"domains": ["api.example.com"], "mode": "enforce"})
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    r = c.patch(ALLOWLIST, json=patch, headers=MERGE)
    assert r.status_code == 200, r.text
    assert (r.json()["domains"], r.json()["mode"], r.json()["version"]) == (
        domains,
        mode,
        version + 1,
    )
    assert c.get(ALLOWLIST).json()["version"] == version + 1


def test_patch_allowlist_refuses_a_changed_read_only_member(c: httpx.Client) -> None:
    before = c.get(ALLOWLIST).json()
    r = c.patch(ALLOWLIST, json={"requested": []}, headers=MERGE)
    assert (r.status_code, r.json()["reason"]) == (409, "read_only_member")
    assert c.get(ALLOWLIST).json() == before


# -- list routes: validated query parameters -------------------------------------------------

LANES = ["admin", "egress", "events", "health", "operator", "registry"]


@pytest.mark.parametrize(
    ("path", "name", "allowed"),
    [
        pytest.param("/admin/audit?lane=bogus", "lane", LANES, id="audit-lane"),
        pytest.param(
            "/admin/audit?decision=maybe", "decision", ["allow", "deny", "report"], id="decision"
        ),
    ],
)
def test_a_filter_outside_its_values_is_422_with_the_allowed_values(
    c: httpx.Client, path: str, name: str, allowed: list[str]
) -> None:
    r = c.get(path)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "invalid_query"
    (error,) = body["errors"]
    assert (error["path"], error["code"]) == (f"?{name}", "not_allowed")
    assert error["allowed"] == allowed
    assert "bogus" not in r.text
    assert "maybe" not in r.text


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/admin/audit?lanes=egress", id="audit"),
        pytest.param("/admin/config/revisions?obj=egress", id="revisions"),
        pytest.param("/admin/registration-tokens?all=1", id="registration-tokens"),
    ],
)
def test_an_unknown_query_parameter_on_a_list_route_is_422(c: httpx.Client, path: str) -> None:
    r = c.get(path)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "invalid_query"
    (error,) = body["errors"]
    assert error["code"] == "unknown_parameter"
    assert isinstance(error["allowed"], list)  # the names it takes (none for some routes)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/admin/audit?lane=egress&decision=deny&limit=5", id="audit-filters"),
        pytest.param("/admin/audit?lane=&decision=", id="empty-means-absent"),
        pytest.param("/admin/config/revisions?object=egress&limit=5", id="revisions"),
    ],
)
def test_valid_list_queries_still_answer(c: httpx.Client, path: str) -> None:
    r = c.get(path)
    assert r.status_code == 200, r.text
    assert "items" in r.json()
