"""Reaching a live connection inside mitmproxy from the addon: close it, or feed it bytes.

mitmproxy offers no public call for these; its proxyserver addon keeps one connection handler
per client connection, keyed by the client's id. Everything that needs a handler goes
through `handler_for`, so the one dependency on that internal sits in one place (pinned by
the mitmproxy 11.x requirement).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import events


class LiveConnections:
    def __init__(self, master: Any) -> None:
        self._master = master
        self._injections: set[asyncio.Task[None]] = set()

    def handler_for(self, client: connection.Client, conn: connection.Connection) -> Any:
        """The handler that holds `conn` (the client's own or its upstream), or None."""
        handler = self._master.addons.get("proxyserver").connections.get(client.id)
        if handler is None or conn not in handler.transports:
            return None
        return handler

    def close_client(self, client: connection.Client, abort: bool = False) -> None:
        handler = self.handler_for(client, client)
        if handler is None:
            return
        writer = handler.transports[client].writer
        if abort and writer is not None and hasattr(writer, "transport"):
            writer.transport.abort()  # drop what is buffered: the client sees the cut
        handler.close_connection(client)

    def send_last(self, client: connection.Client, raw: bytes) -> bool:
        """Write `raw` to the client in one write, then close (buffered bytes go out first).

        mitmproxy writes nothing more to a closing connection, so `raw` is the last word."""
        handler = self.handler_for(client, client)
        writer = None if handler is None else handler.transports[client].writer
        if writer is None or writer.is_closing():
            return False
        writer.write(raw)
        writer.close()
        return True

    def inject(self, flow: http.HTTPFlow, raw: bytes) -> bool:
        """Deliver `raw` on the flow's upstream connection as if the upstream had sent it."""
        handler = self.handler_for(flow.client_conn, flow.server_conn)
        if handler is None:
            return False
        event = events.DataReceived(flow.server_conn, raw)
        task = asyncio.get_running_loop().create_task(handler.server_event(event))
        self._injections.add(task)
        task.add_done_callback(self._injections.discard)
        return True

    def close_upstream(self, flow: http.HTTPFlow) -> bool:
        handler = self.handler_for(flow.client_conn, flow.server_conn)
        if handler is None:
            return False
        handler.close_connection(flow.server_conn)
        return True
