"""Property: whatever bytes an upstream answers, the pool returns a bounded, well-formed
response or raises an `UpstreamError`; a framing flaw is always `UpstreamBadResponse`.

Each example is served raw from a socket on 127.0.0.1 (pool level, no gateway).
"""

from __future__ import annotations

import asyncio
import string

from hypothesis import given
from hypothesis import strategies as st

from vivified.gateway.operator.exchange import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    UpstreamBadResponse,
    UpstreamError,
)
from vivified.gateway.operator.pool import Origin, UpstreamPool

REQUEST = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"


async def _exchange(answer: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool(limit=2, connect_timeout=2, read_timeout=1)
    try:
        exchange = await pool.request(Origin("http", "127.0.0.1", port), REQUEST)
        try:
            body = await exchange.read_all()
        finally:
            pool.release(exchange)
        return exchange.status, list(exchange.headers), body
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


def exchange(answer: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes] | UpstreamError:
    try:
        return asyncio.run(_exchange(answer))
    except UpstreamError as exc:  # the only failure allowed
        return exc


def assert_bounded(result: tuple[int, list[tuple[bytes, bytes]], bytes] | UpstreamError) -> None:
    if isinstance(result, UpstreamError):
        return
    status, headers, _body = result
    assert 100 <= status <= 599
    assert len(headers) <= MAX_HEADERS
    assert sum(len(k) + len(v) for k, v in headers) <= MAX_HEAD_BYTES
    for name, value in headers:
        assert b"\r" not in name + value
        assert b"\n" not in name + value
        assert b"\0" not in value


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(str.encode)
VALUE = st.binary(max_size=40)
LINE_END = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\n "])
STATUS = st.one_of(
    st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 204 No Content", b"HTTP/1.1 103 Hints"]),
    st.builds(
        lambda v, code, reason: b"HTTP/%s %s %s" % (v, code, reason),
        st.sampled_from([b"1.1", b"1.0", b"2.0", b"0.9", b"1.1x"]),
        st.one_of(st.integers(0, 10_000).map(lambda n: str(n).encode()), st.binary(max_size=4)),
        st.binary(max_size=12),
    ),
)


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """A response head built from plausible and broken parts, then a body."""
    parts = [draw(STATUS), draw(LINE_END)]
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.one_of(TOKEN, st.sampled_from([b"content-length", b"transfer-encoding"])))
        value = draw(st.one_of(VALUE, st.sampled_from([b"2", b"chunked", b"2, 2", b"-1"])))
        parts += [name, draw(st.sampled_from([b": ", b":", b" : "])), value, draw(LINE_END)]
    parts.append(draw(LINE_END))
    parts.append(
        draw(st.one_of(st.just(b"ok"), st.binary(max_size=64), st.just(b"2\r\nok\r\n0\r\n\r\n")))
    )
    return b"".join(parts)


@given(responses())
def test_any_response_is_bounded_or_an_upstream_error(answer: bytes) -> None:
    assert_bounded(exchange(answer))


@given(st.binary(max_size=512))
def test_random_bytes_are_bounded_or_an_upstream_error(answer: bytes) -> None:
    assert_bounded(exchange(answer))


VALID_HEADERS = st.lists(
    st.tuples(
        TOKEN.map(lambda t: b"x-" + t),  # never a framing header
        st.text(
            alphabet=string.ascii_letters + string.digits + "-_.;=/", min_size=1, max_size=20
        ).map(str.encode),
    ),
    max_size=10,
)


@st.composite
def flawed(draw: st.DrawFn) -> bytes:
    """A valid response with exactly one framing flaw inserted among its header fields."""
    fields = [b"%s: %s\r\n" % kv for kv in draw(VALID_HEADERS)]
    flaw = draw(
        st.sampled_from(
            [
                b"content-length: 2\r\ncontent-length: 3\r\n",  # conflicting
                b"content-length: 2\r\ncontent-length: 2\r\n",  # duplicate
                b"content-length: 2\r\ntransfer-encoding: chunked\r\n",  # both framings
                b"x-folded: a\r\n  b\r\n",  # obs-fold
                b"x-bare: lf\n",  # bare LF
                b"".join(b"x-many-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)),
            ]
        )
    )
    fields.insert(draw(st.integers(0, len(fields))), flaw)
    if b"content-length" not in flaw:
        fields.append(b"content-length: 2\r\n")
    return b"HTTP/1.1 200 OK\r\n" + b"".join(fields) + b"\r\nok"


@given(flawed())
def test_a_framing_flaw_is_always_a_bad_response(answer: bytes) -> None:
    result = exchange(answer)
    assert isinstance(result, UpstreamBadResponse), result
    assert result.reason == "upstream_bad_response"
