"""How the manifest validator reports, and the JSON shapes its checkers share.

A `Report` collects every problem (JSON Pointer path, code, message) instead of raising at the
first; the helpers check a value's JSON type, an object's known and unknown members (with a
"did you mean"), lists of strings and arbitrary JSON, each reporting into the `Report`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_ITEMS = 256  # of any list in a manifest
MAX_DEPTH = 32  # of free-form JSON (schemas, resources)


@dataclass(frozen=True)
class Problem:
    """One problem: RFC 6901 JSON pointer `path`, stable snake_case `code`, a fix-it message."""

    path: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


@dataclass
class Report:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, path: str, code: str, message: str) -> None:
        self.errors.append(Problem(path, code, message))

    def warn(self, path: str, code: str, message: str) -> None:
        self.warnings.append(Problem(path, code, message))


def pointer(*parts: object) -> str:
    """An RFC 6901 JSON pointer: `pointer("a/b", 1)` → `/a~1b/1`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def show(value: object) -> str:
    """A short, safe rendering of a value for messages (never huge, never raising)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value) if abs(value) < 10**18 else "a very large number"
    if isinstance(value, float | str):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    kind = json_type(value)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return is_int(value)


def wrong_type(r: Report, path: str, expected: str, value: object) -> None:
    r.error(path, "invalid_type", f"expected {expected}, got {show(value)}")


def did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def obj(
    r: Report, value: object, path: str, known: Collection[str], required: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Check an object's keys; returns (known fields, cloned `x-` extensions) or None."""
    if not isinstance(value, dict):
        wrong_type(r, path, "an object", value)
        return None
    fields: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and key in known:
            fields[key] = item
        elif isinstance(key, str) and key.startswith("x-"):
            cloned = clone_json(r, item, pointer_join(path, key))
            if cloned is not _INVALID:
                extras[key] = cloned
        else:
            name = key if isinstance(key, str) else show(key)
            allowed = ", ".join(sorted(known))
            r.error(
                pointer_join(path, name),
                "unknown_field",
                f"unknown field {show(name)}{did_you_mean(name, known)} (allowed: {allowed}; "
                "prefix private extensions with 'x-')",
            )
    for key in required:
        if key not in fields:
            r.error(pointer_join(path, key), "missing_field", f"the field {key!r} is required")
    return fields, extras


def pointer_join(base: str, *parts: object) -> str:
    return base + pointer(*parts)


_INVALID = object()


def clone_json(r: Report, value: object, path: str, depth: int = 0) -> Any:
    """A deep copy of a JSON value; anything else (NaN, sets, objects) is a `not_json` error."""
    if depth > MAX_DEPTH:
        r.error(path, "not_json", f"nested deeper than {MAX_DEPTH} levels; flatten it")
        return _INVALID
    if value is None or isinstance(value, str | bool) or is_int(value):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        r.error(path, "not_json", f"{show(value)} is not a JSON number; use a finite number")
        return _INVALID
    if isinstance(value, list | tuple):
        items = [clone_json(r, v, pointer_join(path, i), depth + 1) for i, v in enumerate(value)]
        return _INVALID if any(i is _INVALID for i in items) else items
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                r.error(path, "not_json", f"object keys must be strings, not {show(k)}")
                return _INVALID
            out[k] = clone_json(r, v, pointer_join(path, k), depth + 1)
        return _INVALID if any(v is _INVALID for v in out.values()) else out
    r.error(path, "not_json", f"{show(value)} is not a JSON value")
    return _INVALID


def string_list(
    r: Report,
    value: object,
    path: str,
    *,
    what: str,
    pattern: re.Pattern[str] | None = None,
    code: str = "",
    hint: str = "",
    min_items: int = 0,
) -> list[str] | None:
    """A list of unique strings, each matching `pattern` (else `code`); duplicates are
    `duplicate_<what>`. Returns the valid, de-duplicated strings, or None if not a list."""
    if not isinstance(value, list):
        wrong_type(r, path, f"a list of {what}s", value)
        return None
    if len(value) < min_items:
        r.error(path, "empty_list", f"list at least {min_items} {what}{hint}")
    if len(value) > MAX_ITEMS:
        r.error(path, "too_many_items", f"at most {MAX_ITEMS} {what}s are allowed")
        return None
    out: list[str] = []
    for i, item in enumerate(value):
        here = pointer_join(path, i)
        if not isinstance(item, str):
            wrong_type(r, here, f"a {what} string", item)
        elif pattern is not None and (len(item) > 200 or not pattern.fullmatch(item)):
            r.error(here, code, f"{show(item)} is not a valid {what}{hint}")
        elif item in out:
            r.error(here, f"duplicate_{what}", f"{show(item)} is listed twice; list it once")
        else:
            out.append(item)
    return out
