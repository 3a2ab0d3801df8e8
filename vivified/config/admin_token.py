"""The bootstrap admin token on this machine: `<data dir>/admin-token` (mode 0600), the
first-start preparation of `vivified up`, and `vivified admin reset-token`.

A generated token is saved in the same breath as the admin is created (interrupts held until
both are done), so no Ctrl-C can leave an admin nobody has the token of; if it ever is lost
(the file deleted, a standalone `vivified gateway` that never prints it), `vivified admin
reset-token` makes a new one and revokes the old.
"""

from __future__ import annotations

import os
from pathlib import Path

from vivified.config.children import interrupts_deferred
from vivified.config.operator_errors import (
    DB_ERRORS,
    OperatorError,
    database_unreachable,
    require_registry_tables,
)
from vivified.config.settings import Settings

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 (a file name in the data dir, mode 0600)


def token_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / ADMIN_TOKEN_FILE


def save_admin_token(data_dir: Path, token: str) -> Path:
    """Keep the bootstrap admin token where only this user can read it."""
    path = data_dir / ADMIN_TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
            fh.write(token + "\n")
    except OSError as exc:
        raise OperatorError(
            f"cannot write {path}: {(exc.strerror or str(exc)).lower()}: fix the data dir, "
            "then run `vivified admin reset-token` for a new bootstrap admin token"
        ) from exc
    return path


async def prepare_registry(settings: Settings) -> str | None:
    """Migrate, create keys and the bootstrap admin before any replica starts; the generated
    token (already saved to the data dir), or None."""
    from vivified.registry.identity.admins import ensure_bootstrap_admin
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.store.engine import create_engine, migrate, session_factory

    # Ctrl-C waits for all of it (then ends the start): SQLite runs DDL outside the
    # migration's transaction, and an admin must never exist without its saved token.
    with interrupts_deferred():
        engine = create_engine(settings.sqlalchemy_url)
        try:
            await migrate(engine)
            sessions = session_factory(engine)
            await KeyStore(sessions).load(create=True)
            token = await ensure_bootstrap_admin(sessions, settings.admin_token)
            if token is not None:
                save_admin_token(settings.data_dir, token)
        except DB_ERRORS as exc:
            raise database_unreachable(settings, exc) from exc
        finally:
            await engine.dispose()
    return token


async def reset_token(settings: Settings) -> tuple[str, int, Path | None]:
    """A new bootstrap admin token, the older ones revoked: (token, revoked, file or None)."""
    from vivified.registry.audit.records import record_action
    from vivified.registry.audit.writer import AuditWriter
    from vivified.registry.identity.admins import reset_bootstrap_token
    from vivified.registry.store.engine import create_engine, session_factory

    if settings.admin_token:
        raise OperatorError(
            "VIVIFIED_ADMIN_TOKEN is set: the bootstrap admin's token is that value; change it "
            "there (in every process), or unset it and run this again for a generated one"
        )
    with interrupts_deferred():  # a reset is done whole, or not at all
        engine = create_engine(settings.sqlalchemy_url)
        try:
            await require_registry_tables(settings, engine)
            sessions = session_factory(engine)
            audit = AuditWriter(sessions)
            audit.start()
            token, revoked = await reset_bootstrap_token(sessions)
            saved = None
            if settings.data_dir.is_dir():  # a PostgreSQL registry may have no data dir here
                saved = save_admin_token(settings.data_dir, token)
            await record_action(
                audit,
                lane="admin",
                action="admin_token_reset",
                actor="operator:cli",
                target="admin:bootstrap",
                decision="allow",
                reason="changed",
                request_id="",
                status=200,
                started=None,
                detail={"revoked": len(revoked)},
            )
            await audit.stop()
        except DB_ERRORS as exc:
            raise database_unreachable(settings, exc) from exc
        finally:
            await engine.dispose()
    return token, len(revoked), saved
