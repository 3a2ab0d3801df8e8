"""What an audit record may hold: bounded, printable text and numbers the store takes.

Much of a record comes from requests (a claimed plugin id, a path, a host name), and the
store refuses some values outright: PostgreSQL refuses a NUL in text and a btree index row
over 2,704 bytes, SQLite and asyncpg refuse lone surrogates and integers beyond 64 bits. One
such record used to fail its whole batch again and again. So the writer's intake bounds every
event (`bound_event`), and a record the store refuses anyway is stored as a `stand_in`.

Conventions the trail shows:
- a text column holds at most `MAX_TEXT` characters; a longer value is cut to `MAX_TEXT - 1`
  characters and ends in `…`;
- a character that is not printable (controls, NUL, format characters such as bidi
  overrides, lone surrogates) is written as its escape: `\\x00`, `\\u202e`, `\\U000e0001`;
- a name an unauthenticated request claims (a registration's `id`, the service in an
  operator-lane path) is recorded as `claimed:<its first 64 characters>`, with `…` when it
  was longer (`claimed`), never as if it were a known plugin.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sqlite3
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vivified.registry.audit.writer import AuditEvent

MAX_TEXT = 200  # characters in a text column: at most 800 UTF-8 bytes, far below index limits
MAX_DETAIL_TEXT = 1000
MAX_DETAIL_KEY = 64
MAX_DETAIL_ITEMS = 64
MAX_DETAIL_DEPTH = 4
CLAIMED_PREFIX = "claimed:"
CLAIMED_CHARS = 64
UNSTORABLE = "unstorable_record"
ELLIPSIS = "…"
_INT64 = 2**63 - 1
_INT32 = 2**31 - 1
_STATUS = 999


def _escape(char: str) -> str:
    n = ord(char)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def printable(value: str) -> str:
    """`value` with every non-printable character replaced by its escape."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else _escape(c) for c in value)


def bound_text(value: object, limit: int = MAX_TEXT) -> str:
    """At most `limit` printable characters (cut ones end in `…`); cheap when already so."""
    text = value if type(value) is str else ("" if value is None else str(value))
    if len(text) <= limit and text.isprintable():
        return text
    out = printable(text[:limit])  # cut first: a megabyte is never walked
    if len(out) > limit or len(text) > limit:
        out = out[: limit - 1] + ELLIPSIS
    return out


def claimed(name: object) -> str:
    """How the trail names what an unauthenticated request claims: `claimed:` and the first
    64 characters of the claim (escaped, at most 64 after escaping), `…` when it was cut."""
    text = name if type(name) is str else ("" if name is None else str(name))
    escaped = printable(text[:CLAIMED_CHARS])
    cut = len(text) > CLAIMED_CHARS or len(escaped) > CLAIMED_CHARS
    return CLAIMED_PREFIX + escaped[:CLAIMED_CHARS] + (ELLIPSIS if cut else "")


def bound_int(value: object, limit: int = _INT64) -> int:
    """An integer within ±`limit` (a BIGINT or INTEGER column takes it)."""
    n = value if type(value) is int else _to_int(value)
    return n if -limit <= n <= limit else (limit if n > 0 else -limit)


def _to_int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError, OverflowError):
        return 0


def bound_float(value: object, default: float = 0.0) -> float:
    """A finite float (SQLite stores NaN as NULL; JSON has no infinities)."""
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    return f if math.isfinite(f) else default


