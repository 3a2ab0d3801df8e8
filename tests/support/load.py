"""Bounded load for fault tests: loops in threads, each capped in count and in time.

A `Loop` calls `step(i)` for i = 0, 1, … until `count` steps ran, `seconds` passed, or `stop()`
was called; it keeps every step's answer. Nothing here ever loops unbounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Loop(Generic[T]):
    step: Callable[[int], T]
    count: int
    seconds: float
    pause: float = 0.0
    finish: Callable[[], object] | None = None  # run once the loop ends (e.g. close a client)
    results: list[T] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            self._steps()
        finally:
            if self.finish is not None:
                self.finish()

    def _steps(self) -> None:
        deadline = time.monotonic() + self.seconds
        for i in range(self.count):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                self.results.append(self.step(i))
            except BaseException as exc:  # the test reads it: a loop never dies silently
                self.errors.append(exc)
                return
            if self.pause:
                self._stop.wait(self.pause)

    def start(self) -> Loop[T]:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(self.seconds + 30 if timeout is None else timeout)
            assert not self._thread.is_alive(), "a load loop did not finish in its bound"

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()
