"""An upstream plugin flaps (refusing, then hanging, then back) under operator-lane load.

The circuit (vivified/gateway/operator/circuit.py): `circuit_threshold` consecutive failures
(refused, timed out, broken) open it — 503 `circuit_open` with Retry-After — and after
`circuit_cooldown` one probe goes through; success closes it. No call may hang past the
upstream timeout, and no connection may stay stuck: the hung exchanges are cut by the gateway
and, once the load stops, the gateway holds no more connections than it had calls at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.flaky_upstream import DOWN, HUNG, UP, FlakyUpstream, flaky_upstream
from support.load import Loop
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.waiting import eventually

UPSTREAM_TIMEOUT = 1.5
COOLDOWN = 1.0
CALLERS = 4
CLEAN = {
    (200, ""),
    (502, "upstream_refused"),
    (502, "upstream_failed"),
    (504, "upstream_timeout"),
    (503, "circuit_open"),
}


@dataclass
class Answer:
    status: int
    reason: str
    retry_after: str
    seconds: float
    at: float


@dataclass
class Rig:
    gw: CoreProcess
    up: FlakyUpstream
    token: str


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    env = {
        "VIVIFIED_CIRCUIT_THRESHOLD": "3",
        "VIVIFIED_CIRCUIT_COOLDOWN": str(COOLDOWN),
        "VIVIFIED_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
        "VIVIFIED_HEALTH_INTERVAL": "600",  # the circuit alone, not health, reacts here
    }
    gw = CoreProcess("gateway", tmp_path / "gw", env).start()
    try:
        with (
            flaky_upstream() as up,
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
        ):
            tokens = {}
            for m in (simple("caller"), simple("flaky", base_url=up.url)):
                r = register(c, m, registration_token(c))
                assert (r.status_code, r.json()["status"]) == (201, "active"), r.text
                tokens[m["id"]] = r.json()["token"]
            r = c.post(
                "/admin/grants",
                json={"caller": "caller", "target": "flaky"},
                headers=admin_headers(),
            )
            assert r.status_code == 201, r.text
            yield Rig(gw, up, tokens["caller"])
    finally:
        gw.stop()


def caller(rig: Rig) -> Loop[Answer]:
    client = httpx.Client(base_url=rig.gw.url, trust_env=False, timeout=UPSTREAM_TIMEOUT + 10)
    headers = {"Authorization": f"Bearer {rig.token}"}

    def step(i: int) -> Answer:
        started = time.monotonic()
        r = client.get(f"/flaky/items/{i}", headers=headers)
        reason = "" if r.status_code == 200 else r.json()["reason"]
        return Answer(
            r.status_code,
            reason,
            r.headers.get("retry-after", ""),
            time.monotonic() - started,
            time.monotonic(),
        )

    return Loop(step, count=20_000, seconds=50, pause=0.02, finish=client.close)


def circuit(rig: Rig) -> str:
    r = httpx.get(
        rig.gw.url + "/admin/policy/explain",
        params={"caller": "caller", "target": "flaky", "path": "/api/items/1"},
        headers=admin_headers(),
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["circuit"])


def gateway_fds(gw: CoreProcess) -> int:
    assert gw.proc is not None
    return len(list(Path(f"/proc/{gw.proc.pid}/fd").iterdir()))


def test_circuit_opens_and_recovers_while_the_upstream_flaps(rig: Rig) -> None:
    loops = [caller(rig).start() for _ in range(CALLERS)]

    def answers() -> list[Answer]:
        return [a for lp in loops for a in lp.results]

    def since(t: float) -> list[Answer]:
        return [a for a in answers() if a.at > t]

    def refused_since(t: float) -> Callable[[], bool]:
        return lambda: any(a.reason == "circuit_open" for a in since(t))

    def answered_since(t: float, n: int) -> Callable[[], bool]:
        return lambda: sum(a.status == 200 for a in since(t)) >= n

    try:
        eventually(lambda: sum(a.status == 200 for a in answers()) >= 40, 20, "warm-up")
        baseline_fds = gateway_fds(rig.gw)
        for failure in (DOWN, HUNG, DOWN):
            flapped = time.monotonic()
            rig.up.set_mode(failure)
            eventually(
                refused_since(flapped),
                UPSTREAM_TIMEOUT * 4 + 5,
                f"the circuit opens ({failure})",
            )
            assert circuit(rig) in {"open", "half_open"}
            expected = "upstream_refused" if failure == DOWN else "upstream_timeout"
            assert expected in {a.reason for a in since(flapped)}
            # still refused after a cooldown while it fails: one probe at a time, which fails
            eventually(
                refused_since(time.monotonic() + COOLDOWN),
                COOLDOWN + UPSTREAM_TIMEOUT + 5,
                "the probe fails and it opens again",
            )
            recovered = time.monotonic()
            rig.up.set_mode(UP)
            eventually(
                answered_since(recovered, 20),
                COOLDOWN + UPSTREAM_TIMEOUT + 10,
                "calls answered again after the cooldown",
            )
            assert circuit(rig) == "closed"
    finally:
        for lp in loops:
            lp.stop()
        for lp in loops:
            lp.join()
    for lp in loops:
        assert not lp.errors, lp.errors
    got = answers()
    assert {(a.status, a.reason) for a in got} <= CLEAN, {(a.status, a.reason) for a in got}
    opened = [a for a in got if a.reason == "circuit_open"]
    assert opened
    assert all(int(a.retry_after) >= 1 for a in opened)
    slowest = max(a.seconds for a in got)
    assert slowest < UPSTREAM_TIMEOUT + 3, f"a call took {slowest:.1f} s"

    # No stuck connections: the hung exchanges were cut, and at rest the gateway keeps at most
    # one keep-alive connection per caller that ran at once.
    eventually(lambda: rig.up.open_connections <= CALLERS, 10, "upstream connections released")
    eventually(lambda: gateway_fds(rig.gw) <= baseline_fds + 2, 10, "gateway fds back to rest")
    print(
        f"\nflapping upstream: {len(got)} calls, {sum(a.status == 200 for a in got)} answered, "
        f"{len(opened)} refused circuit_open, slowest {slowest:.2f} s, "
        f"{rig.up.open_connections} upstream connections at rest"
    )
