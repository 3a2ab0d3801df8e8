"""Header reads and edits in one walk over mitmproxy's raw header fields.

`http.Headers` answers every lookup (`get`, `in`, `get_all`, `pop`, `del`, item assignment) by
walking all the fields and lower-casing each name in Python; `pop` and `del` walk them twice.
The proxy's hooks made about fifteen such walks per request, a large part of their cost.
These helpers read several names in one walk, and edit by assigning `fields` once, with the
results of the `Headers` calls they stand for (tests/egress/test_headers.py holds them to it):

- `collect(h, names)`: the raw values of each name, as `h.get_all` for each (undecoded);
- `folded(values)`: what `h.get(name)` returns for those values (joined by ", ", or None);
- `take(h, names)`: `collect`, then every field of those names removed (`h.pop` for each);
- `put(h, {name: value or None})`: `h[name] = value` for each, or `h.pop(name, None)` for None.

Names are given lower-case, as bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from mitmproxy import http

Found = dict[bytes, list[bytes]]


def native(value: bytes) -> str:
    """A raw header value as `Headers` returns it (UTF-8, undecodable bytes kept)."""
    return value.decode("utf-8", "surrogateescape")


def folded(values: list[bytes] | None) -> str | None:
    """`Headers.get`'s answer for these values: folded into one string, or None."""
    if not values:
        return None
    return ", ".join(native(v) for v in values)


def collect(headers: http.Headers, names: Collection[bytes]) -> Found:
    """The raw values of each of `names` present, in order (one walk)."""
    found: Found = {}
    for key, value in headers.fields:
        low = key.lower()
        if low in names:
            found.setdefault(low, []).append(value)
    return found


def take(headers: http.Headers, names: Collection[bytes]) -> Found:
    """The raw values of each of `names` present; those fields are removed (one walk)."""
    found: Found = {}
    kept = []
    for field in headers.fields:
        low = field[0].lower()
        if low in names:
            found.setdefault(low, []).append(field[1])
        else:
            kept.append(field)
    if found:
        headers.fields = tuple(kept)
    return found


def put(headers: http.Headers, values: Mapping[bytes, bytes | None]) -> None:
    """Set each name to its one value (in place of its first field, its other fields dropped,
    appended when absent), or remove the name for None; one walk, one assignment."""
    placed: set[bytes] = set()
    fields = []
    for key, value in headers.fields:
        low = key.lower()
        if low not in values:
            fields.append((key, value))
            continue
        new = values[low]
        if new is not None and low not in placed:
            fields.append((key, new))
            placed.add(low)
    for low, new in values.items():
        if new is not None and low not in placed:
            fields.append((low, new))
    headers.fields = tuple(fields)
