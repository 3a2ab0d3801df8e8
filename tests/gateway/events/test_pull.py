"""A lane's pull consumer against a real nats-server: events in order, one in flight, an
empty lane answers None, replicas share the consumer, a deleted consumer is an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from support.waiting import eventually_async

from vivified.config.nats_server import ManagedNats
from vivified.gateway.events.pull import LanePull, PullFailed

STREAM = "PULLTEST"
FILTER = "pulltest.*.0"


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ManagedNats(Path(tmp_path_factory.mktemp("nats")))
    yield server.start()
    server.stop()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc = await nats.connect(nats_url)
    context = nc.jetstream(timeout=5)
    await context.add_stream(name=STREAM, subjects=["pulltest.>"])
    try:
        yield nc, context
    finally:
        await context.delete_stream(STREAM)
        await nc.close()


def lane(nc: Client, js: JetStreamContext, durable: str = "sub-x-l0") -> LanePull:
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        max_ack_pending=1,
        ack_wait=30,
    )
    return LanePull(
        nc, js, stream=STREAM, durable=durable, filter_subject=FILTER, config=config, wait=0.3
    )


async def test_events_come_in_order_one_at_a_time(js: tuple[Client, JetStreamContext]) -> None:
    nc, context = js
    pull = lane(nc, context)
    await pull.start()
    try:
        assert await pull.next() is None  # an empty lane answers within the wait
        for i in range(3):
            await context.publish("pulltest.T.0", f"e{i}".encode())
        await context.publish("pulltest.T.1", b"other lane")  # outside the filter
        first = await pull.next()
        assert first is not None
        assert first.data == b"e0"
        assert await pull.next() is None  # e0 is not acked yet: nothing else is handed out
        await first.ack()
        seen = []
        while (msg := await pull.next()) is not None:
            seen.append(msg.data)
            await msg.ack()
        assert seen == [b"e1", b"e2"]
    finally:
        await pull.close()


async def test_replicas_share_the_consumer(js: tuple[Client, JetStreamContext]) -> None:
    nc, context = js
    a, b = lane(nc, context), lane(nc, context)
    await a.start()
    await b.start()
    try:
        for i in range(20):
            await context.publish("pulltest.T.0", f"e{i}".encode())

        async def drain(pull: LanePull, got: list[bytes]) -> None:
            while (msg := await pull.next()) is not None:
                got.append(msg.data)
                await msg.ack()

        got_a: list[bytes] = []
        got_b: list[bytes] = []
        await asyncio.gather(drain(a, got_a), drain(b, got_b))
        assert sorted(got_a + got_b) == sorted(f"e{i}".encode() for i in range(20))
    finally:
        await a.close()
        await b.close()


async def test_a_deleted_consumer_is_an_error(js: tuple[Client, JetStreamContext]) -> None:
    nc, context = js
    pull = lane(nc, context)
    await pull.start()
    try:
        waiting = asyncio.create_task(pull.next())

        async def request_waits() -> bool:  # the pull request is waiting at the server
            return (await context.consumer_info(STREAM, "sub-x-l0")).num_waiting == 1

        await eventually_async(request_waits, what="a waiting pull request")
        await context.delete_consumer(STREAM, "sub-x-l0")
        with pytest.raises(PullFailed):
            await waiting
        with pytest.raises(PullFailed):  # asking a consumer that is gone: an error, not "empty"
            await pull.next()
        await pull.start()  # what the worker does next: the consumer is made again
        await context.publish("pulltest.T.0", b"after")
        msg = await pull.next()
        assert msg is not None
        assert msg.data == b"after"
    finally:
        await pull.close()
