"""Logs an operator can read: one line per event on stderr, text on a terminal, JSON otherwise.

Every line names its process (`gateway`, `gateway-worker-N`, `egress`, `up`) and, while a
request is handled, its request id and trace id (`bind` sets them in context variables;
`ContextFilter` copies them onto each record). `SecretFilter` masks bearer tokens, `vvr_`/
`vva_` tokens and JWT-looking strings wherever they appear. Records carry metadata only,
never bodies. Library chatter (alembic, uvicorn, nats, mitmproxy, asyncio, sqlalchemy) stays at
WARNING unless `VIVIFIED_LOG_LEVEL=debug`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_CONTEXT = ("request_id", "trace_id")

QUIET_LIBRARIES = (
    "alembic",
    "uvicorn",
    "uvicorn.error",
    "nats",
    "mitmproxy",
    "asyncio",
    "aiosqlite",
    "sqlalchemy",
    "httpx",
    "httpcore",
    "hpack",
    "passlib",
)

request_id_var: ContextVar[str] = ContextVar("vivified_request_id", default="")
trace_id_var: ContextVar[str] = ContextVar("vivified_trace_id", default="")

_SECRETS = (
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1\2***"),
    # Basic credentials are base64: a longer run, so "basic level" stays readable
    (re.compile(r"(?i)\b(basic)(\s+)[A-Za-z0-9+/]{12,}=*"), r"\1\2***"),
    (re.compile(r"\b(vv[ra]_)[A-Za-z0-9\-._~+/=]+"), r"\1***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "***jwt***"),
)


def mask(text: str) -> str:
    """`text` with every token-looking part replaced by `***`."""
    if "vv" not in text and "eyJ" not in text and "earer" not in text and "asic" not in text:
        return text  # the common case: nothing that could match, skip the regexes
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


Bound = tuple[Token[str], Token[str]]


def bind(request_id: str, trace_id: str) -> Bound:
    """Name the request being handled in this context; `unbind` with what it returns."""
    return request_id_var.set(request_id), trace_id_var.set(trace_id)


def unbind(tokens: Bound) -> None:
    request_id_var.reset(tokens[0])
    trace_id_var.reset(tokens[1])


@contextmanager
def bound(request_id: str, trace_id: str) -> Iterator[None]:
    tokens = bind(request_id, trace_id)
    try:
        yield
    finally:
        unbind(tokens)


class ContextFilter(logging.Filter):
    """Puts the request id and trace id of the current context on every record (an `extra`
    the caller gave wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            rid = request_id_var.get()
            if rid:
                record.request_id = rid
        if not getattr(record, "trace_id", ""):
            tid = trace_id_var.get()
            if tid:
                record.trace_id = tid
        return True


class SecretFilter(logging.Filter):
    """Masks tokens in the message and in string `extra` fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the formatter to report
            return True
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                cleaned = mask(value)
                if cleaned != value:
                    setattr(record, key, cleaned)
        return True


def _time(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value if isinstance(value, str | int | float | bool) else repr(value)
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, process, logger, message, request and trace ids,
    and any `extra` fields."""

    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "process": self.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(doc, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`time process LEVEL logger: message key=value…`, one line (a traceback is indented)."""

    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        ordered = [k for k in _CONTEXT if k in extras] + [k for k in extras if k not in _CONTEXT]
        fields = " ".join(f"{k}={extras[k]}" for k in ordered)
        line = (
            f"{_time(record)} {self.process} {record.levelname} {record.name}: "
            f"{' '.join(record.getMessage().splitlines())}"
        )
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n    " + mask(self.formatException(record.exc_info)).replace("\n", "\n    ")
        return line


WORKER_NAME_ENV = "VIVIFIED_WORKER_NAME"  # set by the worker supervisor, not a setting


def process_name(command: str, *, worker: bool = False, environ: Any = None) -> str:
    """How this process names itself in every line: `up`, `gateway`, `egress`, or the
    `gateway-worker-N` its supervisor gave it."""
    env = os.environ if environ is None else environ
    if worker:
        return str(env.get(WORKER_NAME_ENV) or f"gateway-worker-{os.getpid()}")
    return command


def pick_format(fmt: str, stream: Any) -> str:
    """`text` or `json`: `auto` is text on a terminal, JSON otherwise."""
    if fmt in ("text", "json"):
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(
    level: str = "info",
    *,
    access_log: bool = False,
    fmt: str = "auto",
    process: str = "vivified",
    stream: Any = None,
    otlp_endpoint: str = "",
) -> None:
    """Route every logger (uvicorn's too) through one handler on stderr; our access log
    (`vivified.access`, one line per request) only with `access_log` (VIVIFIED_ACCESS_LOG).
    `fmt` is VIVIFIED_LOG_FORMAT (text, json or auto), `process` this process's name; spans
    go to `otlp_endpoint` (VIVIFIED_OTLP_ENDPOINT) when it is set (see `otlp`)."""
    from vivified.config import otlp

    if otlp_endpoint:
        otlp.install(otlp_endpoint, process)  # first: a missing SDK stops the start
    else:
        otlp.disable()
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    formatter = JsonFormatter if pick_format(fmt, out) == "json" else TextFormatter
    handler.setFormatter(formatter(process))
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretFilter())
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
    # Libraries announce themselves at info (alembic each plugin and migration context,
    # uvicorn its start): noise above the banner unless debugging.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else max(root.level, logging.WARNING)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
    logging.getLogger("alembic.runtime.plugins").setLevel(max(root.level, logging.WARNING))
