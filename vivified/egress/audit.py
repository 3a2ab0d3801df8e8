"""One audit record per CONNECT, per request and per denial: opened first, written last.

`OpenRecord` is the first addon of the chain: it opens the flow's `Outcome` (the record in the
making) that the addons after it fill in. `Audit` is the last: it writes the record when the
flow's fate is known, once (a refusal in the same hook that refused it; an accepted CONNECT
when it is connected; a request when its response or error arrives). Passthrough tunnels are
recorded by `passthrough.PassthroughTunnels` when they end.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from mitmproxy import http

from vivified.egress.filters import CountingStream, needs_streaming
from vivified.egress.flow_state import AUDITED, DENIED, OUTCOME, outcome
from vivified.egress.live_state import EgressState
from vivified.egress.records import Outcome
from vivified.policy.audit_levels import added_fields, level_detail, records, wants_hash

TAP = "vivified.audit_tap"  # flow.metadata: the response body's hashing tap


class HashingStream(CountingStream):
    """A request `stream` that counts and hashes (SHA-256) the body as it passes."""

    def __init__(self) -> None:
        super().__init__()
        self.digest = hashlib.sha256()

    def __call__(self, data: bytes) -> bytes:
        self.digest.update(data)
        return super().__call__(data)


class HashingTap:
    """Wraps a response `stream` (a callable, or True for as-is): hashes the upstream's bytes
    on their way, nothing buffered; `inner` is put back before the flow is recorded."""

    def __init__(self, inner: Callable[[bytes], Iterable[bytes] | bytes] | bool) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()
        self.total = 0

    def __call__(self, data: bytes) -> Iterable[bytes] | bytes:
        self.digest.update(data)
        self.total += len(data)
        return self.inner(data) if callable(self.inner) else data


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
        self._state = state

    def _level(self, o: Outcome) -> str:
        """The plugin's audit level (the proxy lane has one party)."""
        view = self._state.current.plugins.get(o.actor)
        return view.audit_level if view is not None else "basic"

    def _skipped(self, flow: http.HTTPFlow, o: Outcome) -> bool:
        """`none`: an allowed flow goes unrecorded (marked recorded so nothing writes it)."""
        if records(self._level(o), o.decision):
            return False
        flow.metadata[AUDITED] = True
        return True

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
            hashed = wants_hash(self._level(o))
            flow.request.stream = HashingStream() if hashed else CountingStream()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """`complete`: hash a streamed response body on its way (after the filters set it)."""
        o = outcome(flow)
        if o is None or flow.response is None or not flow.response.stream:
            return
        if wants_hash(self._level(o)):
            tap = HashingTap(flow.response.stream)
            flow.response.stream = tap
            flow.metadata[TAP] = tap

    def http_connected(self, flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        if o is not None and flow.response is not None:
            o.status = flow.response.status_code
            if not self._skipped(flow, o):
                self._trail.record(o, flow.metadata)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """The upstream could not be reached (`upstream_connect.UpstreamConnect` answered)."""
        o = outcome(flow)
        if o is not None:
            self._trail.record(o, flow.metadata)

    def response(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def _finish(self, flow: http.HTTPFlow) -> None:
        """Record a flow that went upstream, with its level's fields."""
        o = outcome(flow)
        tap = flow.metadata.pop(TAP, None)
        if isinstance(tap, HashingTap) and flow.response is not None:
            flow.response.stream = tap.inner  # the filters' stream, for its byte counts
        if o is None or flow.metadata.get(AUDITED) or self._skipped(flow, o):
            return
        level = self._level(o)
        if added_fields(level):
            o.extra.update(level_detail(level, flow_facts(flow, o, tap)))
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
        self._finish(flow)


def _digest(stream: object, raw: bytes | None, tap: object = None) -> str | None:
    """A body's SHA-256: from the stream that hashed it, else of the buffered body."""
    for hashed in (stream, tap):
        if isinstance(hashed, HashingStream | HashingTap):
            return hashed.digest.hexdigest()
    return hashlib.sha256(raw).hexdigest() if raw is not None else None


def _size(resp: http.Response | None, tap: object) -> int | None:
    """The response body's size as received: counted by a stream, or the buffered body."""
    if resp is None:
        return None
    for counted in (tap, resp.stream):
        total = getattr(counted, "total", None)
        if isinstance(total, int):
            return total
    return len(resp.raw_content or b"")


def flow_facts(flow: http.HTTPFlow, o: Outcome, tap: object) -> dict[str, Any]:
    """What a `detailed`/`complete` record adds (see policy.audit_levels); header names only.
    A request has no route template on this lane: `params` is empty."""
    req, resp = flow.request, flow.response
    req_stream = req.stream if isinstance(req.stream, CountingStream) else None
    return {
        "params": [],
        "request_size": req_stream.total if req_stream else len(req.raw_content or b""),
        "response_size": _size(resp, tap),
        "request_content_type": req.headers.get("content-type"),
        "response_content_type": None if resp is None else resp.headers.get("content-type"),
        "policy": {"decided_by": o.reason, "mode": o.mode, "host": o.host, "grant": None},
        "request_headers": sorted({k.lower() for k in req.headers}),
        "response_headers": None if resp is None else sorted({k.lower() for k in resp.headers}),
        "request_sha256": _digest(req.stream, req.raw_content),
        "response_sha256": None if resp is None else _digest(None, resp.raw_content, tap),
    }
