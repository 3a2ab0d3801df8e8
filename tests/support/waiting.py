"""Bounded polling instead of fixed sleeps: wait for a condition, fail clearly after a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

STEP = 0.05  # seconds between two checks


def eventually(check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """`check()`'s first truthy answer, polled every 50 ms; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {answer!r})")
        time.sleep(STEP)


async def eventually_async(
    check: Callable[[], T | Awaitable[T]], timeout: float = 15.0, what: str = "condition"
) -> T:
    """The async twin of `eventually`: `check` may be a plain or an async callable."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if isinstance(answer, Awaitable):
            answer = await answer
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {answer!r})")
        await asyncio.sleep(STEP)
