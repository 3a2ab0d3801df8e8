"""Bench: the canonical event lane, one run.

1. Accepted events/s through `POST /events` (32 concurrent publishers, JWT + schema + audit +
   JetStream ack) while the gateway delivers them, vs raw nats-py JetStream publishes with the
   same concurrency; also accepted before any subscriber exists (nothing to deliver), and the
   CPU each process spends per event.
2. End-to-end delivery latency (publisher sends POST /events -> webhook received) p50/p99,
   at paced rates (the fixed RATES, half the end-to-end drain rate and half the accepted
   rate), one subscriber.
3. The same gateway's CPU per operator-lane call (a plugin calling one whose base URL is the
   webhook receiver; wrk, BENCH_LANE_SECONDS, 5 s), to set beside its CPU per event.
All of it twice: with one gateway process, and with one per core (VIVIFIED_GATEWAY_WORKERS).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_floors import start_events_floor
from bench_serve import machine_speed, serve_source
from bench_table import emit, emit_ratio
from support.manifests import seed, simple
from support.procfs import tree_cpu_seconds as cpu_seconds
from support.procs import CoreProcess, admin_headers, register, registration_token

from vivified.config.nats_server import ManagedNats

N = 3000
CONCURRENCY = 32
# The audit level of the lane-call reference's plugins (`simple` manifests): the event's
# publisher and subscriber use it too, so both sides of the CPU ratio do the same audit work
# (the seed manifest's `detailed` adds header names and body hashes to every record).
BASIC = {"hipaa_controls": [], "audit_level": "basic"}
RATES = (200, 1000, 2000)  # paced publish rates for the latency runs (3 s each)
LANE_SECONDS = int(os.environ.get("BENCH_LANE_SECONDS", "5"))

# The subscriber's webhook runs in a process of its own (raw ASGI on uvicorn + uvloop), so
# that neither the publisher's work nor a shared GIL delays the arrival times it takes.
# perf_counter is CLOCK_MONOTONIC: comparable across the processes of one machine.
HOOK = """
import json, time
received = {}

