"""The open WebSocket relays of one gateway process, so that a change can end them.

Admission runs once, at the upgrade; a relay may then live for an hour. Every snapshot swap
(a change notice from any replica, a local change, the periodic reload) asks each open relay
whether the lane would still admit it (`Relay.recheck`, made by the lane); one that would not
is ended at once with the refusal's reason code. A relay also ends when the lane stops
accepting the caller's token, at its `exp` plus the clock-skew leeway (`expired`, the code the
lane refuses an expired token with): a timer on the event loop, set at admission and cancelled
when the relay goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vivified.registry.store.snapshot import Snapshot

log = logging.getLogger("vivified.operator")

EXPIRED = "expired"  # the TokenError code of an expired token
Recheck = Callable[[Snapshot], str | None]
"""The lane's admission decision again: None to keep the relay, else the reason code."""


@dataclass(eq=False)
class Relay:
    """One open relay: who, to what, since when, and how it must end."""

    caller: str
    target: str
    recheck: Recheck
    started: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    end_reason: str = ""  # set once: why core ends it
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _expiry: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)

    def expire_at(self, exp: float) -> None:
        """End the relay (`expired`) at `exp` (Unix seconds: when the caller's token stops
        being accepted); at once (on the next loop turn) when that has passed."""
        self.cancel_expiry()
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_at(loop.time() + (exp - time.time()), self.end, EXPIRED)

    def cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def touch(self) -> None:
        """A message went one way or the other."""
        self.last_active = time.monotonic()

    def end(self, reason: str) -> None:
        if not self.end_reason:
            self.end_reason = reason
            self.ended.set()
        self.cancel_expiry()


class LiveRelays:
    """The open relays of this process; `review` is a snapshot listener."""

    def __init__(self) -> None:
        self._open: set[Relay] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, relay: Relay) -> None:
        self._open.add(relay)

    def discard(self, relay: Relay) -> None:
        """The relay is over, however it ended: forget it and drop its expiry timer."""
        relay.cancel_expiry()
        self._open.discard(relay)

    def review(self, snapshot: Snapshot) -> None:
        """End every relay the lane would refuse under `snapshot`."""
        for relay in list(self._open):
            try:
                reason = relay.recheck(snapshot)
            except Exception:  # a bug in the check must not keep a relay open
                log.exception("relay re-admission failed; ending the relay")
                reason = "internal_error"
            if reason is not None:
                log.info(
                    "ending the WebSocket relay %s -> %s: %s", relay.caller, relay.target, reason
                )
                relay.end(reason)