def _plain(value: object) -> bool:
    """A JSON scalar the store and the hash take as it is."""
    if isinstance(value, str):
        return len(value) <= MAX_DETAIL_TEXT and value.isprintable()
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -_INT64 <= value <= _INT64
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def _bound_json(value: object, depth: int) -> Any:
    if _plain(value):
        return value
    if isinstance(value, str):
        return bound_text(value, MAX_DETAIL_TEXT)
    if isinstance(value, float):
        return repr(value)  # inf, -inf, nan: JSON has no such numbers
    if isinstance(value, int):
        return _int_text(value)
    if depth >= MAX_DETAIL_DEPTH:
        return ELLIPSIS
    if isinstance(value, Mapping):
        items = itertools.islice(value.items(), MAX_DETAIL_ITEMS)
        return {bound_text(k, MAX_DETAIL_KEY): _bound_json(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [_bound_json(v, depth + 1) for v in itertools.islice(value, MAX_DETAIL_ITEMS)]
    return bound_text(value, MAX_DETAIL_TEXT)


def _int_text(value: int) -> str:
    """A huge integer as text, without converting all of its digits (Python limits that)."""
    if abs(value) < 10**60:
        return str(value)
    return f"{'-' if value < 0 else ''}~2**{value.bit_length()}"


def bound_detail(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """`detail` with bounded keys, strings, numbers, items and depth; as is when already so."""
    if not detail:
        return {}
    if type(detail) is dict and len(detail) <= MAX_DETAIL_ITEMS:
        for k, v in detail.items():
            if not (type(k) is str and len(k) <= MAX_DETAIL_KEY and k.isprintable() and _plain(v)):
                break
        else:
            return detail
    bounded: dict[str, Any] = _bound_json(detail, 0)
    return bounded


def bound_event(event: AuditEvent) -> AuditEvent:
    """Bound every field of `event` in place (the writer's intake: every producer passes).
    The common case (short printable text, plain numbers) costs a few checks, nothing more."""
    texts = (
        event.actor,
        event.lane,
        event.action,
        event.target,
        event.decision,
        event.reason,
        event.request_id,
    )
    try:
        joined = "".join(texts)  # one pass over all of them; TypeError when one is no str
    except TypeError:
        joined = "\x00"
    if not joined.isprintable() or (len(joined) > MAX_TEXT and max(map(len, texts)) > MAX_TEXT):
        event.actor, event.lane, event.action, event.target = map(bound_text, texts[:4])
        event.decision, event.reason, event.request_id = map(bound_text, texts[4:])
    if not (type(event.status) is int and -_INT32 <= event.status <= _INT32):
        event.status = bound_int(event.status, _INT32)
    if not (type(event.bytes_in) is int and -_INT64 <= event.bytes_in <= _INT64):
        event.bytes_in = bound_int(event.bytes_in)
    if not (type(event.bytes_out) is int and -_INT64 <= event.bytes_out <= _INT64):
        event.bytes_out = bound_int(event.bytes_out)
    if type(event.latency_ms) is not float or not math.isfinite(event.latency_ms):
        event.latency_ms = bound_float(event.latency_ms)
    if type(event.time) is not float or not math.isfinite(event.time):
        event.time = bound_float(event.time, time.time())
    if event.detail:
        event.detail = bound_detail(event.detail)
    return event


def _ascii(value: object, limit: int = 64) -> str:
    text = value if type(value) is str else str(value)
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def error_code(exc: BaseException) -> str:
    """A short, value-free name for a refusal: the SQLSTATE or the exception's class."""
    state = _sqlstate(exc)
    return f"sqlstate {state}" if state else type(exc).__name__


def stand_in(event: AuditEvent, exc: BaseException) -> AuditEvent:
    """What is stored instead of a record the store refused: the same time, lane, action and
    decision, every text reduced to safe ASCII, reason `unstorable_record`."""
    return dataclasses.replace(
        event,
        actor=_ascii(event.actor),
        lane=_ascii(event.lane),
        action=_ascii(event.action),
        target=_ascii(event.target),
        decision=_ascii(event.decision),
        reason=UNSTORABLE,
        request_id=_ascii(event.request_id),
        status=bound_int(event.status, _STATUS),
        latency_ms=bound_float(event.latency_ms),
        bytes_in=bound_int(event.bytes_in, 2**53),
        bytes_out=bound_int(event.bytes_out, 2**53),
        detail={"original_reason": _ascii(event.reason), "refused": error_code(exc)},
        time=bound_float(event.time, time.time()),
    )


# -- is it this record, or the store? -------------------------------------------------------

# SQLSTATE classes that refuse the data, not the store: 22 data exception (a NUL, bad
# encoding, out of range), 23 integrity constraint violation, 54 program limit exceeded (an
# index row too large). A unique violation (23505) is not the record: the only unique column
# is the id the chain head gives, so it means the chain's state, and the batch is retried.
_DATA_CLASSES = frozenset({"22", "23", "54"})
_NOT_DATA = frozenset({"23505"})
_SQLITE_UNIQUE = frozenset(
    {
        getattr(sqlite3, "SQLITE_CONSTRAINT_PRIMARYKEY", 1555),
        getattr(sqlite3, "SQLITE_CONSTRAINT_UNIQUE", 2067),
    }
)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, the DB-API error SQLAlchemy wraps (`orig`) and the causes, outermost first."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in out) and len(out) < 8:
        out.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return out


def _sqlstate(exc: BaseException) -> str | None:
    for link in _chain(exc):
        for attr in ("sqlstate", "pgcode"):
            state = getattr(link, attr, None)
            if isinstance(state, str) and len(state) == 5:
                return state
    return None


def is_data_error(exc: BaseException) -> bool:
    """True when the store refused these values (the batch is split to find the record);
    False when the store is unavailable or broken (connection, lock, missing table: retry)."""
    state = _sqlstate(exc)
    if state is not None:
        return state[:2] in _DATA_CLASSES and state not in _NOT_DATA
    for link in _chain(exc):
        if isinstance(link, sqlite3.IntegrityError):
            return getattr(link, "sqlite_errorcode", None) not in _SQLITE_UNIQUE
        if isinstance(link, sqlite3.DataError | UnicodeError | OverflowError):
            return True  # refused while binding this row's values
    return False
