"""A registry an egress proxy can serve from, written directly (no gateway): the schema, the
signing keys, plugins with their egress allowlists, the `egress` config document, and a plugin
token for each plugin. Used by the egress test rig, the PostgreSQL poison test and the egress
benches (`scripts/bench_egress_procs.py`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SeedPlugin:
    """One registered plugin as the egress proxy sees it."""

    id: str
    domains: list[str]
    mode: str = "enforce"  # the allowlist's mode: enforce or report
    status: str = "active"
    manifest: dict[str, Any] = field(default_factory=dict)  # {"id": id} is always set


async def seed_registry(
    url: str, document: dict[str, Any], plugins: Sequence[SeedPlugin]
) -> dict[str, str]:
    """Migrate the registry at `url` (an async SQLAlchemy URL) and add `plugins` and the egress
    `document`; returns each plugin's token (generation 1, one hour)."""
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.identity.tokens import TokenService
    from vivified.registry.store.engine import create_engine, migrate, session_factory
    from vivified.registry.store.tables import ConfigDocument, Plugin

    engine = create_engine(url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        keys = KeyStore(sessions)
        await keys.load(create=True)
        issuer = TokenService(keys, issuer="vivified-core", ttl=3600)
        now = time.time()
        tokens = {}
        async with sessions() as s:
            for p in plugins:
                s.add(
                    Plugin(
                        id=p.id,
                        name=p.id,
                        version="1.0.0",
                        manifest={**p.manifest, "id": p.id},
                        status=p.status,
                        gen=1,
                        egress_domains=p.domains,
                        egress_mode=p.mode,
                        created_at=now,
                        updated_at=now,
                    )
                )
                tokens[p.id] = issuer.issue_plugin_token(p.id, 1).token
            s.add(ConfigDocument(name="egress", document=document, version=1, updated_at=now))
            await s.commit()
        return tokens
    finally:
        await engine.dispose()
