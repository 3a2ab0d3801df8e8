"""Operator mistakes end in one line on stderr naming what is wrong and what to do, with exit
status 2, never a traceback (`--debug` shows it); commands that work on an existing registry
never create a data dir; Ctrl-C during the migration of `vivified up` is a clean exit 130."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.procs import clean_env

TIMEOUT = 60


def vivified(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified", *args],
        cwd=cwd,
        env=clean_env({"VIVIFIED_LOG_LEVEL": "warning", **(env or {})}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str], prefix: str) -> str:
    """The single stderr line of a refused command (checked: no traceback, no output)."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(prefix), lines[0]
    assert done.stdout == "", done.stdout
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _is_a_file(tmp: Path) -> tuple[list[str], str]:
    (tmp / "data").write_text("not a directory")
    return ["up", "--data-dir", str(tmp / "data")], f"data dir {tmp / 'data'} is a file"


def _under_a_file(tmp: Path) -> tuple[list[str], str]:
    (tmp / "data").write_text("not a directory")
    where = tmp / "data" / "core"
    return ["gateway", "--data-dir", str(where)], f"cannot create data dir {where}: not a dir"


def _unwritable(_tmp: Path) -> tuple[list[str], str]:
    # /proc/1 exists, is a directory and no one may create files in it (not even root)
    return ["egress", "--data-dir", "/proc/1"], "data dir /proc/1 is not writable"


def _config_missing(tmp: Path) -> tuple[list[str], str]:
    path = tmp / "nope.toml"
    return ["up", "--config", str(path)], f"config file {path}: cannot read it"


def _unknown_in_config(tmp: Path) -> tuple[list[str], str]:
    path = tmp / "core.toml"
    path.write_text("event_partitions = 4\n")
    return ["gateway", "--config", str(path)], f"unknown setting 'event_partitions' in {path}"


MISTAKES = [
    pytest.param(_is_a_file, "vivified up: ", id="data-dir-is-a-file"),
    pytest.param(_under_a_file, "vivified gateway: ", id="data-dir-under-a-file"),
    pytest.param(_unwritable, "vivified egress: ", id="data-dir-not-writable"),
    pytest.param(_config_missing, "vivified up: ", id="config-file-missing"),
    pytest.param(_unknown_in_config, "vivified gateway: ", id="unknown-setting-in-file"),
]


@pytest.mark.parametrize(("make", "prefix"), MISTAKES)
def test_data_dir_and_config_mistakes(make: object, prefix: str, tmp_path: Path) -> None:
    assert callable(make)
    args, expected = make(tmp_path)
    done = vivified(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert expected in one_line(done, prefix)


@pytest.mark.parametrize("command", ["up", "gateway", "egress"])
def test_port_in_use(command: str, busy_port: int, tmp_path: Path) -> None:
    which = "egress" if command == "egress" else "gateway"
    done = vivified(
        command, "--data-dir", str(tmp_path / "d"), f"--{which}-port", str(busy_port), cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    line = one_line(done, f"vivified {command}: ")
    assert f"{which} port {busy_port} on 127.0.0.1 is in use" in line
    assert f"--{which}-port" in line
    assert not (tmp_path / "d" / "registry.db").exists(), "nothing migrated"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"VIVIFIED_ADMIN_TOKEN": "short-secret"},
            ["VIVIFIED_ADMIN_TOKEN=(set, hidden): must be at least 24 characters"],
            id="short-admin-token",
        ),
        pytest.param(
            {"VIVIFIED_AUDIT_QUEUE_SIZE": "0", "VIVIFIED_HEALTH_QUARANTINE": "ture"},
            [
                "2 settings problems: ",
                "VIVIFIED_AUDIT_QUEUE_SIZE=0: must be at least 1",
                "VIVIFIED_HEALTH_QUARANTINE=ture: not a boolean",
            ],
            id="every-settings-problem-in-one-line",
        ),
        pytest.param(
            {"VIVIFIED_LOG_LEVEL": "loud"},
            ["VIVIFIED_LOG_LEVEL=loud: must be one of debug, info, warning, error"],
            id="bad-log-level",
        ),
    ],
)
@pytest.mark.parametrize("command", ["up", "gateway", "egress"])
def test_settings_mistakes(
    command: str, env: dict[str, str], expected: list[str], tmp_path: Path
) -> None:
    done = vivified(command, "--data-dir", str(tmp_path / "d"), cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    line = one_line(done, f"vivified {command}: ")
    for part in expected:
        assert part in line
    assert "short-secret" not in line
    assert not (tmp_path / "d").exists(), "nothing created"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["audit", "verify"], id="audit-verify"),
        pytest.param(["keys", "rotate"], id="keys-rotate"),
        pytest.param(["admin", "reset-token"], id="admin-reset-token"),
    ],
)
@pytest.mark.parametrize("data_dir", ["absent", "empty"])
def test_registry_commands_never_create_one(args: list[str], data_dir: str, tmp_path: Path) -> None:
    if data_dir == "empty":
        (tmp_path / ".vivified").mkdir()
    done = vivified(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = one_line(done, f"vivified {' '.join(args)}: ")
    if data_dir == "absent":
        assert "data dir .vivified does not exist" in line
        assert not (tmp_path / ".vivified").exists()
    else:
        assert f"no registry at {tmp_path / '.vivified' / 'registry.db'}" in line
        assert list((tmp_path / ".vivified").iterdir()) == []
    assert "--data-dir" in line


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://core:pw-secret@127.0.0.1:{port}/core"
    done = vivified("audit", "verify", cwd=tmp_path, env={"VIVIFIED_DATABASE_URL": url})
    assert done.returncode == 2, done.stderr
    line = one_line(done, "vivified audit verify: ")
    assert f"cannot open the registry database postgresql://core:***@127.0.0.1:{port}/core" in line
    assert "pw-secret" not in line


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--debug", "audit", "verify"], id="before-the-command"),
        pytest.param(["audit", "verify", "--debug"], id="after-the-command"),
    ],
)
def test_debug_shows_the_traceback(args: list[str], tmp_path: Path) -> None:
    done = vivified(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "OperatorError: data dir .vivified does not exist" in done.stderr


def _threads(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/task").iterdir()))
    except FileNotFoundError:
        return 0


def test_ctrl_c_during_the_migration_is_a_clean_exit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    holder = sqlite3.connect(data / "registry.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # `vivified up` waits for the registry here
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vivified",
            "up",
            "--data-dir",
            str(data),
            "--gateway-port",
            "0",
            "--egress-port",
            "0",
        ],
        env=clean_env({"VIVIFIED_LOG_LEVEL": "warning"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _threads(proc.pid) < 2:  # the database thread: it is migrating (and waiting)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    out, err = proc.communicate(timeout=45)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vivified up: interrupted while preparing the registry"), err
    assert "run `vivified up` again" in lines[0]
    assert out == ""
    assert not (data / "run").exists(), "no child was started"
    assert not (data / "nats").exists(), "no nats-server was started"
