"""Failed console sign-ins per client address, in the registry (SQLite and PostgreSQL): the
limit, the wait it sets, other clients untouched, the window sliding and old rows deleted."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.identity.sign_in_failures import LIMIT, WINDOW, failed, retry_after
from vivified.registry.store.tables import SignInFailure

Sessions = async_sessionmaker[AsyncSession]
T0 = 1_800_000_000.0
ME, OTHER = "203.0.113.7", "2001:db8::7"


async def _fail(sessions: Sessions, client: str, times: list[float]) -> None:
    for at in times:
        await failed(sessions, client, now=at)


async def _rows(sessions: Sessions) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(SignInFailure))).scalar_one())


@pytest.mark.parametrize(
    ("failures", "now", "wait"),
    [
        pytest.param([], T0, 0, id="none"),
        pytest.param([T0 + i for i in range(LIMIT - 1)], T0 + 10, 0, id="one-short-of-the-limit"),
        pytest.param([T0 + i for i in range(LIMIT)], T0 + 10, 51, id="at-the-limit"),
        pytest.param([T0 + i for i in range(LIMIT)], T0 + WINDOW - 0.5, 1, id="half-a-second-left"),
        pytest.param([T0 + i for i in range(LIMIT)], T0 + WINDOW, 0, id="oldest-left-the-window"),
        pytest.param(
            [T0, *(T0 + 30 + i for i in range(LIMIT - 1))], T0 + WINDOW + 1, 0, id="window-slides"
        ),
        pytest.param(
            [T0 + i for i in range(2 * LIMIT)], T0 + 20, 46, id="the-last-limit-failures-count"
        ),
    ],
)
async def test_a_client_waits_after_limit_failures_within_the_window(
    sessions: Sessions, failures: list[float], now: float, wait: int
) -> None:
    await _fail(sessions, ME, failures)
    assert await retry_after(sessions, ME, now=now) == wait


async def test_other_clients_are_not_held_back(sessions: Sessions) -> None:
    await _fail(sessions, ME, [T0 + i for i in range(LIMIT)])
    assert await retry_after(sessions, ME, now=T0 + 10) > 0
    assert await retry_after(sessions, OTHER, now=T0 + 10) == 0


async def test_a_failure_deletes_every_failure_older_than_the_window(sessions: Sessions) -> None:
    await _fail(sessions, ME, [T0 + i for i in range(LIMIT)])
    await _fail(sessions, OTHER, [T0 + 30])
    assert await _rows(sessions) == LIMIT + 1
    await failed(sessions, OTHER, now=T0 + WINDOW + 10)  # ME's are all older than the window
    assert await _rows(sessions) == 2


async def test_an_overlong_client_is_cut_to_the_column(sessions: Sessions) -> None:
    long = "x" * 300
    await _fail(sessions, long, [T0 + i for i in range(LIMIT)])
    assert await retry_after(sessions, long, now=T0 + 10) == 51
