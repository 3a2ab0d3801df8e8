"""The one-walk header helpers give exactly what the `http.Headers` calls they replace give."""

from __future__ import annotations

import pytest
from mitmproxy import http

from vivified.egress.filters import declared_length, needs_streaming, strip_headers
from vivified.egress.headers import collect, folded, native, put, take
from vivified.policy.egress_settings import FilterRule

FIELDS = {
    "none": [],
    "plain": [(b"Host", b"a.example"), (b"Accept", b"*/*")],
    "mixed-case": [(b"Proxy-Authorization", b"Basic x"), (b"PROXY-CONNECTION", b"keep-alive")],
    "repeated": [
        (b"traceparent", b"one"),
        (b"Accept", b"a"),
        (b"TraceParent", b"two"),
        (b"accept", b"b"),
    ],
    "non-utf8": [(b"X-Odd", b"caf\xe9"), (b"content-length", b" 12 ")],
    "lengths": [(b"Content-Length", b"5"), (b"content-length", b"5")],
    "chunked": [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"3")],
    "big": [(b"Content-Length", b"999999")],
    "bad-length": [(b"Content-Length", b"12a")],
}
NAMES = [b"accept", b"traceparent", b"proxy-authorization", b"content-length", b"x-odd", b"nope"]
CASES = [pytest.param(fields, id=name) for name, fields in FIELDS.items()]


def headers(fields: list[tuple[bytes, bytes]]) -> http.Headers:
    return http.Headers(list(fields))


@pytest.mark.parametrize("fields", CASES)
def test_collect_and_folded_read_as_get_all_and_get(fields) -> None:
    h = headers(fields)
    found = collect(h, NAMES)
    for name in NAMES:
        assert [native(v) for v in found.get(name, [])] == h.get_all(name)
        assert folded(found.get(name)) == h.get(name)
    assert h.fields == tuple(fields)  # reading changes nothing


@pytest.mark.parametrize("fields", CASES)
def test_take_reads_then_removes_as_pop(fields) -> None:
    names = (b"proxy-authorization", b"proxy-connection", b"accept")
    ours, theirs = headers(fields), headers(fields)
    found = take(ours, names)
    for name in names:
        assert [native(v) for v in found.get(name, [])] == theirs.get_all(name)
        theirs.pop(name.decode(), None)
    assert ours.fields == theirs.fields


SETS = [
    pytest.param({b"traceparent": b"new"}, id="replace-first-drop-rest"),
    pytest.param({b"traceparent": b"new", b"tracestate": b"s"}, id="one-set-one-added"),
    pytest.param({b"traceparent": b"new", b"tracestate": None}, id="remove-absent"),
    pytest.param({b"accept": None}, id="remove-all"),
    pytest.param({b"host": b"b.example"}, id="keep-spelling"),
]


@pytest.mark.parametrize("fields", CASES)
@pytest.mark.parametrize("values", SETS)
def test_put_sets_as_item_assignment(fields, values) -> None:
    ours, theirs = headers(fields), headers(fields)
    put(ours, values)
    for name, value in values.items():
        if value is None:
            theirs.pop(name.decode(), None)
        else:
            theirs[name.decode()] = value.decode()
    assert ours.fields == theirs.fields


def _old_needs_streaming(h: http.Headers) -> bool:
    if "transfer-encoding" in h:
        return True
    length = h.get("content-length")
    return length is not None and (not length.isdigit() or int(length) > 256 * 1024)


@pytest.mark.parametrize("fields", CASES)
def test_needs_streaming_as_before(fields) -> None:
    assert needs_streaming(headers(fields)) == _old_needs_streaming(headers(fields))


@pytest.mark.parametrize("fields", CASES)
def test_declared_length_as_before(fields) -> None:
    h = headers(fields)
    values = h.get_all("content-length")
    expected = int(values[0]) if len(values) == 1 and values[0].strip().isdigit() else None
    assert declared_length(collect(h, (b"content-length",)).get(b"content-length")) == expected


STRIP = [
    pytest.param(
        [(b"X-Vivified-Caller", b"x"), (b"A", b"1"), (b"x-vivified-caller", b"y")],
        FilterRule(),
        ["X-Vivified-Caller"],
        id="core-headers-once-as-first-spelt",
    ),
    pytest.param(
        [(b"Set-Cookie", b"a"), (b"set-cookie", b"b"), (b"Server", b"s")],
        FilterRule(strip_headers=("set-cookie", "server")),
        ["Set-Cookie", "Server"],
        id="rule-headers",
    ),
    pytest.param([(b"A", b"1")], FilterRule(), [], id="nothing"),
]


@pytest.mark.parametrize(("fields", "rule", "removed"), STRIP)
def test_strip_headers_as_pop_of_each_key(fields, rule: FilterRule, removed) -> None:
    ours, theirs = headers(fields), headers(fields)
    assert strip_headers(ours, rule) == removed
    for name in [n for n in list(theirs.keys()) if rule.strips(n)]:
        theirs.pop(name, None)
    assert ours.fields == theirs.fields
