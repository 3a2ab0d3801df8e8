"""One error model: every domain error carries a code (never a status), the gateway's tables
give each code its status, and one serialiser answers it as problem+json on every path
(Starlette's handlers, `problems.direct`, the operator lane's raw ASGI answer)."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from support.upstream import serve_in_thread

import vivified
from vivified.config.documents import ConfigError
from vivified.gateway import problems
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.problems import (
    EVENT_STATUS,
    EXCEPTION_HANDLERS,
    MEDIA_TYPE,
    STATUS_TABLES,
    direct,
    event_status,
    send_problem,
    status_of,
)
from vivified.policy import events as policy_events
from vivified.policy import operator as policy_operator
from vivified.registry.errors import DomainError
from vivified.registry.identity.admins import AdminError
from vivified.registry.identity.tokens import TOKEN_ERROR_CODES, TokenError
from vivified.registry.plugins.reregistration import RegistryError

SOURCE = Path(vivified.__file__).parent
DOMAIN_CLASSES: dict[str, type[DomainError]] = {
    cls.__name__: cls for cls in (RegistryError, TokenError, AdminError, ConfigError, LaneError)
}
WWW_AUTHENTICATE = 'Bearer realm="vivified"'


# -- every code raised anywhere has a status -------------------------------------------------


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(SOURCE.rglob("*.py")):
        rel = path.relative_to(SOURCE)
        if rel.parts[0] == "egress":  # the egress proxy answers its own refusals
            continue
        yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _called(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def raised_codes() -> list[tuple[str, str, str]]:
    """(class name, first argument as source, where) of every `XError(...)` call in vivified/."""
    found = []
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called(node) in DOMAIN_CLASSES and node.args:
                found.append((_called(node), ast.unparse(node.args[0]), f"{rel}:{node.lineno}"))
    return found


def deny_reasons(module: Path, function: str, maker: str = "deny") -> set[str]:
    """The string constants of every `…deny("code", …)` (or `maker(...)`) call in `function`."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    body = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function
    )
    reasons = set()
    for node in ast.walk(body):
        if isinstance(node, ast.Call) and _called(node) == maker:
            for arg in node.args[:2]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    reasons.add(arg.value)
                    break
    assert reasons, f"no {maker}() calls found in {module.name}:{function}"
    return reasons


def test_domain_errors_carry_a_code_never_a_status() -> None:
    calls = raised_codes()
    assert {name for name, _, _ in calls} == set(DOMAIN_CLASSES)
    statuses = [(name, first, where) for name, first, where in calls if first.isdigit()]
    assert statuses == [], "a domain error carries a code; the gateway's tables give the status"


def test_every_raised_code_has_a_status() -> None:
    missing = []
    for name, first, where in raised_codes():
        code = ast.literal_eval(first) if first.startswith(("'", '"')) else None
        if code is None:
            continue  # a code passed on (e.g. `exc.code`, `decision.reason`): checked below
        if code not in STATUS_TABLES[DOMAIN_CLASSES[name]]:
            missing.append((name, code, where))
    assert missing == []


LANE_REASONS = [
    pytest.param(SOURCE / "policy/operator.py", "decide_call", "deny", id="operator-policy"),
    pytest.param(SOURCE / "policy/paths.py", "check_raw_path", "deny", id="raw-path"),
    pytest.param(SOURCE / "gateway/operator/routes.py", "resolve", "Resolution", id="resolve"),
]


@pytest.mark.parametrize(("module", "function", "maker"), LANE_REASONS)
def test_every_lane_refusal_reason_has_a_status(module: Path, function: str, maker: str) -> None:
    lane = STATUS_TABLES[LaneError]
    assert sorted(deny_reasons(module, function, maker) - set(lane)) == []


def test_every_publish_refusal_reason_has_a_status() -> None:
    reasons = deny_reasons(SOURCE / "policy/events.py", "decide_publish")
    assert sorted(reasons - set(EVENT_STATUS)) == []


def test_every_token_refusal_is_a_401_on_every_lane() -> None:
    for code in TOKEN_ERROR_CODES:
        assert STATUS_TABLES[TokenError][code] == 401
        assert STATUS_TABLES[LaneError][code] == 401


def test_policy_knows_no_http() -> None:
    for module in (policy_operator, policy_events):
        assert not hasattr(module, "STATUS")
        assert not hasattr(module, "status_for")


# -- the tables ------------------------------------------------------------------------------

LANE_STATUS = [
    pytest.param("unknown_target", 404, id="unknown-target"),
    pytest.param("target_not_active", 503, id="target-not-active"),
    pytest.param("target_unhealthy", 503, id="target-unhealthy"),
    pytest.param("not_permitted", 403, id="not-permitted"),
    pytest.param("pii_trait_required", 403, id="pii-trait"),
    pytest.param("caller_not_active", 403, id="caller-not-active"),
    pytest.param("unknown_caller", 403, id="unknown-caller"),
    pytest.param("phi_trait_required", 403, id="phi-trait"),
    pytest.param("caller_unhealthy", 403, id="caller-unhealthy"),
    pytest.param("ambiguous_contract", 409, id="ambiguous-contract"),
    pytest.param("endpoint_not_declared", 404, id="endpoint-not-declared"),
    pytest.param("dot_segment", 400, id="raw-path"),
    pytest.param("expired", 401, id="token"),
    pytest.param("circuit_open", 503, id="circuit-open"),
    pytest.param("upstream_timeout", 504, id="upstream-timeout"),
    pytest.param("upstream_refused", 502, id="upstream-refused"),
    pytest.param("body_too_large", 413, id="body-too-large"),
]


