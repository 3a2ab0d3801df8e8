"""The settings reference: a Markdown table rendered from the `Settings` fields' metadata."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vivified.config.settings import ENV_PREFIX, Settings

START_MARKER = "<!-- settings:start -->"
END_MARKER = "<!-- settings:end -->"
_HEADER = (
    "| environment variable | TOML key | type | default | allowed | description |\n"
    "|---|---|---|---|---|---|"
)


class SettingsDocError(ValueError):
    """A document has no (or a broken) pair of settings markers."""


def env_name(name: str) -> str:
    """The environment variable of a settings field."""
    return ENV_PREFIX + name.upper()


def undocumented() -> list[str]:
    """Names of `Settings` fields without a `doc` in their metadata."""
    return [f.name for f in dataclasses.fields(Settings) if not f.metadata.get("doc")]


def render_table() -> str:
    """Every setting, one row each, in declaration order."""
    rows = [_HEADER]
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        cells = (
            f"`{env_name(f.name)}`",
            f"`{f.name}`",
            _type_name(f.type),
            _default(f.default),
            _allowed(meta),
            str(meta.get("doc", "")) + (" Secret: never logged." if meta.get("secret") else ""),
        )
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def between_markers(document: str) -> str:
    """The text between the settings markers of `document`, without surrounding blank lines."""
    start, end = _marker_span(document)
    return document[start:end].strip("\n")


def splice(document: str, table: str) -> str:
    """`document` with the text between its settings markers replaced by `table`."""
    start, end = _marker_span(document)
    return document[:start] + "\n" + table.strip("\n") + "\n" + document[end:]


def write_table(path: Path) -> bool:
    """Regenerate the table inside the Markdown file at `path`; True when it changed."""
    text = path.read_text(encoding="utf-8")
    updated = splice(text, render_table())
    if updated == text:
        return False
    path.write_text(updated, encoding="utf-8")
    return True


def _marker_span(document: str) -> tuple[int, int]:
    if document.count(START_MARKER) != 1 or document.count(END_MARKER) != 1:
        raise SettingsDocError(f"need exactly one {START_MARKER} and one {END_MARKER}")
    start = document.index(START_MARKER) + len(START_MARKER)
    end = document.index(END_MARKER)
    if end < start:
        raise SettingsDocError(f"{END_MARKER} comes before {START_MARKER}")
    return start, end


def _type_name(annotation: Any) -> str:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return {
        "Path": "path",
        "str": "string",
        "int": "integer",
        "float": "number",
        "bool": "boolean",
    }.get(name, name)


def _default(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if value == "":
        return "*(empty)*"
    return f"`{value}`"


def _allowed(meta: Any) -> str:
    choices = meta.get("choices")
    if choices:
        return ", ".join(f"`{c}`" for c in choices)
    low, high, above = meta.get("min"), meta.get("max"), meta.get("above")
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f"≥ {low:g}"
    if above is not None:
        return f"> {above:g}"
    return "—"
