"""Bench helper: the processes `bench egress` and `bench egress_workers` measure — lean
mitmproxy's source, a vivified egress proxy on a registry of its own (optionally without its
audit record, bench only), squid — and starting, waiting for and stopping them."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

# support.registry_seed: the registry the egress tests seed, seeded the same way here
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

# mitmproxy with the same built-in addons as the vivified egress proxy, without ours: how
# much the vivified addon itself costs (bare mitmdump also carries 27 more built-ins).
LEAN = """
import asyncio, sys
from mitmproxy.master import Master
from mitmproxy.options import Options
from vivified.egress.launcher import mitmproxy_addons
async def main(port, conf, ca, ignore):
    m = Master(Options(), event_loop=asyncio.get_running_loop())
    m.addons.add(*mitmproxy_addons())
    m.options.update(mode=[f"regular@{port}"], listen_host="127.0.0.1", confdir=conf,
                     connection_strategy="eager", http2=False, ssl_verify_upstream_trusted_ca=ca,
                     ignore_hosts=[ignore] if ignore else [])
    await m.run()
try:
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
except KeyboardInterrupt:
    pass
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("proxy exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def setup_vivified(data: Path, ports: tuple[int, int]) -> str:
    """The registry of a bench egress proxy: plugin `bench` allowed to both bench names,
    which resolve to loopback, `pass.example.org` passed through; its Proxy-Authorization."""
    from support.registry_seed import SeedPlugin, seed_registry

    document = {
        "allowed_networks": ["127.0.0.1/32"],
        "host_overrides": {"api.example.com": "127.0.0.1", "pass.example.org": "127.0.0.1"},
        "allowed_ports": [80, 443, *ports],
        "passthrough_domains": ["pass.example.org"],
    }
    bench = SeedPlugin("bench", ["api.example.com", "pass.example.org"])
    tokens = await seed_registry(f"sqlite+aiosqlite:///{data / 'registry.db'}", document, [bench])
    return "Basic " + base64.b64encode(f"bench:{tokens['bench']}".encode()).decode()


# Started with PYTHONPATH pointing here, an egress proxy records no audit record (bench only:
# production code has no such switch), so the bench shows what the mandated record costs. The
# writer takes each record and drops it, as `bench operator`'s gateway without the audit does:
# the audit trail in front of it (marking the flow, the metrics hook) runs as it always does.
# It writes BENCH_PATCHED last: without that file the patch failed and the proxy records.
WITHOUT_AUDIT = """
import os
from vivified.registry.audit import writer as audit
def record_nowait(self, event):
    return True
async def record(self, event):
    return None
audit.AuditWriter.record_nowait = record_nowait
audit.AuditWriter.record = record
open(os.environ["BENCH_PATCHED"], "w").close()
"""


async def start_vivified(
    data: Path, ports: tuple[int, int], ca_file: Path, without: str = ""
) -> tuple[int, subprocess.Popen[bytes], str, ssl.SSLContext]:
    """A vivified egress proxy on its own data directory: (port, process, Proxy-Authorization
    value, a context trusting its CA for intercepted HTTPS)."""
    from vivified.config.egress_ca import ensure_ca

    data.mkdir()  # noqa: ASYNC240 -- set-up, before any load
    auth = await setup_vivified(data, ports)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    env.update(
        {
            "VIVIFIED_DATA_DIR": str(data),
            "VIVIFIED_EGRESS_UPSTREAM_CA": str(ca_file),
            "VIVIFIED_LOG_LEVEL": "warning",
        }
    )
    if without == "audit":
        (data / "without").mkdir()
        (data / "without" / "sitecustomize.py").write_text(WITHOUT_AUDIT)
        env["PYTHONPATH"] = str(data / "without")
        env["BENCH_PATCHED"] = str(data / "without" / "patched")
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "vivified", "egress", "--egress-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    if without and not (data / "without" / "patched").exists():
        stop(proc)
        raise SystemExit(f"the egress proxy without {without} did not take its patch")
    return port, proc, auth, ssl.create_default_context(cafile=str(ensure_ca(data)))


def start_lean(port: int, conf: Path, ca_file: Path, ignore: str = "") -> subprocess.Popen[bytes]:
    """Lean mitmproxy (LEAN) on `port`, its CA in `conf`, trusting `ca_file` upstream, passing
    `ignore` through untouched (ignore_hosts also matches the resolved address: passthrough
    needs a restart)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LEAN, str(port), str(conf), str(ca_file), ignore],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc


def start_mitmdump(port: int, conf: Path, *settings: str, ignore: str) -> subprocess.Popen[bytes]:
    """Bare mitmdump (all its built-in addons) on `port`, its CA in `conf`, passing the hosts
    that match `ignore` through untouched; `settings`: more of its `--set` options."""
    mitmdump = shutil.which("mitmdump", path=str(Path(sys.executable).parent)) or "mitmdump"
    args = [mitmdump, "-q", "--listen-host", "127.0.0.1", "-p", str(port)]
    for option in (f"confdir={conf}", *settings, "connection_strategy=eager"):
        args += ["--set", option]
    proc = subprocess.Popen(
        [*args, "--ignore-hosts", ignore], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port, proc)
    return proc


def start_squid(squid: str, tmp: Path, port: int) -> subprocess.Popen[bytes]:
    """Squid with a dstdomain allowlist (no auth, no cache, no interception), names resolved
    from its own hosts file to loopback: the compiled anchor the issue asks for."""
    d = tmp / "squid"
    d.mkdir()
    # squid drops root for its effective user, which must reach and write this directory
    tmp.chmod(0o711)
    d.chmod(0o777)
    (d / "hosts").write_text("127.0.0.1 api.example.com pass.example.org\n")
    conf = d / "squid.conf"
    conf.write_text(
        f"""http_port 127.0.0.1:{port}
acl allowed dstdomain api.example.com pass.example.org
http_access allow allowed
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_log {d}/cache.log
pid_filename {d}/squid.pid
coredump_dir {d}
hosts_file {d}/hosts
pinger_enable off
shutdown_lifetime 0 seconds
"""
    )
    return subprocess.Popen(
        [squid, "-N", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
