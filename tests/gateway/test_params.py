"""Bounded route parameters over a real gateway: every admin and plugin lifecycle route with a
path item answers 404 problem+json for one that cannot exist (never a 500, never a database
round trip with a huge value, never the value echoed back); bad query numbers are 422."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from starlette.requests import Request
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token

from vivified.gateway.params import (
    MAX_INT,
    PLUGIN_ID,
    RECORD_ID,
    path_int,
    query_int,
    query_time,
)
from vivified.gateway.problems import Problem

HUGE = "999999999999999999999999"
TOO_BIG = str(MAX_INT + 1)
TEN_KB = "a" * 10 * 1024
BAD_ITEMS = [
    pytest.param(HUGE, id="huge"),
    pytest.param(TOO_BIG, id="2-pow-63"),
    pytest.param("-1", id="negative"),
    pytest.param("0", id="zero"),
    pytest.param("abc", id="non-numeric"),
    pytest.param("1e3", id="exponent"),
    pytest.param(TEN_KB, id="10kb"),
]
# (method, path with {x} for the item, whether the plugin's own token is needed)
ITEM_ROUTES = [
    pytest.param("GET", "/admin/config/revisions/{x}", id="get-revision"),
    pytest.param("POST", "/admin/config/revisions/{x}/revert", id="revert-revision"),
    pytest.param("GET", "/admin/plugins/{x}/allowed-domains", id="get-allowlist"),
    pytest.param("PUT", "/admin/plugins/{x}/allowed-domains", id="put-allowlist"),
    pytest.param("DELETE", "/admin/grants/{x}", id="delete-grant"),
    pytest.param("PUT", "/admin/contracts/{x}", id="choose-contract"),
    pytest.param("DELETE", "/admin/registration-tokens/{x}", id="revoke-registration-token"),
    pytest.param("POST", "/admin/users/{x}/tokens", id="create-admin-token"),
    pytest.param("GET", "/admin/users/{x}/tokens", id="list-admin-tokens"),
    pytest.param("DELETE", "/admin/tokens/{x}", id="revoke-admin-token"),
    pytest.param("POST", "/admin/events/dead-letters/{x}/replay", id="replay-dead-letter"),
    pytest.param("GET", "/plugins/{x}", id="get-plugin"),
    pytest.param("DELETE", "/plugins/{x}", id="unregister-plugin"),
    pytest.param("POST", "/plugins/{x}/enable", id="enable-plugin"),
    pytest.param("POST", "/plugins/{x}/disable", id="disable-plugin"),
    pytest.param("GET", "/plugins/{x}/health", id="plugin-health"),
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    proc = CoreProcess("gateway", Path(tmp_path_factory.mktemp("params"))).start()
    yield proc
    proc.stop()


@pytest.fixture
def c(gw: CoreProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30, headers=admin_headers()) as cl:
        yield cl


def assert_problem(r: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert (body["status"], body["reason"]) == (status, reason)
    assert len(r.content) < 1024  # the offending value is never echoed back
    return body


@pytest.mark.parametrize("value", BAD_ITEMS)
@pytest.mark.parametrize(("method", "path"), ITEM_ROUTES)
def test_a_path_item_that_cannot_exist_is_404(
    c: httpx.Client, method: str, path: str, value: str
) -> None:
    r = c.request(method, path.format(x=value), json={})
    if r.status_code == 200 and path == "/admin/users/{x}/tokens":
        # a well-formed id of no user lists nothing, as before; a malformed one is 404
        assert (RECORD_ID.fullmatch(value), r.json()) == (ANY, {"items": []})
        return
    body = assert_problem(r, 404, "not_found")
    assert body["type"].endswith("/not_found")


@pytest.fixture(scope="module")
def plugin_token(gw: CoreProcess) -> str:
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as cl:
        r = register(cl, simple("beat-probe"), registration_token(cl))
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token


@pytest.mark.parametrize("value", BAD_ITEMS)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/plugins/{x}/heartbeat", id="heartbeat"),
        pytest.param("POST", "/plugins/{x}/token", id="refresh-token"),
        pytest.param("GET", "/plugins/{x}", id="own-record"),
        pytest.param("GET", "/plugins/{x}/health", id="own-health"),
        pytest.param("DELETE", "/plugins/{x}", id="unregister-self"),
    ],
)
def test_a_plugin_naming_an_id_that_cannot_exist_is_refused(
    gw: CoreProcess, plugin_token: str, method: str, path: str, value: str
) -> None:
    r = httpx.request(
        method,
        gw.url + path.format(x=value),
        json={},
        headers={"Authorization": f"Bearer {plugin_token}"},
        trust_env=False,
        timeout=30,
    )
    if path != "/plugins/{x}/token":
        assert_problem(r, 403, "not_self")  # refused before the id is even looked at
    elif PLUGIN_ID.fullmatch(value) and len(value) <= 63:  # could exist: someone else's
        assert_problem(r, 403, "token_for_other_plugin")
    else:
        assert_problem(r, 404, "not_found")


def test_the_huge_revision_is_404_and_the_connection_stays_usable(c: httpx.Client) -> None:
    r = c.get(f"/admin/config/revisions/{HUGE}")
    assert_problem(r, 404, "not_found")
    assert c.get("/admin/config/revisions").status_code == 200  # same connection, still served


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD_QUERIES = [
    pytest.param("/admin/config/revisions", "limit", HUGE, id="revisions-limit-huge"),
    pytest.param("/admin/config/revisions", "limit", "-1", id="revisions-limit-negative"),
    pytest.param("/admin/config/revisions", "limit", "ten", id="revisions-limit-text"),
    pytest.param("/admin/config/revisions", "before", HUGE, id="revisions-before-huge"),
    pytest.param("/admin/config/revisions", "before", TOO_BIG, id="revisions-before-2-pow-63"),
    pytest.param("/admin/config/revisions", "before", "0", id="revisions-before-zero"),
    pytest.param("/admin/config/revisions", "before", "x", id="revisions-before-text"),
    pytest.param("/admin/config/revisions", "object", TEN_KB, id="revisions-object-10kb"),
    pytest.param("/admin/audit", "limit", HUGE, id="audit-limit-huge"),
    pytest.param("/admin/audit", "limit", "0", id="audit-limit-zero"),
    pytest.param("/admin/audit", "limit", "1001", id="audit-limit-over-max"),
    pytest.param("/admin/audit", "limit", "-5", id="audit-limit-negative"),
    pytest.param("/admin/audit", "cursor", _cursor(f"v1:{HUGE}"), id="audit-cursor-huge"),
    pytest.param("/admin/audit", "cursor", _cursor(f"v1:{TOO_BIG}"), id="audit-cursor-2-pow-63"),
    pytest.param("/admin/audit", "cursor", _cursor("v1:-3"), id="audit-cursor-negative"),
    pytest.param("/admin/audit", "cursor", "!!not-base64!!", id="audit-cursor-garbage"),
    pytest.param("/admin/audit", "cursor", TEN_KB, id="audit-cursor-10kb"),
    pytest.param("/admin/audit", "since", "nan", id="audit-since-nan"),
    pytest.param("/admin/audit", "until", "1e999", id="audit-until-infinite"),
    pytest.param("/admin/audit", "since", "-1e300", id="audit-since-far-past"),
    pytest.param("/admin/audit", "since", "yesterday", id="audit-since-text"),
    pytest.param("/admin/audit", "actor", TEN_KB, id="audit-actor-10kb"),
    pytest.param("/admin/grants", "caller", TEN_KB, id="grants-caller-10kb"),
    pytest.param("/plugins", "status", TEN_KB, id="plugins-status-10kb"),
]


@pytest.mark.parametrize(("path", "name", "value"), BAD_QUERIES)
def test_a_bad_query_number_is_422(c: httpx.Client, path: str, name: str, value: str) -> None:
    body = assert_problem(c.get(path, params={name: value}), 422, "invalid_query")
    assert [e["path"] for e in body["errors"]] == [f"?{name}"]


def test_the_explainer_names_its_missing_query_parameters(c: httpx.Client) -> None:
    body = assert_problem(
        c.get("/admin/policy/explain", params={"caller": "a"}), 422, "invalid_query"
    )
    assert [(e["path"], e["code"]) for e in body["errors"]] == [
        ("?target", "missing"),
        ("?path", "missing"),
    ]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        pytest.param("/admin/config/revisions", {"limit": "5", "before": str(MAX_INT)}, id="rev"),
        pytest.param("/admin/audit", {"limit": "1000", "since": "0"}, id="audit"),
        pytest.param("/admin/audit", {"until": "2030-01-01T00:00:00Z"}, id="audit-iso"),
    ],
)
def test_numbers_at_the_bounds_are_accepted(
    c: httpx.Client, path: str, params: dict[str, str]
) -> None:
    r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["items"], list)


def _request(path_params: dict[str, str] | None = None, query: bytes = b"") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "query_string": query,
        "path_params": path_params or {},
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("1", 1, id="one"),
        pytest.param(str(MAX_INT), MAX_INT, id="max"),
        pytest.param("007", 7, id="leading-zeros"),
        pytest.param(TOO_BIG, None, id="max-plus-one"),
        pytest.param("0", None, id="zero"),
        pytest.param("+1", None, id="plus-sign"),
        pytest.param(" 1", None, id="space"),
        pytest.param("\u0661", None, id="non-ascii-digit"),
        pytest.param("1" * 10_000, None, id="ten-thousand-digits"),
    ],
)
def test_path_int_bounds(raw: str, expected: int | None) -> None:
    request = _request({"rev": raw})
    if expected is None:
        with pytest.raises(Problem) as caught:
            path_int(request, "rev", "revision")
        assert (caught.value.status, caught.value.code) == (404, "not_found")
    else:
        assert path_int(request, "rev", "revision") == expected


def test_query_helpers_default_and_reject() -> None:
    assert query_int(_request(query=b"limit="), "limit", 100) == 100
    assert query_int(_request(query=b"limit=7"), "limit", 100, hi=10) == 7
    with pytest.raises(Problem) as caught:
        query_int(_request(query=b"limit=11"), "limit", 100, hi=10)
    assert (caught.value.status, caught.value.code) == (422, "invalid_query")
    assert query_time(_request(query=b"since=1700000000.5"), "since") == 1700000000.5
    with pytest.raises(Problem):
        query_time(_request(query=b"since=inf"), "since")
