"""Audit levels on the event lane: the publish record (publisher's level) and the delivery
record (strictest of publisher and subscriber) hold exactly their level's fields."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.audit import EACH_LEVEL, audit_barrier, audit_records, wait_for_audit
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread
from support.waiting import eventually

from vivified.config.nats_server import ManagedNats
from vivified.policy.audit_levels import COMPLETE_FIELDS

LEVELS = ("none", "basic", "detailed", "complete")
PUBLISH_BASE: set[str] = set()
DELIVERY_BASE = {"type", "attempt"}
ANSWER = b'{"ok":true}'


@dataclass
class Hook:
    got: dict[str, list[bytes]] = field(default_factory=dict)

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        self.got.setdefault(request.path_params["who"], []).append(body)
        return Response(ANSWER, media_type="application/json")


@dataclass
class Rig:
    client: httpx.Client
    hook: Hook
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = Path(tmp_path_factory.mktemp("evlevels"))
    nats = ManagedNats(tmp / "nats")
    url = nats.start()
    env = {"VIVIFIED_NATS_URL": url, "VIVIFIED_DATABASE_URL": f"sqlite:///{tmp}/r.db"}
    gw = CoreProcess("gateway", tmp / "gw", env).start()
    hook = Hook()
    app = Starlette(routes=[Route("/events/{who}", hook.receive, methods=["POST"])])
    try:
        with (
            serve_in_thread(app) as hook_url,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            tokens = {}
            for level in LEVELS:
                compliance = {"hipaa_controls": [], "audit_level": level}
                for m in (
                    simple(
                        f"pub-{level}",
                        traits=["reports"],
                        compliance=compliance,
                        events={"publishes": ["FileStored"]},
                    ),
                    simple(
                        f"sub-{level}",
                        traits=["reports"],
                        compliance=compliance,
                        base_url=hook_url,
                        endpoints={"health": "/health", "events": f"/events/sub-{level}"},
                        events={"subscribes": ["FileStored"]},
                    ),
                ):
                    r = register(c, m, registration_token(c))
                    assert r.status_code == 201, r.text
                    tokens[m["id"]] = r.json()["token"]

            def ready() -> bool:
                items = c.get("/admin/events/subscribers", headers=admin_headers()).json()["items"]
                return len([i for i in items if i.get("pending") == 0]) == len(LEVELS)

            eventually(ready)
            yield Rig(c, hook, tokens)
    finally:
        gw.stop()
        nats.stop()


@EACH_LEVEL
def test_each_level_records_exactly_its_fields(
    rig: Rig, level: str, added: frozenset[str] | None
) -> None:
    c = rig.client
    body = json.dumps({"type": "FileStored", "data": {"file_id": f"f-{level}", "size": 3}}).encode()
    auth = {"Authorization": f"Bearer {rig.tokens[f'pub-{level}']}"}
    r = c.post("/events", content=body, headers={**auth, "content-type": "application/json"})
    assert r.status_code == 202, r.text
    eid = r.json()["id"]
    refused = c.post(
        "/events", json={"type": "UserDeleted", "data": {"user_id": "u"}}, headers=auth
    )
    assert refused.json()["reason"] == "not_declared"
    eventually(
        lambda: any(eid.encode() in b for b in rig.hook.got.get(f"sub-{level}", [])), timeout=15
    )
    (denial,) = wait_for_audit(
        c, lane="events", actor=f"pub-{level}", decision="deny", action="publish"
    )
    assert denial["reason"] == "not_declared"  # recorded at every level, `none` included
    if added is None:
        # Barrier: a later event from a `basic` publisher reaches sub-none on the same
        # ordering lane (one type, no subject) and is recorded; records are written in order.
        basic = {"Authorization": f"Bearer {rig.tokens['pub-basic']}"}
        later = c.post(
            "/events",
            json={"type": "FileStored", "data": {"file_id": "x", "size": 1}},
            headers=basic,
        )
        assert later.status_code == 202, later.text
        later_id = later.json()["id"]
        wait_for_audit(
            c, lane="events", target="sub-none", where=lambda rec: rec["request_id"] == later_id
        )
        audit_barrier(c)
        mine = [
            rec
            for rec in audit_records(c, lane="events")
            if rec["request_id"] == eid
            and (rec["actor"], rec["target"])
            in {(f"pub-{level}", "FileStored"), ("core:events", f"sub-{level}")}
        ]
        assert mine == []
        return
    (published,) = wait_for_audit(
        c,
        lane="events",
        action="publish",
        actor=f"pub-{level}",
        where=lambda rec: rec["request_id"] == eid,
    )
    assert set(published["detail"]) & COMPLETE_FIELDS == added  # exactly the level's own
    assert set(published["detail"]) >= PUBLISH_BASE
    (delivered,) = wait_for_audit(
        c,
        lane="events",
        action="deliver",
        target=f"sub-{level}",
        where=lambda rec: rec["request_id"] == eid,
    )
    assert set(delivered["detail"]) & COMPLETE_FIELDS == added
    assert set(delivered["detail"]) >= DELIVERY_BASE
    if added:
        assert published["detail"]["request_size"] == len(body)
        assert published["detail"]["policy"]["classification"] == "internal"
        assert delivered["detail"]["response_size"] == len(ANSWER)
        assert delivered["detail"]["response_content_type"] == "application/json"
        assert delivered["detail"]["request_content_type"] == "application/cloudevents+json"
    if "request_sha256" in added:
        assert published["detail"]["request_sha256"] == hashlib.sha256(body).hexdigest()
        assert delivered["detail"]["response_sha256"] == hashlib.sha256(ANSWER).hexdigest()
        sent = next(b for b in rig.hook.got[f"sub-{level}"] if eid.encode() in b)
        assert delivered["detail"]["request_sha256"] == hashlib.sha256(sent).hexdigest()
        assert "x-vivified-assertion" in delivered["detail"]["request_headers"]
        assert "authorization" in published["detail"]["request_headers"]
