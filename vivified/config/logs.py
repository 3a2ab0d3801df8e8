"""Structured JSON logs on stderr; records carry metadata only, never tokens or bodies."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def configure_logging(level: str = "info", *, access_log: bool = False) -> None:
    """Route every logger (uvicorn's too) through the JSON formatter; our access log
    (`vivified.access`, one line per request) only with `access_log` (VIVIFIED_ACCESS_LOG)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # uvicorn's access log prints query strings, which may carry secrets: we log our own.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("vivified.access").disabled = not access_log
    # alembic announces each of its plugins at info on every start: noise above the banner
    logging.getLogger("alembic.runtime.plugins").setLevel(max(root.level, logging.WARNING))
