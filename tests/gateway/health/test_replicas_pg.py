"""Two gateway replicas on one registry (PostgreSQL and SQLite) count each failed poll once.

The issue's finding: with two replicas on PostgreSQL a plugin turned `unhealthy` after two
failed polls its upstream had actually served (the rule is three). The upstream here fails on
demand and records every poll it serves, so the test compares the registry's verdict with
the real polls, also across a lease hand-over from one replica to the other.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.audit import wait_for_audit
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread
from support.waiting import eventually

FAST = {"VIVIFIED_HEALTH_INTERVAL": "0.3", "VIVIFIED_HEALTH_TIMEOUT": "0.2"}


@dataclass(frozen=True)
class Poll:
    started: float  # wall clock, as the gateway's history times
    replica: str
    ok: bool


class Sick:
    """A health endpoint that answers 200 or 500 on demand and records every poll."""

    def __init__(self) -> None:
        self.failing = False
        self.polls: list[Poll] = []
        self.freeze_next = 0  # pid to SIGSTOP once its failed poll arrives
        self.freeze_skip = 0  # failed polls to let through first
        self.frozen = False
        self._lock = threading.Lock()

    async def health(self, request: Request) -> Response:
        ok = not self.failing
        with self._lock:
            self.polls.append(Poll(time.time(), request.headers.get("x-vivified-replica", ""), ok))
        if not ok and self.freeze_next and self.freeze_skip:
            self.freeze_skip -= 1
        elif not ok and self.freeze_next:
            os.kill(self.freeze_next, signal.SIGSTOP)  # our own child, by its pid
            self.freeze_next, self.frozen = 0, True
        if ok:
            return JSONResponse({"status": "healthy"})
        return JSONResponse({"status": "broken"}, status_code=500)

    def failed_before(self, t: float, since: float) -> int:
        with self._lock:
            return sum(1 for p in self.polls if not p.ok and since <= p.started < t)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/health", self.health)])


@pytest.fixture
def sick() -> Iterator[tuple[Sick, str]]:
    s = Sick()
    with serve_in_thread(s.app()) as url:
        yield s, url


def health(c: httpx.Client, pid: str) -> dict[str, Any]:
    r = c.get(f"/plugins/{pid}/health", headers=admin_headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("handover", [False, True], ids=["steady", "lease-handover"])
def test_unhealthy_exactly_at_the_third_real_failed_poll(
    tmp_path: Path, db_url: str, sick: tuple[Sick, str], handover: bool
) -> None:
    s, url = sick
    port = int(url.rsplit(":", 1)[1])
    manifest = simple(
        "sick", base_url=url, health_check={"type": "http", "port": port, "path": "/health"}
    )
    env = {**FAST, "VIVIFIED_DATABASE_URL": db_url}
    a = CoreProcess("gateway", tmp_path / "a", env).start()
    b: CoreProcess | None = None
    try:
        with httpx.Client(base_url=a.url, trust_env=False, timeout=30) as ca:
            assert register(ca, manifest, registration_token(ca)).status_code == 201
            eventually(lambda: health(ca, "sick")["state"] == "healthy")
        # A holds the plugin's lease; B joins and waits for it.
        b = CoreProcess("gateway", tmp_path / "b", env).start()
        watch = b if handover else a
        with httpx.Client(base_url=watch.url, trust_env=False, timeout=30) as c:
            eventually(lambda: health(c, "sick")["state"] == "healthy")
            since = time.time()
            s.failing = True
            if handover:
                # A stops after the first failed poll it served; B takes the lease over while
                # the failures go on.
                eventually(lambda: s.failed_before(time.time(), since) >= 1)
                a.stop()
            eventually(lambda: health(c, "sick")["state"] == "unhealthy")
            history = health(c, "sick")["history"]
            turned = {h["to"]: h["time"] for h in history if h["time"] >= since}
            assert list(turned) == ["degraded", "unhealthy"], history
            served = s.failed_before(turned["unhealthy"], since)
            assert served >= 3, f"unhealthy after {served} failed polls: {s.polls}"
            assert 1 <= s.failed_before(turned["degraded"], since) < 3, s.polls
            audit = wait_for_audit(
                c,
                lane="health",
                target="sick",
                where=lambda r: r["reason"] == "degraded_to_unhealthy",
            )
            assert audit[0]["detail"]["consecutive_failures"] == 3
            if handover:
                assert len({p.replica for p in s.polls if p.started >= since}) == 2
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_a_stale_poll_of_a_replica_that_lost_the_lease_is_not_counted(
    tmp_path: Path, db_url: str, sick: tuple[Sick, str]
) -> None:
    """A is frozen (SIGSTOP) right after the upstream served its failed poll; B takes the
    lease over, sees the plugin recover, then fail twice. A, thawed, must not add its old
    failure to B's two: that made `unhealthy` at two real consecutive failures."""
    s, url = sick
    port = int(url.rsplit(":", 1)[1])
    manifest = simple(
        "sick", base_url=url, health_check={"type": "http", "port": port, "path": "/health"}
    )
    env = {**FAST, "VIVIFIED_DATABASE_URL": db_url}
    a = CoreProcess("gateway", tmp_path / "a", env).start()
    b: CoreProcess | None = None
    assert a.proc is not None
    try:
        with httpx.Client(base_url=a.url, trust_env=False, timeout=30) as ca:
            assert register(ca, manifest, registration_token(ca)).status_code == 201
            eventually(lambda: health(ca, "sick")["state"] == "healthy")
        b = CoreProcess("gateway", tmp_path / "b", env).start()
        assert b.proc is not None
        with (
            httpx.Client(base_url=a.url, trust_env=False, timeout=30) as ca,
            httpx.Client(base_url=b.url, trust_env=False, timeout=30) as cb,
        ):
            eventually(lambda: health(cb, "sick")["state"] == "healthy")
            s.freeze_next = a.proc.pid  # A's next poll fails and A freezes before reading it
            s.failing = True
            eventually(lambda: s.frozen)
            s.failing = False
            trapped = time.time()
            eventually(
                lambda: any(p.ok and p.started > trapped for p in s.polls), timeout=15
            )  # B took over
            # B's third failed poll freezes B before it reads the answer: two are counted, and
            # B holds the lease (frozen at that poll, not at whatever moment the test looks).
            s.frozen = False
            s.freeze_next, s.freeze_skip = b.proc.pid, 2
            s.failing = True
            eventually(lambda: s.frozen)
            try:
                os.kill(a.proc.pid, signal.SIGCONT)  # A applies its old failed poll now
                deadline = time.monotonic() + 0.5  # within B's lease: nobody polls anew
                while time.monotonic() < deadline:
                    h = health(ca, "sick")
                    assert (h["state"], h["consecutive_failures"]) == ("degraded", 2), h
                    time.sleep(0.05)
            finally:
                os.kill(b.proc.pid, signal.SIGCONT)
            eventually(lambda: health(cb, "sick")["state"] == "unhealthy")
            h = health(cb, "sick")
            turned = next(x["time"] for x in reversed(h["history"]) if x["to"] == "unhealthy")
            last_ok = max(p.started for p in s.polls if p.ok and p.started < turned)
            assert s.failed_before(turned, last_ok) >= 3, s.polls
    finally:
        for proc in (a, b):
            if proc is not None and proc.proc is not None and proc.proc.poll() is None:
                os.kill(proc.proc.pid, signal.SIGCONT)
                proc.stop()
