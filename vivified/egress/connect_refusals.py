"""A refused CONNECT is answered in one write, with `Connection: close`, and then closed.

mitmproxy writes a CONNECT answer in pieces (the head, then the body) and keeps the client
connection open after a non-2xx one. Clients that read the proxy's answer themselves stop at
the end of the head of their first read: https-proxy-agent (axios) replays only that much to
Node's HTTP parser ("stream has been aborted"), and clients reading to EOF wait for a close
that never comes. This addon, asked once every other addon has answered (`http_connect_error`
comes after every `http_connect`), sends the whole answer - head and problem+json body - in a
single write and closes the connection; mitmproxy then writes nothing more to it.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import connection, http
from mitmproxy.net.http.http1 import assemble_response

SendLast = Callable[[connection.Client, bytes], bool]
"""`live_connections.LiveConnections.send_last(client, raw)`."""


class RefusedConnects:
    """A mitmproxy addon: the last word on a CONNECT that was not accepted."""

    def __init__(self, send_last: SendLast) -> None:
        self._send_last = send_last

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None:
            return
        response.headers["Connection"] = "close"
        raw: bytes = assemble_response(response)  # type: ignore[no-untyped-call]
        self._send_last(flow.client_conn, raw)
