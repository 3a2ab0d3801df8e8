"""`vivified up`: the whole stack (embedded NATS, gateway, egress proxy) on one machine.

Order matters: the data dir lock comes first (a second `vivified up` on the data dir stops
there, having changed nothing), then the ports, then the migration and the bootstrap admin
(its generated token saved before anything else can happen), then the children, then the
banner. Ctrl-C before the banner is a clean exit 130; after it, a normal stop (0).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vivified.config.admin_token import ADMIN_TOKEN_FILE, prepare_registry, token_path
from vivified.config.children import (
    ChildFailed,
    StopSignals,
    interruptible,
    stop_all,
    wait_port,
)
from vivified.config.datadir_lock import DataDirLock
from vivified.config.nats_server import ManagedNats
from vivified.config.operator_errors import (
    Interrupted,
    OperatorError,
    lock_data_dir,
    port_must_be_free,
)
from vivified.config.settings import Settings

EXAMPLE_MANIFEST = (
    Path(__file__).resolve().parents[2] / "docs" / "examples" / "user-management.manifest.json"
)
CHILD_USAGE_ERROR = 2  # a child that stopped on an operator mistake (it said so itself)
MAX_RESTARTS = 5  # deaths of children within RESTART_WINDOW seconds before `up` gives up
RESTART_WINDOW = 60.0


def up(settings: Settings, config_file: str | None, *, debug: bool = False) -> int:
    """Run the whole stack on one machine and stop it cleanly on Ctrl-C."""
    interruptible()  # even as a background job (SIGINT ignored), Ctrl-C stops a start
    lock = lock_data_dir(settings, "up", exclusive=True)
    try:
        port_must_be_free(settings.host, settings.gateway_port, "gateway")
        port_must_be_free(settings.host, settings.egress_port, "egress")
        try:
            admin_token = asyncio.run(prepare_registry(settings))
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while preparing the registry (finished first, so it is never "
                "left half-migrated); nothing was started: run `vivified up` again"
            ) from None
        return _run_stack(settings, config_file, lock, admin_token, debug)
    finally:
        lock.release()


def _run_stack(
    settings: Settings,
    config_file: str | None,
    lock: DataDirLock,
    admin_token: str | None,
    debug: bool,
) -> int:
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "VIVIFIED_DATA_DIR": str(settings.data_dir.resolve()),
            "VIVIFIED_HOST": settings.host,
            **lock.child_env(),  # the children run under this lock
        }
    )
    children: list[tuple[str, subprocess.Popen[Any], Path]] = []
    nats: ManagedNats | None = None
    try:
        if not settings.nats_url:  # embedded NATS with JetStream, data under the data dir
            nats = ManagedNats(settings.data_dir.resolve(), settings.host)
            try:
                env["VIVIFIED_NATS_URL"] = nats.start()
            except FileNotFoundError as exc:
                raise OperatorError(f"{exc}, or set VIVIFIED_NATS_URL") from exc
        for name, port in (("gateway", settings.gateway_port), ("egress", settings.egress_port)):
            children.append(_start_child(name, port, run_dir, config_file, debug, env, lock))
        ports = {name: wait_port(pf, proc, name, 120) for name, proc, pf in children}
        lock.describe("up", ports)  # a second start names these
        nats_url = env.get("VIVIFIED_NATS_URL", "")
        restart = _Restarter(run_dir, config_file, debug, env, lock, ports)
        # Ctrl-C becomes a normal stop before the banner says so: installed after it, a Ctrl-C
        # that came right after the banner was still "interrupted while starting" (130).
        signals = StopSignals()
        print(banner(settings, ports, admin_token, nats_url, nats is not None), flush=True)
        return _supervise(children, restart, signals)
    except KeyboardInterrupt:
        raise Interrupted("interrupted while starting; stopped everything it had started") from None
    except ChildFailed as exc:
        if any(proc.returncode == CHILD_USAGE_ERROR for _, proc, _ in children):
            return CHILD_USAGE_ERROR  # the child printed its one line
        print(f"vivified up: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"vivified up: {exc}", file=sys.stderr)
        return 1
    finally:
        StopSignals()  # a second Ctrl-C must not cut the cleanup short
        stop_all([proc for _, proc, _ in children], 10)  # then kill: Ctrl-C must end it
        if nats is not None:
            nats.stop(timeout=5)


def _client_host(host: str) -> str:
    """An address a local client can connect to for a listen address."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _admin_line(settings: Settings, admin_token: str | None) -> str:
    token_file = token_path(settings)
    if settings.admin_token:
        return 'ADMIN="$VIVIFIED_ADMIN_TOKEN"   # set in the shell that started core'
    if token_file.exists():
        return f"ADMIN=$(cat {token_file})"
    if admin_token:
        return f"ADMIN={admin_token}"
    return "ADMIN=...   # lost it? vivified admin reset-token (see above)"


def _admin_token_lines(settings: Settings, admin_token: str | None) -> list[str]:
    reset = "vivified admin reset-token" + (
        f" --data-dir {settings.data_dir}" if settings.data_dir != Path(".vivified") else ""
    )
    if settings.admin_token:
        return []
    if admin_token:
        return [
            "",
            f"  Bootstrap admin token (shown once; also in {token_path(settings)}, mode 0600):",
            f"    {admin_token}",
            f"  Lost it? `{reset}` prints a new one and revokes this one.",
        ]
    where = token_path(settings)
    saved = f"in {where}" if where.exists() else f"not in {where} any more"
    return ["", f"  admin token    {saved}   (new one: `{reset}`)"]


