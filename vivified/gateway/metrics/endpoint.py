"""`GET /metrics`: Prometheus text, for an admin token with the `metrics:read` scope.

The scope, not a separate scrape secret: Prometheus is given a dedicated admin token that has
only `metrics:read` (`vivified admin create --scope metrics:read`, as a `bearer_token_file`),
which can read counters and nothing else, and is revoked like any admin token.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.problems import not_found

SCOPE = "metrics:read"


async def metrics(request: Request) -> Response:
    await auth.admin(request, SCOPE)
    core = auth.core_of(request)
    if core.metrics is None:
        raise not_found("metrics are turned off (VIVIFIED_METRICS=false)")
    registry = core.metrics.collect_registry()
    # With workers this reads every worker's files: off the event loop.
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(
        body, headers={"content-type": CONTENT_TYPE_LATEST, "cache-control": "no-store"}
    )


ROUTES = [Route("/metrics", metrics, methods=["GET"])]