@pytest.mark.parametrize(("reason", "status"), LANE_STATUS)
def test_lane_status(reason: str, status: int) -> None:
    assert status_of(LaneError(reason, "x")) == status


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        pytest.param("unknown_event_type", 422, id="unknown-type"),
        pytest.param("publisher_not_active", 403, id="not-active"),
        pytest.param("not_declared", 403, id="not-declared"),
        pytest.param("publisher_unhealthy", 403, id="unhealthy"),
    ],
)
def test_event_status(reason: str, status: int) -> None:
    assert event_status(reason) == status


# -- one answer for each domain error, on every path -----------------------------------------

PROBLEMS = {"path": "/x", "code": "invalid_type", "message": "expected a list"}
CASES: dict[str, tuple[DomainError, int, dict[str, str]]] = {
    "registry-taken": (RegistryError("plugin_id_taken", "taken"), 409, {}),
    "registry-missing-token": (
        RegistryError("missing_token", "send a token"),
        401,
        {"www-authenticate": WWW_AUTHENTICATE},
    ),
    "registry-invalid": (RegistryError("invalid_manifest", "1 problem", [PROBLEMS]), 422, {}),
    "registry-not-found": (RegistryError("not_found", "no plugin 'x'"), 404, {}),
    "token-expired": (
        TokenError("expired", "expired"),
        401,
        {"www-authenticate": WWW_AUTHENTICATE},
    ),
    "admin-not-held": (AdminError("scope_not_held", "not held"), 403, {}),
    "admin-not-found": (AdminError("not_found", "no such admin user"), 404, {}),
    "admin-taken": (AdminError("name_taken", "exists"), 409, {}),
    "admin-unknown-scope": (AdminError("unknown_scope", "unknown"), 422, {}),
    "config-stale": (ConfigError("stale_version", "changed"), 412, {}),
    "config-invalid": (ConfigError("invalid_allowlist", "invalid", [PROBLEMS]), 422, {}),
    "config-not-found": (ConfigError("not_found", "no revision 9"), 404, {}),
    "lane-denied": (LaneError("not_permitted", "ask for a grant"), 403, {}),
    "lane-circuit": (
        LaneError("circuit_open", "failing", retry_after=7.2),
        503,
        {"retry-after": "8"},
    ),
    "lane-audit": (LaneError("audit_unavailable", "full"), 503, {"retry-after": "5"}),
    "lane-token": (LaneError("revoked", "revoked"), 401, {"www-authenticate": WWW_AUTHENTICATE}),
}


def expected_body(exc: DomainError, status: int) -> str:
    """The problem document exactly as core has always written it."""
    doc: dict[str, Any] = {
        "type": "https://vivified.dev/problems/" + exc.code,
        "title": {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}.get(
            status,
            {412: "Precondition Failed", 422: "Unprocessable Entity"}.get(
                status, "Service Unavailable"
            ),
        ),
        "status": status,
        "detail": exc.message,
        "reason": exc.code,
    }
    if exc.errors is not None:
        doc["errors"] = list(exc.errors)
    return json.dumps(doc, separators=(",", ":"))


async def raising(request: Request) -> Response:
    raise CASES[request.query_params["case"]][0]


async def lane_app(scope: Scope, receive: Receive, send: Send) -> None:
    case = scope["query_string"].decode().removeprefix("case=")
    exc = CASES[case][0]
    await send_problem(send, exc, "rid-1")


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    routed = Starlette(routes=[Route("/raise", raising)], exception_handlers=EXCEPTION_HANDLERS)
    with (
        serve_in_thread(routed) as a,
        serve_in_thread(direct(raising)) as b,
        serve_in_thread(lane_app) as c,
    ):
        yield {"router": a + "/raise", "direct": b, "lane": c}


ANSWERS = [
    pytest.param(path, case, id=f"{path}-{case}")
    for case, (exc, _, _) in CASES.items()
    for path in ("router", "direct", "lane")
    # the operator lane answers only its own refusals and the caller's token's
    if path != "lane" or isinstance(exc, LaneError | TokenError)
]


@pytest.mark.parametrize(("path", "case"), ANSWERS)
def test_domain_error_answers_problem_json(urls: dict[str, str], path: str, case: str) -> None:
    exc, status, headers = CASES[case]
    r = httpx.get(urls[path], params={"case": case}, trust_env=False)
    assert r.status_code == status
    assert r.headers["content-type"].split(";")[0] == MEDIA_TYPE
    assert r.text == expected_body(exc, status)
    assert r.json()["reason"] == exc.code
    for name, value in headers.items():
        assert r.headers[name] == value
    for name in {"www-authenticate", "retry-after"} - set(headers):
        assert name not in r.headers
    if path == "lane":
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-vivified-request-id"] == "rid-1"


def test_every_domain_class_has_a_table() -> None:
    assert set(STATUS_TABLES) == set(DOMAIN_CLASSES.values())
    assert problems.status_of(RegistryError("plugin_id_taken", "x")) == 409
