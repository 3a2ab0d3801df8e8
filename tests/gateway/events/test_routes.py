"""The canonical event lane over real processes: gateway(s), embedded nats-server, webhooks.

The lane's registry is SQLite; the tests that write and read it most (registration and
publish → deliver, per-publisher deduplication and its audit, dead letter → replay, two
replicas on one registry) also run on a fresh PostgreSQL database (`BACKENDS`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.backends import BACKENDS, registry_url
from support.events import Hook, consumers_ready, settled
from support.manifests import seed, simple
from support.procs import (
    CoreProcess,
    admin_headers,
    enable,
    register,
    register_all,
    registration_token,
)
from support.upstream import serve_in_thread
from support.waiting import eventually
from vivified_sdk.assertion import verify_assertion

from vivified.config.nats_server import ManagedNats

FAST = {"VIVIFIED_EVENT_RETRY_BASE": "0.2", "VIVIFIED_EVENT_MAX_ATTEMPTS": "5"}
USER = {"user_id": "u1", "username": "ada"}


@dataclass
class Lane:
    nats: ManagedNats
    nats_port: int
    env: dict[str, str]
    gw: CoreProcess
    hook: Hook
    tokens: dict[str, str]

    def publish(self, body: dict[str, Any], who: str = "hr-app") -> httpx.Response:
        return httpx.post(
            self.gw.url + "/events",
            json=body,
            trust_env=False,
            timeout=10,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )


@pytest.fixture
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The lane's registry URL: SQLite unless a test parametrises it (indirect) over BACKENDS."""
    with registry_url(getattr(request, "param", "sqlite")) as url:
        yield url or f"sqlite:///{tmp_path}/registry.db"


ON_BOTH = pytest.mark.parametrize("registry", BACKENDS, indirect=True)


@pytest.fixture
def lane(tmp_path: Path, registry: str) -> Iterator[Lane]:
    nats = ManagedNats(tmp_path / "nats")
    url = nats.start()
    env = {**FAST, "VIVIFIED_NATS_URL": url, "VIVIFIED_DATABASE_URL": registry}
    hook = Hook()
    gw = CoreProcess("gateway", tmp_path / "gw", env).start()
    try:
        with (
            serve_in_thread(hook.app()) as hook_url,
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
        ):
            plugins = [
                seed(
                    id="hr-app",
                    contracts=["HrPlugin"],
                    events={"publishes": ["UserCreated", "FileStored"]},
                ),
                seed(
                    id="acct",
                    contracts=["AccountingPlugin"],
                    base_url=hook_url,
                    endpoints={"events": "/events"},
                    events={"subscribes": ["UserCreated"]},
                ),
                simple(
                    "files",
                    base_url=hook_url,
                    endpoints={"events": "/events"},
                    events={"subscribes": ["FileStored"]},
                ),
            ]
            tokens = register_all(c, plugins)
            enable(c, "hr-app", "acct")
            eventually(lambda: consumers_ready(gw, "acct", "files"))
            yield Lane(nats, int(url.rsplit(":", 1)[1]), env, gw, hook, tokens)
    finally:
        gw.stop()
        nats.stop()


def test_catalogue_lists_types_with_classification_and_schema() -> None:
    from vivified.registry.event_catalogue import catalogue_json

    types = {t["type"]: t for t in catalogue_json()["types"]}
    assert {"UserCreated", "UserUpdated", "UserDeleted", "MessageSent", "FileStored"} <= set(types)
    assert types["UserCreated"]["classification"] == "pii"
    assert types["UserCreated"]["schema"]["type"] == "object"


@ON_BOTH
def test_publish_is_delivered_with_an_assertion(lane: Lane) -> None:
    r = lane.publish({"type": "UserCreated", "data": USER})
    assert r.status_code == 202, r.text
    assert len(r.headers["x-vivified-request-id"]) == 32
    eid = r.json()["id"]
    eventually(lambda: eid in lane.hook.ids())
    event, headers = lane.hook.got[lane.hook.ids().index(eid)]
    assert {k: event[k] for k in ("specversion", "type", "source", "datacontenttype")} == {
        "specversion": "1.0",
        "type": "UserCreated",
        "source": "vivified://plugins/hr-app",
        "datacontenttype": "application/json",
    }
    assert event["data"] == USER
    jwks = httpx.get(lane.gw.url + "/.well-known/jwks.json", trust_env=False).json()
    claims = verify_assertion(
        headers["x-vivified-assertion"], jwks=jwks, audience="acct", method="POST", path="/events"
    )
    assert claims["sub"] == "hr-app"
    assert claims["rid"] == eid
    # the pii event went to acct (handles_pii) only; files (no pii trait) never saw it
    eventually(lambda: settled(lane.gw, "acct", "files"))
    assert lane.hook.ids().count(eid) == 1


