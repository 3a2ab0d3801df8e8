"""Operator mistakes: one line naming the path, setting or value and what to do; exit 2.

A command's body raises `OperatorError` (or `SettingsError`); `run_command` prints it as
`vivified <command>: <what>` on stderr and returns its status. Ctrl-C before the command is
up is a clean exit 130 with one line. `--debug` lets every exception through with its
traceback. An unexpected error is one line too, pointing at `--debug`.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncEngine

from vivified.config.datadir_lock import DataDirBusy, DataDirLock, acquire
from vivified.config.settings import Settings, SettingsError

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C'd command
DB_ERRORS = (OSError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


class OperatorError(Exception):
    """Something the operator can fix; the message says what and how (exit status 2)."""

    status = 2


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) before the command was up; the message says what was done."""


def run_command(name: str, body: Callable[[], int], *, debug: bool) -> int:
    """Run `body`, turning operator mistakes into one line on stderr and an exit status."""
    if debug:
        return body()
    try:
        return body()
    except (OperatorError, SettingsError) as exc:
        return _say(name, str(exc), 2)
    except DataDirBusy as exc:
        return _say(name, str(exc), 1)
    except (KeyboardInterrupt, Interrupted) as exc:
        text = str(exc) or "interrupted; nothing is left running"
        return _say(name, text, INTERRUPTED)
    except Exception as exc:  # a bug, not a mistake: still no traceback unless asked for
        text = f"unexpected {type(exc).__name__}: {exc} (run again with --debug for details)"
        return _say(name, text, 1)


def _say(name: str, text: str, status: int) -> int:
    line = " ".join(text.split())  # one line, whatever the message held
    print(f"vivified {name}: {line}", file=sys.stderr, flush=True)
    return status


def usable_data_dir(path: Path, *, create: bool) -> Path:
    """`path` as a writable directory (created when `create`); OperatorError otherwise."""
    where = f"data dir {path}"
    fix = "choose another with --data-dir or VIVIFIED_DATA_DIR"
    if path.exists() and not path.is_dir():
        raise OperatorError(f"{where} is a file, not a directory: {fix}")
    if not path.exists():
        if not create:
            raise OperatorError(f"{where} does not exist: {fix}, or start core there first")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OperatorError(f"cannot create {where}: {_reason(exc)}: {fix}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OperatorError(f"{where} is not writable by this user: fix its permissions or {fix}")
    return path


def lock_data_dir(settings: Settings, command: str, *, exclusive: bool) -> DataDirLock:
    """The data dir, made if missing and checked, locked for `command` (see datadir_lock);
    DataDirBusy when another instance holds it."""
    usable_data_dir(settings.data_dir, create=True)
    try:
        return acquire(settings.data_dir, command, exclusive=exclusive)
    except OSError as exc:
        raise OperatorError(
            f"cannot lock data dir {settings.data_dir.resolve()}: {_reason(exc)}: fix its "
            "permissions or choose another with --data-dir or VIVIFIED_DATA_DIR"
        ) from exc


def registry_must_exist(settings: Settings) -> None:
    """Commands that work on an existing registry never create one (SQLite in the data dir)."""
    if settings.database_url:
        return  # a database server: connecting tells (see `database_unreachable`)
    usable_data_dir(settings.data_dir, create=False)
    registry = settings.data_dir / "registry.db"
    if not registry.is_file():
        raise OperatorError(
            f"no registry at {registry.resolve()}: run this where the data dir is, or give it "
            "with --data-dir or VIVIFIED_DATA_DIR (or VIVIFIED_DATABASE_URL)"
        )


async def require_registry_tables(settings: Settings, engine: AsyncEngine) -> None:
    """OperatorError unless the database holds a registry (migrated at least once)."""

    def _has(conn: sqlalchemy.Connection) -> bool:
        return sqlalchemy.inspect(conn).has_table("alembic_version")

    async with engine.connect() as conn:
        found = await conn.run_sync(_has)
    if not found:
        where = (
            "the database VIVIFIED_DATABASE_URL names"
            if settings.database_url
            else (f"{settings.data_dir.resolve() / 'registry.db'}")
        )
        raise OperatorError(f"no registry in {where}: start core on it first (`vivified up`)")


def database_unreachable(settings: Settings, exc: BaseException) -> OperatorError:
    """One line for a registry database that cannot be opened or reached."""
    from vivified.config.setting_rules import mask_url

    where = mask_url(settings.database_url) if settings.database_url else "the SQLite registry"
    cause = _reason(exc) if isinstance(exc, OSError) else str(exc).splitlines()[0][:200]
    return OperatorError(
        f"cannot open the registry database {where}: {cause}: check VIVIFIED_DATABASE_URL "
        "and that the database is running"
    )


def port_must_be_free(host: str, port: int, what: str) -> None:
    """OperatorError when `port` (not 0) cannot be listened on at `host`."""
    if port == 0:
        return
    flag = f"--{what}-port or VIVIFIED_{what.upper()}_PORT"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OperatorError(
                    f"{what} port {port} on {host} is in use: stop what listens there, or "
                    f"choose another with {flag} (0 picks a free one)"
                ) from exc
            if exc.errno == errno.EACCES:
                raise OperatorError(
                    f"{what} port {port} on {host} needs privileges: choose one above 1023 "
                    f"with {flag}"
                ) from exc
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise OperatorError(
                    f"cannot listen on {host}: not an address of this machine; set --host or "
                    "VIVIFIED_HOST (127.0.0.1, 0.0.0.0)"
                ) from exc
            raise OperatorError(f"cannot listen on {host}:{port}: {_reason(exc)}") from exc


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
