"""One settings object: flags over VIVIFIED_* over the TOML file, and values checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from vivified.config.settings import SettingsError, load_settings


def test_precedence_flags_over_environment_over_file(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text('events-partitions = 4\nissuer = "from-file"\nupstream_timeout = 7.5\n')
    env = {"VIVIFIED_CONFIG": str(conf), "VIVIFIED_ISSUER": "from-env"}
    s = load_settings({"events_partitions": "16"}, env)
    assert (s.events_partitions, s.issuer, s.upstream_timeout) == (16, "from-env", 7.5)
    assert load_settings(None, env).events_partitions == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"VIVIFIED_EVENTS_PARTITIONS": "0"}, "between 1 and 64", id="no-lanes"),
        pytest.param({"VIVIFIED_EVENTS_PARTITIONS": "65"}, "between 1 and 64", id="too-many"),
        pytest.param({"VIVIFIED_EVENTS_PARTITIONS": "two"}, "must be a int", id="not-a-number"),
        pytest.param({"VIVIFIED_EVENTS_SUBJECT": "events"}, "dotted tokens", id="flat-subject"),
        pytest.param({"VIVIFIED_REGISTRATION": "anyone"}, "'token' or 'open'", id="registration"),
        pytest.param({"VIVIFIED_GATEWAY_PORT": "70000"}, "between 0 and 65535", id="port"),
        pytest.param({"VIVIFIED_GATEWAY_WORKERS": "0"}, "between 1 and 64", id="no-workers"),
        pytest.param({"VIVIFIED_GATEWAY_WORKERS": "65"}, "between 1 and 64", id="many-workers"),
        pytest.param({"VIVIFIED_TOKEN_TTL": "10"}, "at least 60", id="short-ttl"),
        pytest.param({"VIVIFIED_UPSTREAM_TIMEOUT": "0"}, "positive", id="zero-timeout"),
        pytest.param({"VIVIFIED_AUDIT_WAIT": "-1"}, "positive", id="negative-audit-wait"),
        pytest.param({"VIVIFIED_HEADER_TIMEOUT": "0"}, "above 0", id="no-header-time"),
        pytest.param({"VIVIFIED_HEADER_TIMEOUT": "-5"}, "above 0", id="negative-header-time"),
        pytest.param({"VIVIFIED_HEADER_TIMEOUT": "nan"}, "above 0", id="nan-header-time"),
        pytest.param({"VIVIFIED_HEADER_TIMEOUT": "3601"}, "at most 3600", id="hour-long-head"),
        pytest.param({"VIVIFIED_MAX_CONNECTIONS": "0"}, "between 1 and", id="no-connections"),
        pytest.param({"VIVIFIED_MAX_CONNECTIONS": "2000000"}, "1000000", id="too-many-conns"),
        pytest.param({"VIVIFIED_MAX_CONNECTIONS": "lots"}, "must be a int", id="conns-not-int"),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(None, env)


@pytest.mark.parametrize(
    ("env", "header_timeout", "max_connections"),
    [
        pytest.param({}, 10.0, 4096, id="defaults"),
        pytest.param(
            {"VIVIFIED_HEADER_TIMEOUT": "2.5", "VIVIFIED_MAX_CONNECTIONS": "50"},
            2.5,
            50,
            id="from-environment",
        ),
    ],
)
def test_slow_client_limits(
    env: dict[str, str], header_timeout: float, max_connections: int
) -> None:
    s = load_settings(None, env)
    assert (s.header_timeout, s.max_connections) == (header_timeout, max_connections)


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "core.toml"
    conf.write_text("event_partitions = 4\n")  # misspelt
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(None, {}, conf)
