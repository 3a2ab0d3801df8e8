"""The value every policy decision returns: allow or deny, and a stable reason code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of a policy check. `reason` is a stable snake_case code; `detail` is for humans."""

    allowed: bool
    reason: str
    detail: str = ""

    @classmethod
    def allow(cls, reason: str, detail: str = "") -> Decision:
        return cls(True, reason, detail)

    @classmethod
    def deny(cls, reason: str, detail: str = "") -> Decision:
        return cls(False, reason, detail)

    def __bool__(self) -> bool:
        return self.allowed
