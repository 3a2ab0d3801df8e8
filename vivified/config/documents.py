"""The config documents as the API takes them: the version member, the members a full write
must name, RFC 7396 merge patches and their retry on a lost race, and an allowlist's rules.
Pure except `retry_patch`, which awaits the loader and writer it is given."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from vivified.policy.domains import check_domain_entry
from vivified.registry.errors import DomainError
from vivified.registry.store import config_store as store

MODES = ("enforce", "report")
MAX_DOMAINS = 1000
ALLOWLIST_DEFAULTS: dict[str, Any] = {"domains": [], "mode": "enforce"}
MAX_PATCH_DEPTH = 32
PATCH_ATTEMPTS = 3  # a PATCH without a version re-reads and retries a concurrent write


class ConfigError(DomainError):
    """A config write or read was refused; the gateway maps its code to problem+json."""


def problem(path: str, code: str, message: str) -> dict[str, str]:
    return {"path": path, "code": code, "message": message}


def merge_patch(target: Any, patch: Any, depth: int = 0) -> Any:
    """RFC 7396 JSON Merge Patch: `patch` applied to `target` (neither is modified)."""
    if depth > MAX_PATCH_DEPTH:
        raise ConfigError(
            "invalid_body",
            "the merge patch nests too deep",
            [problem("", "too_deep", f"at most {MAX_PATCH_DEPTH} levels")],
        )
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, depth + 1)
    return result


def version_member(body: Any, expected: int | None) -> tuple[Any, int | None]:
    """`body` without its read-only `version`, and the version the write expects: If-Match,
    else the member; both given and different is a stale write (412)."""
    if not isinstance(body, dict) or "version" not in body:
        return body, expected
    body = dict(body)
    version = body.pop("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ConfigError(
            "invalid_body",
            "version is read-only: send the one GET answered, or leave it out",
            [problem("/version", "type", "a non-negative integer")],
        )
    if expected is not None and expected != version:
        raise ConfigError("stale_version", f"If-Match names version {expected}, the body {version}")
    return body, version


def missing_members(body: Any, members: dict[str, Any]) -> list[dict[str, str]]:
    """A problem per member a full write leaves out (PUT replaces the whole document)."""
    if not isinstance(body, dict):
        return []
    return [
        problem(
            f"/{name}",
            "missing_member",
            "PUT replaces the whole document: send every member (as GET answers it), or "
            "PATCH with application/merge-patch+json to change some",
        )
        for name in members
        if name not in body
    ]


def validate_allowlist(
    body: Any, blocklist: tuple[str, ...], mapped_names: tuple[str, ...] = ()
) -> tuple[list[str], str]:
    """`{"domains": [...], "mode": "enforce"|"report"}` → normalised domains and mode.

    `mapped_names`: the names `host_overrides` maps; an admin may allowlist an internal name
    among them (an audited exception, see `check_domain_entry`)."""
    if not isinstance(body, dict):
        raise ConfigError(
            "invalid_body",
            "send {domains, mode}",
            [problem("", "invalid_type", "expected a JSON object")],
        )
    errors = [
        problem(f"/{k}", "unknown_field", "known fields: domains, mode, comment")
        for k in body
        if k not in {"domains", "mode", "comment"}
    ]
    domains_raw = body.get("domains")
    mode = body.get("mode", "enforce")
    if mode not in MODES:
        errors.append(problem("/mode", "invalid_mode", "mode is enforce or report"))
    domains: list[str] = []
    if not isinstance(domains_raw, list) or len(domains_raw) > MAX_DOMAINS:
        errors.append(problem("/domains", "invalid_type", "domains is a list of names"))
    else:
        for i, raw in enumerate(domains_raw):
            entry = check_domain_entry(raw, blocklist, mapped_names)
            for p in entry.problems:
                errors.append(problem(f"/domains/{i}", p.code, p.message))
            if entry.ok and entry.normalized is not None:
                if entry.normalized in domains:
                    errors.append(problem(f"/domains/{i}", "duplicate_domain", "listed twice"))
                else:
                    domains.append(entry.normalized)
    if errors:
        raise ConfigError("invalid_allowlist", "the allowlist is invalid", errors)
    return domains, str(mode)


Document = dict[str, Any]


def without_comment(body: Any) -> Any:
    """`body` without its `comment` member: the comment travels beside a document (into its
    revision), never in it. Anything but an object is returned as it is."""
    if not isinstance(body, dict):
        return body
    return {k: v for k, v in body.items() if k != "comment"}


def patch_object(patch: Any, what: str) -> Document:
    """A merge patch must be a JSON object; `comment` travels beside it, not in it."""
    if not isinstance(patch, dict):
        raise ConfigError(
            "invalid_body",
            f"a merge patch of {what} is a JSON object",
            [problem("", "invalid_type", "expected a JSON object")],
        )
    patch_doc: Document = without_comment(patch)
    return patch_doc


async def retry_patch(
    patch: Document,
    expected: int | None,
    load: Callable[[], Awaitable[store.Versioned]],
    write: Callable[[Document, Document, int], Awaitable[store.Versioned]],
) -> store.Versioned:
    """Merge onto the current version and write it; without a caller's version, a write that
    lost a race (`stale_version`) is tried again on the new current, PATCH_ATTEMPTS times."""
    for attempt in range(1, PATCH_ATTEMPTS + 1):
        current = await load()
        body, wanted = version_member(patch, expected)
        try:
            return await write(current.value, body, current.version if wanted is None else wanted)
        except ConfigError as exc:
            if exc.code != "stale_version" or wanted is not None or attempt == PATCH_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
