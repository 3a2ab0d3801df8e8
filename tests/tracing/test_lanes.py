"""A caller's traceparent across the operator and event lanes of a real gateway: it reaches
the target and the event subscriber (with core's span as the parent), and every audit record
of the call names the trace. An invalid traceparent is replaced by a new trace."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.audit import wait_for_audit
from support.events import consumers_ready
from support.manifests import seed, simple
from support.procs import (
    CoreProcess,
    enable,
    register_all,
)
from support.upstream import serve_in_thread
from support.waiting import eventually

from vivified.config.nats_server import ManagedNats
from vivified.policy.tracecontext import parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
CALLER_PARENT = f"00-{TRACE}-{PARENT}-01"
USER = {"user_id": "u1", "username": "ada"}


@dataclass
class Recorder:
    """The target plugin and the subscriber's webhook: both keep what reached them."""

    calls: list[dict[str, str]] = field(default_factory=list)
    events: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)

    async def item(self, request: Request) -> Response:
        self.calls.append(dict(request.headers))
        return JSONResponse({"ok": True})

    async def hook(self, request: Request) -> Response:
        self.events.append((await request.json(), dict(request.headers)))
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/items/{id}", self.item, methods=["GET"]),
                Route("/events", self.hook, methods=["POST"]),
            ]
        )


@dataclass
class World:
    gw: CoreProcess
    rec: Recorder
    tokens: dict[str, str]
    client: httpx.Client

    def call(self, headers: dict[str, str]) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.tokens['alpha']}"}
        return self.client.get("/beta/items/1", headers={**auth, **headers})

    def publish(self, headers: dict[str, str]) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.tokens['hr-app']}"}
        body = {"type": "UserCreated", "data": USER}
        return self.client.post("/events", json=body, headers={**auth, **headers})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = Path(tmp_path_factory.mktemp("tracing"))
    nats = ManagedNats(tmp / "nats")
    env = {"VIVIFIED_NATS_URL": nats.start(), "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01"}
    rec = Recorder()
    gw: CoreProcess | None = None
    try:
        gw = CoreProcess("gateway", tmp / "gw", env).start()
        with (
            serve_in_thread(rec.app()) as url,
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
        ):
            manifests = [
                simple("beta", base_url=url),
                simple("alpha", dependencies=["beta"]),
                seed(id="hr-app", contracts=["HrPlugin"], events={"publishes": ["UserCreated"]}),
                seed(
                    id="acct",
                    contracts=["AccountingPlugin"],
                    base_url=url,
                    endpoints={"events": "/events"},
                    events={"subscribes": ["UserCreated"]},
                ),
            ]
            tokens = register_all(c, manifests)
            enable(c, "hr-app", "acct")

            eventually(lambda: consumers_ready(gw, "acct"))
            yield World(gw, rec, tokens, c)
    finally:
        if gw is not None:
            gw.stop()
        nats.stop()


def _continued(sent_on: str, trace: str) -> str:
    """The span id core named as the parent, after checking the trace is `trace`."""
    parsed = parse_traceparent(sent_on)
    assert parsed is not None, sent_on
    assert parsed[0] == trace
    return parsed[1]


def test_operator_lane_passes_the_callers_trace_to_the_target(world: World) -> None:
    r = world.call({"traceparent": CALLER_PARENT, "tracestate": "vendor=1"})
    assert r.status_code == 200, r.text
    seen = world.rec.calls[-1]
    core_span = _continued(seen["traceparent"], TRACE)
    assert core_span != PARENT  # core is a span of its own, the caller's span its parent
    assert seen["tracestate"] == "vendor=1"
    rid = r.headers["x-vivified-request-id"]
    (record,) = wait_for_audit(
        world.client, lane="operator", where=lambda rec: rec["request_id"] == rid
    )
    assert (record["decision"], record["status"]) == ("allow", 200)
    assert record["detail"]["trace_id"] == TRACE


