"""A subscriber's consumers: made before its approval is answered, so that what is published
once the answer is out reaches it; gone with it when it is unregistered, so that registering
its id again makes a new subscriber, which never gets the events of the time between.

Real gateway, embedded nats-server and webhook; the stream's consumers are read with nats-py.
The gateway reaches NATS over a slow link (100 ms each way), so whatever it still does over
NATS after answering a request lands at least 100 ms after the test can look.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from support.events import Hook, consumers_ready, settled
from support.manifests import seed, simple
from support.procs import CoreProcess, admin_headers, enable, register, register_all
from support.slow_link import slow_link
from support.upstream import serve_in_thread
from support.waiting import eventually

from vivified.config.nats_server import ManagedNats
from vivified.gateway.events.pull import SINCE

STREAM = "VIVIFIED_EVENTS"  # the default `VIVIFIED_EVENTS_STREAM`
LANES = 8  # the default `VIVIFIED_EVENTS_PARTITIONS`


@dataclass
class World:
    nats_url: str
    gw: CoreProcess
    client: httpx.Client
    hook: Hook
    hook_url: str
    publisher: str  # its token

    def publish(self, subject: str) -> None:
        r = self.client.post(
            "/events",
            json={"type": "FileStored", "subject": subject, "data": {"file_id": "f1", "size": 1}},
            headers={"Authorization": f"Bearer {self.publisher}"},
        )
        assert r.status_code == 202, r.text

    def subjects(self) -> list[str]:
        return [str(event.get("subject")) for event, _ in self.hook.got]

    def leave_consumers(self, pid: str, since: str) -> None:
        """Make `pid`'s lane consumers as a registration at `since` would have."""

        async def make() -> None:
            nc = await nats.connect(self.nats_url)
            try:
                js = nc.jetstream()
                for lane in range(LANES):
                    name = f"sub-{pid}-l{lane}"
                    config = ConsumerConfig(
                        name=name,
                        durable_name=name,
                        filter_subject=f"vivified.events.*.{lane}",
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.NEW,
                        max_ack_pending=1,
                        metadata={SINCE: since},
                    )
                    await js.add_consumer(STREAM, config=config)
            finally:
                await nc.close()

        asyncio.run(make())

    def consumers(self) -> dict[str, str | None]:
        """The stream's consumers by name, each with the incarnation it belongs to."""

        async def read() -> dict[str, str | None]:
            nc = await nats.connect(self.nats_url)
            try:
                infos = await nc.jetstream().consumers_info(STREAM)
            finally:
                await nc.close()
            return {i.name: (i.config.metadata or {}).get(SINCE) for i in infos}

        return asyncio.run(read())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    server = ManagedNats(tmp_path / "nats")
    url = server.start()
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    gw: CoreProcess | None = None
    hook = Hook()
    try:
        with (
            slow_link(host, int(port), delay=0.1) as slow,
            serve_in_thread(hook.app()) as hook_url,
        ):
            env = {"VIVIFIED_NATS_URL": f"nats://127.0.0.1:{slow}"}
            gw = CoreProcess("gateway", tmp_path / "gw", env).start()
            with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c:
                eventually(lambda: c.get("/readyz").json()["checks"]["nats"] == "ok")
                publisher = seed(
                    id="hr-app", contracts=["HrPlugin"], events={"publishes": ["FileStored"]}
                )
                tokens = register_all(c, [publisher])
                enable(c, "hr-app")
                yield World(url, gw, c, hook, hook_url, tokens["hr-app"])
    finally:
        if gw is not None:
            gw.stop()
        server.stop()


def files(world: World, subscribes: list[str]) -> dict[str, object]:
    return simple(
        "files",
        base_url=world.hook_url,
        endpoints={"events": "/events"},
        events={"subscribes": subscribes},
    )


def subscriber(world: World) -> str:
    """Register `files`, subscribed to FileStored: approved as it registers (low risk). Its
    plugin token."""
    return register_all(world.client, [files(world, ["FileStored"])])["files"]


def test_consumers_left_from_an_earlier_registration_are_replaced_before_it_answers(
    world: World,
) -> None:
    # What a clean-up that could not reach NATS leaves: consumers of an earlier `files`.
    world.leave_consumers("files", since="1.0")
    subscriber(world)  # approved as it registers
    assert set(world.consumers().values()) - {"1.0"}, "answered on the earlier consumers"
    assert len(world.consumers()) == LANES
    world.publish("at-once")  # into the new consumers, not one about to be replaced
    eventually(lambda: "at-once" in world.subjects())
    eventually(lambda: settled(world.gw, "files"))
    assert world.subjects() == ["at-once"]


def test_consumers_of_a_registration_later_than_the_registry_knows_are_replaced(
    world: World,
) -> None:
    # A later registration than the one the registry holds: only a clock ahead makes these.
    world.leave_consumers("files", since="9999999999.0")
    subscriber(world)

    def replaced() -> bool:
        held = list(world.consumers().values())
        return len(held) == LANES and "9999999999.0" not in held

    eventually(replaced, what="the consumers replaced")
    world.publish("after")
    eventually(lambda: "after" in world.subjects())


def test_a_subscriber_registered_again_gets_nothing_of_the_time_between(world: World) -> None:
    subscriber(world)
    eventually(lambda: consumers_ready(world.gw, "files"))
    first = set(world.consumers().values())
    assert len(first) == 1
    assert None not in first  # each consumer names the registration it serves
    world.publish("before")
    eventually(lambda: "before" in world.subjects())

    r = world.client.delete("/plugins/files", headers=admin_headers())
    assert r.status_code == 204, r.text
    eventually(lambda: not world.consumers(), what="the consumers of files deleted")
    world.publish("between")  # no subscriber now

    subscriber(world)
    eventually(lambda: consumers_ready(world.gw, "files"))
    second = set(world.consumers().values())
    assert len(second) == 1
    assert second != first  # a new registration, new consumers
    world.publish("after")
    eventually(lambda: "after" in world.subjects())
    eventually(lambda: settled(world.gw, "files"))  # nothing more can still arrive
    assert world.subjects() == ["before", "after"]


def test_a_subscriber_that_drops_its_subscriptions_loses_its_consumers(world: World) -> None:
    token = subscriber(world)
    eventually(lambda: consumers_ready(world.gw, "files"))
    r = register(world.client, files(world, []), token)  # narrower: applies at once
    assert r.status_code == 200, r.text
    token = r.json()["token"]  # a re-registration's token replaces the last one
    eventually(lambda: not world.consumers(), what="the consumers of files deleted")
    world.publish("unsubscribed")

    r = register(world.client, files(world, ["FileStored"]), token)  # wider: waits for approval
    assert (r.status_code, r.json()["status"]) == (200, "registered"), r.text
    enable(world.client, "files")
    world.publish("subscribed-again")
    eventually(lambda: "subscribed-again" in world.subjects())
    eventually(lambda: settled(world.gw, "files"))
    assert world.subjects() == ["subscribed-again"]


def test_a_disabled_subscriber_keeps_its_consumers_and_gets_the_backlog(world: World) -> None:
    subscriber(world)
    eventually(lambda: consumers_ready(world.gw, "files"))
    kept = world.consumers()
    r = world.client.post("/plugins/files/disable", headers=admin_headers())
    assert r.status_code == 200, r.text
    world.publish("while-disabled")
    enable(world.client, "files")
    eventually(lambda: "while-disabled" in world.subjects())
    assert world.consumers() == kept  # the same consumers, resumed
