"""Remembered answers: per snapshot, forgotten at a swap, bounded; and the addons that use them
apply a change to the very next flow."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vivified.egress import egress_policy, response_filtering
from vivified.egress.audit import OpenRecord
from vivified.egress.egress_policy import EgressPolicy
from vivified.egress.flow_state import TARGET
from vivified.egress.memo import Memo, SnapshotMemo
from vivified.egress.pinning import AddressPinning
from vivified.egress.resolve import Resolver
from vivified.egress.response_filtering import ResponseFilter


class Counting:
    """A compute function that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *_args: Any) -> int:
        self.calls += 1
        return self.calls


def test_memo_answers_once_per_key_and_starts_over_at_its_limit() -> None:
    memo: Memo[int] = Memo(limit=2)
    compute = Counting()
    assert [memo.get("a", compute), memo.get("a", compute)] == [1, 1]
    memo.get("b", compute)
    assert len(memo) == 2
    assert memo.get("c", compute) == 3  # full: forgot a and b
    assert len(memo) == 1
    assert memo.get("a", compute) == 4


def test_snapshot_memo_forgets_everything_when_the_snapshot_is_swapped(kit) -> None:
    memo: SnapshotMemo[int] = SnapshotMemo(kit.holder)
    compute = Counting()
    first = kit.holder.current
    assert [memo.get("k", compute), memo.get("k", compute)] == [1, 1]
    kit.holder.current = kit.snapshot()
    assert memo.get("k", compute) == 2
    assert memo.get("k", compute, first) == 3  # an explicit snapshot is the one that counts
    assert memo.get("k", compute, first) == 3


def test_snapshot_memo_is_bounded(kit) -> None:
    memo: SnapshotMemo[int] = SnapshotMemo(kit.holder, limit=3)
    for key in range(10):
        memo.get(key, Counting())
    assert len(memo) <= 3


async def test_policy_is_asked_once_per_destination_and_snapshot(kit, monkeypatch) -> None:
    calls = Counting()
    real = egress_policy.decide_egress
    monkeypatch.setattr(egress_policy, "decide_egress", lambda req: (calls(), real(req))[1])
    policy = EgressPolicy(kit.state)
    for _ in range(3):
        assert policy.decide("alpha", "api.example.com", 443)[0].allowed
    assert calls.calls == 1
    kit.holder.current = kit.snapshot()
    policy.decide("alpha", "api.example.com", 443)
    assert calls.calls == 2


async def test_a_disabled_plugin_is_refused_on_its_next_request(kit) -> None:
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state))
    first = kit.plain_flow("http://api.example.com/")
    kit.tag(first, "alpha")
    await chain.fire("requestheaders", first)
    assert first.response is None
    snap = kit.holder.current
    alpha = replace(snap.plugins["alpha"], status="disabled")
    kit.holder.current = replace(snap, plugins={**snap.plugins, "alpha": alpha})
    second = kit.plain_flow("http://api.example.com/")
    kit.tag(second, "alpha")
    await chain.fire("requestheaders", second)
    assert kit.refusal(second) == (403, "plugin_not_active", "plugin_not_active")


async def test_response_filter_rule_follows_the_snapshot(kit, monkeypatch) -> None:
    calls = Counting()
    real = response_filtering.effective_rule
    monkeypatch.setattr(response_filtering, "effective_rule", lambda *a: (calls(), real(*a))[1])
    rf = ResponseFilter(kit.state)
    assert rf.rule("alpha", "api.example.com").max_body_bytes == 1000
    assert rf.rule("alpha", "api.example.com").max_body_bytes == 1000
    assert calls.calls == 1
    kit.holder.current = kit.snapshot(response_filters={"default": {"max_body_bytes": 7}})
    assert rf.rule("alpha", "api.example.com").max_body_bytes == 7


def pinning(kit, answers: dict[str, list[str]], own: list[tuple[str, int]]) -> AddressPinning:
    async def getaddrinfo(host: str, port: int, **_kw: Any) -> list[tuple[Any, ...]]:
        return [(2, 1, 6, "", (a, port)) for a in answers[host]]

    return AddressPinning(kit.state, Resolver(1.0, getaddrinfo), own_listeners=own)


async def pin(kit, chain: Any, authority: str) -> Any:
    flow = kit.connect_flow(authority)
    flow.metadata["vivified.plugin"] = "alpha"
    await chain.fire("http_connect", flow)
    return flow


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param("dns-answer", "blocked_private", id="dns-answer-changes"),
        pytest.param("allowed-networks", "blocked_loopback", id="allowed-networks-edited"),
        pytest.param("own-listener", "blocked_core_listener", id="proxy-listens-there-now"),
    ],
)
async def test_address_safety_is_asked_again_when_its_inputs_change(
    kit, change: str, reason: str
) -> None:
    answers = {"dns.example.org": ["127.0.0.1"]}
    own: list[tuple[str, int]] = []
    pins = pinning(kit, answers, own)
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state), pins)
    assert TARGET in (await pin(kit, chain, "dns.example.org:443")).metadata
    if change == "dns-answer":
        answers["dns.example.org"] = ["10.0.0.5"]
    elif change == "allowed-networks":
        kit.holder.current = kit.snapshot(allowed_networks=[])
    else:
        pins.own_listeners.append(("127.0.0.1", 443))
    flow = await pin(kit, chain, "dns.example.org:443")
    assert kit.refusal(flow) == (403, reason, reason)
    assert TARGET not in flow.metadata
