"""Bench: config propagation. Time from `PUT /admin/plugins/{id}/allowed-domains` returning on
gateway A to enforcement by a separate egress process, p50/p99 over 100 changes.

Gateway A, egress B, embedded SQLite and a managed nats-server; the periodic reload is set to
60 s so only the NATS change notice can explain a fast flip. The probe is a CONNECT through
egress B for a name overridden to a private address: allowlisted → `blocked_private`, not
allowlisted → `host_not_allowed`, both answered without DNS.
"""

from __future__ import annotations

import base64
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_table import emit_latency
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token

from vivified.config.nats_server import ManagedNats

CHANGES = 100
HOST = "api.example.com"


def probe(port: int, cred: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n"
            f"Proxy-Authorization: Basic {cred}\r\n\r\n".encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    for line in buf.decode("latin-1").split("\r\n"):
        if line.lower().startswith("x-vivified-egress-error:"):
            return line.split(":", 1)[1].strip()
    return buf.split(b" ", 2)[1].decode()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nats = ManagedNats(tmp / "nats")
        env = {
            "VIVIFIED_DATABASE_URL": f"sqlite:///{tmp}/registry.db",
            "VIVIFIED_NATS_URL": nats.start(),
            "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": "60",
            "VIVIFIED_LOG_LEVEL": "warning",
        }
        a = CoreProcess("gateway", tmp / "a", env).start()
        eg = CoreProcess("egress", tmp / "eg", env).start()
        try:
            with httpx.Client(
                base_url=a.url, trust_env=False, timeout=30, headers=admin_headers()
            ) as c:
                m = simple("fetcher", traits=["external_service"], allowed_domains=[HOST])
                token = register(c, m, registration_token(c)).json()["token"]
                assert c.post("/plugins/fetcher/enable").status_code == 200
                doc = {k: v for k, v in c.get("/admin/egress").json().items() if k != "version"}
                doc["host_overrides"] = {HOST: "10.0.0.1"}
                assert c.put("/admin/egress", json=doc).status_code == 200
                cred = base64.b64encode(f"fetcher:{token}".encode()).decode()
                deadline = time.monotonic() + 10
                while probe(eg.port, cred) != "blocked_private":
                    if time.monotonic() > deadline:
                        sys.exit("egress never saw the initial configuration")
                    time.sleep(0.05)
                delays: list[float] = []
                for i in range(CHANGES):
                    allowed = i % 2 == 1
                    domains = [HOST] if allowed else ["other.example.com"]
                    want = "blocked_private" if allowed else "host_not_allowed"
                    r = c.put(
                        "/admin/plugins/fetcher/allowed-domains",
                        json={"domains": domains, "mode": "enforce"},
                    )
                    assert r.status_code == 200, r.text
                    done = time.perf_counter()
                    while probe(eg.port, cred) != want:
                        if time.perf_counter() - done > 30:
                            sys.exit(f"change {i} not enforced within 30 s")
                    delays.append((time.perf_counter() - done) * 1000)
        finally:
            eg.stop()
            a.stop()
            nats.stop()
    delays.sort()
    p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
    print(f"config propagation, {CHANGES} allowlist changes, gateway A -> egress B over NATS")
    print(
        f"  PUT returned -> enforced: p50 {statistics.median(delays):.1f} ms, "
        f"p99 {p99:.1f} ms, max {delays[-1]:.1f} ms (goal p99 <= 500 ms)"
    )
    print("  (includes one CONNECT probe round trip, ~1 ms)")
    emit_latency(
        "config",
        f"config change -> enforced on another replica (egress over NATS), {CHANGES} changes",
        p99,
        reference="periodic reload 60 s (only the NATS notice can be this fast)",
        limit_ms=500,
        detail=f" (p50 {statistics.median(delays):.1f} ms)",
    )


if __name__ == "__main__":
    main()
