"""Checkers for the nested manifest sections: security, compliance, health_check, resources
and events. Each reports problems and returns the normalised section, or None."""

from __future__ import annotations

import re
from typing import Any

from vivified.registry.event_catalogue import can_receive, event_type
from vivified.registry.manifest.report import (
    Report,
    is_int,
    is_number,
    obj,
    pointer,
    show,
    string_list,
    wrong_type,
)
from vivified.registry.manifest.rules import AUDIT_LEVELS, CLASSIFICATIONS, HIPAA_RE, path_problem


def check_security(r: Report, value: object) -> dict[str, Any] | None:
    keys = ("authentication_required", "data_classification")
    checked = obj(r, value, "/security", keys, keys)
    if checked is None:
        return None
    f, extras = checked
    out: dict[str, Any] = {}
    if "authentication_required" in f:
        if f["authentication_required"] is not True:
            r.error(
                "/security/authentication_required",
                "authentication_not_required",
                f"must be true (got {show(f['authentication_required'])}): every plugin "
                "endpoint requires authentication",
            )
        out["authentication_required"] = True
    if "data_classification" in f:
        classes = string_list(
            r,
            f["data_classification"],
            "/security/data_classification",
            what="classification",
            pattern=re.compile("|".join(CLASSIFICATIONS)),
            code="invalid_classification",
            hint=f": use one of {', '.join(CLASSIFICATIONS)}",
            min_items=1,
        )
        if classes is not None:
            out["data_classification"] = classes
    return out | extras


def check_compliance(r: Report, value: object) -> dict[str, Any] | None:
    keys = ("hipaa_controls", "audit_level", "data_retention_days")
    checked = obj(r, value, "/compliance", keys)
    if checked is None:
        return None
    f, extras = checked
    out: dict[str, Any] = {}
    if "hipaa_controls" in f:
        hint = ": use a HIPAA section such as '164.312(a)' or '164.308(a)(1)(ii)(D)'"
        controls = string_list(
            r, f["hipaa_controls"], "/compliance/hipaa_controls", what="hipaa_control",
            pattern=HIPAA_RE, code="invalid_hipaa_control", hint=hint,
        )  # fmt: skip
        if controls is not None:
            out["hipaa_controls"] = controls
    if "audit_level" in f:
        level = f["audit_level"]
        if isinstance(level, str) and level in AUDIT_LEVELS:
            out["audit_level"] = level
        else:
            r.error(
                "/compliance/audit_level",
                "invalid_audit_level",
                f"{show(level)} is not an audit level; use one of {', '.join(AUDIT_LEVELS)}",
            )
    if "data_retention_days" in f:
        days = f["data_retention_days"]
        if not is_int(days):
            wrong_type(r, "/compliance/data_retention_days", "a whole number of days", days)
        elif days < 1:
            r.error(
                "/compliance/data_retention_days",
                "out_of_range",
                f"{show(days)} days: retention must be at least 1 day",
            )
        else:
            out["data_retention_days"] = days
    return out | extras


def check_health_check(r: Report, value: object) -> dict[str, Any] | None:
    checked = obj(r, value, "/health_check", ("type", "port", "path"), ("type", "port"))
    if checked is None:
        return None
    f, extras = checked
    ok = True
    if "type" in f and f["type"] not in ("http", "tcp"):
        r.error("/health_check/type", "invalid_health_check_type", "type is 'http' or 'tcp'")
        ok = False
    port = f.get("port")
    if "port" in f and not is_int(port):
        wrong_type(r, "/health_check/port", "an integer port", port)
        ok = False
    elif is_int(port) and not 1 <= port <= 65535:  # type: ignore[operator]
        r.error("/health_check/port", "out_of_range", f"port {show(port)} must be 1-65535")
        ok = False
    path = f.get("path", "/health")
    why = path_problem(path)
    if why is not None:
        r.error("/health_check/path", "invalid_path", why)
        ok = False
    if not ok or "type" not in f or "port" not in f:
        return None
    if f["type"] == "tcp":  # a TCP connect check has no path
        return {"type": "tcp", "port": port} | extras
    return {"type": "http", "port": port, "path": path} | extras


_RANGES: dict[str, tuple[float, float, bool]] = {
    "memory_limit": (64, 8192, True),
    "cpu_limit": (0.1, 8.0, False),
}


def check_resources(r: Report, value: object) -> dict[str, Any] | None:
    checked = obj(r, value, "/resources", tuple(_RANGES))
    if checked is None:
        return None
    f, extras = checked
    out: dict[str, Any] = {}
    for key, item in f.items():
        low, high, integer = _RANGES[key]
        here = pointer("resources", key)
        if not (is_int(item) if integer else is_number(item)):
            wrong_type(r, here, "an integer (MB)" if integer else "a finite number", item)
        elif not low <= item <= high:
            r.error(here, "out_of_range", f"{show(item)} is outside the range {low}-{high}")
        else:
            out[key] = item
    return out | extras


def check_events(r: Report, value: object, traits: list[str]) -> dict[str, Any] | None:
    checked = obj(r, value, "/events", ("publishes", "subscribes"))
    if checked is None:
        return None
    f, extras = checked
    out: dict[str, Any] = {}
    for key in ("publishes", "subscribes"):
        if key not in f:
            continue
        here = pointer("events", key)
        names = string_list(r, f[key], here, what="event_type")
        if names is None:
            continue
        out[key] = names
        for i, name in enumerate(f[key]):
            if not isinstance(name, str):
                continue
            et = event_type(name)
            if et is None:
                r.error(
                    pointer("events", key, i),
                    "unknown_event_type",
                    f"{show(name)} is not a canonical event type; see GET /events/types",
                )
            elif key == "subscribes" and not can_receive(traits, et.classification):
                r.error(
                    pointer("events", key, i),
                    "event_not_covered",
                    f"{name} events are {et.classification}; subscribing needs a trait that "
                    f"covers {et.classification} data (such as handles_{et.classification})",
                )
    return out | extras
