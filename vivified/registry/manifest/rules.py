"""Field checkers for plugin manifests: each reports problems and returns the normalised value.

Every checker takes a `Report` and the raw value and never raises; `None` means "unusable"."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from vivified.policy.domains import check_domain_entry

ID_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*", re.ASCII)
SEMVER_RE = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)
CONTRACT_RE = re.compile(r"[A-Z][A-Za-z0-9]*Plugin", re.ASCII)
TRAIT_RE = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)
ENDPOINT_NAME_RE = ENDPOINT_RE = TRAIT_RE
HIPAA_RE = re.compile(r"164\.[0-9]{3}\([a-z0-9]+\)(\([A-Za-z0-9]+\))*", re.ASCII)
EVENT_TYPE_RE = re.compile(r"[A-Z][A-Za-z0-9]*", re.ASCII)
_BAD_PATH_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")

ID_MIN, ID_MAX = 3, 63
NAME_MAX = 200
DESCRIPTION_MAX = 2000
VERSION_MAX = 256
PATH_MAX = 2048
MAX_ITEMS = 256
MAX_DEPTH = 32
DOCS_MAX = 256
# `docs` is a path on the plugin's own base URL: no host (`//`, `\`), no way up (`..`; no
# percent-encoded dot, slash or backslash either), no scheme anywhere, no fragment, no
# whitespace or control characters.
_DOCS_BAD = re.compile(r"^//|\\|\.\.|%2e|%2f|%5c|://|#|[\s\x00-\x1f\x7f]", re.IGNORECASE)

RESERVED_IDS: frozenset[str] = frozenset(
    {
        "plugins", "admin", "events", "console", "egress", "metrics", "healthz", "readyz",
        "openapi", "api", "core", "vivified", "well-known", "static", "login", "logout",
        "auth", "health", "docs", "system", "root",
    }
)  # fmt: skip
FORBIDDEN_TRAITS: frozenset[str] = frozenset(
    {"admin", "root", "system", "superuser", "sudo", "core", "internal_admin", "superadmin"}
)
CLASSIFICATIONS: tuple[str, ...] = ("public", "internal", "confidential", "pii", "phi")
AUDIT_LEVELS: tuple[str, ...] = ("none", "basic", "detailed", "complete")
TOP_LEVEL_FIELDS: tuple[str, ...] = (
    "id", "name", "version", "description", "contracts", "traits", "dependencies",
    "allowed_domains", "endpoints", "security", "compliance", "health_check", "resources",
    "base_url", "events", "docs",
)  # fmt: skip
REQUIRED_FIELDS: tuple[str, ...] = ("id", "name", "version", "contracts", "traits", "security")


@dataclass(frozen=True)
class Problem:
    """One problem: RFC 6901 JSON pointer `path`, stable snake_case `code`, a fix-it message."""

    path: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


@dataclass
class Report:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, path: str, code: str, message: str) -> None:
        self.errors.append(Problem(path, code, message))

    def warn(self, path: str, code: str, message: str) -> None:
        self.warnings.append(Problem(path, code, message))


def pointer(*parts: object) -> str:
    """An RFC 6901 JSON pointer: `pointer("a/b", 1)` → `/a~1b/1`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def show(value: object) -> str:
    """A short, safe rendering of a value for messages (never huge, never raising)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value) if abs(value) < 10**18 else "a very large number"
    if isinstance(value, float | str):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    kind = json_type(value)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return is_int(value)


def wrong_type(r: Report, path: str, expected: str, value: object) -> None:
    r.error(path, "invalid_type", f"expected {expected}, got {show(value)}")


def did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def obj(
    r: Report, value: object, path: str, known: Collection[str], required: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Check an object's keys; returns (known fields, cloned `x-` extensions) or None."""
    if not isinstance(value, dict):
        wrong_type(r, path, "an object", value)
        return None
    fields: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and key in known:
            fields[key] = item
        elif isinstance(key, str) and key.startswith("x-"):
            cloned = clone_json(r, item, pointer_join(path, key))
            if cloned is not _INVALID:
                extras[key] = cloned
        else:
            name = key if isinstance(key, str) else show(key)
            allowed = ", ".join(sorted(known))
            r.error(
                pointer_join(path, name),
                "unknown_field",
                f"unknown field {show(name)}{did_you_mean(name, known)} (allowed: {allowed}; "
                "prefix private extensions with 'x-')",
            )
    for key in required:
        if key not in fields:
            r.error(pointer_join(path, key), "missing_field", f"the field {key!r} is required")
    return fields, extras


