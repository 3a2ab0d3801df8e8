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
from vivified.gateway.events.pull import SINCE, LanePull, PullFailed, Superseded, forget

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


def incarnated(nc: Client, js: JetStreamContext, since: str | None) -> LanePull:
    """A lane of subscriber incarnation `since` (None: a consumer made before incarnations)
    that takes only what is published after its consumer is made, as the dispatcher's do."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, max_ack_pending=1
    )
    return LanePull(
        nc,
        js,
        stream=STREAM,
        durable="sub-x-l0",
        filter_subject=FILTER,
        config=config,
        since=float(since) if since is not None else None,
        wait=0.3,
    )


@pytest.mark.parametrize(
    ("held", "since", "replace", "outcome"),
    [
        pytest.param("100.5", "200.25", False, "replaced", id="earlier-registration-replaced"),
        pytest.param("100.5", "100.5", False, "kept", id="same-registration-kept"),
        pytest.param(None, "200.25", False, "kept", id="consumer-without-incarnation-kept"),
        pytest.param("300.0", "200.25", False, "superseded", id="later-registration-left-alone"),
        pytest.param("300.0", "200.25", True, "replaced", id="later-replaced-when-confirmed"),
        pytest.param("100.5", "100.5", True, "kept", id="same-kept-when-confirmed"),
    ],
)
async def test_a_consumer_serves_one_incarnation_of_its_subscriber(
    js: tuple[Client, JetStreamContext],
    held: str | None,
    since: str,
    replace: bool,
    outcome: str,
) -> None:
    nc, context = js
    old = incarnated(nc, context, held)
    await old.start()
    await old.close()
    await context.publish("pulltest.T.0", b"published under the old consumer")
    pull = incarnated(nc, context, since)
    try:
        if outcome == "superseded":
            with pytest.raises(Superseded):
                await pull.start(replace=replace)
            info = await context.consumer_info(STREAM, "sub-x-l0")
            assert (info.config.metadata or {}).get(SINCE) == held  # untouched
            assert info.num_pending == 1
            return
        await pull.start(replace=replace)
        info = await context.consumer_info(STREAM, "sub-x-l0")
        msg = await pull.next()
        if outcome == "replaced":  # a new consumer: nothing of before it is handed out
            assert (info.config.metadata or {}).get(SINCE) == since
            assert msg is None
        else:  # resumed where it was
            assert (info.config.metadata or {}).get(SINCE) == held
            assert msg is not None
            assert msg.data == b"published under the old consumer"
    finally:
        await pull.close()


@pytest.mark.parametrize(
    ("held", "deleted"),
    [
        pytest.param("100.5", True, id="that-registration-deleted"),
        pytest.param(None, True, id="consumer-without-incarnation-deleted"),
        pytest.param("300.0", False, id="later-registration-kept"),
    ],
)
async def test_forget_deletes_the_consumers_of_one_incarnation(
    js: tuple[Client, JetStreamContext], held: str | None, deleted: bool
) -> None:
    nc, context = js
    pull = incarnated(nc, context, held)
    await pull.start()
    await pull.close()
    durables = ["sub-x-l0", "sub-x-l1"]  # the second was never made
    assert await forget(context, STREAM, durables, 100.5) == int(deleted)
    names = [c.name for c in await context.consumers_info(STREAM)]
    assert names == ([] if deleted else ["sub-x-l0"])
