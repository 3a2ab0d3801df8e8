"""Egress bench: bare mitmdump vs the vivified egress proxy (auth + policy + audit), same flows.

Plain HTTP (absolute-form), HTTPS intercepted and HTTPS passthrough, against a loopback
upstream, with a small asyncio load generator (CONNECT included). Prints req/s and the ratio,
then squid with a dstdomain allowlist (plain HTTP and a CONNECT tunnel) as the compiled
anchor when squid is installed.
Usage: python scripts/bench_egress.py [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NAMES = ["api.example.com", "pass.example.org", "localhost"]
BODY = b'{"ok":true}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    except asyncio.CancelledError:
        return  # the bench is over: the loop is closing its servers (no noisy callback)
    finally:
        writer.close()


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


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    kind: str,
    proxy: int | None,
    target: tuple[str, int],
    auth: str | None,
    ctx: ssl.SSLContext | None,
    deadline: float,
    counts: list[int],
) -> None:
    host, port = target
    if proxy is None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=host if ctx else None
        )
        path = "/"
    elif kind == "http":
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
        path = f"http://{host}:{port}/"
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
        extra = f"Proxy-Authorization: {auth}\r\n" if auth else ""
        writer.write(
            f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"CONNECT refused: {head[:200]!r}")
        await writer.start_tls(ctx, server_hostname=host)  # type: ignore[arg-type]
        path = "/"
    extra = f"Proxy-Authorization: {auth}\r\n" if auth and kind == "http" and proxy else ""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
    while time.monotonic() < deadline:
        writer.write(req)
        status = await _read_response(reader)
        if status != 200:
            raise RuntimeError(f"status {status}")
        counts[0] += 1
    writer.close()


async def measure(
    kind: str,
    proxy: int | None,
    target: tuple[str, int],
    auth: str | None,
    ctx: ssl.SSLContext | None,
    seconds: float,
    concurrency: int,
) -> float:
    counts = [0]
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(
        *(_worker(kind, proxy, target, auth, ctx, deadline, counts) for _ in range(concurrency))
    )
    return counts[0] / (time.monotonic() - start)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
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


async def _setup_vivified(data: Path, ports: tuple[int, int]) -> str:
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.identity.tokens import TokenService
    from vivified.registry.store.engine import create_engine, migrate, session_factory
    from vivified.registry.store.tables import ConfigDocument, Plugin

    engine = create_engine(f"sqlite+aiosqlite:///{data / 'registry.db'}")
    await migrate(engine)
    sessions = session_factory(engine)
    keys = KeyStore(sessions)
    await keys.load(create=True)
    token = TokenService(keys, issuer="vivified-core", ttl=3600).issue_plugin_token("bench", 1)
    now = time.time()
    async with sessions() as s:
        s.add(
            Plugin(
                id="bench",
                name="bench",
                version="1.0.0",
                manifest={"id": "bench"},
                status="active",
                gen=1,
                egress_domains=["api.example.com", "pass.example.org"],
                egress_mode="enforce",
                created_at=now,
                updated_at=now,
            )
        )
        s.add(
            ConfigDocument(
                name="egress",
                version=1,
                updated_at=now,
                document={
                    "allowed_networks": ["127.0.0.1/32"],
                    "host_overrides": {
                        "api.example.com": "127.0.0.1",
                        "pass.example.org": "127.0.0.1",
                    },
                    "allowed_ports": [80, 443, *ports],
                    "passthrough_domains": ["pass.example.org"],
                },
            )
        )
        await s.commit()
    await engine.dispose()
    return "Basic " + base64.b64encode(f"bench:{token.token}".encode()).decode()


def _start_squid(squid: str, tmp: Path, port: int) -> subprocess.Popen[bytes]:
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-egress-"))
    ca = trustme.CA()
    cert = ca.issue_cert(*NAMES)
    ca_file = tmp / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    plain = await asyncio.start_server(_serve, "127.0.0.1", 0)
    secure = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=server_ctx)
    http_port = plain.sockets[0].getsockname()[1]
    https_port = secure.sockets[0].getsockname()[1]
    upstream_ctx = ssl.create_default_context(cafile=str(ca_file))
    s, c = args.seconds, args.concurrency
    results: dict[str, dict[str, float]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        direct_http = await measure("http", None, ("localhost", http_port), None, None, s, c)
        direct_tls = await measure(
            "https", None, ("localhost", https_port), None, upstream_ctx, s, c
        )
        print(
            f"generator direct-to-upstream: http {direct_http:,.0f} req/s, "
            f"https {direct_tls:,.0f} req/s"
        )

        # bare mitmdump: no addon of ours; same options where they exist
        bare_port, bare_conf = free_port(), tmp / "bare-conf"
        mitmdump = shutil.which("mitmdump", path=str(Path(sys.executable).parent)) or "mitmdump"
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220
                [
                    mitmdump,
                    "-q",
                    "--listen-host",
                    "127.0.0.1",
                    "-p",
                    str(bare_port),
                    "--set",
                    f"confdir={bare_conf}",
                    "--set",
                    f"ssl_verify_upstream_trusted_ca={ca_file}",
                    "--set",
                    "connection_strategy=eager",
                    "--set",
                    "http2=false",
                    "--ignore-hosts",
                    r"^pass\.example\.org:",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_port(bare_port, procs[-1])
        bare_ctx = ssl.create_default_context(cafile=str(bare_conf / "mitmproxy-ca-cert.pem"))

        data = tmp / "vivified"
        data.mkdir()
        auth = await _setup_vivified(data, (http_port, https_port))
        viv_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
        env.update(
            {
                "VIVIFIED_DATA_DIR": str(data),
                "VIVIFIED_EGRESS_UPSTREAM_CA": str(ca_file),
                "VIVIFIED_LOG_LEVEL": "warning",
            }
        )
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "vivified", "egress", "--egress-port", str(viv_port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_port(viv_port, procs[-1])
        from vivified.config.egress_ca import ensure_ca

        viv_ctx = ssl.create_default_context(cafile=str(ensure_ca(data)))
        lean_port, lean_conf = free_port(), tmp / "lean-conf"

        def start_lean(ignore: str) -> subprocess.Popen[bytes]:
            """ignore_hosts also matches the resolved address: passthrough needs a restart."""
            args = [str(lean_port), str(lean_conf), str(ca_file), ignore]
            proc = subprocess.Popen(
                [sys.executable, "-c", LEAN, *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_port(lean_port, proc)
            return proc

        procs.append(start_lean(""))
        lean_index = len(procs) - 1
        lean_ctx = ssl.create_default_context(cafile=str(lean_conf / "mitmproxy-ca-cert.pem"))

        scenarios = [
            ("plain HTTP", "http", http_port, None),
            ("HTTPS intercepted", "https", https_port, "intercept"),
            ("HTTPS passthrough", "https", https_port, "pass"),
        ]
        for label, kind, port, tls in scenarios:
            bare_host = "pass.example.org" if tls == "pass" else "localhost"
            viv_host = "pass.example.org" if tls == "pass" else "api.example.com"
            bctx = upstream_ctx if tls == "pass" else bare_ctx
            vctx = upstream_ctx if tls == "pass" else viv_ctx
            if tls == "pass":
                # bare mitmdump resolves the name itself: point it at loopback via localhost
                bare_host = "localhost"
                procs[0].send_signal(signal.SIGINT)
                procs[0].wait(10)
                procs[0] = subprocess.Popen(  # noqa: ASYNC220
                    [
                        mitmdump,
                        "-q",
                        "--listen-host",
                        "127.0.0.1",
                        "-p",
                        str(bare_port),
                        "--set",
                        f"confdir={bare_conf}",
                        "--set",
                        "connection_strategy=eager",
                        "--ignore-hosts",
                        r"^localhost:",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                _wait_port(bare_port, procs[0])
            bare = await measure(
                kind, bare_port, (bare_host, port), None, bctx if kind == "https" else None, s, c
            )
            viv = await measure(
                kind, viv_port, (viv_host, port), auth, vctx if kind == "https" else None, s, c
            )
            if tls == "pass":
                _stop(procs[lean_index])
                procs[lean_index] = start_lean(".*")
            lean_host = "localhost"
            lctx = upstream_ctx if tls == "pass" else lean_ctx
            lean = await measure(
                kind, lean_port, (lean_host, port), None, lctx if kind == "https" else None, s, c
            )
            results[label] = {"bare": bare, "vivified": viv, "lean": lean}
            print(
                f"{label:20s} bare mitmdump {bare:8,.0f} req/s   vivified {viv:8,.0f} req/s"
                f"   ratio {viv / bare:.2f} (target >= 0.85);   same 7 built-ins without the"
                f" vivified addon {lean:8,.0f} req/s (ratio {viv / lean:.2f})"
            )
        squid = shutil.which("squid", path=os.pathsep.join([os.environ["PATH"], "/usr/sbin"]))
        if squid is None:
            print("squid not installed (Debian: apt-get install squid): no compiled anchor")
        else:
            squid_port = free_port()
            procs.append(_start_squid(squid, tmp, squid_port))
            _wait_port(squid_port, procs[-1])
            for label, kind, port, host in (
                ("plain HTTP", "http", http_port, "api.example.com"),
                ("HTTPS CONNECT tunnel", "https", https_port, "pass.example.org"),
            ):
                rate = await measure(
                    kind,
                    squid_port,
                    (host, port),
                    None,
                    upstream_ctx if kind == "https" else None,
                    s,
                    c,
                )
                print(
                    f"squid (dstdomain allowlist, compiled anchor): {label:20s} {rate:8,.0f} req/s"
                )
    finally:
        for p in procs:
            _stop(p)
        plain.close()
        secure.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
