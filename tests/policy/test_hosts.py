"""Host parsing: every address spelling is an address, names are normalised and checked."""

from __future__ import annotations

import ipaddress

import pytest

from vivified.policy.hosts import Host, HostError, is_ip_literal, parse_host

IP_SPELLINGS = [
    pytest.param("127.0.0.1", "127.0.0.1", id="dotted-decimal"),
    pytest.param("2130706433", "127.0.0.1", id="single-decimal-integer"),
    pytest.param("0177.0.0.1", "127.0.0.1", id="octal-first-part"),
    pytest.param("0177.0000.0000.0001", "127.0.0.1", id="octal-all-parts"),
    pytest.param("017700000001", "127.0.0.1", id="single-octal-integer"),
    pytest.param("0x7f.0.0.1", "127.0.0.1", id="hex-first-part"),
    pytest.param("0X7F.0X0.0X0.0X1", "127.0.0.1", id="hex-upper-case"),
    pytest.param("0x7f000001", "127.0.0.1", id="single-hex-integer"),
    pytest.param("0x", "0.0.0.0", id="bare-hex-prefix-is-zero"),
    pytest.param("127.1", "127.0.0.1", id="short-two-parts"),
    pytest.param("127.0.1", "127.0.0.1", id="short-three-parts"),
    pytest.param("0x7f.1", "127.0.0.1", id="short-hex-mixed"),
    pytest.param("0177.0x0.1", "127.0.0.1", id="octal-hex-decimal-mixed"),
    pytest.param("10.0x10203", "10.1.2.3", id="short-hex-tail-fills-three-bytes"),
    pytest.param("0", "0.0.0.0", id="zero"),
    pytest.param("4294967295", "255.255.255.255", id="max-integer"),
    pytest.param("1.16777215", "1.255.255.255", id="max-short-tail"),
    pytest.param("169.254.169.254", "169.254.169.254", id="metadata-dotted"),
    pytest.param("0xA9FEA9FE", "169.254.169.254", id="metadata-hex-integer"),
    pytest.param("127.0.0.1.", "127.0.0.1", id="trailing-dot-dotted"),
    pytest.param("2130706433.", "127.0.0.1", id="trailing-dot-integer"),
    pytest.param(
        "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",
        "127.0.0.1",
        id="full-width-digits-and-dots",
    ),
    pytest.param("127。0。0。1", "127.0.0.1", id="ideographic-full-stops"),
    pytest.param("::1", "::1", id="ipv6-loopback"),
    pytest.param("[::1]", "::1", id="ipv6-bracketed"),
    pytest.param("[0:0:0:0:0:0:0:1]", "::1", id="ipv6-long-form-bracketed"),
    pytest.param("2001:DB8::1", "2001:db8::1", id="ipv6-upper-case"),
    pytest.param("fe80::1%eth0", "fe80::1", id="ipv6-zone-dropped"),
    pytest.param("[fe80::1%25eth0]", "fe80::1", id="ipv6-zone-rfc6874-bracketed"),
    pytest.param("[fe80::1%eth0]", "fe80::1", id="ipv6-zone-bracketed-unencoded"),
    pytest.param("::ffff:127.0.0.1", "::ffff:7f00:1", id="ipv4-mapped-dotted"),
    pytest.param("::ffff:7f00:1", "::ffff:7f00:1", id="ipv4-mapped-hex"),
    pytest.param("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe", id="ipv4-mapped-bracketed"),
    pytest.param("::127.0.0.1", "::7f00:1", id="ipv4-compatible"),
    pytest.param("64:ff9b::10.0.0.1", "64:ff9b::a00:1", id="nat64-embedded"),
]


@pytest.mark.parametrize(("raw", "canonical"), IP_SPELLINGS)
def test_every_address_spelling_is_an_address(raw: str, canonical: str) -> None:
    ip = ipaddress.ip_address(canonical)
    # str(ip) rather than `canonical`: newer Pythons print IPv4-mapped addresses dotted.
    assert parse_host(raw) == Host("ip", str(ip), ip)
    assert is_ip_literal(raw)


NAMES = [
    pytest.param("example.com", "example.com", id="plain"),
    pytest.param("API.Example.COM", "api.example.com", id="upper-case"),
    pytest.param("example.com.", "example.com", id="trailing-dot"),
    pytest.param("BÜCHER.example", "xn--bcher-kva.example", id="idna-upper-case-umlaut"),
    pytest.param("bücher.de", "xn--bcher-kva.de", id="idna-u-label"),
    pytest.param("xn--bcher-kva.de", "xn--bcher-kva.de", id="idna-a-label-kept"),
    pytest.param("faß.de", "xn--fa-hia.de", id="idna-nontransitional-sharp-s"),
    pytest.param("例え.テスト", "xn--r8jz45g.xn--zckzah", id="idna-japanese"),
    pytest.param(
        "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        "example.com",
        id="full-width-letters-mapped",
    ),
    pytest.param("example。com", "example.com", id="ideographic-full-stop-in-name"),
    pytest.param("exa\u00admple.com", "example.com", id="soft-hyphen-ignored-by-uts46"),
    pytest.param("r3---sn-abc.googlevideo.com", "r3---sn-abc.googlevideo.com", id="double-hyphen"),
    pytest.param("1.example.com", "1.example.com", id="numeric-inner-label"),
    pytest.param("0x7f.example", "0x7f.example", id="hex-inner-label"),
    pytest.param("0xg.com", "0xg.com", id="not-quite-hex-label"),
    pytest.param("123.456.example.com", "123.456.example.com", id="numeric-labels-not-last"),
    pytest.param("example.0xg", "example.0xg", id="last-label-not-a-number"),
    pytest.param("a" * 63 + ".com", "a" * 63 + ".com", id="label-63-chars"),
    pytest.param(
        ".".join(["a" * 61] * 4) + ".ab", ".".join(["a" * 61] * 4) + ".ab", id="name-253-chars"
    ),
    pytest.param("localhost", "localhost", id="single-label"),
]


