"""Domain allowlist entries: validation, wildcard matching, blocklists and public suffixes."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import tldextract

from vivified.policy.hosts import MAX_NAME_LENGTH, Host, HostError, parse_host

WILDCARD_PREFIX = "*."

# Names that only ever resolve on a local network or not at all (RFC 6761, 6762, 8375, 9476,
# 7686, ICANN's never-delegated collision names): an entry equal to or under one of them is
# refused. The most specific suffix comes first so the message names it.
INTERNAL_SUFFIXES: tuple[str, ...] = (
    "localhost",
    "localdomain",
    "local",
    "internal",
    "home.arpa",
    "arpa",
    "test",
    "invalid",
    "example",
    "lan",
    "intranet",
    "corp",
    "home",
    "private",
    "onion",
    "alt",
)

_HOST_ERROR_CODES = {"empty_host": "invalid_domain", "host_too_long": "domain_too_long"}

# An admin may allowlist an internal name that the egress document maps to an address
# (`host_overrides`): the entry is then accepted and marked with this code, for the audit trail.
INTERNAL_NAME_EXCEPTION = "internal_name_exception"


@dataclass(frozen=True, slots=True)
class DomainProblem:
    """One reason an allowlist entry is refused: a stable `code` and a message saying the fix."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class DomainEntry:
    """A checked allowlist entry: `normalized` (`example.com` or `*.example.com`) when it could
    be computed, and every problem found."""

    raw: str
    normalized: str | None
    problems: tuple[DomainProblem, ...] = ()
    exception: str | None = None  # INTERNAL_NAME_EXCEPTION: an internal name an admin mapped

    @property
    def ok(self) -> bool:
        return not self.problems


@functools.lru_cache(maxsize=1)
def _extractor() -> tldextract.TLDExtract:
    # The bundled Public Suffix List snapshot only: no fetch, no cache directory, ICANN
    # suffixes only (private ones such as s3.amazonaws.com are real API hosts).
    return tldextract.TLDExtract(
        cache_dir=None, suffix_list_urls=(), include_psl_private_domains=False
    )


def is_public_suffix(name: str) -> bool:
    """Whether `name` is itself a public suffix (`com`, `co.uk`, `foo.bd` under `*.bd`)."""
    parts = _extractor()(name.lower().removesuffix("."))
    return parts.suffix != "" and parts.domain == ""


def check_domain_entry(
    entry: object, blocklist: Collection[str] = (), mapped_names: Collection[str] = ()
) -> DomainEntry:
    """Validate one allowlist entry: an exact name, or `*.name` for its subdomains only.

    Problem codes: `not_a_string`, `bad_wildcard`, `invalid_domain`, `domain_too_long`,
    `ip_literal`, `internal_name`, `public_suffix`, `blocked_domain`. Independent problems are
    all reported. `blocklist` holds names (matching themselves and their subdomains) and
    `*.name` entries (subdomains only).

    `mapped_names` (admins only, never manifests): normalised names the egress document maps in
    `host_overrides`. An exact internal name among them is accepted, with `exception` set to
    `INTERNAL_NAME_EXCEPTION`; a wildcard internal entry never is."""
    if not isinstance(entry, str):
        problem = DomainProblem(
            "not_a_string", f"a domain must be a string such as 'api.example.com', not {entry!r}"
        )
        return DomainEntry(repr(entry), None, (problem,))
    wildcard = entry.startswith(WILDCARD_PREFIX)
    base = entry.removeprefix(WILDCARD_PREFIX)
    problems: list[DomainProblem] = []
    bad_wildcard = "*" in base or (wildcard and base == "")
    if bad_wildcard:
        problems.append(
            DomainProblem(
                "bad_wildcard",
                f"{entry!r}: '*' may appear only once, as a leading '*.' "
                "(as in *.example.com, which allows the subdomains of example.com)",
            )
        )
        # Look past repeated leading wildcards so the other problems still show.
        while base.startswith(WILDCARD_PREFIX):
            base = base.removeprefix(WILDCARD_PREFIX)
        if "*" in base or base == "":
            return DomainEntry(entry, None, tuple(problems))
    try:
        host = parse_host(base)
    except HostError as exc:
        code = _HOST_ERROR_CODES.get(exc.code, "invalid_domain")
        problems.append(DomainProblem(code, f"{entry!r} is not a valid domain: {exc.message}"))
        return DomainEntry(entry, None, tuple(problems))
    if host.kind == "ip":
        problems.append(
            DomainProblem(
                "ip_literal",
                f"{entry!r} is the address {host.value}; allowlists take host names, "
                "never addresses (an admin can add a network to allowed_networks instead)",
            )
        )
        return DomainEntry(entry, None, tuple(problems))
    name = host.value
    normalized = WILDCARD_PREFIX + name if wildcard else name
    found = _name_problems(name, normalized, wildcard, blocklist)
    exception = None
    if any(p.code == "internal_name" for p in found) and mapped_names:
        if not wildcard and name in mapped_names:
            found = [p for p in found if p.code != "internal_name"]
            exception = INTERNAL_NAME_EXCEPTION
        else:
            found = [
                _unmapped_problem(normalized, wildcard) if p.code == "internal_name" else p
                for p in found
            ]
    problems += found
    return DomainEntry(
        entry,
        None if bad_wildcard else normalized,
        tuple(problems),
        exception if not problems else None,
    )


