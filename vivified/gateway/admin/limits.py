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
from vivified.gateway.admin.config import BODY_CAP, _comment, _expected, _versioned
from vivified.gateway.bodies import read_json
from vivified.gateway.middleware import request_id
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
    core = auth.core_of(request)
    principal = await auth.admin(request, "plugins:manage")
    plugin_id = path_plugin_id(request)
    expected = _expected(request)
    body = await read_json(request, BODY_CAP)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "effective"}  # read-only, as GET says
    got = await core.config.put_limits(
        plugin_id,
        body,
        expected=expected,
        actor=principal.actor,
        comment=_comment(body),
        request_id=request_id(request),
    )
    return _with_effective(request, plugin_id, got.value, got.version)


def _with_effective(
    request: Request, plugin_id: str, value: dict[str, object], version: int
) -> Response:
    limits = effective(auth.core_of(request).limits.default, dict(value))
    shown = {"rate": limits.rate, "concurrency": limits.concurrency}
    return _versioned({**value, "effective": shown}, version)


ROUTES = [
    Route("/admin/plugins/{plugin_id}/limits", get_limits, methods=["GET"]),
    Route("/admin/plugins/{plugin_id}/limits", put_limits, methods=["PUT"]),
]
