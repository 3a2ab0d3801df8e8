"""The upstream's answer deadline: no response headers in time → `upstream_timeout`.

mitmproxy 11 has no read timeout of its own (only a ten-minute inactivity watchdog), and its
error path always answers 502. When the deadline passes before the response headers:

- plain-HTTP upstream: a 504 problem response is made to arrive on the upstream connection
  as if the upstream had sent it, with `Connection: close`; mitmproxy closes that connection
  and the flow ends through the ordinary response hooks (`ResponseFilter` leaves it
  alone). The client gets 504 with `X-Vivified-Egress-Error: upstream_timeout`.
- TLS upstream: bytes can only enter below mitmproxy's TLS layer, so the upstream connection
  is closed instead and the client gets mitmproxy's 502 ("server closed connection"); the
  audit record says `upstream_timeout` with status 502.

Either way the upstream connection is released and the exchange is one audit record.

The clock starts when the request has been read from the client (mitmproxy's `request` hook)
and covers the connect; if the connection is not even up when it runs out, `UpstreamConnect`'s
connect timer deals with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.net.http.http1 import assemble_response

from vivified.egress.flow_state import DENIED, OUTCOME, TIMED_OUT
from vivified.egress.responses import error_response

Inject = Callable[[http.HTTPFlow, bytes], bool]
CloseUpstream = Callable[[http.HTTPFlow], bool]


def timeout_response(detail: str) -> bytes:
    """The raw HTTP/1.1 504 that stands in for the upstream's missing answer."""
    response = error_response("upstream_timeout", detail, 504)
    response.headers["Connection"] = "close"
    raw: bytes = assemble_response(response)  # type: ignore[no-untyped-call]
    return raw


class ResponseDeadline:
    """A mitmproxy addon. `inject(flow, raw)` delivers `raw` on the flow's (plain) upstream
    connection, `close(flow)` closes it; both say whether they could (the launcher reaches
    into mitmproxy's connection handler for them)."""

    def __init__(self, seconds: float, inject: Inject, close: CloseUpstream) -> None:
        self.seconds = seconds
        self._inject = inject
        self._close = close
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.metadata.get(DENIED):
            return  # answered by the proxy itself: nothing goes upstream
        if OUTCOME not in flow.metadata:
            return
        loop = asyncio.get_running_loop()
        self._timers[flow.id] = loop.call_later(self.seconds, self._expire, flow)

    def _stop(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    responseheaders = _stop
    response = _stop
    error = _stop

    def _expire(self, flow: http.HTTPFlow) -> None:
        self._timers.pop(flow.id, None)
        if flow.response is not None or not flow.live:
            return
        if flow.server_conn.timestamp_tcp_setup is None:
            return  # still connecting: the connect timer answers for that
        outcome = flow.metadata.get(OUTCOME)
        host = outcome.host if outcome is not None else flow.request.host
        if flow.server_conn.tls:
            status = 502 if self._close(flow) else 0
        else:
            raw = timeout_response(f"{host} sent no response within {self.seconds:g} s")
            flow.metadata[TIMED_OUT] = True
            status = 504 if self._inject(flow, raw) else 0
            if not status:
                flow.metadata.pop(TIMED_OUT, None)
        if status and outcome is not None:
            outcome.reason, outcome.status = "upstream_timeout", status
