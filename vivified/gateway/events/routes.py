"""The canonical event lane over HTTP: catalogue, publish, dead letters and delivery stats."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.admin.record import record_admin_action
from vivified.gateway.bodies import json_object, read_capped, read_json
from vivified.gateway.core import Core
from vivified.gateway.events.stream import StreamUnavailable, cloud_event
from vivified.gateway.middleware import request_id
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.params import path_int
from vivified.gateway.problems import Problem, event_status
from vivified.gateway.tracing import event_extension, trace_of, with_trace
from vivified.policy.audit_levels import level_detail, records
from vivified.policy.decision import Decision
from vivified.policy.events import decide_publish
from vivified.registry.audit.records import record_action
from vivified.registry.event_catalogue import EventType, catalogue_json, data_problems, event_type
from vivified.registry.identity.tokens import PluginClaims
from vivified.registry.store.snapshot import PluginView, Snapshot

EVENT_BODY_CAP = 256 * 1024
EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
RETRY_AFTER = {"Retry-After": "2"}


async def list_types(_request: Request) -> Response:
    return JSONResponse(catalogue_json())


def _field_problems(body: dict[str, Any]) -> list[dict[str, str]]:
    problems = [
        {"path": f"/{k}", "code": "unknown_field", "message": "known: type, data, id, subject"}
        for k in body
        if k not in {"type", "data", "id", "subject"}
    ]
    if not isinstance(body.get("type"), str):
        problems.append({"path": "/type", "code": "missing_field", "message": "type is required"})
    if "data" not in body:
        problems.append({"path": "/data", "code": "missing_field", "message": "data is required"})
    eid = body.get("id")
    if eid is not None and (not isinstance(eid, str) or not EVENT_ID.match(eid)):
        problems.append(
            {"path": "/id", "code": "invalid_id", "message": "id: 1-128 of A-Z a-z 0-9 . _ : -"}
        )
    subject = body.get("subject")
    if subject is not None and (not isinstance(subject, str) or len(subject) > 256):
        problems.append({"path": "/subject", "code": "invalid_subject", "message": "≤ 256 chars"})
    return problems


async def publish(request: Request) -> Response:
    core = auth.core_of(request)
    started = time.perf_counter()
    claims = await auth.plugin_claims(request)
    try:  # fair sharing: the caller's rate and concurrency (vivified.gateway.operator.limits)
        held = core.limits.admit(claims.plugin_id)
    except LaneError as exc:
        await record_action(
            core.audit,
            lane="events",
            action="publish",
            actor=claims.plugin_id,
            target="",
            decision="deny",
            reason=exc.code,
            request_id=request_id(request),
            status=429,
            started=started,
        )
        raise Problem.of(exc) from exc
    try:
        return await _publish(request, core, claims, started)
    finally:
        if held:
            core.limits.release(claims.plugin_id)


async def _publish(request: Request, core: Core, claims: PluginClaims, started: float) -> Response:
    raw = await read_capped(request, EVENT_BODY_CAP)
    setattr(request, "_body", raw)  # noqa: B010 -- Starlette serves the read body from it
    body = json_object(await read_json(request, EVENT_BODY_CAP))
    problems = _field_problems(body)
    if problems:
        raise Problem(422, "the event is invalid", code="invalid_event", errors=problems)
    kind = body["type"]
    known = event_type(kind)
    snap = core.snapshot.current
    view, declared, decision = _may_publish(snap, claims.plugin_id, kind, known)
    if not decision:  # decided on a snapshot that may be behind the registry: confirm
        fresh = await core.snapshot.confirm()
        if fresh is not snap:
            view, declared, decision = _may_publish(fresh, claims.plugin_id, kind, known)

    level = view.audit_level if view else "basic"  # the publisher alone: subscribers come later

    async def record(decision_: str, reason: str, status: int, eid: str = "") -> None:
        if core.metrics is not None:  # a type neither known nor declared is `unknown`
            core.metrics.publish(
                kind if known or kind in declared else "unknown", decision_, reason
            )
        if not records(level, decision_):
            return
        policy = {
            "decided_by": decision.reason,
            "publisher_traits": sorted(view.traits) if view else [],
            "classification": known.classification if known else None,
            "grant": None,
        }
        await record_action(
            core.audit,
            lane="events",
            action="publish",
            actor=claims.plugin_id,
            target=kind,
            decision=decision_,
            reason=reason,
            request_id=eid or request_id(request),
            status=status,
            started=started,
            detail=with_trace(
                publish_facts(level, request, raw, status, policy), trace_of(request)
            ),
        )

    if not decision:
        status = event_status(decision.reason)
        await record("deny", decision.reason, status)
        errors = [{"path": "/type", "code": decision.reason, "message": decision.detail}]
        raise Problem(
            status, decision.detail, code=decision.reason, errors=errors if status == 422 else None
        )
    problems = data_problems(kind, body["data"])
    if problems:
        await record("deny", "invalid_data", 422)
        raise Problem(
            422, "the data does not match the event's schema", code="invalid_data", errors=problems
        )
    event = cloud_event(
        event_id=body.get("id"),
        type_=kind,
        source=f"vivified://plugins/{claims.plugin_id}",
        data=body["data"],
        subject=body.get("subject"),
        extensions=event_extension(trace_of(request)),
    )
    try:
        duplicate = await core.events.publish(event)
    except StreamUnavailable as exc:
        await record("deny", "stream_unavailable", 503, event["id"])
        raise Problem(
            503,
            "the event bus is unavailable; retry shortly",
            code="stream_unavailable",
            headers=RETRY_AFTER,
        ) from exc
    await record("allow", "duplicate" if duplicate else "accepted", 202, event["id"])
    return JSONResponse({"id": event["id"]}, status_code=202)


def _may_publish(
    snap: Snapshot, plugin_id: str, kind: str, known: EventType | None
) -> tuple[PluginView | None, list[str], Decision]:
    """The publisher as `snap` sees it, the event types it declares, and the decision on an
    event of `kind` (`known`: its catalogue entry)."""
    view = snap.plugins.get(plugin_id)
    events = (view.manifest.get("events") or {}) if view else {}
    declared = events.get("publishes", []) if isinstance(events, dict) else []
    decision = decide_publish(
        status=view.status if view else "unknown",
        declared=declared,
        event_type=kind,
        known=known is not None,
        health=view.health if view else "unknown",
        classification=known.classification if known else "internal",
    )
    return view, declared, decision


def publish_facts(
    level: str, request: Request, raw: bytes, status: int, policy: dict[str, Any]
) -> dict[str, Any]:
    """What the publisher's audit level adds to the publish record (see policy.audit_levels);
    the answer is sent after the record, so its size and hash are not known (None)."""
    if level in ("none", "basic"):
        return {}
    facts = {
        "params": [],
        "request_size": len(raw),
        "request_content_type": request.headers.get("content-type"),
        "response_size": None,
        "response_content_type": "application/json"
        if status == 202
        else "application/problem+json",
        "policy": policy,
        "request_headers": sorted({k.lower() for k in request.headers}),
        "request_sha256": hashlib.sha256(raw).hexdigest(),
        "response_headers": None,
        "response_sha256": None,
    }
    return level_detail(level, facts)


async def dead_letters(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "plugins:manage")
    try:
        items = await core.events.list_dead_letters()
    except StreamUnavailable as exc:
        raise Problem(
            503, "the event bus is unavailable", code="stream_unavailable", headers=RETRY_AFTER
        ) from exc
    return JSONResponse({"items": items})


async def find_dead_letter(core: Core, seq: int) -> dict[str, Any]:
    """Dead letter `seq` (404 when there is none, 503 without the event bus)."""
    try:
        items = {i["seq"]: i for i in await core.events.list_dead_letters(limit=10_000)}
    except StreamUnavailable as exc:
        raise Problem(
            503, "the event bus is unavailable", code="stream_unavailable", headers=RETRY_AFTER
        ) from exc
    if seq not in items:
        raise Problem(404, f"no dead letter {seq}", code="not_found")
    return items[seq]


async def replay(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "plugins:manage")
    seq = path_int(request, "seq", "dead letter")
    if core.dispatcher is None:
        raise Problem(503, "events need NATS", code="stream_unavailable", headers=RETRY_AFTER)
    item = await find_dead_letter(core, seq)
    ok, status, error = await core.dispatcher.replay(seq, item)
    if not ok:
        raise Problem(502, f"the subscriber did not accept it ({error})", code="delivery_failed")
    return JSONResponse({"seq": seq, "delivered": True, "status": status})


async def discard_dead_letter(request: Request, actor: str, seq: int) -> dict[str, Any]:
    """Drop dead letter `seq` for good, audited as an admin action of `actor`."""
    core = auth.core_of(request)
    item = await find_dead_letter(core, seq)
    try:
        await core.events.delete_dead_letter(seq)
    except Exception as exc:  # the bus went away between the lookup and the delete
        raise Problem(
            503, "the event bus is unavailable", code="stream_unavailable", headers=RETRY_AFTER
        ) from exc
    event = item.get("event") or {}
    await record_admin_action(
        request,
        actor,
        "dead_letter_discard",
        item["subscriber"],
        204,
        reason="discarded",
        detail={"seq": seq, "event": str(event.get("id", "")), "type": str(event.get("type", ""))},
    )
    return item


async def discard(request: Request) -> Response:
    principal = await auth.admin(request, "plugins:manage")
    seq = path_int(request, "seq", "dead letter")
    await discard_dead_letter(request, principal.actor, seq)
    return Response(status_code=204)


async def subscribers(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "plugins:manage")
    if core.dispatcher is None:
        return JSONResponse({"items": []})
    try:
        return JSONResponse({"items": await core.dispatcher.lag()})
    except StreamUnavailable as exc:
        raise Problem(
            503, "the event bus is unavailable", code="stream_unavailable", headers=RETRY_AFTER
        ) from exc


ROUTES = [
    Route("/events/types", list_types, methods=["GET"]),
    Route("/events", publish, methods=["POST"]),
    Route("/admin/events/dead-letters", dead_letters, methods=["GET"]),
    Route("/admin/events/dead-letters/{seq}/replay", replay, methods=["POST"]),
    Route("/admin/events/dead-letters/{seq}", discard, methods=["DELETE"]),
    Route("/admin/events/subscribers", subscribers, methods=["GET"]),
]
