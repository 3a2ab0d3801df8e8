"""Reading and checking setting values against their `setting(...)` metadata.

Every value is read from its source (flag, `VIVIFIED_*` environment, TOML file), coerced to
its field's type and checked against the field's `choices`/`min`/`max`/`above`. Problems are
collected, never raised one by one: the operator sees every mistake at once, each naming the
variable and the value as they were given (a secret's value is never repeated).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "VIVIFIED_"  # of every setting's environment variable
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
Field = dataclasses.Field[Any]


class SettingsError(ValueError):
    """Settings core cannot use; `problems` lists every one, each naming the setting, the
    value and what is allowed."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} settings problems: " + "; ".join(self.problems)
        super().__init__(text)


@dataclass(frozen=True)
class Source:
    """Where one value came from: `default`, `file`, `environment` or `flag`."""

    kind: str
    where: str = ""  # the file path, the environment variable or the flag
    raw: Any = None


@dataclass
class Gathered:
    """The values read (coerced, only the valid ones), their sources, and the problems."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # a field's given value: what's wrong
    general: list[str] = field(default_factory=list)  # files, unknown names, combinations

    @property
    def problems(self) -> list[str]:
        return self.general + list(self.refused.values())

    def refuse(self, name: str, problem: str) -> None:
        self.values.pop(name, None)
        self.refused[name] = problem


def mask_url(url: str) -> str:
    """`url` with the password of its userinfo replaced by `***`."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


def shown(f: Field, value: Any) -> str:
    """How a value is printed: a secret masked, a URL without its password."""
    if f.metadata.get("secret"):
        return "(set, hidden)" if value not in ("", None) else "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return mask_url(text) if "://" in text else text


def label(f: Field, source: Source, prefix: str) -> str:
    """The setting as the operator gave it: `VIVIFIED_X=v`, `x = v in FILE` or `--x v`."""
    value = shown(f, source.raw) if f.metadata.get("secret") else repr_raw(source.raw)
    if source.kind == "environment":
        return f"{source.where}={value}"
    if source.kind == "file":
        return f"{f.name} = {value} in {source.where}"
    if source.kind == "flag":
        return f"--{f.name.replace('_', '-')} {value}"
    return f"{prefix}{f.name.upper()}={value}"


def repr_raw(raw: Any) -> str:
    text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    text = mask_url(text) if "://" in text else text
    return text if text and text.strip() == text and len(text) <= 80 else repr(text[:80])


def coerce(f: Field, raw: Any) -> Any:
    """`raw` as the field's type; ValueError with what is wrong otherwise."""
    parse = f.metadata.get("parse")  # a field's own reader (e.g. a table); ValueError
    if callable(parse):
        return parse(raw)
    default = f.default
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if isinstance(raw, int | str) and word in TRUE_WORDS + FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError("not a boolean: use true/false, yes/no or 1/0")
    if isinstance(default, int):
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
            return int(raw)
        raise ValueError("not a whole number")
    if isinstance(default, float):
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError
            value = float(raw)
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if isinstance(raw, dict | list):
        raise ValueError("not a single value")
    if isinstance(default, Path):
        return Path(str(raw)).expanduser()
    return str(raw)


def bound_problem(f: Field, value: Any) -> str | None:
    """What is wrong with `value` against the field's choices and bounds, or None."""
    meta = f.metadata
    choices = meta.get("choices")
    if choices and value not in choices:
        return "must be one of " + ", ".join(choices)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low, high, above = meta.get("min"), meta.get("max"), meta.get("above")
    ok = (
        (low is None or value >= low)
        and (high is None or value <= high)
        and (above is None or value > above)
    )
    if ok:
        return None
    if low is not None and high is not None:
        return f"must be between {_num(low)} and {_num(high)}"
    if above is not None and high is not None:
        return f"must be above {_num(above)} and at most {_num(high)}"
    if low is not None:
        return f"must be at least {_num(low)}"
    if above is not None:
        return f"must be above {_num(above)}"
    return f"must be at most {_num(high or 0)}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _take(into: Gathered, f: Field, source: Source, prefix: str) -> None:
    into.sources[f.name] = source
    into.refused.pop(f.name, None)  # a later source replaces an earlier value and its problem
    try:
        value = coerce(f, source.raw)
        if isinstance(value, str) and f.metadata.get("choices"):
            value = value.strip().lower()  # `INFO` is `info`
        problem = bound_problem(f, value)
    except ValueError as exc:
        problem = str(exc)
    if problem is None:
        into.values[f.name] = value
    else:
        into.refuse(f.name, f"{label(f, source, prefix)}: {problem}")


def gather(
    fields: Mapping[str, Field],
    prefix: str,
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str],
    config_file: str | Path | None,
) -> Gathered:
    """Flags over environment over the TOML file; every problem collected (later sources
    replace an earlier value and its problem)."""
    out = Gathered()
    path = config_file or env.get(prefix + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except OSError as exc:
            out.general.append(f"config file {path}: cannot read it ({exc.strerror or exc})")
            file_values = {}
        except tomllib.TOMLDecodeError as exc:
            out.general.append(f"config file {path}: not valid TOML ({exc})")
            file_values = {}
        for key, raw in file_values.items():
            name = key.replace("-", "_")
            if name not in fields:
                out.general.append(f"unknown setting {key!r} in {path}: remove or correct it")
                continue
            _take(out, fields[name], Source("file", str(path), raw), prefix)
    for name, f in fields.items():
        var = prefix + name.upper()
        raw = env.get(var)
        if raw is not None and raw != "":
            _take(out, f, Source("environment", var, raw), prefix)
    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        if name not in fields:
            out.general.append(f"unknown setting {name!r}")
            continue
        _take(out, fields[name], Source("flag", name, raw), prefix)
    return out
