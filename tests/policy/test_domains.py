"""Allowlist entries: validation with every problem reported, wildcard and blocklist matching."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vivified.policy import domains
from vivified.policy.domains import (
    DomainEntry,
    DomainProblem,
    check_domain_entry,
    is_blocked_name,
    is_public_suffix,
    match_allowlist,
)
from vivified.policy.hosts import Host, parse_host

BLOCKLIST = ("evil.com", "*.tracker.net", "BAD.Example.ORG.", "bücher.de", "*.", "a*b.com")

# 252 characters: fine alone, too long with "*." in front
LONG_BASE = ".".join(["a" * 62] * 3) + "." + "a" * 59 + ".com"
assert len(LONG_BASE) == 252

ENTRIES = [
    # accepted, normalised
    pytest.param("api.example.com", "api.example.com", [], id="exact"),
    pytest.param("*.example.com", "*.example.com", [], id="wildcard"),
    pytest.param("API.Example.COM", "api.example.com", [], id="upper-case"),
    pytest.param("api.example.com.", "api.example.com", [], id="trailing-dot"),
    pytest.param("*.Example.com.", "*.example.com", [], id="wildcard-case-and-dot"),
    pytest.param("bücher.example.com", "xn--bcher-kva.example.com", [], id="idna"),
    pytest.param("*.bücher.example.com", "*.xn--bcher-kva.example.com", [], id="idna-wildcard"),
    pytest.param("example.co.uk", "example.co.uk", [], id="under-two-level-suffix"),
    pytest.param("s3.amazonaws.com", "s3.amazonaws.com", [], id="private-psl-suffix-is-fine"),
    pytest.param("*.github.io", "*.github.io", [], id="private-psl-wildcard-is-fine"),
    pytest.param("good.example.org", "good.example.org", [], id="sibling-of-blocked"),
    pytest.param("notevil.com", "notevil.com", [], id="blocklist-look-alike-not-blocked"),
    pytest.param("tracker.net", "tracker.net", [], id="apex-of-wildcard-block"),
    pytest.param("abc." + LONG_BASE, None, ["domain_too_long"], id="name-over-253"),
    pytest.param("*." + LONG_BASE, "*." + LONG_BASE, ["domain_too_long"], id="wildcard-over-253"),
    # shape
    pytest.param(42, None, ["not_a_string"], id="number"),
    pytest.param(None, None, ["not_a_string"], id="none"),
    pytest.param(["example.com"], None, ["not_a_string"], id="list"),
    pytest.param("", None, ["invalid_domain"], id="empty"),
    pytest.param("*", None, ["bad_wildcard"], id="star-only"),
    pytest.param("*.", None, ["bad_wildcard"], id="star-dot-only"),
    pytest.param("*example.com", None, ["bad_wildcard"], id="star-glued"),
    pytest.param("api.*.example.com", None, ["bad_wildcard"], id="star-inside"),
    pytest.param("example.*", None, ["bad_wildcard"], id="star-as-tld"),
    pytest.param("*.*.example.com", None, ["bad_wildcard"], id="two-wildcards"),
    pytest.param("*.*.localhost", None, ["bad_wildcard", "internal_name"], id="two-wild-local"),
    pytest.param("**.example.com", None, ["bad_wildcard"], id="double-star"),
    pytest.param("my_api.example.com", None, ["invalid_domain"], id="underscore"),
    pytest.param("api..example.com", None, ["invalid_domain"], id="empty-label"),
    pytest.param("-api.example.com", None, ["invalid_domain"], id="leading-hyphen"),
    pytest.param("api.example.com:443", None, ["invalid_domain"], id="with-port"),
    pytest.param("https://api.example.com", None, ["invalid_domain"], id="url"),
    pytest.param(" api.example.com", None, ["invalid_domain"], id="leading-space"),
    pytest.param("a" * 64 + ".com", None, ["invalid_domain"], id="label-over-63"),
    pytest.param("999.1.1.1", None, ["invalid_domain"], id="numeric-not-an-address"),
    # addresses in every notation
    pytest.param("127.0.0.1", None, ["ip_literal"], id="ipv4"),
    pytest.param("2130706433", None, ["ip_literal"], id="ipv4-integer"),
    pytest.param("0x7f.1", None, ["ip_literal"], id="ipv4-hex-short"),
    pytest.param("0177.0.0.1", None, ["ip_literal"], id="ipv4-octal"),
    pytest.param("169.254.169.254.", None, ["ip_literal"], id="ipv4-trailing-dot"),
    pytest.param("[::1]", None, ["ip_literal"], id="ipv6-bracketed"),
    pytest.param("::ffff:10.0.0.1", None, ["ip_literal"], id="ipv6-mapped"),
    pytest.param("*.10.0.0.1", None, ["ip_literal"], id="wildcard-ip"),
    # internal names
    pytest.param("localhost", "localhost", ["internal_name"], id="localhost"),
    pytest.param("LOCALHOST.", "localhost", ["internal_name"], id="localhost-dressed-up"),
    pytest.param("api.localhost", "api.localhost", ["internal_name"], id="under-localhost"),
    pytest.param("*.localhost", "*.localhost", ["internal_name"], id="wildcard-localhost"),
    pytest.param("printer.local", "printer.local", ["internal_name"], id="mdns-local"),
    pytest.param("*.local", "*.local", ["internal_name"], id="wildcard-local"),
    pytest.param("db.internal", "db.internal", ["internal_name"], id="internal"),
    pytest.param(
        "metadata.google.internal", "metadata.google.internal", ["internal_name"], id="gcp-meta"
    ),
    pytest.param("nas.home.arpa", "nas.home.arpa", ["internal_name"], id="home-arpa"),
    pytest.param("home.arpa", "home.arpa", ["internal_name", "public_suffix"], id="home-arpa-apex"),
    pytest.param("box.localdomain", "box.localdomain", ["internal_name"], id="localdomain"),
    pytest.param("api.test", "api.test", ["internal_name"], id="test-tld"),
    pytest.param("x.invalid", "x.invalid", ["internal_name"], id="invalid-tld"),
    pytest.param("jira.corp", "jira.corp", ["internal_name"], id="corp"),
    pytest.param("router.lan", "router.lan", ["internal_name"], id="lan"),
    pytest.param("database", "database", ["internal_name"], id="single-label"),
    pytest.param("hidden.onion", "hidden.onion", ["internal_name"], id="onion"),
    pytest.param("1.0.0.127.in-addr.arpa", None, ["internal_name"], id="reverse-dns-arpa"),
    pytest.param("*.in-addr.arpa", None, ["internal_name", "public_suffix"], id="arpa-suffix"),
    pytest.param("svc.alt", "svc.alt", ["internal_name"], id="alt"),
    pytest.param("api.nosuchtld", "api.nosuchtld", ["internal_name"], id="unknown-tld"),
    # public suffixes
    pytest.param("com", "com", ["public_suffix"], id="tld"),
    pytest.param("*.com", "*.com", ["public_suffix"], id="wildcard-tld"),
    pytest.param("co.uk", "co.uk", ["public_suffix"], id="second-level-suffix"),
    pytest.param("*.co.uk", "*.co.uk", ["public_suffix"], id="wildcard-second-level"),
    pytest.param("COM.", "com", ["public_suffix"], id="tld-dressed-up"),
    pytest.param("рф", "xn--p1ai", ["public_suffix"], id="idn-tld"),
    pytest.param("anything.bd", "anything.bd", ["public_suffix"], id="psl-wildcard-rule"),
    # blocklist
    pytest.param("evil.com", "evil.com", ["blocked_domain"], id="blocked-exact"),
    pytest.param("api.evil.com", "api.evil.com", ["blocked_domain"], id="blocked-subdomain"),
    pytest.param("*.evil.com", "*.evil.com", ["blocked_domain"], id="blocked-wildcard"),
    pytest.param("x.tracker.net", "x.tracker.net", ["blocked_domain"], id="wildcard-block-sub"),
    pytest.param("*.tracker.net", "*.tracker.net", ["blocked_domain"], id="wildcard-block-wild"),
    pytest.param("bad.example.org", "bad.example.org", ["blocked_domain"], id="block-normalised"),
    pytest.param("BÜCHER.de", "xn--bcher-kva.de", ["blocked_domain"], id="block-idna"),
    # several problems at once
    pytest.param(
        "*." + LONG_BASE[:-6] + ".local",
        None,
        ["domain_too_long", "internal_name"],
        id="long-local",
    ),
]


@pytest.mark.parametrize(("entry", "normalized", "codes"), ENTRIES)
def test_check_domain_entry(entry: object, normalized: str | None, codes: list[str]) -> None:
    result = check_domain_entry(entry, blocklist=BLOCKLIST)
    assert [p.code for p in result.problems] == codes
    assert result.ok is (codes == [])
    if normalized is not None:
        assert result.normalized == normalized
    if result.ok:
        assert result.raw == entry
    for problem in result.problems:
        assert problem.message


def test_problem_messages_say_how_to_fix() -> None:
    messages = {
        p.code: p.message
        for e in ("*.co.uk", "localhost", "10.0.0.1", "evil.com", "a.*.b.com", 7, "a_b.com")
        for p in check_domain_entry(e, blocklist=["evil.com"]).problems
    }
    assert "registrable domain" in messages["public_suffix"]
    assert "public name" in messages["internal_name"]
    assert "host names" in messages["ip_literal"]
    assert "blocklist" in messages["blocked_domain"]
    assert "*.example.com" in messages["bad_wildcard"]
    assert "string" in messages["not_a_string"]
    assert "underscores" in messages["invalid_domain"]


def test_entry_value_objects() -> None:
    assert check_domain_entry("example.com") == DomainEntry("example.com", "example.com", ())
    assert check_domain_entry(3).raw == "3"
    assert check_domain_entry("*", blocklist=()).problems[0] == DomainProblem(
        "bad_wildcard", check_domain_entry("*").problems[0].message
    )
    # positional blocklist too, for existing callers
    assert not check_domain_entry("evil.com", ("evil.com",)).ok


ALLOWLIST = (
    "example.com",
    "*.example.org",
    "API.Partner.NET.",
    "*.bücher.de",
    "*",  # malformed entries never match anything
    "*.",
    "",
)

MATCHES = [
    pytest.param("example.com", "example.com", id="exact"),
    pytest.param("EXAMPLE.COM", "example.com", id="exact-host-upper-case"),
    pytest.param("example.com.", "example.com", id="exact-host-trailing-dot"),
    pytest.param("www.example.com", None, id="exact-does-not-cover-subdomain"),
    pytest.param("evil-example.com", None, id="exact-look-alike-prefix"),
    pytest.param("example.com.evil.net", None, id="exact-as-subdomain-of-attacker"),
    pytest.param("example.co", None, id="exact-truncated"),
    pytest.param("xexample.com", None, id="exact-glued-prefix"),
    pytest.param("a.example.org", "*.example.org", id="wildcard-one-level"),
    pytest.param("a.b.example.org", "*.example.org", id="wildcard-two-levels"),
    pytest.param("A.Example.ORG", "*.example.org", id="wildcard-upper-case"),
    pytest.param("example.org", None, id="wildcard-never-apex"),
    pytest.param("evil-example.org", None, id="wildcard-look-alike"),
    pytest.param("evilexample.org", None, id="wildcard-glued"),
    pytest.param("example.org.evil.net", None, id="wildcard-as-subdomain-of-attacker"),
    pytest.param("a.example.org.evil.net", None, id="wildcard-inner-suffix"),
    pytest.param(".example.org", None, id="wildcard-empty-label"),
    pytest.param("api.partner.net", "API.Partner.NET.", id="entry-upper-case-and-dot"),
    pytest.param("www.api.partner.net", None, id="entry-upper-case-exact-only"),
    pytest.param("shop.xn--bcher-kva.de", "*.bücher.de", id="idna-entry"),
    pytest.param("xn--bcher-kva.de", None, id="idna-entry-never-apex"),
    pytest.param("com", None, id="bare-tld"),
    pytest.param("", None, id="empty-host"),
    pytest.param("anything.at.all", None, id="star-entry-matches-nothing"),
]


@pytest.mark.parametrize(("host", "entry"), MATCHES)
def test_match_allowlist(host: str, entry: str | None) -> None:
    assert match_allowlist(host, ALLOWLIST) == entry


def test_match_allowlist_takes_a_parsed_host() -> None:
    assert match_allowlist(parse_host("A.Example.org"), ALLOWLIST) == "*.example.org"
    assert match_allowlist(Host("ip", "127.0.0.1"), ["127.0.0.1"]) is None
    assert match_allowlist("example.com", []) is None
    assert match_allowlist("example.com", iter(["*.org", "example.com"])) == "example.com"


BLOCKED = [
    pytest.param("evil.com", "evil.com", id="exact"),
    pytest.param("a.b.evil.com", "evil.com", id="subdomain"),
    pytest.param("Evil.COM.", "evil.com", id="case-and-dot"),
    pytest.param("notevil.com", None, id="glued-look-alike"),
    pytest.param("evil.com.example.net", None, id="as-prefix"),
    pytest.param("tracker.net", None, id="wildcard-block-spares-apex"),
    pytest.param("x.tracker.net", "*.tracker.net", id="wildcard-block-subdomain"),
    pytest.param("bad.example.org", "BAD.Example.ORG.", id="entry-normalised"),
    pytest.param("xn--bcher-kva.de", "bücher.de", id="entry-idna"),
    pytest.param("ab.com", None, id="malformed-entry-ignored"),
    pytest.param("example.com", None, id="not-blocked"),
]


@pytest.mark.parametrize(("host", "entry"), BLOCKED)
def test_is_blocked_name(host: str, entry: str | None) -> None:
    assert is_blocked_name(host, BLOCKLIST) == entry


def test_is_blocked_name_takes_a_parsed_host() -> None:
    assert is_blocked_name(parse_host("API.evil.com"), BLOCKLIST) == "evil.com"
    assert is_blocked_name(parse_host("127.0.0.1"), ["127.0.0.1"]) is None


def test_malformed_blocklist_entries_are_skipped() -> None:
    malformed: list[object] = [7, "*.", "💩.com", "\uff11\uff12\uff17.0.0.1", "a*.example.com"]
    assert is_blocked_name("example.com", malformed) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("com", True, id="tld"),
        pytest.param("co.uk", True, id="two-level"),
        pytest.param("CO.UK.", True, id="dressed-up"),
        pytest.param("xn--p1ai", True, id="idn-tld"),
        pytest.param("anything.bd", True, id="wildcard-rule"),
        pytest.param("www.ck", False, id="exception-rule"),
        pytest.param("example.com", False, id="registrable"),
        pytest.param("s3.amazonaws.com", False, id="private-section-ignored"),
        pytest.param("localhost", False, id="unknown-single-label"),
    ],
)
def test_is_public_suffix(name: str, expected: bool) -> None:
    assert is_public_suffix(name) is expected


def test_public_suffix_list_is_the_bundled_snapshot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No fetch and no cache directory: the lookup works with the network and the cache gone."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tldextract tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("TLDEXTRACT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    domains._extractor.cache_clear()
    try:
        assert is_public_suffix("co.uk")
        assert not is_public_suffix("example.co.uk")
    finally:
        domains._extractor.cache_clear()
    assert list(tmp_path.iterdir()) == []


# --- an admin's exception: internal names that host_overrides maps ------------------------------

MAPPED = ("db.internal", "printer.local", "api.test", "database", "svc.corp.example")

EXCEPTIONS = [
    pytest.param("db.internal", MAPPED, "db.internal", [], "internal_name_exception", id="mapped"),
    pytest.param("DB.Internal.", MAPPED, "db.internal", [], "internal_name_exception", id="case"),
    pytest.param("database", MAPPED, "database", [], "internal_name_exception", id="single-label"),
    pytest.param(
        "svc.corp.example",
        MAPPED,
        "svc.corp.example",
        [],
        "internal_name_exception",
        id="dot-example",
    ),
    pytest.param(
        "other.internal", MAPPED, "other.internal", ["internal_name"], None, id="unmapped-internal"
    ),
    pytest.param(
        "*.internal",
        ("a.internal",),
        "*.internal",
        ["internal_name"],
        None,
        id="wildcard-never",
    ),
    pytest.param(
        "*.db.internal",
        MAPPED,
        "*.db.internal",
        ["internal_name"],
        None,
        id="wildcard-of-mapped-never",
    ),
    pytest.param("db.internal", (), "db.internal", ["internal_name"], None, id="no-mapping"),
    pytest.param("api.example.com", MAPPED, "api.example.com", [], None, id="public-no-mark"),
]


@pytest.mark.parametrize(("raw", "mapped", "normalized", "codes", "exception"), EXCEPTIONS)
def test_internal_names_mapped_by_an_admin(
    raw: str, mapped: tuple[str, ...], normalized: str, codes: list[str], exception: str | None
) -> None:
    entry = check_domain_entry(raw, (), mapped)
    assert entry.normalized == normalized
    assert [p.code for p in entry.problems] == codes
    assert entry.exception == exception


def test_unmapped_internal_name_message_names_host_overrides() -> None:
    entry = check_domain_entry("other.internal", (), ("db.internal",))
    assert "host_overrides" in entry.problems[0].message


def test_mapped_internal_name_still_obeys_the_blocklist() -> None:
    entry = check_domain_entry("db.internal", ("db.internal",), ("db.internal",))
    assert [p.code for p in entry.problems] == ["blocked_domain"]
    assert entry.exception is None


@pytest.mark.parametrize(
    ("entry", "internal"),
    [
        pytest.param("db.internal", True, id="internal"),
        pytest.param("*.corp", True, id="wildcard-corp"),
        pytest.param("database", True, id="single-label"),
        pytest.param("api.example.com", False, id="public"),
        pytest.param("*.example.org", False, id="public-wildcard"),
    ],
)
def test_is_internal_name(entry: str, internal: bool) -> None:
    assert domains.is_internal_name(entry) is internal
