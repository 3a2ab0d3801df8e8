"""Pipeline: our addons as one mitmproxy addon, asked only about the events they handle, in
order, with mitmproxy's error handling; the egress chain behaves the same through it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from mitmproxy import exceptions, hooks, http
from mitmproxy.test import taddons, tflow, tutils

from vivified.config.settings import Settings
from vivified.egress.auth import ProxyAuthenticator
from vivified.egress.launcher import egress_addons
from vivified.egress.live_state import AuditTrail, EgressState
from vivified.egress.pipeline import Pipeline, hook_names


@dataclass
class Log:
    calls: list[str] = field(default_factory=list)


class Sync:
    def __init__(self, log: Log, name: str) -> None:
        self.log, self.tag = log, name

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.log.calls.append(f"{self.tag}.requestheaders")

    def response(self, flow: http.HTTPFlow) -> None:
        self.log.calls.append(f"{self.tag}.response")

    def load(self, loader: Any) -> None:
        self.log.calls.append(f"{self.tag}.load")

    def accepted(self) -> None:
        """Not a hook: never on the pipeline."""


class Async:
    def __init__(self, log: Log, name: str) -> None:
        self.log, self.tag = log, name

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        await asyncio.sleep(0)
        self.log.calls.append(f"{self.tag}.requestheaders")


class Failing:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        raise ValueError("boom")


class Halting:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        raise exceptions.AddonHalt


def test_only_handled_hooks_are_on_the_pipeline() -> None:
    log = Log()
    pipe = Pipeline([Sync(log, "a"), Async(log, "b")])
    assert pipe.hooks == {"load": 1, "requestheaders": 2, "response": 1}
    for name in hook_names():  # mitmproxy finds nothing for the rest (`update` among them)
        assert hasattr(pipe, name) == (name in pipe.hooks)
    assert not hasattr(pipe, "accepted")
    assert "update" in hook_names()


async def test_stages_run_in_order_sync_and_async_alike() -> None:
    log = Log()
    pipe = Pipeline([Sync(log, "a"), Async(log, "b"), Sync(log, "c")])
    flow = tflow.tflow()
    await pipe.requestheaders(flow)
    pipe.response(flow)
    assert log.calls == [
        "a.requestheaders",
        "b.requestheaders",
        "c.requestheaders",
        "a.response",
        "c.response",
    ]


async def test_mitmproxy_asks_each_stage_once_and_loads_them_synchronously() -> None:
    log = Log()
    pipe = Pipeline([Sync(log, "a"), Async(log, "b")])
    with taddons.context() as tctx:
        tctx.master.addons.add(pipe)  # `load` goes through mitmproxy's sync path
        assert log.calls == ["a.load"]
        log.calls.clear()
        flow = tflow.tflow()
        await tctx.master.addons.handle_lifecycle(hooks.all_hooks["requestheaders"](flow))
        assert log.calls == ["a.requestheaders", "b.requestheaders"]


@pytest.mark.parametrize("make", [Sync, Async], ids=["sync", "async"])
async def test_a_failing_stage_is_logged_and_the_next_still_runs(make, caplog) -> None:
    log = Log()
    pipe = Pipeline([Failing(), make(log, "after")])
    with caplog.at_level(logging.ERROR, logger="vivified.egress.pipeline"):
        result = pipe.requestheaders(tflow.tflow())
        if result is not None:
            await result
    assert log.calls == ["after.requestheaders"]
    assert "Failing.requestheaders" in caplog.text
    assert "boom" in caplog.text


async def test_addon_halt_stops_the_event() -> None:
    log = Log()
    pipe = Pipeline([Halting(), Sync(log, "after")])
    with pytest.raises(exceptions.AddonHalt):
        pipe.requestheaders(tflow.tflow())
    assert log.calls == []


class Live:
    """`LiveConnections`, doing nothing."""

    def close_client(self, *_a: Any) -> None:
        return None

    def send_last(self, *_a: Any) -> bool:
        return True

    def inject(self, *_a: Any) -> bool:
        return True

    def close_upstream(self, *_a: Any) -> bool:
        return True


def _flows(kit, token: str) -> list[http.HTTPFlow]:
    good = kit.basic("alpha", token)
    return [
        kit.plain_flow("http://api.example.com/x?q=1", good),  # allowed
        kit.plain_flow("http://api.example.com/x", kit.basic("alpha", "forged")),  # 407
        kit.plain_flow("http://evil.example.net/", good),  # 403 host_not_allowed
        kit.plain_flow("http://api.example.com:22/", good),  # 403 port_not_allowed
        kit.plain_flow("https://api.example.com/", good),  # 400 use CONNECT
    ]


def _facts(flow: http.HTTPFlow) -> tuple[Any, ...]:
    """What the chain decided about a flow, without ids, times and random trace ids."""
    resp = flow.response
    meta = {k: v for k, v in flow.metadata.items() if k not in ("vivified.trace",)}
    o = meta.pop("vivified.outcome")
    extra = {k: v for k, v in o.extra.items() if k != "trace_id"}
    return (
        None if resp is None else (resp.status_code, resp.reason, resp.headers.fields),
        sorted(meta.items(), key=str),
        (o.action, o.actor, o.host, o.port, o.decision, o.reason, o.status, o.address, extra),
        flow.request.host,
        [f for f in flow.request.headers.fields if f[0] != b"traceparent"],
    )


async def test_the_egress_chain_decides_the_same_through_the_pipeline(
    kit, tokens, authenticator, tmp_path
) -> None:
    token = tokens.issue_plugin_token("alpha", 1).token
    settings = Settings(data_dir=tmp_path)
    results = []
    for composed in (False, True):
        state = EgressState(kit.holder, AuditTrail(kit.audit))
        auth = ProxyAuthenticator(tokens, kit.holder)
        addons = egress_addons(settings, state, auth, Live())
        with taddons.context() as tctx:
            manager = tctx.master.addons
            manager.add(*([Pipeline(addons)] if composed else addons))
            flows = _flows(kit, token)
            for flow in flows:
                await manager.handle_lifecycle(hooks.all_hooks["requestheaders"](flow))
                if flow.response is None:
                    await manager.handle_lifecycle(hooks.all_hooks["request"](flow))
                    flow.response = tutils.tresp(
                        headers=http.Headers(content_type="text/plain", x_vivified_caller="x"),
                        content=b"ok",
                    )
                    for name in ("responseheaders", "response"):
                        await manager.handle_lifecycle(hooks.all_hooks[name](flow))
        events = [(e.action, e.actor, e.decision, e.reason, e.status) for e in kit.audit.events]
        kit.audit.events.clear()
        results.append(([_facts(f) for f in flows], events))
    assert results[0] == results[1]
    assert results[1][1] == [  # one record per flow, each outcome covered
        ("request", "alpha", "allow", "allowed", 200),
        ("request", "claimed:alpha", "deny", "malformed_token", 407),
        ("request", "alpha", "deny", "host_not_allowed", 403),
        ("request", "alpha", "deny", "port_not_allowed", 403),
        ("request", "alpha", "deny", "bad_request", 400),
    ]
