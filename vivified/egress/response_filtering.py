"""Response filtering as a mitmproxy addon: stripped headers, content types, size caps.

The rule is the egress settings' effective filter for the plugin and host (stricter for
plugins that handle PHI). Headers the rule strips (always core's `X-Vivified-*`, so an
upstream cannot forge them) are removed; a refused content type (403
`content_type_not_allowed`) or a declared length over the cap (502 `response_too_large`)
replaces the upstream's answer with core's problem response, its body read and discarded.
An undeclared or large body is streamed, never buffered, and the client connection is cut
once it passes the cap (recorded as `response_too_large`).
"""

from __future__ import annotations

from mitmproxy import http

from vivified.egress.filters import (
    SMALL_BODY,
    LimitedStream,
    ReplacementStream,
    declared_length,
    strip_headers,
)
from vivified.egress.flow_state import DENIED, TIMED_OUT, outcome, target
from vivified.egress.headers import collect, folded
from vivified.egress.live_state import CloseClient, EgressState
from vivified.egress.memo import SnapshotMemo
from vivified.egress.responses import error_body, error_headers, status_for
from vivified.policy.egress_settings import FilterRule
from vivified.registry.store.snapshot import Snapshot

_TYPE, _LENGTH = b"content-type", b"content-length"


def effective_rule(snap: Snapshot, plugin_id: str, host: str) -> FilterRule:
    """The filter for `plugin_id` reaching `host` on `snap` (stricter for PHI plugins)."""
    view = snap.plugins.get(plugin_id)
    phi = view is not None and ("phi" in view.classification or "handles_phi" in view.traits)
    return snap.egress.filters.effective(plugin_id, host, phi=phi)


class ResponseFilter:
    """A mitmproxy addon. `close_client(client, abort)` cuts an over-cap streamed response."""

    def __init__(self, state: EgressState, close_client: CloseClient | None = None) -> None:
        self._state = state
        self._close_client = close_client
        self._rules: SnapshotMemo[FilterRule] = SnapshotMemo(state.snapshots)

    def rule(self, plugin_id: str, host: str) -> FilterRule:
        """The effective filter for `plugin_id` reaching `host`, from the current snapshot
        (remembered for that snapshot)."""
        return self._rules.get(
            (plugin_id, host), lambda snap: effective_rule(snap, plugin_id, host)
        )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        t = target(flow)
        resp = flow.response
        o = outcome(flow)
        if (
            flow.metadata.get(DENIED)
            or flow.metadata.get(TIMED_OUT)  # core's own 504 (response_deadline)
            or t is None
            or resp is None
            or o is None
        ):
            return
        rule = self.rule(t.plugin_id, t.host)
        removed = strip_headers(resp.headers, rule)
        if removed:
            o.extra["stripped"] = removed
        found = collect(resp.headers, (_TYPE, _LENGTH))
        content_type = folded(found.get(_TYPE))
        if not rule.allows_content_type(content_type):
            self._replace(
                flow, "content_type_not_allowed", f"content type {content_type!r} refused"
            )
            return
        length = declared_length(found.get(_LENGTH))
        if rule.max_body_bytes is not None and length is not None and length > rule.max_body_bytes:
            self._replace(
                flow,
                "response_too_large",
                f"response of {length} bytes exceeds {rule.max_body_bytes}",
            )
            return
        if length is not None and length <= SMALL_BODY:
            return  # small and declared (already checked against the cap): buffered whole
        resp.stream = LimitedStream(rule.max_body_bytes, lambda: self._cut(flow))

    def response(self, flow: http.HTTPFlow) -> None:
        stream = flow.response.stream if flow.response is not None else None
        if isinstance(stream, ReplacementStream) and not stream.sent and flow.response:
            flow.response.stream = False
            flow.response.content = stream(b"")  # the upstream sent no body at all

    def _replace(self, flow: http.HTTPFlow, reason: str, detail: str) -> None:
        """Answer with a refusal instead of the upstream's response (its body is discarded)."""
        assert flow.response is not None
        status = status_for(reason)
        body = error_body(status, reason, detail)
        flow.response.status_code = status
        flow.response.reason = ""
        flow.response.headers.clear()
        for key, value in error_headers(status, reason, len(body)).items():
            flow.response.headers[key] = value
        flow.response.stream = ReplacementStream(body)
        o = outcome(flow)
        if o is not None:
            o.decision, o.reason, o.status = "deny", reason, status
            o.extra["detail"] = detail

    def _cut(self, flow: http.HTTPFlow) -> None:
        """The streamed body passed the cap: record the flow now, then cut the client."""
        o = outcome(flow)
        if o is not None:
            o.decision, o.reason = "deny", "response_too_large"
            o.status = flow.response.status_code if flow.response else 0
        self._state.audit.finish(flow)
        if self._close_client is not None:
            self._close_client(flow.client_conn, True)
