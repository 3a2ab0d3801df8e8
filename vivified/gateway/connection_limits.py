"""Slow-client limits for the gateway: a header-read timeout and a connection cap.

uvicorn 0.54 has neither. Its keep-alive timer starts only after a response and any byte
cancels it for good, so a client that connects and sends nothing, or dribbles a request head
one byte at a time, holds its connection forever. `limit_concurrency` answers 503 only once a
complete head has arrived, which such a client never sends.

`limited_protocol` builds a small subclass of uvicorn's httptools protocol:

* **header timeout**: one timer per connection, armed when the connection opens and again
  when a response completes on a keep-alive connection (exactly when uvicorn arms its
  keep-alive timer), cancelled when a request head is complete. On expiry the connection is
  closed: silently if nothing of a new request came (as uvicorn's keep-alive close does),
  with 408 `header_timeout` if a head was half sent. Request bodies and WebSockets (the timer
  is cancelled before the upgrade) are not limited by it.
* **connection cap**: uvicorn's per-server `server_state.connections` (HTTP and WebSocket
  connections, O(1) to count) is the counter. A connection opened at the cap is answered
  503 `too_many_connections` at once, without reading its request, and never joins the set.

Either answer is followed by a lingering close: the response, then a FIN, then whatever the
client still sends is discarded for at most `LINGER` seconds. Closing with unread data would
send a RST, which can make the client lose the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vivified.gateway.problems import MEDIA_TYPE, problem_document, problem_json

log = logging.getLogger("vivified.gateway")

LINGER = 2.0  # seconds an answered connection keeps draining what the client still sends
WARN_EVERY = 10.0  # seconds between two "connection cap reached" warnings


def raw_problem(status: int, code: str, detail: str, headers: tuple[str, ...] = ()) -> bytes:
    """A whole `Connection: close` HTTP/1.1 response carrying a problem+json document."""
    phrase = HTTPStatus(status).phrase
    body = problem_json(problem_document(status, detail, code=code))
    head = [
        f"HTTP/1.1 {status} {phrase}",
        f"content-type: {MEDIA_TYPE}",
        f"content-length: {len(body)}",
        "connection: close",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header-read timeout and a connection cap.

    Use `limited_protocol` to get a subclass with the limits and answers filled in.
    """

    header_timeout: float
    max_connections: int
    timeout_answer: bytes
    over_cap_answer: bytes
    warned_at: float = -WARN_EVERY
    lingering = 0  # answered connections still draining (at most `max_connections`)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False
        self._draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self.transport = transport
            self._warn_over_cap()
            self._answer_and_close(self.over_cap_answer)
            return
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._draining:
            type(self).lingering -= 1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._head_started = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_started = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: the connection now waits for the next head
        # (a pipelined head already received started its request instead).
        if self.timeout_keep_alive_task is not None and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self._answer_and_close(self.timeout_answer)
        else:
            self.transport.close()

    def _answer_and_close(self, answer: bytes) -> None:
        """Write `answer`, half-close, drain for at most `LINGER` seconds, then close.

        Past `max_connections` connections draining at once (a flood), close at once.
        """
        self._draining = True
        type(self).lingering += 1
        transport = self.transport
        transport.write(answer)
        if self.lingering > self.max_connections or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._head_timer = self.loop.call_later(LINGER, transport.close)

    def _warn_over_cap(self) -> None:
        now = time.monotonic()
        cls = type(self)
        if now - cls.warned_at >= WARN_EVERY:
            cls.warned_at = now
            log.warning(
                "%d open connections, the VIVIFIED_MAX_CONNECTIONS cap: refusing new ones",
                len(self.connections),
            )


def limited_protocol(header_timeout: float, max_connections: int) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give `uvicorn.Config(http=...)`, one per server."""
    seconds = f"{header_timeout:g}"

    class Limited(LimitedHttpToolsProtocol):
        pass

    Limited.header_timeout = header_timeout
    Limited.max_connections = max_connections
    Limited.timeout_answer = raw_problem(
        408,
        "header_timeout",
        f"the request head did not arrive within {seconds} s",
    )
    Limited.over_cap_answer = raw_problem(
        503,
        "too_many_connections",
        f"this gateway process holds its maximum of {max_connections} connections; retry later",
        ("retry-after: 1",),
    )
    return Limited
