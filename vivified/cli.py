"""The `vivified` command: up, gateway, egress, validate, audit verify, keys rotate,
admin reset-token, config docs/check.

An operator mistake ends in one line on stderr and exit status 2 (`--debug` shows the
traceback instead); a second instance on a data dir in one line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from vivified.config.logs import configure_logging, process_name
from vivified.config.operator_errors import (
    DB_ERRORS,
    database_unreachable,
    lock_data_dir,
    port_must_be_free,
    registry_must_exist,
    require_registry_tables,
    run_command,
)
from vivified.config.settings import Settings, inspect_settings, load_settings
from vivified.devkit import commands as devkit


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (also VIVIFIED_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (VIVIFIED_DATA_DIR, ./.vivified)")
    parser.add_argument("--host", help="listen address (VIVIFIED_HOST, 127.0.0.1)")
    parser.add_argument("--gateway-port", type=int, help="gateway port (8000)")
    parser.add_argument("--egress-port", type=int, help="egress proxy port (8081)")
    parser.add_argument("--port-file", help="write the bound port here once listening")


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {
        "data_dir": args.data_dir,
        "host": args.host,
        "gateway_port": args.gateway_port,
        "egress_port": args.egress_port,
    }


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(_flags(args), config_file=args.config)


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
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "run gateway and egress proxy together on this machine"),
        ("gateway", "run the gateway alone (one replica; VIVIFIED_GATEWAY_WORKERS processes)"),
        ("egress", "run the egress proxy alone (one replica; VIVIFIED_EGRESS_WORKERS processes)"),
    ):
        command = sub.add_parser(name, help=help_text)
        _settings_flags(command)
        if name != "up":  # one of several on a shared port (started by the supervisor)
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
    admin = sub.add_parser("admin", help="bootstrap admin tools")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    reset = admin_sub.add_parser(
        "reset-token",
        help="print a new bootstrap admin token (also written to <data dir>/admin-token) "
        "and revoke the old one",
    )
    _settings_flags(reset)
    config = sub.add_parser("config", help="settings tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    docs = config_sub.add_parser("docs", help="print the settings reference as a Markdown table")
    docs.add_argument(
        "--write",
        metavar="FILE",
        help="replace the table between the settings markers of FILE instead of printing it",
    )
    check = config_sub.add_parser(
        "check", help="print the effective settings (secrets masked) and every problem"
    )
    _settings_flags(check)
    devkit.add_parsers(sub)
    _debug_everywhere(parser)
    return parser


_DEBUG_HELP = "on an error, show the traceback instead of one line"


def _debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """`--debug` after any (sub)command too, not only before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not any("--debug" in a.option_strings for a in child._actions):
                    child.add_argument(
                        "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
                    )
                _debug_everywhere(child)


def _command_name(args: argparse.Namespace) -> str:
    sub = next(
        (
            getattr(args, a)
            for a in ("audit_command", "keys_command", "admin_command")
            if getattr(args, a, None)
        ),
        getattr(args, "config_command", None),
    )
    return f"{args.command} {sub}" if sub else str(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    return run_command(_command_name(args), lambda: _run(args), debug=debug)


def _run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        from vivified.registry.manifest.cli import validate_files

        return validate_files(args.files, as_json=args.json, out=sys.stdout)
    if args.command == "config" and args.config_command == "check":
        return _config_check(args)
    if args.command == "config":
        return _config_docs(args.write)
    if args.command in devkit.COMMANDS:
        return devkit.run(args)
    settings = _settings(args)
    configure_logging(
        settings.log_level,
        access_log=settings.access_log,
        fmt=settings.log_format,
        process=process_name(args.command, worker=bool(getattr(args, "worker", False))),
        otlp_endpoint=settings.otlp_endpoint,
    )
    if args.command in ("gateway", "egress"):
        return _serve(settings, args)
    if args.command == "audit":
        registry_must_exist(settings)
        return asyncio.run(_audit_verify(settings))
    if args.command == "keys":
        registry_must_exist(settings)
        return asyncio.run(_rotate_keys(settings))
    if args.command == "admin":
        return _reset_token(settings)
    from vivified.config.up import up

    return up(settings, args.config, debug=bool(getattr(args, "debug", False)))


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """`vivified gateway` / `vivified egress`: under `vivified up`'s lock, or a shared one."""
    lock = None
    if not getattr(args, "worker", False):  # a worker runs under its supervisor's lock
        lock = lock_data_dir(settings, args.command, exclusive=False)
        port = settings.gateway_port if args.command == "gateway" else settings.egress_port
        port_must_be_free(settings.host, port, args.command)
    try:
        return _serve_locked(settings, args)
    finally:
        if lock is not None:
            lock.release()


def _serve_locked(settings: Settings, args: argparse.Namespace) -> int:
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
    if settings.egress_workers > 1 and not args.worker:
        from vivified.egress.launcher import supervise as supervise_egress

        if not settings.nats_url:
            logging.getLogger("vivified.egress.launcher").warning(
                "egress workers without VIVIFIED_NATS_URL: a change (a revoked plugin's open "
                "tunnels included) reaches each worker at its next periodic reload, not at once"
            )
        return supervise_egress(settings, args.port_file, _passthrough(args))
    from vivified.egress.launcher import main as egress_main

    return egress_main(settings, port_file=args.port_file, worker=args.worker)


def _config_check(args: argparse.Namespace) -> int:
    from vivified.config.settings_report import render_report

    settings, gathered = inspect_settings(_flags(args), config_file=args.config)
    print(render_report(settings, gathered), flush=True)
    for problem in gathered.problems:
        print(f"vivified config check: {problem}", file=sys.stderr)
    return 2 if gathered.problems else 0


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
        await require_registry_tables(settings, engine)
        report = await verify_chain(session_factory(engine))
    except DB_ERRORS as exc:
        raise database_unreachable(settings, exc) from exc
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
        await require_registry_tables(settings, engine)
        await migrate(engine)
        keys = KeyStore(session_factory(engine))
        await keys.load(create=True)
        kid = await keys.rotate(publish_for=settings.token_ttl + 3600)
    except DB_ERRORS as exc:
        raise database_unreachable(settings, exc) from exc
    finally:
        await engine.dispose()
    from vivified.config.bus import KEYS_CHANGED
    from vivified.config.propagation import announce

    # Running replicas follow at once on the notice, else at their next periodic reload.
    told = await announce(settings, KEYS_CHANGED)
    print(f"new signing key {kid}; older keys stay published until their tokens expire")
    if settings.nats_url and not told:
        print("NATS did not answer: running replicas switch at their next periodic reload")
    return 0


def _reset_token(settings: Settings) -> int:
    from vivified.config.admin_token import reset_token

    registry_must_exist(settings)
    token, revoked, saved = asyncio.run(reset_token(settings))
    where = f"; also in {saved}, mode 0600" if saved else ""
    print(f"New bootstrap admin token (shown once{where}):")
    print(f"    {token}")
    print(
        f"Revoked {revoked} earlier bootstrap token{'s' * (revoked != 1)}; "
        "other admins' tokens are unchanged."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
