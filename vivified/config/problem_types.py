"""The one `type` URI scheme of core's problem+json answers (RFC 9457), on every lane.

Both the gateway and the egress proxy import it from here (they never import each other):
`problem_type("host_not_allowed")` is `https://vivified.dev/problems/host_not_allowed`.
"""

from __future__ import annotations

PROBLEM_TYPE_BASE = "https://vivified.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def problem_type(reason: str) -> str:
    """The `type` URI of a problem with the stable reason code `reason`."""
    return PROBLEM_TYPE_BASE + reason