@pytest.mark.parametrize(
    ("body", "who", "status", "reason"),
    [
        pytest.param(
            {"type": "NoSuchEvent", "data": {}},
            "hr-app",
            422,
            "unknown_event_type",
            id="unknown-type",
        ),
        pytest.param(
            {"type": "UserCreated", "data": {"user_id": 7}},
            "hr-app",
            422,
            "invalid_data",
            id="bad-data",
        ),
        pytest.param(
            {"type": "UserDeleted", "data": {"user_id": "u"}},
            "hr-app",
            403,
            "not_declared",
            id="undeclared",
        ),
        pytest.param(
            {"type": "FileStored", "data": {"file_id": "f", "size": 1}},
            "files",
            403,
            "not_declared",
            id="subscriber-cannot-publish",
        ),
        pytest.param(
            {"type": "UserCreated", "data": USER, "extra": 1},
            "hr-app",
            422,
            "invalid_event",
            id="unknown-field",
        ),
        pytest.param(
            {"type": "UserCreated", "data": USER, "id": "bad id!"},
            "hr-app",
            422,
            "invalid_event",
            id="bad-id",
        ),
    ],
)
def test_refused_publications(
    lane: Lane, body: dict[str, Any], who: str, status: int, reason: str
) -> None:
    r = lane.publish(body, who)
    assert r.status_code == status, r.text
    assert r.json()["reason"] == reason
    assert r.headers["content-type"] == "application/problem+json"
    assert len(r.headers["x-vivified-request-id"]) == 32  # core's id, on every answer
    if reason == "invalid_data":
        paths = {e["path"] for e in r.json()["errors"]}
        assert paths == {"/data", "/data/user_id"}


def test_same_id_twice_is_accepted_and_delivered_once(lane: Lane) -> None:
    eid = "evt-" + uuid.uuid4().hex
    for _ in range(2):
        r = lane.publish({"type": "UserCreated", "data": USER, "id": eid})
        assert (r.status_code, r.json()["id"]) == (202, eid)
    eventually(lambda: eid in lane.hook.ids())
    eventually(
        lambda: settled(lane.gw, "acct"), timeout=15
    )  # a second delivery would have come by now
    assert lane.hook.ids().count(eid) == 1


@ON_BOTH
def test_same_id_from_two_publishers_is_two_events(lane: Lane) -> None:
    """Deduplication is per publisher: another plugin reusing an id cannot suppress an event;
    each publisher repeating its own id is still stored (and delivered) once."""
    with httpx.Client(base_url=lane.gw.url, trust_env=False, timeout=30) as c:
        other = simple("uploader", events={"publishes": ["FileStored"]})
        r = register(c, other, registration_token(c))
        assert (r.status_code, r.json()["status"]) == (201, "active"), r.text
        lane.tokens["uploader"] = r.json()["token"]
    eid = "file-777-" + uuid.uuid4().hex[:8]
    data = {"hr-app": {"file_id": "from-hr", "size": 1}, "uploader": {"file_id": "up", "size": 2}}
    for who in ("hr-app", "uploader", "hr-app", "uploader"):
        r = lane.publish({"type": "FileStored", "data": data[who], "id": eid}, who)
        assert (r.status_code, r.json()) == (202, {"id": eid}), r.text

    def got() -> list[tuple[dict[str, Any], dict[str, str]]]:
        return [(e, h) for e, h in lane.hook.got if e["id"] == eid]

    eventually(lambda: len(got()) >= 2)
    eventually(
        lambda: settled(lane.gw, "files"), timeout=15
    )  # a duplicate delivery would have come by now
    by_source = {e["source"]: (e, h) for e, h in got()}
    assert len(got()) == 2
    assert set(by_source) == {"vivified://plugins/hr-app", "vivified://plugins/uploader"}
    for who in ("hr-app", "uploader"):
        event, headers = by_source[f"vivified://plugins/{who}"]
        assert event["data"] == data[who]
        assert event["id"] == headers["x-vivified-event-id"] == eid  # the publisher's own id
        assert headers["x-vivified-caller"] == who

    def reasons(who: str) -> list[str]:
        items = httpx.get(
            lane.gw.url + "/admin/audit",
            params={"lane": "events", "actor": who, "action": "publish"},
            headers=admin_headers(),
            trust_env=False,
        ).json()["items"]
        return sorted(a["reason"] for a in items if a["request_id"] == eid)

    both = ["accepted", "duplicate"]  # each publisher's repeat is its own duplicate only
    eventually(lambda: reasons("hr-app") == both and reasons("uploader") == both)


