"""Logs an operator can read: JSON or text lines naming the process, the request and the
trace; tokens masked; library chatter quiet unless debugging; OTLP export asks for its SDK."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.procs import CoreProcess, clean_env

from vivified.config.logs import (
    QUIET_LIBRARIES,
    WORKER_NAME_ENV,
    bound,
    configure_logging,
    pick_format,
    process_name,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbHBoYSJ9.c2lnbmF0dXJl"
TOUCHED = (
    "",
    *QUIET_LIBRARIES,
    "alembic.runtime.plugins",
    "uvicorn.access",
    "vivified.access",
    "vivified.trace",
)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """configure_logging writing into a buffer; every logger it touches restored after."""
    saved: list[tuple[logging.Logger, Any, int, bool, bool]] = []
    for name in TOUCHED:
        lg = logging.getLogger(name)
        saved.append((lg, list(lg.handlers), lg.level, lg.disabled, lg.propagate))
    yield io.StringIO()
    for lg, handlers, level, disabled, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.disabled, lg.propagate = disabled, propagate


def _lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("message", "args", "secret", "shown"),
    [
        pytest.param("auth %s", ("Bearer abc.def-123",), "abc.def-123", "Bearer ***", id="bearer"),
        pytest.param("header Authorization: bearer s3cr3t", (), "s3cr3t", "bearer ***", id="lower"),
        pytest.param(
            "proxy Basic YWxwaGE6dG9rZW4=", (), "YWxwaGE6dG9rZW4", "Basic ***", id="basic"
        ),
        pytest.param("token %s used", ("vvr_AbC-123_xyz",), "AbC-123_xyz", "vvr_***", id="vvr"),
        pytest.param("admin vva_Zz9-Q.w used", (), "Zz9-Q.w", "vva_***", id="vva"),
        pytest.param("assertion %s", (JWT,), JWT, "***jwt***", id="jwt"),
    ],
)
def test_tokens_in_messages_are_masked(
    logs: io.StringIO, message: str, args: tuple[str, ...], secret: str, shown: str
) -> None:
    configure_logging("info", fmt="json", process="gateway", stream=logs)
    logging.getLogger("vivified.test").warning(message, *args)
    logging.getLogger("vivified.test").warning("extra field", extra={"header": message % args})
    (first, second) = [json.loads(line) for line in _lines(logs)]
    assert secret not in json.dumps(first)
    assert secret not in json.dumps(second)
    assert shown in first["message"]
    assert shown in second["header"]


def test_token_in_a_traceback_is_masked(logs: io.StringIO) -> None:
    configure_logging("info", fmt="text", process="egress", stream=logs)
    try:
        raise ValueError("bad token vvr_leaked123")
    except ValueError:
        logging.getLogger("vivified.test").exception("failed")
    text = logs.getvalue()
    assert "leaked123" not in text
    assert "vvr_***" in text
    assert "ValueError" in text


def test_json_lines_carry_process_request_and_trace(logs: io.StringIO) -> None:
    configure_logging("info", fmt="json", process="gateway-worker-2", stream=logs)
    with bound("r" * 32, TRACE):
        logging.getLogger("vivified.test").info("inside a request")
    logging.getLogger("vivified.test").info("outside")
    inside, outside = (json.loads(line) for line in _lines(logs))
    assert inside["process"] == outside["process"] == "gateway-worker-2"
    assert (inside["request_id"], inside["trace_id"]) == ("r" * 32, TRACE)
    assert "request_id" not in outside
    assert "trace_id" not in outside
    assert inside["message"] == "inside a request"
    assert inside["level"] == "info"
    assert inside["logger"] == "vivified.test"


def test_text_lines_name_process_request_and_trace(logs: io.StringIO) -> None:
    configure_logging("info", fmt="text", process="up", stream=logs)
    with bound("r" * 32, TRACE):
        logging.getLogger("vivified.test").warning("two\nlines", extra={"status": 503})
    (line,) = _lines(logs)
    assert f" up WARNING vivified.test: two lines request_id={'r' * 32} trace_id={TRACE}" in line
    assert line.endswith("status=503")


@pytest.mark.parametrize(
    ("level", "chatty"),
    [
        pytest.param("info", False, id="info-quiet"),
        pytest.param("warning", False, id="warning-quiet"),
        pytest.param("debug", True, id="debug-shows-libraries"),
    ],
)
def test_library_chatter_only_when_debugging(logs: io.StringIO, level: str, chatty: bool) -> None:
    configure_logging(level, fmt="json", process="gateway", stream=logs)
    for name in ("alembic.runtime.migration", "uvicorn.error", "nats", "mitmproxy", "asyncio"):
        logging.getLogger(name).info("chatter from %s", name)
        logging.getLogger(name).warning("trouble from %s", name)
    got = [json.loads(line) for line in _lines(logs)]
    assert len([g for g in got if g["level"] == "warning"]) == 5
    assert len([g for g in got if g["level"] == "info"]) == (5 if chatty else 0)


def test_format_is_text_on_a_terminal_json_otherwise(tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    try:
        with open(secondary, "w", closefd=False) as tty, open(tmp_path / "f", "w") as plain:
            assert pick_format("auto", tty) == "text"
            assert pick_format("auto", plain) == "json"
            assert pick_format("json", tty) == "json"
            assert pick_format("text", plain) == "text"
    finally:
        os.close(primary)
        os.close(secondary)


@pytest.mark.parametrize(
    ("command", "worker", "env", "name"),
    [
        pytest.param("up", False, {}, "up", id="up"),
        pytest.param("gateway", False, {}, "gateway", id="gateway"),
        pytest.param("egress", False, {}, "egress", id="egress"),
        pytest.param(
            "gateway", True, {WORKER_NAME_ENV: "gateway-worker-3"}, "gateway-worker-3", id="worker"
        ),
    ],
)
def test_process_names(command: str, worker: bool, env: dict[str, str], name: str) -> None:
    assert process_name(command, worker=worker, environ=env) == name


def test_gateway_json_log_lines(tmp_path: Path) -> None:
    """A real gateway at the default level: every line is JSON naming the process; a request's
    lines name its request id and trace id; no alembic or uvicorn info chatter."""
    gw = CoreProcess(
        "gateway",
        tmp_path / "gw",
        {"VIVIFIED_LOG_LEVEL": "info", "VIVIFIED_ACCESS_LOG": "true"},
    ).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False, timeout=10) as c:
            secret = "vvr_notarealtoken0123456789"
            r = c.get(
                "/nobody/items/1",
                headers={"traceparent": TRACEPARENT, "Authorization": f"Bearer {secret}"},
            )
            assert r.status_code == 401, r.text
            lane_rid = r.headers["x-vivified-request-id"]
            r = c.get("/.well-known/jwks.json", headers={"traceparent": TRACEPARENT})
            assert r.status_code == 200, r.text
            core_rid = r.headers["x-vivified-request-id"]
    finally:
        gw.stop()
    text = gw.log()
    assert "notarealtoken" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, text
    assert {line["process"] for line in lines} == {"gateway"}
    by_rid = {line.get("request_id"): line for line in lines if line["logger"] == "vivified.access"}
    for rid in (lane_rid, core_rid):
        assert by_rid[rid]["trace_id"] == TRACE, by_rid
    chatter = [
        line
        for line in lines
        if line["level"] == "info" and line["logger"].split(".")[0] in ("alembic", "uvicorn")
    ]
    assert chatter == []


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.sdk") is not None,
    reason="the OpenTelemetry SDK is installed here",
)
def test_otlp_endpoint_without_the_sdk_is_a_clear_start_error(tmp_path: Path) -> None:
    env = clean_env(
        {
            "VIVIFIED_DATA_DIR": str(tmp_path),
            "VIVIFIED_OTLP_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "vivified", "gateway", "--gateway-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("vivified gateway: VIVIFIED_OTLP_ENDPOINT is set")
    assert "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http" in line
    assert not (tmp_path / "registry.db").exists()  # nothing started


def test_otlp_off_loads_no_opentelemetry(tmp_path: Path) -> None:
    code = (
        "import sys, logging\n"
        "from vivified.config.logs import configure_logging\n"
        "configure_logging('info', fmt='json', process='gateway')\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'loaded'\n"
        "assert not logging.getLogger('vivified.trace').isEnabledFor(logging.CRITICAL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_gateway_workers_name_themselves(tmp_path: Path) -> None:
    """The supervisor logs as `gateway`, each worker as `gateway-worker-N`."""
    gw = CoreProcess(
        "gateway",
        tmp_path / "gw",
        {
            "VIVIFIED_GATEWAY_WORKERS": "2",
            "VIVIFIED_LOG_LEVEL": "info",
            "VIVIFIED_ACCESS_LOG": "true",
            "VIVIFIED_LOG_FORMAT": "json",
        },
    ).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False, timeout=10) as c:
            for _ in range(20):  # new connections: the kernel spreads them over the workers
                assert (
                    c.get("/.well-known/jwks.json", headers={"Connection": "close"}).status_code
                    == 200
                )
    finally:
        gw.stop()
    lines = [json.loads(line) for line in gw.log().splitlines() if line.strip()]
    names = {line["process"] for line in lines}
    assert "gateway" in names  # the supervisor's "2 workers on port" line
    assert names - {"gateway"} <= {"gateway-worker-1", "gateway-worker-2"}
    served = {line["process"] for line in lines if line["logger"] == "vivified.access"}
    assert served
    assert served <= {"gateway-worker-1", "gateway-worker-2"}
