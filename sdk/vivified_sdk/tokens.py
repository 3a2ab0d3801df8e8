"""The plugin token on disk: one JSON file, mode 0600, replaced atomically.

The token core answers at registration is shown once; the SDK keeps it in
`{state_dir}/token.json` so a restarted plugin re-registers with its own token (no new
registration token needed) and swaps it for a fresh one before it expires.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

TOKEN_FILE = "token.json"  # noqa: S105 (a file name)


def _epoch(value: Any) -> float:
    """`expires_at` as epoch seconds (core answers a number; ISO-8601 is accepted too)."""
    if isinstance(value, bool):
        raise ValueError("expires_at is not a time")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError("expires_at is not a time")


@dataclass(frozen=True)
class PluginToken:
    """A plugin token and its lifetime (`issued_at` is when this process received it)."""

    plugin_id: str
    token: str
    expires_at: float
    issued_at: float

    @classmethod
    def from_answer(cls, plugin_id: str, body: dict[str, Any]) -> PluginToken:
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise ValueError("core's answer carries no token")
        return cls(plugin_id, token, _epoch(body.get("expires_at")), time.time())

    @property
    def lifetime(self) -> float:
        return max(0.0, self.expires_at - self.issued_at)

    def expired(self, now: float | None = None, margin: float = 5.0) -> bool:
        return (now if now is not None else time.time()) >= self.expires_at - margin

    def refresh_at(self, ratio: float) -> float:
        """When to swap it: `ratio` of the way through its lifetime."""
        return self.issued_at + self.lifetime * ratio

    def __repr__(self) -> str:  # never show the secret
        return f"PluginToken(plugin_id={self.plugin_id!r}, expires_at={self.expires_at})"


class TokenStore:
    """Reads and writes the token file (mode 0600, atomic replace, never logged)."""

    def __init__(self, state_dir: Path | str) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / TOKEN_FILE

    def load(self, plugin_id: str) -> PluginToken | None:
        """The saved token of `plugin_id`, or None (missing, unreadable, another plugin's)."""
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("plugin_id") != plugin_id:
            return None
        try:
            return PluginToken(
                plugin_id,
                str(doc["token"]),
                _epoch(doc["expires_at"]),
                _epoch(doc.get("issued_at", time.time())),
            )
        except (KeyError, ValueError):
            return None

    def save(self, token: PluginToken) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {
            "plugin_id": token.plugin_id,
            "token": token.token,
            "expires_at": token.expires_at,
            "issued_at": token.issued_at,
        }
        tmp = self.path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
