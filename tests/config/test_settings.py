"""One settings object: flags over VIVIFIED_* over the TOML file, and every value checked.

A bad value is refused with a problem naming the variable, the value and what is allowed;
all problems are reported at once (`SettingsError.problems`), and `vivified config check`
prints the effective settings (secrets masked) with the problems.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vivified.cli import main
from vivified.config.bus import servers as bus_servers
from vivified.config.settings import SettingsError, load_settings

SECRET = "a-secret-admin-token-that-is-long-enough"


def test_precedence_flags_over_environment_over_file(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text('events-partitions = 4\nissuer = "from-file"\nupstream_timeout = 7.5\n')
    env = {"VIVIFIED_CONFIG": str(conf), "VIVIFIED_ISSUER": "from-env"}
    s = load_settings({"events_partitions": "16"}, env)
    assert (s.events_partitions, s.issuer, s.upstream_timeout) == (16, "from-env", 7.5)
    assert load_settings(None, env).events_partitions == 4


def test_a_good_value_from_a_later_source_replaces_a_bad_one(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text("audit_queue_size = 0\n")
    env = {"VIVIFIED_CONFIG": str(conf), "VIVIFIED_AUDIT_QUEUE_SIZE": "8"}
    assert load_settings(None, env).audit_queue_size == 8


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        pytest.param(
            {"VIVIFIED_EVENTS_PARTITIONS": "0"},
            "VIVIFIED_EVENTS_PARTITIONS=0: must be between 1 and 64",
            id="no-lanes",
        ),
        pytest.param(
            {"VIVIFIED_EVENTS_PARTITIONS": "65"},
            "VIVIFIED_EVENTS_PARTITIONS=65: must be between 1 and 64",
            id="too-many-lanes",
        ),
        pytest.param(
            {"VIVIFIED_EVENTS_PARTITIONS": "two"},
            "VIVIFIED_EVENTS_PARTITIONS=two: not a whole number",
            id="not-a-number",
        ),
        pytest.param(
            {"VIVIFIED_EVENTS_PARTITIONS": "1.5"},
            "VIVIFIED_EVENTS_PARTITIONS=1.5: not a whole number",
            id="fraction-for-int",
        ),
        pytest.param(
            {"VIVIFIED_EVENTS_SUBJECT": "events"},
            "VIVIFIED_EVENTS_SUBJECT=events: must be dotted tokens, e.g. vivified.events",
            id="flat-subject",
        ),
        pytest.param(
            {"VIVIFIED_REGISTRATION": "anyone"},
            "VIVIFIED_REGISTRATION=anyone: must be one of token, open",
            id="registration",
        ),
        pytest.param(
            {"VIVIFIED_GATEWAY_PORT": "70000"},
            "VIVIFIED_GATEWAY_PORT=70000: must be between 0 and 65535",
            id="port",
        ),
        pytest.param(
            {"VIVIFIED_GATEWAY_WORKERS": "0"},
            "VIVIFIED_GATEWAY_WORKERS=0: must be between 1 and 64",
            id="no-workers",
        ),
        pytest.param(
            {"VIVIFIED_GATEWAY_WORKERS": "65"},
            "VIVIFIED_GATEWAY_WORKERS=65: must be between 1 and 64",
            id="many-workers",
        ),
        pytest.param(
            {"VIVIFIED_TOKEN_TTL": "10"}, "VIVIFIED_TOKEN_TTL=10: must be at least 60", id="ttl"
        ),
        pytest.param(
            {"VIVIFIED_UPSTREAM_TIMEOUT": "0"},
            "VIVIFIED_UPSTREAM_TIMEOUT=0: must be above 0",
            id="zero-timeout",
        ),
        pytest.param(
            {"VIVIFIED_AUDIT_WAIT": "-1"},
            "VIVIFIED_AUDIT_WAIT=-1: must be above 0",
            id="negative-audit-wait",
        ),
        pytest.param(
            {"VIVIFIED_HEADER_TIMEOUT": "0"},
            "VIVIFIED_HEADER_TIMEOUT=0: must be above 0 and at most 3600",
            id="no-header-time",
        ),
        pytest.param(
            {"VIVIFIED_HEADER_TIMEOUT": "nan"},
            "VIVIFIED_HEADER_TIMEOUT=nan: not a finite number",
            id="nan-header-time",
        ),
        pytest.param(
            {"VIVIFIED_HEADER_TIMEOUT": "3601"},
            "VIVIFIED_HEADER_TIMEOUT=3601: must be above 0 and at most 3600",
            id="hour-long-head",
        ),
        pytest.param(
            {"VIVIFIED_MAX_CONNECTIONS": "2000000"},
            "VIVIFIED_MAX_CONNECTIONS=2000000: must be between 1 and 1000000",
            id="too-many-conns",
        ),
        pytest.param(
            {"VIVIFIED_AUDIT_QUEUE_SIZE": "0"},
            "VIVIFIED_AUDIT_QUEUE_SIZE=0: must be at least 1",
            id="unbounded-audit-queue",
        ),
        pytest.param(
            {"VIVIFIED_AUDIT_BATCH_SIZE": "0"},
            "VIVIFIED_AUDIT_BATCH_SIZE=0: must be at least 1",
            id="zero-audit-batch",
        ),
        pytest.param(
            {"VIVIFIED_MAX_BODY_BYTES": "-1"},
            "VIVIFIED_MAX_BODY_BYTES=-1: must be at least 0",
            id="negative-body-cap",
        ),
        pytest.param(
            {"VIVIFIED_MAX_MANIFEST_BYTES": "0"},
            "VIVIFIED_MAX_MANIFEST_BYTES=0: must be at least 1",
            id="zero-manifest-cap",
        ),
        pytest.param(
            {"VIVIFIED_UPSTREAM_CONNECTIONS": "0"},
            "VIVIFIED_UPSTREAM_CONNECTIONS=0: must be at least 1",
            id="no-upstream-connections",
        ),
        pytest.param(
            {"VIVIFIED_EVENT_MAX_ATTEMPTS": "0"},
            "VIVIFIED_EVENT_MAX_ATTEMPTS=0: must be at least 1",
            id="no-delivery-attempts",
        ),
        pytest.param(
            {"VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": "0"},
            "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL=0: must be above 0",
            id="busy-reload",
        ),
        pytest.param(
            {"VIVIFIED_HEALTH_QUARANTINE": "ture"},
            "VIVIFIED_HEALTH_QUARANTINE=ture: not a boolean: use true/false, yes/no or 1/0",
            id="misspelt-boolean",
        ),
        pytest.param(
            {"VIVIFIED_HEALTH_QUARANTINE": "on"},
            "VIVIFIED_HEALTH_QUARANTINE=on: not a boolean: use true/false, yes/no or 1/0",
            id="on-is-not-a-boolean",
        ),
        pytest.param(
            {"VIVIFIED_LOG_LEVEL": "verbose"},
            "VIVIFIED_LOG_LEVEL=verbose: must be one of debug, info, warning, error",
            id="log-level",
        ),
        pytest.param(
            {"VIVIFIED_HEALTH_DEGRADED_AFTER": "5"},
            "VIVIFIED_HEALTH_DEGRADED_AFTER=5: must be at most VIVIFIED_HEALTH_UNHEALTHY_AFTER=3",
            id="degraded-after-unhealthy",
        ),
        pytest.param(
            {"VIVIFIED_ADMIN_TOKEN": "short"},
            "VIVIFIED_ADMIN_TOKEN=(set, hidden): must be at least 24 characters",
            id="short-admin-token",
        ),
        pytest.param(
            {"VIVIFIED_NATS_URL": "nats://a:4222,,nats://b:4222"},
            "VIVIFIED_NATS_URL=nats://a:4222,,nats://b:4222: an empty or blank server",
            id="nats-url-list-blank-member",
        ),
        pytest.param(
            {"VIVIFIED_DATABASE_URL": "mysql://root:pw@db/core"},
            "VIVIFIED_DATABASE_URL=mysql://root:***@db/core: not a PostgreSQL or SQLite URL",
            id="database-scheme",
        ),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None, env)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text('event_partitions = 4\nregistration = "anyone"\n')  # misspelt, bad choice
    env = {
        "VIVIFIED_CONFIG": str(conf),
        "VIVIFIED_AUDIT_QUEUE_SIZE": "0",
        "VIVIFIED_HEALTH_QUARANTINE": "ture",
        "VIVIFIED_LOG_LEVEL": "loud",
        "VIVIFIED_ADMIN_TOKEN": "short-secret",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings({"gateway_port": "-1"}, env)
    problems = caught.value.problems
    assert len(problems) == 7, problems
    expected = [
        f"unknown setting 'event_partitions' in {conf}",
        f"registration = anyone in {conf}: must be one of token, open",
        "VIVIFIED_AUDIT_QUEUE_SIZE=0: must be at least 1",
        "VIVIFIED_HEALTH_QUARANTINE=ture: not a boolean",
        "VIVIFIED_LOG_LEVEL=loud: must be one of debug, info, warning, error",
        "VIVIFIED_ADMIN_TOKEN=(set, hidden): must be at least 24 characters",
        "--gateway-port -1: must be between 0 and 65535",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert "short-secret" not in str(caught.value)
    assert str(caught.value).startswith("7 settings problems: ")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        pytest.param("true", True, id="true"),
        pytest.param("TRUE", True, id="TRUE"),
        pytest.param("Yes", True, id="Yes"),
        pytest.param("1", True, id="one"),
        pytest.param("false", False, id="false"),
        pytest.param("no", False, id="no"),
        pytest.param("0", False, id="zero"),
    ],
)
def test_booleans_accept_only_the_six_words(raw: str, value: bool) -> None:
    assert load_settings(None, {"VIVIFIED_HEALTH_QUARANTINE": raw}).health_quarantine is value


def test_toml_booleans_and_case_of_choices(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text('health_quarantine = true\nlog_level = "WARNING"\n')
    s = load_settings(None, {}, conf)
    assert (s.health_quarantine, s.log_level) == (True, "warning")
    conf.write_text("health_quarantine = 2\n")
    with pytest.raises(SettingsError, match=r"health_quarantine = 2 in .*: not a boolean"):
        load_settings(None, {}, conf)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param("event_partitions = 4\n", "unknown setting 'event_partitions'", id="unknown"),
        pytest.param("events_partitions = \n", "not valid TOML", id="broken-toml"),
    ],
)
def test_bad_config_file_is_refused(tmp_path: Path, content: str, problem: str) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text(content)
    with pytest.raises(SettingsError, match=problem):
        load_settings(None, {}, conf)


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=rf"config file {tmp_path}/nope.toml: cannot read"):
        load_settings(None, {}, tmp_path / "nope.toml")


def test_slow_client_limits_from_environment() -> None:
    s = load_settings(None, {"VIVIFIED_HEADER_TIMEOUT": "2.5", "VIVIFIED_MAX_CONNECTIONS": "50"})
    assert (s.header_timeout, s.max_connections) == (2.5, 50)
    assert (load_settings(None, {}).header_timeout, load_settings(None, {}).max_connections) == (
        10.0,
        4096,
    )


def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("VIVIFIED_"):
            monkeypatch.delenv(name)


def test_config_check_prints_the_effective_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _clear_env(monkeypatch)
    monkeypatch.setenv("VIVIFIED_ADMIN_TOKEN", SECRET)
    monkeypatch.setenv("VIVIFIED_DATABASE_URL", "postgresql://core:pw-secret@db/core")
    monkeypatch.setenv("VIVIFIED_AUDIT_QUEUE_SIZE", "64")
    assert main(["config", "check", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert "pw-secret" not in out.out + out.err
    lines = {line.split()[0]: line for line in out.out.splitlines() if line.startswith("VIVIFIED_")}
    assert "(set, hidden)" in lines["VIVIFIED_ADMIN_TOKEN"]
    assert "postgresql://core:***@db/core" in lines["VIVIFIED_DATABASE_URL"]
    assert lines["VIVIFIED_AUDIT_QUEUE_SIZE"].split()[1:] == ["64", "(environment)"]
    assert lines["VIVIFIED_DATA_DIR"].split()[1:] == [str(tmp_path), "(flag)"]
    assert lines["VIVIFIED_EVENTS_PARTITIONS"].split()[1:] == ["8", "(default)"]
    assert "no problems" in out.out


def test_config_check_lists_every_problem_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _clear_env(monkeypatch)
    monkeypatch.setenv("VIVIFIED_AUDIT_QUEUE_SIZE", "0")
    monkeypatch.setenv("VIVIFIED_HEALTH_QUARANTINE", "ture")
    monkeypatch.setenv("VIVIFIED_ADMIN_TOKEN", "short-secret")
    assert main(["config", "check"]) == 2
    out = capsys.readouterr()
    assert "short-secret" not in out.out + out.err
    problems = [line for line in out.err.splitlines() if line.startswith("vivified config check:")]
    assert len(problems) == 3, out.err
    assert "VIVIFIED_AUDIT_QUEUE_SIZE=0: must be at least 1" in out.err
    assert "VIVIFIED_HEALTH_QUARANTINE=ture: not a boolean" in out.err
    assert "VIVIFIED_AUDIT_QUEUE_SIZE" in out.out  # the table is printed too


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        pytest.param("nats://a:4222", ["nats://a:4222"], id="one"),
        pytest.param("nats://a:4222,nats://b:4222", ["nats://a:4222", "nats://b:4222"], id="two"),
        pytest.param(
            " nats://a:4222 , nats://b:4222,nats://c:4222",
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"],
            id="spaces-around",
        ),
    ],
)
def test_a_comma_separated_nats_url_is_a_server_list(url: str, servers: list[str]) -> None:
    settings = load_settings(None, {"VIVIFIED_NATS_URL": url})
    assert bus_servers(settings.nats_url) == servers
