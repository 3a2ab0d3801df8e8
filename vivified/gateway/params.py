"""Bounded parsing of route parameters, shared by every admin and plugin lifecycle route.

A path item that cannot name anything (a number out of 1..2**63-1, not a number, an
over-long or malformed id) is 404 before any database round trip: nothing could exist there.
A query parameter that breaks its rule is 422 `invalid_query`, with the parameter named in
`errors`. Neither echoes the offending value (it may be megabytes long).

A list route names the parameters it takes (`only_params`): any other name is 422 too
(`unknown_parameter`, with the allowed names), so a typo (`?lanes=`) never silently lists
everything; a parameter with a fixed set of values (`query_choice`) answers 422
`not_allowed` with that set. An empty value (`?lane=`) is the same as leaving it out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from starlette.requests import Request

from vivified.gateway.problems import Problem, not_found

MAX_INT = 2**63 - 1  # the largest value a signed 64-bit column (SQLite, PostgreSQL) holds
MAX_DIGITS = len(str(MAX_INT))
MAX_TEXT = 256  # default cap of a free-text query filter
PLUGIN_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*", re.ASCII)
PLUGIN_ID_MAX = 63
# Opaque record ids core issues (uuid4 hex, `g_` + hex): letters, digits, `_`, `-`.
RECORD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
CONTRACT = re.compile(r"[A-Z][A-Za-z0-9]{0,62}Plugin", re.ASCII)


def _bounded_int(raw: str, lo: int, hi: int) -> int | None:
    """`raw` as a plain decimal integer within lo..hi, else None (no sign, no spaces)."""
    if not raw or len(raw) > MAX_DIGITS or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if lo <= value <= hi else None


def path_int(request: Request, name: str, what: str) -> int:
    """A numeric path item (revision, sequence number): 1..2**63-1, else 404."""
    value = _bounded_int(str(request.path_params.get(name, "")), 1, MAX_INT)
    if value is None:
        raise not_found(f"no such {what}: {name} is an integer from 1 to {MAX_INT}")
    return value


def _path_match(request: Request, name: str, rule: re.Pattern[str], max_len: int) -> str | None:
    raw = request.path_params.get(name)
    if not isinstance(raw, str) or len(raw) > max_len or not rule.fullmatch(raw):
        return None
    return raw


def path_plugin_id(request: Request, name: str = "plugin_id") -> str:
    """A plugin id in the path: the manifest's id syntax, at most 63 characters, else 404."""
    value = _path_match(request, name, PLUGIN_ID, PLUGIN_ID_MAX)
    if value is None:
        raise not_found("no such plugin: a plugin id is 1-63 of a-z 0-9 and inner -")
    return value


def path_record_id(request: Request, name: str, what: str) -> str:
    """An opaque id core issued (token, grant, user): at most 64 of A-Z a-z 0-9 _ -, else 404."""
    value = _path_match(request, name, RECORD_ID, 64)
    if value is None:
        raise not_found(f"no such {what}")
    return value


def path_contract(request: Request, name: str = "contract") -> str:
    """A contract name in the path (`IdentityPlugin`), at most 69 characters, else 404."""
    value = _path_match(request, name, CONTRACT, 69)
    if value is None:
        raise not_found("no such contract")
    return value


def invalid_query(
    name: str, code: str, message: str, allowed: Iterable[str] | None = None
) -> Problem:
    error: dict[str, Any] = {"path": f"?{name}", "code": code, "message": message}
    if allowed is not None:
        error["allowed"] = sorted(allowed)
    return Problem(422, f"query parameter {name}: {message}", code="invalid_query", errors=[error])


def only_params(request: Request, allowed: Iterable[str]) -> None:
    """422 `unknown_parameter` when the query names a parameter not in `allowed`."""
    known = frozenset(allowed)
    for name in request.query_params:
        if name not in known:
            shown = name if len(name) <= 64 and name.isprintable() else "(a parameter)"
            raise invalid_query(
                shown,
                "unknown_parameter",
                "not a parameter of this route; use one of " + ", ".join(sorted(known)),
                known,
            )


def query_choice(request: Request, name: str, allowed: Iterable[str]) -> str | None:
    """One of `allowed` (absent or empty: None), else 422 `not_allowed` naming the values."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    choices = frozenset(allowed)
    if raw not in choices:
        raise invalid_query(name, "not_allowed", "one of " + ", ".join(sorted(choices)), choices)
    return raw


def query_int(
    request: Request, name: str, default: int | None, *, lo: int = 1, hi: int = MAX_INT
) -> int | None:
    """An integer query parameter within lo..hi (absent or empty: `default`), else 422."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = _bounded_int(raw, lo, hi)
    if value is None:
        raise invalid_query(name, "out_of_range", f"an integer from {lo} to {hi}")
    return value


def query_text(request: Request, name: str, max_len: int = MAX_TEXT) -> str | None:
    """A free-text query parameter of at most `max_len` characters (absent or empty: None)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise invalid_query(name, "too_long", f"at most {max_len} characters")
    return raw


def query_time(request: Request, name: str) -> float | None:
    """A point in time: finite epoch seconds or ISO-8601 (absent or empty: None), else 422."""
    raw = query_text(request, name, 64)
    if raw is None:
        return None
    value: float | None
    try:
        value = float(raw)
    except ValueError:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            value = None
    if value is None or not math.isfinite(value) or not 0 <= value <= 1e11:
        raise invalid_query(name, "invalid_time", "epoch seconds or ISO-8601")
    return value