@pytest.mark.parametrize(("raw", "value"), NAMES)
def test_names_are_normalised(raw: str, value: str) -> None:
    assert parse_host(raw) == Host("name", value)
    assert not is_ip_literal(raw)


ERRORS = [
    pytest.param("", "empty_host", "empty", id="empty"),
    pytest.param("a" * 1025, "host_too_long", "characters", id="absurdly-long-input"),
    pytest.param(".".join(["a" * 63] * 4), "host_too_long", "at most 253", id="name-255-chars"),
    pytest.param("a" * 64 + ".com", "invalid_host", "at most 63", id="label-64-chars"),
    pytest.param("ü" * 60 + ".com", "invalid_host", "internationalised", id="a-label-too-long"),
    pytest.param(".", "invalid_host", "just a dot", id="only-a-dot"),
    pytest.param("..", "invalid_host", "empty label", id="two-dots"),
    pytest.param("a..b.com", "invalid_host", "empty label", id="double-dot"),
    pytest.param(".example.com", "invalid_host", "empty label", id="leading-dot"),
    pytest.param("example.com..", "invalid_host", "empty label", id="two-trailing-dots"),
    pytest.param("my_host.example.com", "invalid_host", "underscores", id="underscore"),
    pytest.param("-a.example.com", "invalid_host", "hyphen", id="leading-hyphen"),
    pytest.param("a-.example.com", "invalid_host", "hyphen", id="trailing-hyphen"),
    pytest.param("exa mple.com", "invalid_host", "' '", id="space"),
    pytest.param(" example.com", "invalid_host", "' '", id="leading-space"),
    pytest.param("ex!ample.com", "invalid_host", "'!'", id="punctuation"),
    pytest.param("%65xample.com", "invalid_host", "'%'", id="percent-encoded"),
    pytest.param("*.example.com", "invalid_host", "'*'", id="asterisk"),
    pytest.param("xn--zz.com", "invalid_host", "A-label", id="broken-punycode"),
    pytest.param("xn--ls8h.la", "invalid_host", "A-label", id="emoji-a-label"),
    pytest.param("💩.la", "invalid_host", "internationalised", id="emoji-u-label"),
    pytest.param("a\ufffdb.com", "invalid_host", "character", id="disallowed-codepoint"),
    pytest.param("1.2.3.256", "invalid_host", "ends in a number", id="octet-over-255"),
    pytest.param("256.1.1.1", "invalid_host", "ends in a number", id="leading-part-over-255"),
    pytest.param("1.2.3.4.5", "invalid_host", "ends in a number", id="five-parts"),
    pytest.param("4294967296", "invalid_host", "ends in a number", id="integer-over-32-bits"),
    pytest.param("1.16777216", "invalid_host", "ends in a number", id="short-tail-overflow"),
    pytest.param("08.0.0.1", "invalid_host", "ends in a number", id="bad-octal-digit"),
    pytest.param("0x1g.0.0.1", "invalid_host", "ends in a number", id="bad-hex-part"),
    pytest.param("1..1", "invalid_host", "ends in a number", id="empty-numeric-part"),
    pytest.param("example.123", "invalid_host", "ends in a number", id="numeric-tld"),
    pytest.param("example.0x1f", "invalid_host", "ends in a number", id="hex-tld"),
    pytest.param("localhost.1.", "invalid_host", "ends in a number", id="numeric-tld-dot"),
    pytest.param("example.com:443", "invalid_host", "without a port", id="host-with-port"),
    pytest.param("[::1]:443", "invalid_host", "brackets", id="bracketed-with-port"),
    pytest.param("[::1", "invalid_host", "brackets", id="unclosed-bracket"),
    pytest.param("::1]", "invalid_host", "brackets", id="unopened-bracket"),
    pytest.param("[[::1]]", "invalid_host", "brackets", id="nested-brackets"),
    pytest.param("[127.0.0.1]", "invalid_host", "IPv6", id="ipv4-in-brackets"),
    pytest.param("[example.com]", "invalid_host", "IPv6", id="name-in-brackets"),
    pytest.param("1:2:3:4:5:6:7:8:9", "invalid_host", "IPv6", id="ipv6-too-many-groups"),
    pytest.param("::ffff:0177.0.0.1", "invalid_host", "IPv6", id="mapped-with-octal"),
    pytest.param("::ffff:127.1", "invalid_host", "IPv6", id="mapped-with-short-form"),
    pytest.param("fe80::1%", "invalid_host", "zone", id="empty-zone"),
    pytest.param("[fe80::1%25]", "invalid_host", "zone", id="empty-encoded-zone"),
    pytest.param("fe80::1%eth 0", "invalid_host", "zone", id="zone-with-space"),
]


@pytest.mark.parametrize(("raw", "code", "why"), ERRORS)
def test_errors_have_a_code_and_say_why(raw: str, code: str, why: str) -> None:
    with pytest.raises(HostError) as caught:
        parse_host(raw)
    assert caught.value.code == code
    assert why in caught.value.message
    assert str(caught.value) == caught.value.message
    assert not is_ip_literal(raw)


def test_a_non_string_is_an_invalid_host() -> None:
    with pytest.raises(HostError) as caught:
        parse_host(2130706433)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_host"


def test_host_error_is_a_value_error() -> None:
    assert issubclass(HostError, ValueError)


def test_parsing_is_idempotent() -> None:
    for param in [*IP_SPELLINGS, *NAMES]:
        once = parse_host(str(param.values[0]))
        assert parse_host(once.value) == once
