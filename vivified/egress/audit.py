"""One audit record per CONNECT, per request and per denial: opened first, written last.

`OpenRecord` is the first addon of the chain: it opens the flow's `Outcome` (the record in the
making) that the addons after it fill in. `Audit` is the last: it writes the record when the
flow's fate is known, once (a refusal in the same hook that refused it; an accepted CONNECT
when it is connected; a request when its response or error arrives). Passthrough tunnels are
recorded by `passthrough.PassthroughTunnels` when they end.
"""

from __future__ import annotations

import time

from mitmproxy import http

from vivified.egress.filters import CountingStream, needs_streaming
from vivified.egress.flow_state import AUDITED, DENIED, OUTCOME, outcome
from vivified.egress.live_state import EgressState
from vivified.egress.records import Outcome


class OpenRecord:
    """A mitmproxy addon, first in the chain: every CONNECT and request gets its `Outcome`."""

    def http_connect(self, flow: http.HTTPFlow) -> None:
        flow.metadata[OUTCOME] = Outcome(
            "connect",
            "",
            flow.request.host,
            flow.request.port,
            request_id=flow.id,
            method="CONNECT",
            started=time.time(),
        )

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        flow.metadata[OUTCOME] = Outcome(
            "request",
            "",
            req.host,
            req.port,
            request_id=flow.id,
            method=req.method,
            path=req.path,
            started=time.time(),
        )


class Audit:
    """A mitmproxy addon, last in the chain: writes each flow's record once."""

    def __init__(self, state: EgressState) -> None:
        self._trail = state.audit

    def http_connect(self, flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        if o is not None and flow.metadata.get(DENIED):
            self._trail.record(o, flow.metadata)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        if o is None:
            return
        if flow.metadata.get(DENIED):
            self._trail.record(o, flow.metadata)
        elif flow.error is not None:  # mitmproxy already refused it (e.g. smuggling attempt)
            o.reason, o.status = "bad_request", 400
            self._trail.record(o, flow.metadata)
        elif needs_streaming(flow.request.headers):  # allowed: count the body on its way
            flow.request.stream = CountingStream()

    def http_connected(self, flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        if o is not None and flow.response is not None:
            o.status = flow.response.status_code
            self._trail.record(o, flow.metadata)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """The upstream could not be reached (`upstream_connect.UpstreamConnect` answered)."""
        o = outcome(flow)
        if o is not None:
            self._trail.record(o, flow.metadata)

    def response(self, flow: http.HTTPFlow) -> None:
        self._trail.finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        if o is None or flow.metadata.get(AUDITED):
            return
        # On this path mitmproxy itself answers the client, always with 502.
        timed_out = o.reason == "upstream_timeout"  # the connect or the response deadline
        o.reason = "upstream_timeout" if timed_out else "upstream_failed"
        if flow.response is None:
            o.status = 502
        o.extra["error"] = flow.error.msg if flow.error else ""
        self._trail.finish(flow)