def test_a_subscriber_down_for_a_while_gets_everything_in_order(lane: Lane) -> None:
    lane.hook.up = False
    ids = [f"order-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    for eid in ids:
        assert lane.publish({"type": "UserCreated", "data": USER, "id": eid}).status_code == 202
    eventually(
        lambda: ids[0] in lane.hook.refused, timeout=15
    )  # delivery was tried while it was down
    lane.hook.up = True
    eventually(lambda: all(e in lane.hook.ids() for e in ids))
    got = [e for e in lane.hook.ids() if e in ids]
    assert got == ids


@ON_BOTH
def test_dead_letter_after_max_attempts_then_replay(lane: Lane) -> None:
    lane.hook.up = False
    eid = "dead-" + uuid.uuid4().hex[:8]
    assert lane.publish({"type": "UserCreated", "data": USER, "id": eid}).status_code == 202
    admin = {"headers": admin_headers(), "trust_env": False}

    def dead() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = httpx.get(
            lane.gw.url + "/admin/events/dead-letters",
            **admin,  # type: ignore[arg-type]
        ).json()["items"]
        return [i for i in items if i["event"]["id"] == eid]

    eventually(lambda: bool(dead()), timeout=20)
    item = dead()[0]
    assert (item["subscriber"], item["attempts"]) == ("acct", 5)
    lane.hook.up = True
    r = httpx.post(f"{lane.gw.url}/admin/events/dead-letters/{item['seq']}/replay", **admin)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert eid in lane.hook.ids()
    assert dead() == []

    def actions() -> set[str]:  # the trail is written in batches: wait for the replay's row
        items = httpx.get(
            lane.gw.url + "/admin/audit", params={"lane": "events", "target": "acct"}, **admin
        ).json()["items"]  # type: ignore[arg-type]
        return {a["action"] for a in items}

    eventually(lambda: {"retry", "dead_letter", "replay"} <= actions())


def test_nats_stopped_is_503_and_publishing_resumes(lane: Lane) -> None:
    lane.nats.stop()
    r = lane.publish({"type": "UserCreated", "data": USER})
    assert r.status_code == 503
    assert r.json()["reason"] == "stream_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    lane.nats.start(port=lane.nats_port)
    eventually(
        lambda: lane.publish({"type": "UserCreated", "data": USER}).status_code == 202, timeout=15
    )


def test_gateway_restart_mid_stream_loses_nothing(lane: Lane) -> None:
    ids = []
    for i in range(10):
        r = lane.publish(
            {"type": "UserCreated", "data": USER, "id": f"rs-{i}-{uuid.uuid4().hex[:6]}"}
        )
        ids.append(r.json()["id"])
        if i == 4:
            lane.gw.restart()
    eventually(lambda: all(e in lane.hook.ids() for e in ids), timeout=30)
    assert [e for e in lane.hook.ids() if e in ids] == ids


@ON_BOTH
def test_two_replicas_deliver_each_event_once(lane: Lane, tmp_path: Path) -> None:
    other = CoreProcess("gateway", tmp_path / "gw2", lane.env).start()
    try:
        eventually(lambda: consumers_ready(other, "acct"))
        ids = [lane.publish({"type": "UserCreated", "data": USER}).json()["id"] for _ in range(20)]
        eventually(lambda: all(e in lane.hook.ids() for e in ids), timeout=30)
        eventually(
            lambda: settled(lane.gw, "acct"), timeout=15
        )  # a second delivery would have come by now
        assert all(lane.hook.ids().count(e) == 1 for e in ids)
    finally:
        other.stop()


def machine_nats() -> str | None:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return "nats://127.0.0.1:4222"
    except OSError:
        return None


def test_cluster_style_on_the_machine_nats(tmp_path: Path) -> None:
    """Two replicas on the machine's shared NATS (unique stream and subject names per run)."""
    url = machine_nats()
    if url is None:
        pytest.skip("no NATS on 127.0.0.1:4222")
    run = uuid.uuid4().hex[:10]
    env = {
        **FAST,
        "VIVIFIED_NATS_URL": url,
        "VIVIFIED_DATABASE_URL": f"sqlite:///{tmp_path}/registry.db",
        "VIVIFIED_EVENTS_STREAM": f"VIVTEST_{run}",
        "VIVIFIED_EVENTS_DLQ_STREAM": f"VIVTEST_DLQ_{run}",
        "VIVIFIED_EVENTS_SUBJECT": f"vivtest{run}.events",
    }
    hook = Hook()
    a = CoreProcess("gateway", tmp_path / "a", env).start()
    b = CoreProcess("gateway", tmp_path / "b", env).start()
    try:
        with (
            serve_in_thread(hook.app()) as hook_url,
            httpx.Client(base_url=a.url, trust_env=False, timeout=30) as c,
        ):
            pub = seed(id="hr-app", contracts=["HrPlugin"], events={"publishes": ["FileStored"]})
            token = register(c, pub, registration_token(c)).json()["token"]
            assert c.post("/plugins/hr-app/enable", headers=admin_headers()).status_code == 200
            sub = simple(
                "files",
                base_url=hook_url,
                endpoints={"events": "/events"},
                events={"subscribes": ["FileStored"]},
            )
            assert register(c, sub, registration_token(c)).status_code == 201
            eventually(
                lambda: consumers_ready(a, "files") and consumers_ready(b, "files"), timeout=15
            )
            ids = []
            for i in range(20):
                r = c.post(
                    "/events",
                    json={"type": "FileStored", "data": {"file_id": f"f{i}", "size": i}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            eventually(lambda: all(e in hook.ids() for e in ids), timeout=30)
            eventually(
                lambda: settled(a, "files"), timeout=15
            )  # a second delivery would have come by now
            assert [e for e in hook.ids() if e in ids] == ids  # once each, in order
    finally:
        a.stop()
        b.stop()
        import asyncio

        import nats

        async def cleanup() -> None:
            nc = await nats.connect(url)
            js = nc.jetstream()
            for name in (f"VIVTEST_{run}", f"VIVTEST_DLQ_{run}"):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
            await nc.close()

        asyncio.run(cleanup())


def test_lanes_run_in_parallel_and_keep_one_entitys_events_in_order(lane: Lane) -> None:
    """A held event blocks only its ordering lane (its subject's); others keep flowing."""
    from vivified.gateway.events.stream import lane_of

    stuck = "u-stuck"
    others = [
        f"u-{i}"
        for i in range(40)
        if lane_of({"subject": f"u-{i}"}, 8) != lane_of({"subject": stuck}, 8)
    ][:10]
    lane.hook.hold.add(stuck)
    first, second = ("held-" + uuid.uuid4().hex[:8] for _ in range(2))
    for eid in (first, second):  # one entity, two events: must arrive in this order
        body = {"type": "UserCreated", "data": USER, "id": eid, "subject": stuck}
        assert lane.publish(body).status_code == 202
    ids = []
    for subject in others:
        ids.append("free-" + uuid.uuid4().hex[:8])
        body = {"type": "UserCreated", "data": USER, "id": ids[-1], "subject": subject}
        assert lane.publish(body).status_code == 202
    eventually(lambda: all(e in lane.hook.ids() for e in ids), timeout=6)
    assert first not in lane.hook.ids()
    assert second not in lane.hook.ids()  # waits behind `first` in its lane
    lane.hook.hold.clear()
    eventually(lambda: second in lane.hook.ids())
    got = lane.hook.ids()
    assert got.index(first) < got.index(second)