def _unmapped_problem(normalized: str, wildcard: bool) -> DomainProblem:
    how = (
        "list each mapped name exactly (wildcards of internal names are never allowed)"
        if wildcard
        else "map it to an address in the egress document's host_overrides first"
    )
    return DomainProblem(
        "internal_name",
        f"{normalized!r} is an internal or reserved name, which only an admin's host_overrides "
        f"mapping makes reachable: {how}",
    )


def is_internal_name(entry: str) -> bool:
    """Whether an allowlist entry (normalised, `*.` allowed) is an internal or reserved name."""
    pattern = _pattern(entry)
    return pattern is not None and _internal_base(pattern[1])


@functools.lru_cache(maxsize=4096)
def _internal_base(name: str) -> bool:
    if any(_is_at_or_under(name, s) for s in INTERNAL_SUFFIXES):
        return True
    return bool(_extractor()(name).suffix == "")


def _name_problems(
    name: str, normalized: str, wildcard: bool, blocklist: Collection[str]
) -> list[DomainProblem]:
    problems = []
    if len(normalized) > MAX_NAME_LENGTH:
        problems.append(
            DomainProblem(
                "domain_too_long",
                f"{normalized!r} is {len(normalized)} characters; at most {MAX_NAME_LENGTH}",
            )
        )
    internal = next((s for s in INTERNAL_SUFFIXES if _is_at_or_under(name, s)), None)
    if internal is not None:
        problems.append(
            DomainProblem(
                "internal_name",
                f"{normalized!r} is a .{internal} name, which only resolves locally or is "
                "reserved; allowlist the service's public name",
            )
        )
    elif _extractor()(name).suffix == "":
        problems.append(
            DomainProblem(
                "internal_name",
                f"{normalized!r} is not under a public top-level domain, so it only resolves "
                "on local networks; allowlist the service's public name",
            )
        )
    if is_public_suffix(name):
        problems.append(
            DomainProblem(
                "public_suffix",
                f"{normalized!r} would allow every domain under the public suffix {name!r}; "
                "list the registrable domain you need, such as example." + name,
            )
        )
    blocked = _blocking_entry(name, wildcard, blocklist)
    if blocked is not None:
        problems.append(
            DomainProblem(
                "blocked_domain",
                f"{normalized!r} is on the admin blocklist ({blocked!r}); remove it, "
                "or ask an admin to review the blocklist",
            )
        )
    return problems


def match_allowlist(host: str | Host, allowlist: Iterable[str]) -> str | None:
    """The allowlist entry that allows `host` (a normalised name), or None.

    `example.com` matches only `example.com`; `*.example.com` matches `a.example.com` and
    `a.b.example.com`, never `example.com`, `evil-example.com` or `example.com.evil.net`."""
    name = _host_name(host)
    if name is None:
        return None
    for entry in allowlist:
        pattern = _pattern(entry)
        if pattern is None:
            continue
        wildcard, base = pattern
        if _is_strictly_under(name, base) if wildcard else name == base:
            return entry
    return None


def is_blocked_name(host: str | Host, blocklist: Iterable[str]) -> str | None:
    """The blocklist entry that blocks `host`, or None: `evil.com` blocks the name and its
    subdomains, `*.evil.com` only its subdomains."""
    name = _host_name(host)
    if name is None:
        return None
    return _blocking_entry(name, False, blocklist)


def _blocking_entry(name: str, wildcard: bool, blocklist: Iterable[str]) -> str | None:
    """The blocklist entry that covers everything `name` (or `*.name` if `wildcard`) allows."""
    for entry in blocklist:
        pattern = _pattern(entry)
        if pattern is None:
            continue
        blocked_wildcard, base = pattern
        if _is_strictly_under(name, base) or (name == base and (wildcard or not blocked_wildcard)):
            return entry
    return None


def _host_name(host: str | Host) -> str | None:
    if isinstance(host, Host):
        return host.value if host.kind == "name" else None
    return host.lower().removesuffix(".")


def _pattern(entry: str) -> tuple[bool, str] | None:
    """(wildcard, normalised base) of an allowlist or blocklist entry; None if it can't match."""
    if not isinstance(entry, str):
        return None
    wildcard = entry.startswith(WILDCARD_PREFIX)
    base = entry.removeprefix(WILDCARD_PREFIX)
    if base.isascii():
        base = base.lower().removesuffix(".")
        return (wildcard, base) if base and "*" not in base else None
    try:
        host = parse_host(base)
    except HostError:
        return None
    return (wildcard, host.value) if host.kind == "name" else None


def _is_at_or_under(name: str, suffix: str) -> bool:
    return name == suffix or _is_strictly_under(name, suffix)


def _is_strictly_under(name: str, base: str) -> bool:
    return len(name) > len(base) + 1 and name.endswith("." + base)
