"""An unregistered subscriber's consumers go with it: registering its id again makes a new
subscriber, which gets the events published from then on, never those of the time between.

Real gateway, embedded nats-server and webhook; the stream's consumers are read with nats-py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from support.events import Hook, consumers_ready, settled
from support.manifests import seed, simple
from support.procs import CoreProcess, admin_headers, enable, register_all
from support.upstream import serve_in_thread
from support.waiting import eventually

from vivified.config.nats_server import ManagedNats
from vivified.gateway.events.pull import SINCE

STREAM = "VIVIFIED_EVENTS"  # the default `VIVIFIED_EVENTS_STREAM`


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
    gw = CoreProcess("gateway", tmp_path / "gw", {"VIVIFIED_NATS_URL": url}).start()
    hook = Hook()
    try:
        with (
            serve_in_thread(hook.app()) as hook_url,
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
        ):
            publisher = seed(
                id="hr-app", contracts=["HrPlugin"], events={"publishes": ["FileStored"]}
            )
            tokens = register_all(c, [publisher])
            enable(c, "hr-app")
            yield World(url, gw, c, hook, hook_url, tokens["hr-app"])
    finally:
        gw.stop()
        server.stop()


def subscriber(world: World) -> None:
    """Register `files` (auto-approved), subscribed to FileStored; wait for its consumers."""
    manifest = simple(
        "files",
        base_url=world.hook_url,
        endpoints={"events": "/events"},
        events={"subscribes": ["FileStored"]},
    )
    register_all(world.client, [manifest])
    eventually(lambda: consumers_ready(world.gw, "files"))


def test_a_subscriber_registered_again_gets_nothing_of_the_time_between(world: World) -> None:
    subscriber(world)
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
    second = set(world.consumers().values())
    assert len(second) == 1
    assert second != first  # a new registration, new consumers
    world.publish("after")
    eventually(lambda: "after" in world.subjects())
    eventually(lambda: settled(world.gw, "files"))  # nothing more can still arrive
    assert world.subjects() == ["before", "after"]
