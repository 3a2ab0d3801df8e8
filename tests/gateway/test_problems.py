"""`problems.direct`: an endpoint served without Starlette's router and exception middleware
answers exactly as it would behind them (a real uvicorn serves it)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from support.upstream import serve_in_thread

from vivified.gateway.problems import MEDIA_TYPE, Problem, direct


async def endpoint(request: Request) -> Response:
    what = request.query_params.get("what", "")
    if what == "problem":
        raise Problem(422, "bad", code="invalid_event", errors=[{"path": "/type"}])
    if what == "http":
        raise HTTPException(405, headers={"Allow": "POST"})
    if what == "crash":
        raise RuntimeError("secret-internal-detail")
    return JSONResponse({"ok": True, "method": request.method}, status_code=202)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(direct(endpoint)) as base:
        yield base


CASES = [
    pytest.param("", 202, "application/json", None, id="answer"),
    pytest.param("problem", 422, MEDIA_TYPE, "invalid_event", id="problem"),
    pytest.param("http", 405, MEDIA_TYPE, None, id="http-exception"),
    pytest.param("crash", 500, MEDIA_TYPE, "internal_error", id="crash"),
]


@pytest.mark.parametrize(("what", "status", "media", "reason"), CASES)
def test_direct_answers_like_the_router(
    url: str, what: str, status: int, media: str, reason: str | None
) -> None:
    r = httpx.post(url, params={"what": what}, trust_env=False)
    assert r.status_code == status
    assert r.headers["content-type"].split(";")[0] == media
    assert "secret-internal-detail" not in r.text
    assert "Traceback" not in r.text
    if media == MEDIA_TYPE:
        assert r.json()["status"] == status
        assert r.json().get("reason") == reason
    if what == "http":
        assert r.headers["allow"] == "POST"
    if what == "problem":
        assert r.json()["errors"] == [{"path": "/type"}]