def banner(
    settings: Settings,
    ports: dict[str, int],
    admin_token: str | None,
    nats_url: str,
    embedded_nats: bool,
) -> str:
    """What `vivified up` prints once everything listens: where, and commands to paste."""
    host = _client_host(settings.host)
    gw = f"http://{host}:{ports['gateway']}"
    egress = f"{host}:{ports['egress']}"
    lines = [
        "",
        "Vivified core is up.",
        f"  gateway        {gw}   (health: {gw}/healthz, API: {gw}/openapi.json)"
        + (f", {settings.gateway_workers} workers" if settings.gateway_workers > 1 else ""),
        f"  console        {gw}/console   (sign in with the admin token)",
        f"  egress proxy   http://{egress}   (CA: {gw}/egress/ca.pem)"
        + (f", {settings.egress_workers} workers" if settings.egress_workers > 1 else ""),
        f"  registry       {settings.database_url or settings.data_dir / 'registry.db'}",
        f"  NATS           {nats_url}   ({'embedded, JetStream' if embedded_nats else 'external'})",
        f"  data dir       {settings.data_dir.resolve()}",
    ]
    lines += _admin_token_lines(settings, admin_token)
    manifest = EXAMPLE_MANIFEST if EXAMPLE_MANIFEST.exists() else Path("manifest.json")
    lines += [
        "",
        "  Register a plugin and approve it (paste into a shell; needs curl and python3):",
        "    " + _admin_line(settings, admin_token),
        f"    GW={gw}",
        "    json() { python3 -c \"import json, sys; print(json.load(sys.stdin)['$1'])\"; }",
        '    REGTOKEN=$(curl -sf -X POST "$GW/admin/registration-tokens" \\',
        "      -H \"Authorization: Bearer $ADMIN\" -H 'Content-Type: application/json' \\",
        '      -d \'{"uses": 1, "ttl_seconds": 3600}\' | json token)',
        '    REG=$(curl -sf -X POST "$GW/plugins/register" -H "Authorization: Bearer $REGTOKEN" \\',
        f"      -H 'Content-Type: application/json' --data @{manifest})",
        '    PLUGIN=$(echo "$REG" | json id); PLUGIN_TOKEN=$(echo "$REG" | json token)',
        '    curl -s -w "\\n" -X POST "$GW/plugins/$PLUGIN/enable" '
        '-H "Authorization: Bearer $ADMIN"',
        "  Through the egress proxy it reaches only the hosts an admin allows it (403 until then):",
        f"    EGRESS=http://$PLUGIN:$PLUGIN_TOKEN@{egress}",
        '    http_proxy="$EGRESS" curl -s http://example.com/; echo',
        "  In a plugin's environment set both spellings (curl ignores HTTP_PROXY, wget reads only",
        "  lower case) and keep the gateway out of the proxy (else 403 gateway_via_proxy):",
        '    export http_proxy="$EGRESS" HTTP_PROXY="$EGRESS" https_proxy="$EGRESS" '
        'HTTPS_PROXY="$EGRESS"',
        f'    export no_proxy="{host}" NO_PROXY="{host}"',
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _start_child(
    name: str,
    port: int,
    run_dir: Path,
    config_file: str | None,
    debug: bool,
    env: dict[str, str],
    lock: DataDirLock,
) -> tuple[str, subprocess.Popen[Any], Path]:
    """Start `vivified gateway` or `vivified egress` on `port`; (name, process, port file)."""
    port_file = run_dir / f"{name}.port"
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "vivified", name, f"--{name}-port", str(port)]
    cmd += ["--port-file", str(port_file)]
    cmd += ["--config", config_file] if config_file else []
    cmd += ["--debug"] if debug else []
    # Our own interpreter and module with validated settings: no untrusted input.
    proc = subprocess.Popen(cmd, env=env, pass_fds=(lock.fd,))  # noqa: S603
    return name, proc, port_file


class _Restarter:
    """Starts a dead child again on the port it had bound (port 0 picked one: keep it), like
    the gateway's own workers: more than MAX_RESTARTS deaths within RESTART_WINDOW seconds
    is a crash loop, and `up` stops (ChildFailed)."""

    def __init__(
        self,
        run_dir: Path,
        config_file: str | None,
        debug: bool,
        env: dict[str, str],
        lock: DataDirLock,
        ports: dict[str, int],
    ) -> None:
        self.args = (run_dir, config_file, debug, env, lock)
        self.ports = ports
        self.deaths: list[float] = []

    def __call__(self, name: str, returncode: int) -> tuple[str, subprocess.Popen[Any], Path]:
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if t > now - RESTART_WINDOW] + [now]
        if returncode == CHILD_USAGE_ERROR or len(self.deaths) > MAX_RESTARTS:
            loop = f" ({len(self.deaths)} deaths within {RESTART_WINDOW:.0f} s)"
            raise ChildFailed(
                f"{name} exited with {returncode}"
                + ("" if returncode == CHILD_USAGE_ERROR else loop)
            )
        print(f"vivified up: {name} exited with {returncode}; starting it again", file=sys.stderr)
        child = _start_child(name, self.ports[name], *self.args)
        wait_port(child[2], child[1], name, 120)
        return child


def _supervise(
    children: list[tuple[str, subprocess.Popen[Any], Path]],
    restart: _Restarter,
    signals: StopSignals,
) -> int:
    """Watch the children until Ctrl-C (`signals`); start a dead one again (a bounded crash
    loop). The list is updated in place so the caller stops the replacements too."""
    while not signals.stop:
        for i, (name, proc, _) in enumerate(children):
            if proc.poll() is not None and not signals.stop:
                children[i] = restart(name, proc.returncode)
        time.sleep(0.2)
    return 0


__all__ = ["ADMIN_TOKEN_FILE", "banner", "up"]
