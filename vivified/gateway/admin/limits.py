"""Per-plugin fair-sharing overrides: `GET|PUT /admin/plugins/{plugin_id}/limits`.

The document is `{rate, concurrency}` (requests per second with bursts up to twice that, and
calls in flight; 0 = unlimited, null = the settings' `VIVIFIED_RATE_LIMIT` /
`VIVIFIED_CONCURRENCY_LIMIT`). It is versioned like the other config objects (`ETag`,
`If-Match`, a revision per write, revertible) and reaches every replica with the snapshot.
The limits hold per gateway process (see `vivified.gateway.operator.limits`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.admin.config import change_of, versioned
from vivified.gateway.params import path_plugin_id
from vivified.policy.rate_limits import effective


async def get_limits(request: Request) -> Response:
    """A plugin's rate and concurrency limits override (null: the default)."""
    core = auth.core_of(request)
    await auth.admin(request, "plugins:manage")
    plugin_id = path_plugin_id(request)
    got = await core.config.get_limits(plugin_id)
    return _with_effective(request, plugin_id, got.value, got.version)


async def put_limits(request: Request) -> Response:
    """Replace a plugin's rate and concurrency limits override."""
    body, change = await change_of(request, "plugins:manage", plugin=True)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "effective"}  # read-only, as GET says
    got = await auth.core_of(request).config.put_limits(body=body, **change)
    return _with_effective(request, change["plugin_id"], got.value, got.version)


def _with_effective(
    request: Request, plugin_id: str, value: dict[str, object], version: int
) -> Response:
    limits = effective(auth.core_of(request).limits.default, dict(value))
    shown = {"rate": limits.rate, "concurrency": limits.concurrency}
    return versioned({**value, "effective": shown}, version)


ROUTES = [
    Route("/admin/plugins/{plugin_id}/limits", get_limits, methods=["GET"]),
    Route("/admin/plugins/{plugin_id}/limits", put_limits, methods=["PUT"]),
]
