"""Remembered answers of pure decisions, so a keep-alive connection's requests skip them.

The proxy asks the same questions on every request of a connection: may this plugin reach this
host and port, which response filter applies, are these addresses safe. The answers are pure
functions of their arguments and of the current snapshot (`vivified.policy` does no I/O), and
the snapshot is immutable, replaced whole on reload. `SnapshotMemo` keeps answers for the
snapshot they were computed on and forgets them all as soon as another snapshot is current, so
a change (a disabled plugin, an allowlist or egress settings edit) applies to the very next
request, as without the memo.

Both memos are bounded: anyone who reaches the proxy chooses the keys (host names), so at
`limit` entries the memo starts over rather than grow.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from vivified.egress.live_state import SnapshotSource
from vivified.registry.store.snapshot import Snapshot

T = TypeVar("T")
LIMIT = 4096


class Memo(Generic[T]):
    """Answers by key, at most `limit` of them (then it starts over)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._values: dict[Hashable, T] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        try:
            return self._values[key]
        except KeyError:
            pass
        value = compute()
        if len(self._values) >= self.limit:
            self._values.clear()
        self._values[key] = value
        return value


class SnapshotMemo(Generic[T]):
    """Answers computed on the current snapshot, by key; forgotten when the snapshot changes."""

    def __init__(self, source: SnapshotSource, limit: int = LIMIT) -> None:
        self._source = source
        self._snapshot: Snapshot | None = None
        self._memo: Memo[T] = Memo(limit)

    def __len__(self) -> int:
        return len(self._memo)

    def get(
        self, key: Hashable, compute: Callable[[Snapshot], T], snap: Snapshot | None = None
    ) -> T:
        """The answer for `key` on the current snapshot (`compute(snapshot)` the first time);
        on `snap` instead, when the caller read the snapshot before (once per decision)."""
        if snap is None:
            snap = self._source.current
        if snap is not self._snapshot:
            self._snapshot = snap
            self._memo = Memo(self._memo.limit)
        return self._memo.get(key, lambda: compute(snap))
