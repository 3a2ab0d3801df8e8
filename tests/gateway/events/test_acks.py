"""Publishes acknowledged through one inbox, against a real nats-server: each publish gets its
own ack (stored, duplicate), refusals are errors, many run at once, closing fails the waiting
ones, and an EventStream prepared by many first publishes at once loses none of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from vivified.config.nats_server import ManagedNats
from vivified.config.settings import Settings
from vivified.gateway.events.acks import PublishAcks, PublishRefused
from vivified.gateway.events.stream import EventStream, cloud_event

STREAM = "ACKTEST"


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ManagedNats(Path(tmp_path_factory.mktemp("nats")))
    yield server.start()
    server.stop()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc = await nats.connect(nats_url)
    context = nc.jetstream(timeout=5)
    await context.add_stream(name=STREAM, subjects=["acktest.>"], duplicate_window=60)
    try:
        yield nc, context
    finally:
        await context.delete_stream(STREAM)
        await nc.close()


async def started(nc: Client, wait: float = 2.0) -> PublishAcks:
    acks = PublishAcks(nc, ack_wait=wait)
    await acks.start()
    return acks


def headers(msg_id: str, stream: str = STREAM) -> dict[str, str]:
    return {"Nats-Msg-Id": msg_id, "Nats-Expected-Stream": stream}


async def test_a_publish_returns_its_own_ack(js: tuple[Client, JetStreamContext]) -> None:
    nc, context = js
    acks = await started(nc)
    try:
        first = await acks.publish("acktest.a", b"one", headers("m1"))
        second = await acks.publish("acktest.a", b"two", headers("m2"))
        again = await acks.publish("acktest.a", b"one again", headers("m1"))
    finally:
        await acks.close()
    assert (first["stream"], first["seq"], first.get("duplicate")) == (STREAM, 1, None)
    assert (second["seq"], second.get("duplicate")) == (2, None)
    assert (again["seq"], again["duplicate"]) == (1, True)  # stored once
    assert (await context.stream_info(STREAM)).state.messages == 2
    assert (await context.get_msg(STREAM, 2)).data == b"two"


@pytest.mark.parametrize(
    ("subject", "stream", "reason"),
    [
        pytest.param("nostream.a", STREAM, "no stream takes", id="no-stream-answers"),
        pytest.param("acktest.a", "OTHER", "expected stream", id="another-stream-expected"),
    ],
)
async def test_a_refused_publish_is_an_error(
    js: tuple[Client, JetStreamContext], subject: str, stream: str, reason: str
) -> None:
    nc, context = js
    acks = await started(nc)
    try:
        with pytest.raises(PublishRefused, match=reason):
            await acks.publish(subject, b"x", headers("r1", stream))
    finally:
        await acks.close()
    assert (await context.stream_info(STREAM)).state.messages == 0


async def test_many_publishes_in_flight_each_get_their_ack(
    js: tuple[Client, JetStreamContext],
) -> None:
    nc, context = js
    acks = await started(nc)
    try:
        got = await asyncio.gather(
            *(acks.publish("acktest.m", b"%d" % i, headers(f"p{i}")) for i in range(200))
        )
    finally:
        await acks.close()
    assert sorted(a["seq"] for a in got) == list(range(1, 201))
    for i in (0, 99, 199):  # the ack each publish got names the message it stored
        assert (await context.get_msg(STREAM, got[i]["seq"])).data == b"%d" % i


async def test_closing_fails_a_waiting_publish(js: tuple[Client, JetStreamContext]) -> None:
    nc, _ = js
    quiet = await nc.subscribe("quiet.>")  # takes the message, never answers: no ack comes
    acks = await started(nc, wait=5.0)
    try:
        waiting = asyncio.create_task(acks.publish("quiet.x", b"x", {"Nats-Msg-Id": "q"}))
        await nc.flush()  # the publish is out and waiting for its ack
        await acks.close()
        with pytest.raises(PublishRefused, match="replaced"):
            await waiting
    finally:
        await quiet.unsubscribe()


async def test_no_ack_within_the_wait_is_a_timeout(js: tuple[Client, JetStreamContext]) -> None:
    nc, _ = js
    quiet = await nc.subscribe("quiet.>")  # takes the message, never answers
    acks = await started(nc, wait=0.3)
    try:
        with pytest.raises(TimeoutError):
            await acks.publish("quiet.y", b"y", {"Nats-Msg-Id": "t"})
    finally:
        await acks.close()
        await quiet.unsubscribe()


class _Bus:
    def __init__(self, nc: Client) -> None:
        self.client = nc


async def test_first_publishes_at_once_prepare_the_stream_once(nats_url: str) -> None:
    """Regression: concurrent first publishes each prepared the connection and the later one
    dropped the earlier one's inbox, failing its waiting publishes."""
    nc = await nats.connect(nats_url)
    settings = Settings(
        events_stream="ACKEVENTS", events_dlq_stream="ACKDLQ", events_subject="ackev.events"
    )
    stream = EventStream(_Bus(nc), settings)  # type: ignore[arg-type]

    def event(i: int) -> dict[str, Any]:
        return cloud_event(
            event_id=f"e{i}", type_="T", source="vivified://plugins/p", data={}, subject=None
        )

    try:
        duplicates = await asyncio.gather(*(stream.publish(event(i)) for i in range(20)))
        assert duplicates == [False] * 20
        assert await stream.publish(event(3)) is True
        context = nc.jetstream()
        assert (await context.stream_info("ACKEVENTS")).state.messages == 20
    finally:
        context = nc.jetstream()
        for name in ("ACKEVENTS", "ACKDLQ"):
            await context.delete_stream(name)
        await nc.close()
