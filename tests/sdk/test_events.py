"""publish() and the event endpoint over a real gateway with a real nats-server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sdk.helpers import Gateway, Nats, until
from starlette.applications import Starlette
from starlette.routing import Route
from support.manifests import simple
from support.procs import admin_headers
from support.upstream import serve_in_thread
from vivified_sdk import Backoff, CloudEvent, Plugin


def consumers_ready(gw: Gateway, pid: str) -> bool:
    r = httpx.get(gw.url + "/admin/events/subscribers", headers=admin_headers(), trust_env=False)
    return any(i["subscriber"] == pid and i.get("pending") is not None for i in r.json()["items"])


def make(gw: Gateway, tmp_path: Path, manifest: dict[str, Any]) -> Plugin:
    return Plugin(
        gateway_url=gw.url,
        manifest=manifest,
        registration_token=gw.registration_token(),
        state_dir=tmp_path / manifest["id"],
        heartbeat_interval=None,
        backoff=Backoff(initial=0.1, max_delay=0.5, max_elapsed=30),
    )


async def test_publish_is_delivered_once_to_the_handler_and_a_failure_is_retried(
    fresh_gateway: Callable[..., Gateway], nats: Nats, tmp_path: Path
) -> None:
    gw = fresh_gateway(
        VIVIFIED_NATS_URL=nats.url,
        VIVIFIED_EVENT_RETRY_BASE="0.2",
        VIVIFIED_EVENT_MAX_ATTEMPTS="5",
    ).start()
    got: list[CloudEvent] = []
    calls: list[str] = []
    fail_first = {"f-2"}

    async def handler(event: CloudEvent) -> None:
        calls.append(event.id)
        if event.data["file_id"] in fail_first:
            fail_first.discard(event.data["file_id"])
            raise RuntimeError("not yet")  # 500: core retries
        got.append(event)

    sub_id = f"files-{uuid.uuid4().hex[:6]}"
    subscriber = make(gw, tmp_path, simple(sub_id, events={"subscribes": ["FileStored"]}))
    endpoint = subscriber.event_endpoint(handler)
    captured: list[tuple[dict[str, str], bytes]] = []

    class Recording:  # the SDK's endpoint, remembering each delivery as it arrived
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            messages: list[Any] = []

            async def replay() -> Any:
                msg = await receive()
                messages.append(msg)
                return msg

            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            await endpoint(scope, replay, send)
            captured.append((headers, b"".join(m.get("body", b"") for m in messages)))

    app = Starlette(routes=[Route("/events", Recording(), methods=["POST"])])
    with serve_in_thread(app) as hook:
        subscriber.manifest.update(base_url=hook, endpoints={"events": "/events"})
        pub_id = f"store-{uuid.uuid4().hex[:6]}"
        publisher = make(gw, tmp_path, simple(pub_id, events={"publishes": ["FileStored"]}))
        async with subscriber, publisher:
            await until(lambda: consumers_ready(gw, sub_id))
            first = await publisher.publish("FileStored", {"file_id": "f-1", "size": 3})
            again = await publisher.publish("FileStored", {"file_id": "f-1", "size": 3}, id=first)
            assert again == first
            second = await publisher.publish(
                "FileStored", {"file_id": "f-2", "size": 4}, subject="f-2"
            )
            await until(lambda: {e.id for e in got} == {first, second}, bound=20)
            assert calls.count(second) == 2  # failed once (500), retried by core
            event = next(e for e in got if e.id == first)
            assert (event.type, event.publisher) == ("FileStored", pub_id)
            assert event.data == {"file_id": "f-1", "size": 3}
            assert event.source.endswith(pub_id)
            by_id = {e.id: e for e in got}
            assert by_id[second].subject == "f-2"

            # a redelivery of a handled event (the same signed delivery again) is
            # acknowledged without calling the handler a second time
            headers, body = next(c for c in captured if c[1] and first.encode() in c[1])
            before = len(calls)
            async with httpx.AsyncClient(base_url=hook, trust_env=False) as c:
                r = await c.post(
                    "/events",
                    content=body,
                    headers={
                        "content-type": headers["content-type"],
                        "x-vivified-assertion": headers["x-vivified-assertion"],
                    },
                )
                assert r.status_code == 204
                assert len(calls) == before

                # the same signed delivery carrying another event is refused
                doc = body.replace(first.encode(), b"other-id")
                r = await c.post(
                    "/events",
                    content=doc,
                    headers={"x-vivified-assertion": headers["x-vivified-assertion"]},
                )
                assert r.status_code == 401
                assert r.json()["detail"] == "assertion is for another event"

                # no assertion at all
                r = await c.post("/events", content=body)
                assert r.status_code == 401
                assert r.json()["reason"] == "invalid_assertion"
            assert len(calls) == before