def pointer_join(base: str, *parts: object) -> str:
    return base + pointer(*parts)


_INVALID = object()


def clone_json(r: Report, value: object, path: str, depth: int = 0) -> Any:
    """A deep copy of a JSON value; anything else (NaN, sets, objects) is a `not_json` error."""
    if depth > MAX_DEPTH:
        r.error(path, "not_json", f"nested deeper than {MAX_DEPTH} levels; flatten it")
        return _INVALID
    if value is None or isinstance(value, str | bool) or is_int(value):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        r.error(path, "not_json", f"{show(value)} is not a JSON number; use a finite number")
        return _INVALID
    if isinstance(value, list | tuple):
        items = [clone_json(r, v, pointer_join(path, i), depth + 1) for i, v in enumerate(value)]
        return _INVALID if any(i is _INVALID for i in items) else items
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                r.error(path, "not_json", f"object keys must be strings, not {show(k)}")
                return _INVALID
            out[k] = clone_json(r, v, pointer_join(path, k), depth + 1)
        return _INVALID if any(v is _INVALID for v in out.values()) else out
    r.error(path, "not_json", f"{show(value)} is not a JSON value")
    return _INVALID


def string_list(
    r: Report,
    value: object,
    path: str,
    *,
    what: str,
    pattern: re.Pattern[str] | None = None,
    code: str = "",
    hint: str = "",
    min_items: int = 0,
) -> list[str] | None:
    """A list of unique strings, each matching `pattern` (else `code`); duplicates are
    `duplicate_<what>`. Returns the valid, de-duplicated strings, or None if not a list."""
    if not isinstance(value, list):
        wrong_type(r, path, f"a list of {what}s", value)
        return None
    if len(value) < min_items:
        r.error(path, "empty_list", f"list at least {min_items} {what}{hint}")
    if len(value) > MAX_ITEMS:
        r.error(path, "too_many_items", f"at most {MAX_ITEMS} {what}s are allowed")
        return None
    out: list[str] = []
    for i, item in enumerate(value):
        here = pointer_join(path, i)
        if not isinstance(item, str):
            wrong_type(r, here, f"a {what} string", item)
        elif pattern is not None and (len(item) > 200 or not pattern.fullmatch(item)):
            r.error(here, code, f"{show(item)} is not a valid {what}{hint}")
        elif item in out:
            r.error(here, f"duplicate_{what}", f"{show(item)} is listed twice; list it once")
        else:
            out.append(item)
    return out


def check_plugin_id(value: str) -> str | None:
    """Why `value` is not a valid plugin id (a message), or None if it is."""
    if not ID_MIN <= len(value) <= ID_MAX:
        return f"must be {ID_MIN}-{ID_MAX} characters long (it is {len(value)})"
    if not ID_RE.fullmatch(value):
        return "use lowercase letters, digits and single hyphens inside, like 'user-management'"
    return None


def check_id(r: Report, value: object) -> str | None:
    if not isinstance(value, str):
        wrong_type(r, "/id", "a string such as 'user-management'", value)
        return None
    why = check_plugin_id(value)
    if why is not None:
        r.error("/id", "invalid_id", f"{show(value)} is not a valid plugin id: {why}")
        return None
    if value in RESERVED_IDS:
        r.error("/id", "reserved_id", f"{value!r} is a reserved route name; choose another id")
        return None
    return value


def check_name(r: Report, value: object) -> str | None:
    if not isinstance(value, str):
        wrong_type(r, "/name", "a string", value)
    elif not value.strip():
        r.error("/name", "invalid_name", "the name must not be empty; give a display name")
    elif len(value) > NAME_MAX:
        r.error("/name", "invalid_name", f"the name is {len(value)} characters; max {NAME_MAX}")
    else:
        return value.strip()
    return None


def check_version(r: Report, value: object) -> str | None:
    if not isinstance(value, str):
        wrong_type(r, "/version", "a SemVer string such as '1.0.0'", value)
    elif len(value) > VERSION_MAX or not SEMVER_RE.fullmatch(value):
        r.error(
            "/version",
            "invalid_version",
            f"{show(value)} is not SemVer 2.0.0; use MAJOR.MINOR.PATCH such as '1.2.3'",
        )
    else:
        return value
    return None


