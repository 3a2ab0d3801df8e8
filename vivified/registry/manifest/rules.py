"""Field checkers for plugin manifests: each reports problems and returns the normalised value.

Every checker takes a `Report` (`vivified.registry.manifest.report`) and the raw value and
never raises; `None` means "unusable". The manifest's names, bounds and vocabularies are here
too."""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import urlsplit

from vivified.policy.domains import check_domain_entry
from vivified.registry.manifest.report import MAX_ITEMS, Report, pointer, show, wrong_type

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
