"""Operator-lane paths: refuse unsafe raw paths, match declared endpoint templates.

The raw path is judged before anything decodes it, so a traversal cannot hide behind one or
two layers of percent-encoding, an encoded slash cannot change how segments split, and no
control byte reaches a plugin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from vivified.policy.decision import Decision

MAX_PATH_BYTES = 8192
_PCT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}$")
_SEGMENT_OK = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+$")  # literals are compared decoded


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_DOT_SEGMENT = re.compile(rb"(?:^|/)\.\.?(?:;[^/]*)?(?:/|$)")


def _controls(data: bytes) -> bool:
    return _CONTROL.search(data) is not None


def check_raw_path(raw: bytes) -> Decision:
    """Allow (`path_ok`) or deny a raw request path (no query string) with a stable reason."""
    if len(raw) > MAX_PATH_BYTES:
        return Decision.deny("path_too_long", f"paths are at most {MAX_PATH_BYTES} bytes")
    if not raw.startswith(b"/"):
        return Decision.deny("not_absolute", "the path must start with '/'")
    if _controls(raw):
        return Decision.deny("control_character", "control bytes are not allowed in paths")
    if b"\\" in raw:
        return Decision.deny("backslash", "backslashes are not allowed in paths")
    if _PCT.search(raw):
        return Decision.deny("bad_encoding", "'%' must be followed by two hex digits")
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return Decision.deny("bad_encoding", "raw non-ASCII bytes must be valid UTF-8")
    if b"%" not in raw:  # nothing encoded: the raw checks above and below are all there is
        if _DOT_SEGMENT.search(raw):
            return Decision.deny("dot_segment", "'.' and '..' segments are not allowed")
        if b"//" in raw:
            return Decision.deny("empty_segment", "empty path segments ('//') are not allowed")
        return Decision.allow("path_ok")
    once = unquote_to_bytes(raw)
    twice = unquote_to_bytes(once)
    for layer in (once, twice):
        if _controls(layer):
            return Decision.deny("control_character", "encoded control bytes are not allowed")
    for layer in (raw, once, twice):
        if _DOT_SEGMENT.search(layer):
            return Decision.deny("dot_segment", "'.' and '..' segments are not allowed")
    for layer in (once, twice):
        if layer.count(b"/") != raw.count(b"/") or b"\\" in layer:
            return Decision.deny("encoded_slash", "encoded '/' or '\\' is not allowed")
    for layer in (once, twice):  # overlong forms such as %c0%ae (or %25c0%25ae) end here
        if not layer.isascii():
            try:
                layer.decode("utf-8")
            except UnicodeDecodeError:
                return Decision.deny("bad_encoding", "percent-encoded bytes must be valid UTF-8")
    if b"//" in raw:
        return Decision.deny("empty_segment", "empty path segments ('//') are not allowed")
    return Decision.allow("path_ok")


@dataclass(frozen=True)
class EndpointRoute:
    """A declared endpoint: its manifest name and template (used as the audit route)."""

    name: str
    template: str


@dataclass(frozen=True)
class CompiledEndpoint:
    route: EndpointRoute
    segments: tuple[str | None, ...]  # a literal, or None for a one-segment parameter
    tail: bool  # the last parameter is `{name:path}`: one or more segments
    literals: int


def _compile(name: str, template: str) -> CompiledEndpoint | None:
    if not template.startswith("/api/") or "//" in template or "?" in template:
        return None
    parts = template[1:].split("/")
    segments: list[str | None] = []
    tail = False
    for i, part in enumerate(parts):
        match = _PARAM.match(part)
        if match:
            if match.group(2):
                if i != len(parts) - 1:
                    return None
                tail = True
            else:
                segments.append(None)
        elif part == "" and i == len(parts) - 1:
            segments.append("")  # a trailing slash is significant
        elif _SEGMENT_OK.match(part) and part not in (".", "..") and "{" not in part:
            segments.append(part)
        else:
            return None
    literals = sum(1 for s in segments if s)
    return CompiledEndpoint(EndpointRoute(name, template), tuple(segments), tail, literals)


def compile_endpoints(endpoints: Mapping[str, str]) -> tuple[CompiledEndpoint, ...]:
    """The routable (`/api/…`) templates, most specific first; invalid ones are skipped."""
    compiled = [
        c
        for name, template in endpoints.items()
        if isinstance(name, str) and isinstance(template, str)
        for c in [_compile(name, template)]
        if c is not None
    ]
    compiled.sort(key=lambda c: (-c.literals, c.tail, -len(c.segments), c.route.template))
    return tuple(compiled)


def _matches(c: CompiledEndpoint, parts: Sequence[str]) -> bool:
    n = len(c.segments)
    if c.tail:
        if len(parts) <= n or (parts[n] == "" and len(parts) == n + 1):
            return False
    elif len(parts) != n:
        return False
    for want, got in zip(c.segments, parts, strict=False):
        if want is None:
            if got == "":
                return False
        elif want != got:
            return False
    return True


def match_endpoint(compiled: Sequence[CompiledEndpoint], path: str) -> EndpointRoute | None:
    """The declared endpoint `path` (decoded, `/api/…`) falls under, if any."""
    if not path.startswith("/api/"):
        return None
    parts = path[1:].split("/")
    for c in compiled:
        if _matches(c, parts):
            return c.route
    return None


def match_path_pattern(pattern: str, path: str) -> bool:
    """Grant patterns: `*` is exactly one segment, `**` any number (also none)."""
    pat = pattern.strip("/").split("/") if pattern.strip("/") else []
    parts = path.strip("/").split("/") if path.strip("/") else []

    def walk(i: int, j: int) -> bool:
        while i < len(pat):
            if pat[i] == "**":
                return any(walk(i + 1, k) for k in range(j, len(parts) + 1))
            if j >= len(parts) or (pat[i] != "*" and pat[i] != parts[j]):
                return False
            if pat[i] == "*" and parts[j] == "":
                return False
            i, j = i + 1, j + 1
        return j == len(parts)

    return walk(0, 0)