async def app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    status, out = 204, b""
    if scope["method"] == "POST" and scope["path"] == "/events":
        received[json.loads(body)["id"]] = time.perf_counter()
    elif scope["path"] == "/count":
        last = max(received.values()) if received else 0.0
        status, out = 200, json.dumps([len(received), last]).encode()
    elif scope["path"] == "/received":
        status, out = 200, json.dumps(received).encode()
    elif scope["path"] == "/reset":
        received.clear()
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": out})
"""


def start_hook(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    return serve_source(tmp, "bench_hook", HOOK, probe="/count")


def hook_count(hook_url: str) -> tuple[int, float]:
    """How many distinct events arrived, and when the last one did."""
    count, last = httpx.get(hook_url + "/count", trust_env=False, timeout=30).json()
    return int(count), float(last)


def hook_received(hook_url: str) -> dict[str, float]:
    got: dict[str, float] = httpx.get(hook_url + "/received", trust_env=False, timeout=60).json()
    return got


REFUSED_AT_MOST = 0.01  # of the answers: more stops the bench (something is wrong, not slow)


def publish_many(url: str, token: str, seconds: int = 8) -> tuple[float, int]:
    """wrk (not a Python client: httpx itself tops out near 200 req/s here) POSTing events;
    returns events/s accepted (202) and how many were. A refusal is correct under a stall
    (503 `stream_unavailable` when JetStream does not acknowledge within 2 s: the event was not
    stored), so a few are counted, shown with their reasons and left out of the rate."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
            "n = 0\n"
            "request = function()\n"  # entity subjects spread the events over the lanes
            "  n = n + 1\n"
            '  local body = \'{"type":"FileStored","subject":"file-\' .. (n % 512) ..\n'
            '    \'","data":{"file_id":"f1","size":1}}\'\n'
            "  return wrk.format(nil, nil, nil, body)\n"
            "end\n"
            # the first few refusals (status and body), kept in the thread's Lua state and
            # read from the main one at the end (wrk copies them across)
            "threads = {}\n"
            "setup = function(thread) threads[#threads + 1] = thread end\n"
            "refused = {}\n"
            "response = function(status, headers, body)\n"
            "  if status >= 300 and #refused < 5 then\n"
            '    refused[#refused + 1] = status .. " " .. body\n'
            "  end\n"
            "end\n"
            "done = function(summary, latency, requests)\n"
            "  for _, t in ipairs(threads) do\n"
            '    for _, r in ipairs(t:get("refused")) do print("REFUSED " .. r) end\n'
            "  end\n"
            "end\n"
        )
        script = f.name
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "-s", script, url + "/events"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script).unlink()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    answered = re.search(r"(\d+) requests in", out)
    if m is None or answered is None:
        sys.exit(f"wrk run failed:\n{out}")
    sent = int(answered.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    refused = int(bad.group(1)) if bad else 0
    if refused:
        print(f"  {refused} of {sent} publishes refused; the first ones:", flush=True)
        for line in out.splitlines():
            if line.startswith("REFUSED "):
                print(f"    {line.removeprefix('REFUSED ')[:300]}", flush=True)
    if refused > REFUSED_AT_MOST * sent:
        sys.exit(f"wrk run failed ({refused} of {sent} refused):\n{out}")
    return float(m.group(1)) * (sent - refused) / sent, sent - refused


async def raw_js(url: str, n: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_RAW", subjects=["bench.raw.>"])
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await js.publish(
                "bench.raw.x", b'{"file_id":"f","size":1}', headers={"Nats-Msg-Id": f"r{i}"}
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    rate = n / (time.perf_counter() - started)
    await nc.close()
    return rate


async def latency(
    url: str, token: str, hook_url: str, rate: int, seconds: float = 3.0
) -> list[float]:
    """Publish at a steady `rate` (aiohttp, one task per event on a fixed schedule, entity
    subjects spread over the ordering lanes); milliseconds from sending the POST to webhook
    arrival (publishing included: the 202 can reach the publisher after the webhook call)."""
    sent: dict[str, float] = {}
    n = int(rate * seconds)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(
        url, connector=aiohttp.TCPConnector(limit=64), trust_env=False
    ) as c:

        async def one(i: int) -> None:
            body = {"type": "FileStored", "data": {"file_id": f"l{i}", "size": i}}
            body["subject"] = f"file-{i % 512}"
            started = time.perf_counter()
            async with c.post("/events", json=body, headers=headers) as r:
                if r.status == 202:
                    sent[(await r.json())["id"]] = started

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 60
    # polling the receiver process: there is nothing to await across processes
    while time.perf_counter() < deadline and hook_count(hook_url)[0] < len(sent):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    received = hook_received(hook_url)
    return sorted((received[k] - t) * 1000 for k, t in sent.items() if k in received)


def lane_cpu(c: httpx.Client, hook_url: str, pid: int) -> dict[str, float]:
    """The gateway's CPU per operator-lane call (µs, from /proc as for the events): `caller`
    calls `target`, whose base URL is the webhook receiver (it answers 204), with wrk."""
    target = simple("target", base_url=hook_url, endpoints={"item": "/api/items/{id}"})
    assert register(c, target, registration_token(c)).status_code == 201
    r = register(c, simple("caller", dependencies=["target"]), registration_token(c))
    auth = f"Bearer {r.json()['token']}"
    url = f"{c.base_url}".rstrip("/") + "/target/items/42"
    # every worker must know both plugins: fresh connections spread over them
    deadline = time.monotonic() + 30
    while not all(
        httpx.get(url, headers={"Authorization": auth}, trust_env=False).is_success
        for _ in range(10)
    ):
        if time.monotonic() > deadline:
            sys.exit("the operator-lane call never succeeded")
        time.sleep(0.1)
    before = cpu_seconds(pid)
    wrk = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{LANE_SECONDS}s"]
    out = subprocess.run(
        [*wrk, "-H", f"Authorization: {auth}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    used = cpu_seconds(pid) - before
    calls = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    ok = max(calls - errors, 1)
    return {"us": used / ok * 1e6, "rps": rate, "calls": calls, "errors": errors}


def run(workers: int) -> dict[str, Any]:
    """The whole measurement against a gateway of `workers` processes."""
    out: dict[str, Any] = {"workers": workers}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        hook, hook_url = start_hook(tmp)
        nats_server = ManagedNats(tmp / "nats")
        nats_url = nats_server.start()
        env = {
            "VIVIFIED_NATS_URL": nats_url,
            "VIVIFIED_LOG_LEVEL": "warning",
            "VIVIFIED_GATEWAY_WORKERS": str(workers),
        }
        gw = CoreProcess("gateway", tmp / "gw", env)
        try:
            gw.start(timeout=120)
            with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c:
                pub: dict[str, Any] = seed(
                    id="publisher",
                    contracts=["PubPlugin"],
                    events={"publishes": ["FileStored"]},
                    compliance=BASIC,
                )
                token = register(c, pub, registration_token(c)).json()["token"]
                assert c.post("/plugins/publisher/enable", headers=admin_headers()).is_success
                out["publish_only"], _ = publish_many(gw.url, token)  # no subscriber yet
                sub = seed(
                    id="subscriber",
                    contracts=["SubPlugin"],
                    base_url=hook_url,
                    endpoints={"events": "/events"},
                    events={"subscribes": ["FileStored"]},
                    compliance=BASIC,
                )
                assert register(c, sub, registration_token(c)).status_code == 201
                assert c.post("/plugins/subscriber/enable", headers=admin_headers()).is_success
                time.sleep(2.0)  # let the subscriber's durable consumers appear
            assert gw.proc is not None
            assert nats_server.proc is not None
            procs = {"gateway": gw.proc.pid, "nats-server": nats_server.proc.pid}
            procs["webhook receiver"] = hook.pid
            cpu_before = {name: cpu_seconds(pid) for name, pid in procs.items()}
            burst_started = time.perf_counter()
            out["accepted"], sent = publish_many(gw.url, token)
            out["sent"] = sent
            deadline = time.perf_counter() + 120
            drained, last = hook_count(hook_url)
            while drained < sent and time.perf_counter() < deadline:
                time.sleep(0.2)
                drained, last = hook_count(hook_url)
            out["drained"], out["drain_rate"] = drained, drained / (last - burst_started)
            # CPU per event, burst and drain: each event accepted and delivered once.
            out["cpu"] = {
                name: (cpu_seconds(pid) - cpu_before[name]) / max(drained, 1) * 1e6
                for name, pid in procs.items()
            }
            out["raw"] = asyncio.run(raw_js(nats_url, N))
            if workers == 1:  # the floor: this stack with none of the lane's work (1 process)
                floor, floor_url = start_events_floor(tmp / "floor", nats_url)
                try:
                    out["floor"], _ = publish_many(floor_url, "none")
                finally:
                    floor.terminate()
                    floor.wait(10)
            with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c:
                out["lane"] = lane_cpu(c, hook_url, gw.proc.pid)
            # "Half the saturated rate": what the lane carries end to end is the drain rate
            # (events accepted AND delivered); the accepted rate alone is above it, so half of
            # it can still be an overload whose backlog grows for as long as the run lasts.
            # Both are measured and shown.
            out["half"] = max(1, int(out["drain_rate"] / 2))
            out["half_accepted"] = max(1, int(out["accepted"] / 2))
            lats = {}
            for rate in sorted({*RATES, out["half"], out["half_accepted"]}):
                httpx.post(hook_url + "/reset", trust_env=False, timeout=30)
                lats[rate] = asyncio.run(latency(gw.url, token, hook_url, rate))
            out["latency"] = lats
        finally:
            gw.stop()
            nats_server.stop()
            hook.terminate()
            hook.wait(10)
    return out


def report(r: dict[str, Any]) -> None:
    accepted, raw = r["accepted"], r["raw"]
    print(
        f"event lane, gateway of {r['workers']} process(es), {CONCURRENCY} concurrent "
        f"publishers (wrk), {r['sent']} events published"
    )
    print(f"  POST /events accepted : {accepted:8.0f} events/s (goal >= 5000)")
    print(f"  raw JetStream publish : {raw:8.0f} events/s   ratio {accepted / raw:.3f}")
    print(f"  accepted with no subscriber (nothing delivered): {r['publish_only']:8.0f} events/s")
    if "floor" in r:
        print(
            f"  floor (uvicorn + js.publish alone, nothing delivered): {r['floor']:8.0f} "
            f"events/s, ratio to raw {r['floor'] / raw:.3f}: the most this stack can reach"
        )
    print(
        f"  delivered from the burst within 120 s: {r['drained']} distinct events (wrk "
        f"counted {r['sent']} answered; requests in flight when it stopped were published too)"
    )
    print(f"  delivery throughput draining that burst: {r['drain_rate']:8.0f} events/s")
    cpu = ", ".join(f"{name} {us:.0f}" for name, us in r["cpu"].items())
    total = sum(r["cpu"].values())
    print(
        f"  CPU per event accepted and delivered, in µs: {cpu}; sum {total:.0f} "
        f"(wrk not counted): at most {os.cpu_count() or 1} cores / {total:.0f} µs = "
        f"{(os.cpu_count() or 1) * 1e6 / total:.0f} events/s end to end on this machine"
    )
    lane = r["lane"]
    print(
        f"  operator-lane calls through the same gateway (wrk, {CONCURRENCY} connections, "
        f"{LANE_SECONDS}s): {lane['rps']:.0f} calls/s, gateway CPU {lane['us']:.0f} µs per call "
        f"(non-2xx: {lane['errors']:.0f}); CPU per event / per call: "
        f"{r['cpu']['gateway'] / lane['us']:.2f} (goal <= 1.5)"
    )
    for rate, lat in r["latency"].items():
        half = " (half the end-to-end rate)" if rate == r["half"] else ""
        if rate == r["half_accepted"]:
            half += " (half the accepted rate)"
        if not lat:
            print(f"  delivery at {rate}/s{half}: nothing arrived")
            continue
        p99 = lat[max(0, int(len(lat) * 0.99) - 1)]
        print(
            f"  delivery latency at {rate:5d} events/s paced (subjects spread over the lanes):"
            f" p50 {statistics.median(lat):.1f} ms, p99 {p99:.1f} ms"
            f" ({len(lat)}/{int(rate * 3)} arrived; goal p99 <= 50 ms){half}"
        )


def emit_rows(r: dict[str, Any]) -> None:
    """The suite's rows of the `scripts/bench` table, for one gateway size."""
    procs = f"gateway of {r['workers']} process(es)"
    scenario = f"POST /events accepted vs raw JetStream publish, {CONCURRENCY} publishers"
    rates = r["accepted"], r["raw"]
    emit_ratio("events", f"{scenario}, {procs}", *rates, "events/s", "raw JetStream", 0.5)
    if "floor" in r:
        emit_ratio(
            "events",
            f"floor: uvicorn + js.publish alone (no JWT, schema, audit; nothing delivered) vs raw "
            f"JetStream publish, {CONCURRENCY} publishers: the most the row above can reach",
            r["floor"],
            r["raw"],
            "events/s",
            "raw JetStream",
            None,
        )
    per_event, per_call = r["cpu"]["gateway"], r["lane"]["us"]
    emit(
        "events",
        f"gateway CPU per event (accepted + delivered) vs per operator-lane call, {procs}",
        rate=f"{per_event:,.0f} µs/event",
        reference=f"{per_call:,.0f} µs/lane call",
        ratio=per_event / per_call,
        target="<= 1.5",
        met=per_event / per_call <= 1.5,
    )
    for key, what in (("half", "end-to-end (drain)"), ("half_accepted", "accepted")):
        rate = r[key]
        lat = r["latency"][rate]
        wanted = int(rate * 3)
        p99 = lat[max(0, int(len(lat) * 0.99) - 1)] if lat else None
        arrived = f"({len(lat)}/{wanted} arrived)"
        emit(
            "events",
            f"delivery p99 at half the {what} rate, {rate:,} events/s paced, {procs}",
            rate="nothing arrived" if p99 is None else f"p99 {p99:.1f} ms {arrived}",
            reference="publisher POST -> webhook received",
            ratio=None,
            target="p99 <= 50 ms",
            met=p99 is not None and p99 <= 50 and len(lat) >= wanted,
        )


def main() -> None:
    print(machine_speed(), flush=True)
    # One gateway process, then one per core (VIVIFIED_GATEWAY_WORKERS).
    for workers in sorted({1, os.cpu_count() or 1}):
        result = run(workers)
        report(result)
        emit_rows(result)


if __name__ == "__main__":
    main()
