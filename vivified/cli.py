"""The `vivified` command: up, gateway, egress, validate, audit verify, keys rotate, config docs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from vivified.config.children import StopSignals, stop_all, wait_port
from vivified.config.logs import configure_logging
from vivified.config.nats_server import ManagedNats
from vivified.config.settings import Settings, SettingsError, load_settings
from vivified.devkit import commands as devkit


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (also VIVIFIED_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (VIVIFIED_DATA_DIR, ./.vivified)")
    parser.add_argument("--host", help="listen address (VIVIFIED_HOST, 127.0.0.1)")
    parser.add_argument("--gateway-port", type=int, help="gateway port (8000)")
    parser.add_argument("--egress-port", type=int, help="egress proxy port (8081)")
    parser.add_argument("--port-file", help="write the bound port here once listening")


def _settings(args: argparse.Namespace) -> Settings:
    flags = {
        "data_dir": args.data_dir,
        "host": args.host,
        "gateway_port": args.gateway_port,
        "egress_port": args.egress_port,
    }
    return load_settings(flags, config_file=args.config)


def _passthrough(args: argparse.Namespace) -> list[str]:
    """The settings flags given to this command, for its worker processes."""
    out: list[str] = []
    for flag in ("config", "data_dir", "host"):
        value = getattr(args, flag)
        if value is not None:
            out += [f"--{flag.replace('_', '-')}", str(value)]
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vivified", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "run gateway and egress proxy together on this machine"),
        ("gateway", "run the gateway alone (one replica; VIVIFIED_GATEWAY_WORKERS processes)"),
        ("egress", "run the egress proxy alone (one replica)"),
    ):
        command = sub.add_parser(name, help=help_text)
        _settings_flags(command)
        if name == "gateway":  # one of several on a shared port (started by the supervisor)
            command.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    val = sub.add_parser("validate", help="validate plugin manifest files")
    val.add_argument("files", nargs="+")
    val.add_argument("--json", action="store_true", help="machine-readable output")
    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    _settings_flags(audit_sub.add_parser("verify", help="verify the audit hash chain"))
    keys = sub.add_parser("keys", help="signing key tools")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="start signing with a new key")
    _settings_flags(rotate)
    config = sub.add_parser("config", help="settings tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    docs = config_sub.add_parser("docs", help="print the settings reference as a Markdown table")
    docs.add_argument(
        "--write",
        metavar="FILE",
        help="replace the table between the settings markers of FILE instead of printing it",
    )
    devkit.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        from vivified.registry.manifest.cli import validate_files

        return validate_files(args.files, as_json=args.json, out=sys.stdout)
    if args.command == "config":
        return _config_docs(args.write)
    if args.command in devkit.COMMANDS:
        return devkit.run(args)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"vivified: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "gateway" and settings.gateway_workers > 1 and not args.worker:
        from vivified.gateway.workers import supervise

        if not settings.nats_url:
            logging.getLogger("vivified.gateway.workers").warning(
                "gateway workers without VIVIFIED_NATS_URL: a change made through one worker "
                "reaches the others at their next periodic reload, not at once"
            )
        return supervise(
            settings.gateway_workers,
            settings.gateway_port,
            args.port_file,
            _passthrough(args),
        )
    if args.command == "gateway":
        from vivified.gateway.serve import serve_gateway

        # uvloop (shipped with uvicorn[standard]) roughly doubles what one core proxies.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(
                serve_gateway(settings, port_file=args.port_file, reuse_port=args.worker)
            )
    if args.command == "egress":
        from vivified.egress.launcher import main as egress_main

        return egress_main(settings, port_file=args.port_file)
    if args.command == "audit":
        return asyncio.run(_audit_verify(settings))
    if args.command == "keys":
        return asyncio.run(_rotate_keys(settings))
    return up(settings, args)


def _config_docs(write: str | None) -> int:
    from vivified.config.settings_doc import SettingsDocError, render_table, write_table

    if write is None:
        print(render_table())
        return 0
    try:
        changed = write_table(Path(write))
    except (OSError, SettingsDocError) as exc:
        print(f"vivified config docs: {write}: {exc}", file=sys.stderr)
        return 1
    print(f"{write}: {'settings table regenerated' if changed else 'already up to date'}")
    return 0


async def _audit_verify(settings: Settings) -> int:
    from vivified.registry.audit.chain import verify_chain
    from vivified.registry.store.engine import create_engine, session_factory

    engine = create_engine(settings.sqlalchemy_url)
    try:
        report = await verify_chain(session_factory(engine))
    finally:
        await engine.dispose()
    if report.ok:
        print(f"audit chain OK: {report.checked} records verified")
        return 0
    print(
        f"audit chain BROKEN at record {report.first_bad_id}: {report.problem} "
        f"({report.checked} records checked)",
        file=sys.stderr,
    )
    return 1


async def _rotate_keys(settings: Settings) -> int:
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.store.engine import create_engine, migrate, session_factory

    engine = create_engine(settings.sqlalchemy_url)
    try:
        await migrate(engine)
        keys = KeyStore(session_factory(engine))
        await keys.load(create=True)
        kid = await keys.rotate(publish_for=settings.token_ttl + 3600)
    finally:
        await engine.dispose()
    print(f"new signing key {kid}; older keys stay published until their tokens expire")
    return 0


async def _prepare(settings: Settings) -> str | None:
    """Migrate, create keys and the bootstrap admin before any replica starts."""
    from vivified.registry.identity.admins import ensure_bootstrap_admin
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.store.engine import create_engine, migrate, session_factory

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.sqlalchemy_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        await KeyStore(sessions).load(create=True)
        token = await ensure_bootstrap_admin(sessions, settings.admin_token)
    finally:
        await engine.dispose()
    if token is not None:
        save_admin_token(settings.data_dir, token)
    return token


def up(settings: Settings, args: argparse.Namespace) -> int:
    """Run the whole stack on one machine and stop it cleanly on Ctrl-C."""
    admin_token = asyncio.run(_prepare(settings))
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "VIVIFIED_DATA_DIR": str(settings.data_dir.resolve()),
            "VIVIFIED_HOST": settings.host,
        }
    )
    children: list[tuple[str, subprocess.Popen[Any], Path]] = []
    nats: ManagedNats | None = None
    try:
        if not settings.nats_url:  # embedded NATS with JetStream, data under the data dir
            nats = ManagedNats(settings.data_dir.resolve(), settings.host)
            env["VIVIFIED_NATS_URL"] = nats.start()
        for name, port in (("gateway", settings.gateway_port), ("egress", settings.egress_port)):
            port_file = run_dir / f"{name}.port"
            port_file.unlink(missing_ok=True)
            cmd = [
                sys.executable,
                "-m",
                "vivified",
                name,
                f"--{name}-port",
                str(port),
                "--port-file",
                str(port_file),
            ]
            if args.config:
                cmd += ["--config", args.config]
            # Our own interpreter and module with validated settings: no untrusted input.
            children.append((name, subprocess.Popen(cmd, env=env), port_file))  # noqa: S603
        ports = {name: wait_port(pf, proc, name, 120) for name, proc, pf in children}
        nats_url = env.get("VIVIFIED_NATS_URL", "")
        print(banner(settings, ports, admin_token, nats_url, nats is not None), flush=True)
        return _supervise([proc for _, proc, _ in children])
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"vivified up: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_all([proc for _, proc, _ in children], 10)  # then kill: Ctrl-C must end it
        if nats is not None:
            nats.stop(timeout=5)


ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 (a file name in the data dir, mode 0600)
EXAMPLE_MANIFEST = (
    Path(__file__).resolve().parents[1] / "docs" / "examples" / "user-management.manifest.json"
)


def save_admin_token(data_dir: Path, token: str) -> Path:
    """Keep the generated bootstrap admin token where only this user can read it."""
    path = data_dir / ADMIN_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
        fh.write(token + "\n")
    return path


def _client_host(host: str) -> str:
    """An address a local client can connect to for a listen address."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _admin_line(settings: Settings, admin_token: str | None) -> str:
    token_file = settings.data_dir.resolve() / ADMIN_TOKEN_FILE
    if settings.admin_token:
        return 'ADMIN="$VIVIFIED_ADMIN_TOKEN"   # set in the shell that started core'
    if token_file.exists():
        return f"ADMIN=$(cat {token_file})"
    if admin_token:
        return f"ADMIN={admin_token}"
    return "ADMIN=...   # the token printed on the first start of this data dir"


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
    token_file = settings.data_dir.resolve() / ADMIN_TOKEN_FILE
    lines = [
        "",
        "Vivified core is up.",
        f"  gateway        {gw}   (health: {gw}/healthz, API: {gw}/openapi.json)"
        + (f", {settings.gateway_workers} workers" if settings.gateway_workers > 1 else ""),
        f"  egress proxy   http://{egress}   (CA: {gw}/egress/ca.pem)",
        f"  registry       {settings.database_url or settings.data_dir / 'registry.db'}",
        f"  NATS           {nats_url}   ({'embedded, JetStream' if embedded_nats else 'external'})",
        f"  data dir       {settings.data_dir.resolve()}",
    ]
    if admin_token:
        saved = f"; also in {token_file}" if token_file.exists() else ""
        lines += ["", f"  Bootstrap admin token (shown once{saved}):", f"    {admin_token}"]
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
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _supervise(procs: list[subprocess.Popen[Any]]) -> int:
    signals = StopSignals()
    while not signals.stop:
        for proc in procs:
            if proc.poll() is not None:
                print(f"vivified up: a child exited with {proc.returncode}", file=sys.stderr)
                return 1
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
