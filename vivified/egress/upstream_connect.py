"""Connecting upstream in bounded time, and the answer when it fails.

mitmproxy opens the upstream connection itself (on CONNECT, with the `eager` strategy, or for
a plain request) and has no connect timeout of its own. This addon starts a timer when a
connection to a pinned address begins (`server_connect`, after `AddressPinning` let it) and
cancels the connect once the upstream timeout passes. A CONNECT whose upstream cannot be
reached is answered with core's problem response instead of mitmproxy's: 504
`upstream_timeout` or 502 `upstream_connect_failed`. A request whose connection timed out is
recorded as `upstream_timeout` (mitmproxy answers it with its 502).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks

from vivified.egress.flow_state import AUDITED, DENIED, outcome
from vivified.egress.responses import error_response, status_for


class UpstreamConnect:
    """A mitmproxy addon: the connect deadline and the answer to a failed CONNECT."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timed_out: set[str] = set()

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.error is not None:
            return  # refused (not pinned): no connection attempt to time
        task = asyncio.current_task()
        if task is not None:
            server = data.server
            self._timers[server.id] = asyncio.get_running_loop().call_later(
                self.timeout, self._expired, server, task
            )

    def _expired(self, server: connection.Server, task: asyncio.Task[Any]) -> None:
        self._timers.pop(server.id, None)
        if server.timestamp_tcp_setup is None:
            self._timed_out.add(server.id)
            task.cancel()

    def _stop_timer(self, data: server_hooks.ServerConnectionHookData) -> None:
        timer = self._timers.pop(data.server.id, None)
        if timer is not None:
            timer.cancel()

    server_connected = _stop_timer
    server_connect_error = _stop_timer

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._timed_out.discard(data.server.id)

    def timed_out(self, server: connection.Server) -> bool:
        """Whether the connect to `server` was cut by the deadline."""
        return server.id in self._timed_out

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        if o is None or flow.metadata.get(AUDITED) or flow.metadata.get(DENIED):
            return  # refused by the proxy: that answer stands
        reason = (
            "upstream_timeout" if self.timed_out(flow.server_conn) else "upstream_connect_failed"
        )
        status = status_for(reason)
        detail = f"cannot connect to {o.host}:{o.port}"
        flow.response = error_response(reason, detail, status, o.host)
        o.reason, o.status = reason, status

    def error(self, flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        if o is not None and not flow.metadata.get(AUDITED) and self.timed_out(flow.server_conn):
            o.reason = "upstream_timeout"