def check_description(r: Report, present: bool, value: object) -> str | None:
    if not present or value == "":
        r.warn("/description", "missing_description", "add a short description of the plugin")
    elif not isinstance(value, str):
        wrong_type(r, "/description", "a string", value)
    elif len(value) > DESCRIPTION_MAX:
        r.error(
            "/description",
            "invalid_description",
            f"the description is {len(value)} characters; shorten it to {DESCRIPTION_MAX}",
        )
    else:
        return value
    return None


def check_domains(r: Report, value: object, blocklist: Collection[str]) -> list[str] | None:
    if not isinstance(value, list):
        wrong_type(r, "/allowed_domains", "a list of host names", value)
        return None
    if len(value) > MAX_ITEMS:
        r.error("/allowed_domains", "too_many_items", f"at most {MAX_ITEMS} domains are allowed")
        return None
    out: list[str] = []
    for i, item in enumerate(value):
        here = pointer("allowed_domains", i)
        entry = check_domain_entry(item, blocklist)
        for p in entry.problems:
            r.error(here, p.code, p.message)
        if entry.normalized is None or not entry.ok:
            continue
        if entry.normalized in out:
            r.error(here, "duplicate_domain", f"{entry.normalized!r} is listed twice; list it once")
        else:
            out.append(entry.normalized)
    return out


def path_problem(value: object) -> str | None:
    """Why `value` is not an acceptable route path, or None."""
    if not isinstance(value, str):
        return f"expected a path string starting with '/', got {show(value)}"
    if not value.startswith("/") or len(value) > PATH_MAX:
        return f"{show(value)} must start with '/' (and be at most {PATH_MAX} characters)"
    if ".." in value or "://" in value or _BAD_PATH_CHARS.search(value):
        return f"{show(value)} must not contain '..', '://', whitespace or control characters"
    return None


def check_endpoints(r: Report, value: object) -> dict[str, str] | None:
    if not isinstance(value, dict):
        wrong_type(r, "/endpoints", "an object mapping names to paths", value)
        return None
    out: dict[str, str] = {}
    for name, path in value.items():
        here = pointer("endpoints", name if isinstance(name, str) else show(name))
        if not isinstance(name, str) or len(name) > 64 or not ENDPOINT_NAME_RE.fullmatch(name):
            r.error(
                here,
                "invalid_endpoint_name",
                f"endpoint name {show(name)} must be lowercase snake_case such as 'user_info'",
            )
            continue
        why = path_problem(path)
        if why is not None:
            r.error(here, "invalid_endpoint_path", why)
        elif isinstance(path, str):
            out[name] = path
    return out


def check_base_url(r: Report, value: object) -> str | None:
    if not isinstance(value, str):
        wrong_type(r, "/base_url", "a URL string such as 'http://my-plugin:8000'", value)
        return None
    why = None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        why = "it cannot be parsed (check the port and brackets)"
    else:
        if parts.scheme not in {"http", "https"}:
            why = "the scheme must be http or https"
        elif not parts.hostname:
            why = "it needs a host"
        elif parts.username is not None or parts.password is not None or "@" in parts.netloc:
            why = "it must not carry credentials (user:password@)"
        elif parts.query or parts.fragment or "?" in value or "#" in value:
            why = "it must not have a query or fragment"
        elif _BAD_PATH_CHARS.search(value) or len(value) > PATH_MAX:
            why = "it must not contain whitespace or control characters"
        elif port == 0:
            why = "the port must be 1-65535"
    if why is not None:
        r.error("/base_url", "invalid_base_url", f"{show(value)} is not a usable base URL: {why}")
        return None
    return value.rstrip("/")


def check_docs(r: Report, value: object) -> str | None:
    """The optional `docs` field: a path under `base_url` to the plugin's Markdown page."""
    if not isinstance(value, str):
        wrong_type(r, "/docs", "a path string such as '/docs.md'", value)
        return None
    why = None
    if not value.startswith("/"):
        why = "it must be a path on the plugin's base URL starting with '/', such as '/docs.md'"
    elif len(value) > DOCS_MAX:
        why = f"it is {len(value)} characters; at most {DOCS_MAX} are allowed"
    elif _DOCS_BAD.search(value):
        why = (
            "it must not name a scheme or host ('://', '//', '\\'), go up ('..'), or contain "
            "an encoded dot or slash (%2e, %2f, %5c), a fragment, whitespace or control "
            "characters"
        )
    if why is not None:
        r.error("/docs", "invalid_docs_path", f"{show(value)} is not a usable docs path: {why}")
        return None
    return value
