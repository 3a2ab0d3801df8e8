"""Properties of the pure checkers: the manifest validator, the host and domain normalisers,
the raw path checker and the operator lane's header hygiene. None of them ever raises on any
input; each answers in its documented shape."""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from support.manifests import simple

from vivified.gateway.operator.headers import (
    CALLER_ONLY,
    HOP_BY_HOP,
    REQUEST_ID,
    folded,
    request_headers,
    response_headers,
)
from vivified.policy.domains import check_domain_entry
from vivified.policy.hosts import HostError, parse_host
from vivified.policy.paths import check_raw_path
from vivified.registry.manifest.validator import validate_manifest

POINTER = re.compile(r"(/([^~/]|~[01])*)*\Z")  # RFC 6901: "" or /-separated, ~ only as ~0 ~1

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
MANIFEST_KEYS = list(simple("x"))


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    """A valid manifest with some members replaced, removed or added, or any JSON at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(JSON)
    m: dict[str, Any] = copy.deepcopy(
        simple(draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)))
    )
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(MANIFEST_KEYS) | st.text(max_size=12))
        action = draw(st.integers(0, 2))
        if action == 0:
            m.pop(key, None)
        else:
            m[key] = draw(JSON)
    return m


@given(manifests())
def test_the_manifest_validator_never_raises_and_points_at_every_problem(data: Any) -> None:
    result = validate_manifest(data)
    for problem in (*result.errors, *result.warnings):
        assert POINTER.match(problem.path), problem
        assert re.fullmatch(r"[a-z][a-z0-9_]*", problem.code), problem
        assert problem.message
        # the validator's own safety net caught nothing: every input was judged by its rules
        assert "could not be checked" not in problem.message, problem
    assert (result.manifest is None) == bool(result.errors)
    if not isinstance(data, dict):
        assert result.errors


HOSTISH = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[A-Za-z0-9*.\-_\[\]:%]{1,40}", fullmatch=True),
    st.lists(st.from_regex(r"[a-zA-Z0-9-]{1,12}", fullmatch=True), min_size=1, max_size=5).map(
        ".".join
    ),
)


@given(HOSTISH)
def test_parse_host_raises_only_host_errors_and_is_idempotent(raw: str) -> None:
    try:
        host = parse_host(raw)
    except HostError as exc:
        code = exc.code
        host = None
    if host is None:
        assert code in {"empty_host", "host_too_long", "invalid_host"}
        return
    assert host.value.isascii()
    assert host.value == host.value.lower()
    again = parse_host(f"[{host.value}]" if host.kind == "ip" and ":" in host.value else host.value)
    assert (again.kind, again.value) == (host.kind, host.value)


@given(st.one_of(HOSTISH, HOSTISH.map(lambda h: "*." + h), JSON))
def test_a_domain_entry_is_checked_never_raises_and_normalises_to_a_fixed_point(entry: Any) -> None:
    checked = check_domain_entry(entry)
    assert all(p.code and p.message for p in checked.problems)
    if checked.ok:
        assert checked.normalized is not None
        assert checked.normalized.isascii()
        assert checked.normalized == checked.normalized.lower()
        again = check_domain_entry(checked.normalized)
        assert (again.ok, again.normalized) == (True, checked.normalized)


PATH_REASONS = {
    "path_ok",
    "path_too_long",
    "not_absolute",
    "control_character",
    "backslash",
    "bad_encoding",
    "dot_segment",
    "empty_segment",
    "encoded_slash",
}
PATHISH = st.one_of(
    st.binary(max_size=64),
    st.lists(
        st.sampled_from(
            [
                b"/",
                b"a",
                b".",
                b"..",
                b"%2e",
                b"%2f",
                b"%252e",
                b"%25",
                b"%",
                b"\\",
                b"%5c",
                b"%00",
                b"\xc0\xae",
                b"%c0%ae",
                b";x",
            ]
        ),
        max_size=12,
    ).map(lambda parts: b"/" + b"".join(parts)),
)


def _unquote_all(raw: bytes) -> bytes:
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(unquote_to_bytes(raw))


@given(PATHISH)
def test_an_allowed_path_has_no_traversal_at_any_decoding_layer(raw: bytes) -> None:
    decision = check_raw_path(raw)
    assert decision.reason in PATH_REASONS
    if decision.reason != "path_ok":
        return
    decoded = _unquote_all(raw)
    segments = decoded.split(b"/")
    assert raw.startswith(b"/")
    assert not any(s.split(b";")[0] in (b".", b"..") for s in segments)
    assert b"\\" not in decoded
    assert not re.search(rb"[\x00-\x1f\x7f]", decoded)
    assert decoded.count(b"/") == raw.count(b"/")
    assert b"//" not in raw


NAMES = st.one_of(
    st.sampled_from(sorted(HOP_BY_HOP | CALLER_ONLY))
    .map(lambda n: n.decode())
    .flatmap(lambda n: st.sampled_from([n, n.upper(), n.replace("-", "_"), n.title()])),
    st.sampled_from(
        ["X-Vivified-Caller", "x_vivified_assertion", "X-Forwarded-For", "X_FORWARDED_HOST"]
    ),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True),
).map(str.encode)
HEADERS = st.lists(st.tuples(NAMES, st.binary(max_size=20)), max_size=15)


@given(HEADERS)
def test_no_spoofable_or_hop_by_hop_header_reaches_the_target(
    raw: list[tuple[bytes, bytes]],
) -> None:
    added = [(b"x-vivified-caller", b"alpha")]
    out = request_headers(raw, added)
    assert out[-1:] == added
    named = {
        folded(t.strip())
        for k, v in raw
        if folded(k) == b"connection"
        for t in v.split(b",")
        if t.strip()
    }
    for name, _value in out[:-1]:
        f = folded(name)
        assert f not in HOP_BY_HOP
        assert f not in CALLER_ONLY
        assert f not in named
        assert not f.startswith((b"x-vivified-", b"x-forwarded-"))
        assert name == name.lower()


@given(HEADERS)
def test_the_caller_gets_core_request_id_only_and_no_hop_by_hop_header(
    raw: list[tuple[bytes, bytes]],
) -> None:
    out = response_headers(raw, "rid-1")
    assert [v for k, v in out if folded(k) == REQUEST_ID] == [b"rid-1"]
    assert not any(folded(k) in HOP_BY_HOP for k, _ in out)