def test_operator_lane_refusal_is_recorded_with_the_trace(world: World) -> None:
    r = world.client.get(
        "/beta/items/1", headers={"traceparent": CALLER_PARENT, "Authorization": "Bearer bad"}
    )
    assert r.status_code == 401, r.text
    rid = r.headers["x-vivified-request-id"]
    (record,) = wait_for_audit(
        world.client, lane="operator", where=lambda rec: rec["request_id"] == rid
    )
    assert record["decision"] == "deny"
    assert record["detail"]["trace_id"] == TRACE


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(f"00-{'0' * 32}-{PARENT}-01", id="zero-trace"),
        pytest.param(f"01-{TRACE}-{PARENT}-01", id="other-version"),
        pytest.param(f"00-{TRACE.upper()}-{PARENT}-01", id="upper-case"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_operator_lane_replaces_an_invalid_traceparent(world: World, bad: str) -> None:
    r = world.call({"traceparent": bad, "tracestate": "vendor=1"})
    assert r.status_code == 200, r.text
    seen = world.rec.calls[-1]
    parsed = parse_traceparent(seen["traceparent"])
    assert parsed is not None, seen["traceparent"]
    new_trace = parsed[0]
    assert new_trace not in (TRACE, "0" * 32)
    assert "tracestate" not in seen  # it belonged to the trace that was dropped
    rid = r.headers["x-vivified-request-id"]
    (record,) = wait_for_audit(
        world.client, lane="operator", where=lambda rec: rec["request_id"] == rid
    )
    assert record["detail"]["trace_id"] == new_trace


def test_a_call_without_traceparent_starts_a_trace(world: World) -> None:
    r = world.call({})
    assert r.status_code == 200, r.text
    parsed = parse_traceparent(world.rec.calls[-1]["traceparent"])
    assert parsed is not None
    rid = r.headers["x-vivified-request-id"]
    (record,) = wait_for_audit(
        world.client, lane="operator", where=lambda rec: rec["request_id"] == rid
    )
    assert record["detail"]["trace_id"] == parsed[0]


def test_event_carries_the_trace_to_the_subscriber(world: World) -> None:
    r = world.publish({"traceparent": CALLER_PARENT, "tracestate": "vendor=2"})
    assert r.status_code == 202, r.text
    eid = r.json()["id"]
    eventually(lambda: any(e["id"] == eid for e, _ in world.rec.events))
    event, headers = next((e, h) for e, h in world.rec.events if e["id"] == eid)
    # the CloudEvents distributed-tracing extension: core's publish span as the parent
    publish_span = _continued(event["traceparent"], TRACE)
    assert publish_span != PARENT
    assert event["tracestate"] == "vendor=2"
    # the delivery request itself: the same trace, a span of its own under the publish span
    delivery_span = _continued(headers["traceparent"], TRACE)
    assert delivery_span not in (PARENT, publish_span)
    records = wait_for_audit(
        world.client,
        count=2,
        lane="events",
        where=lambda rec: rec["request_id"] == eid and rec["action"] in ("publish", "deliver"),
    )
    assert sorted(rec["action"] for rec in records) == ["deliver", "publish"]
    assert {rec["detail"]["trace_id"] for rec in records} == {TRACE}


def test_event_with_invalid_traceparent_gets_a_new_trace(world: World) -> None:
    r = world.publish({"traceparent": f"00-{TRACE}-{'0' * 16}-01"})
    assert r.status_code == 202, r.text
    eid = r.json()["id"]
    eventually(lambda: any(e["id"] == eid for e, _ in world.rec.events))
    event, headers = next((e, h) for e, h in world.rec.events if e["id"] == eid)
    parsed = parse_traceparent(event["traceparent"])
    assert parsed is not None
    assert parsed[0] != TRACE
    assert parse_traceparent(headers["traceparent"])[:1] == parsed[:1]  # type: ignore[index]
    records = wait_for_audit(
        world.client,
        count=2,
        lane="events",
        where=lambda rec: rec["request_id"] == eid and rec["action"] in ("publish", "deliver"),
    )
    assert {rec["detail"]["trace_id"] for rec in records} == {parsed[0]}
