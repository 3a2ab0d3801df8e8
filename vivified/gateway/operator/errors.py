"""Refusals on the operator lane: a reason code (its status is in the gateway's lane table,
`vivified.gateway.problems.LANE_STATUS`), answered by `problems.send_problem` straight onto
the ASGI channel."""

from __future__ import annotations

from vivified.registry.errors import DomainError


class LaneError(DomainError):
    """A refusal with its stable reason code; `retry_after` (seconds) says when a 503 is worth
    retrying (the default otherwise)."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after
