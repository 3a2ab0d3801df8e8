"""`vivified config check`: the effective settings, where each came from, and the problems."""

from __future__ import annotations

import dataclasses

from vivified.config.setting_rules import Gathered, repr_raw, shown
from vivified.config.settings import ENV_PREFIX, Settings


def render_report(settings: Settings, gathered: Gathered) -> str:
    """One line per setting: variable, value (secrets masked), source; then the verdict."""
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(Settings):
        source = gathered.sources.get(f.name)
        if f.name in gathered.refused and source is not None:
            value = shown(f, source.raw) if f.metadata.get("secret") else repr_raw(source.raw)
            origin = f"({_origin(source.kind, source.where)}, refused)"
        else:
            value = shown(f, getattr(settings, f.name))
            origin = f"({_origin(source.kind, source.where)})" if source else "(default)"
        rows.append((ENV_PREFIX + f.name.upper(), value if value != "" else "(empty)", origin))
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{name:<{width}}  {value}  {origin}" for name, value, origin in rows]
    count = len(gathered.problems)
    lines.append("")
    lines.append("no problems" if not count else f"{count} problem{'s' * (count != 1)} (below)")
    return "\n".join(lines)


def _origin(kind: str, where: str) -> str:
    return f"file {where}" if kind == "file" else kind
