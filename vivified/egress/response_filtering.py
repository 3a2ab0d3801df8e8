"""Response filtering of the egress addon: headers stripped, content types, size caps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mitmproxy import connection, http

from vivified.egress.filters import LimitedStream, ReplacementStream, declared_length, strip_headers
from vivified.egress.flow_state import (
    DENIED,
    OUTCOME,
    SMALL_BODY,
    TIMED_OUT,
    SnapshotSource,
    Target,
)
from vivified.egress.records import Outcome
from vivified.egress.responses import error_body, error_headers, status_for


class ResponseFiltering:
    """Mixed into `EgressAddon`: it provides the snapshot source, the client closer and
    `_finish` (the audit of a finished flow)."""

    _snapshots: SnapshotSource
    _close_client: Callable[[connection.Client, bool], Any] | None

    def _finish(self, flow: http.HTTPFlow) -> None:
        raise NotImplementedError

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        target: Target | None = flow.metadata.get("vivified.target")
        resp = flow.response
        if (
            flow.metadata.get(DENIED)
            or flow.metadata.get(TIMED_OUT)
            or target is None
            or resp is None
        ):
            return
        view = self._snapshots.current.plugins.get(target.plugin_id)
        phi = view is not None and ("phi" in view.classification or "handles_phi" in view.traits)
        rule = self._snapshots.current.egress.filters.effective(
            target.plugin_id, target.host, phi=phi
        )
        removed = strip_headers(resp.headers, rule)
        if removed:
            flow.metadata[OUTCOME].extra["stripped"] = removed
        if not rule.allows_content_type(resp.headers.get("content-type")):
            return self._replace(
                flow,
                "content_type_not_allowed",
                f"content type {resp.headers.get('content-type')!r} refused",
            )
        length = declared_length(resp.headers)
        if (
            rule.max_body_bytes is not None
            and length is not None
            and (length > rule.max_body_bytes)
        ):
            return self._replace(
                flow,
                "response_too_large",
                f"response of {length} bytes exceeds {rule.max_body_bytes}",
            )
        if length is not None and length <= SMALL_BODY:
            return  # small and declared (already checked against the cap): buffered whole
        resp.stream = LimitedStream(rule.max_body_bytes, lambda: self._cut(flow))

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
        o: Outcome = flow.metadata[OUTCOME]
        o.decision, o.reason, o.status = "deny", reason, status
        o.extra["detail"] = detail

    def _cut(self, flow: http.HTTPFlow) -> None:
        o: Outcome = flow.metadata[OUTCOME]
        o.decision, o.reason = "deny", "response_too_large"
        o.status = flow.response.status_code if flow.response else 0
        self._finish(flow)
        if self._close_client is not None:
            self._close_client(flow.client_conn, True)
