"""Host parsing: every spelling of an address is an address; everything else is a checked name."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
# Nothing longer can normalise to a valid host; refuse it before doing any Unicode work.
MAX_RAW_LENGTH = 1024

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
# What browsers (WHATWG "ends in a number") and inet_aton take for a number: a name whose last
# label looks like this is an address or nothing, never a name.
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")
_DECIMAL = re.compile(r"[1-9][0-9]*\Z|0\Z")
_OCTAL = re.compile(r"0[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-f]*\Z")
_ZONE_ID = re.compile(r"[A-Za-z0-9._~-]+\Z")


class HostError(ValueError):
    """A host that is neither a valid name nor an address: `code` is stable, `message` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Host:
    """A parsed host: a normalised name (IDNA A-labels, lower case, no trailing dot) or an address
    in canonical text with `ip` set."""

    kind: Literal["name", "ip"]
    value: str
    ip: IPAddress | None = None


def parse_host(raw: str) -> Host:
    """Parse a host as a client wrote it (CONNECT target, URL host, Host header without port).

    Every spelling an address can take in a URL or in libc (`2130706433`, `0177.1`, `0x7f.0.0.1`,
    `127.1`, `[::1]`, `fe80::1%eth0`, full-width digits, a trailing dot...) comes back as an
    address; anything that ends in a number but is no valid address is an error, never a name.
    Names are mapped with UTS 46, encoded to A-labels and checked label by label.

    Raises `HostError` with code `empty_host`, `host_too_long` or `invalid_host`."""
    if not isinstance(raw, str):
        raise HostError("invalid_host", f"a host must be a string, not {type(raw).__name__}")
    if raw == "":
        raise HostError("empty_host", "the host is empty")
    if len(raw) > MAX_RAW_LENGTH:
        raise HostError("host_too_long", f"the host is {len(raw)} characters long")
    text = raw.lower() if raw.isascii() else _uts46_remap(raw)
    if text.startswith("[") or text.endswith("]"):
        return _parse_bracketed(text)
    if ":" in text:
        return _parse_ipv6(text, bracketed=False)
    return _parse_name_or_ipv4(text)


def is_ip_literal(raw: str) -> bool:
    """Whether `raw` is an IPv4 or IPv6 address in any notation `parse_host` recognises."""
    try:
        return parse_host(raw).kind == "ip"
    except HostError:
        return False


def _uts46_remap(raw: str) -> str:
    # Mapping comes first, as in browsers: full-width digits and ideographic full stops
    # (U+3002) turn into ASCII here, so full-width `127。0。0。1` is caught as 127.0.0.1 below.
    try:
        return idna.uts46_remap(raw, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise HostError("invalid_host", f"the host has a character names can't use: {exc}") from exc


def _parse_bracketed(text: str) -> Host:
    inner = text[1:-1]
    if not (text.startswith("[") and text.endswith("]")) or "[" in inner or "]" in inner:
        raise HostError("invalid_host", "unbalanced brackets; only an IPv6 address goes in [ ]")
    if ":" not in inner:
        raise HostError(
            "invalid_host", "only an IPv6 address goes in brackets, as in [2001:db8::1]"
        )
    return _parse_ipv6(inner, bracketed=True)


def _parse_ipv6(text: str, *, bracketed: bool) -> Host:
    address, percent, zone = text.partition("%")
    if percent:
        # RFC 6874 writes the zone as `%25eth0` inside a URL's brackets; the zone itself is
        # dropped, since the address is classified (and refused) the same in every zone.
        if bracketed and zone.startswith("25"):
            zone = zone[2:]
        if not _ZONE_ID.match(zone):
            raise HostError("invalid_host", f"bad IPv6 zone id {zone!r} in {text!r}")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError as exc:
        raise HostError(
            "invalid_host",
            f"{text!r} has a colon but is not an IPv6 address ({exc}); "
            "give the host without a port",
        ) from exc
    return Host("ip", str(ip), ip)


def _parse_name_or_ipv4(text: str) -> Host:
    name = text.removesuffix(".")
    if name == "":
        raise HostError("invalid_host", "a host can't be just a dot")
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        ip = _parse_ipv4(labels)
        if ip is None:
            raise HostError(
                "invalid_host",
                f"{text!r} ends in a number but is not a valid IPv4 address; "
                "a name's last label can't be numeric",
            )
        return Host("ip", str(ip), ip)
    value = ".".join(_encode_label(label) for label in labels)
    if len(value) > MAX_NAME_LENGTH:
        raise HostError(
            "host_too_long", f"the name is {len(value)} characters; at most {MAX_NAME_LENGTH}"
        )
    return Host("name", value)


def _parse_ipv4(parts: list[str]) -> ipaddress.IPv4Address | None:
    """The WHATWG URL / inet_aton reading: 1-4 parts, each decimal, octal or hex; the last
    part fills the remaining bytes (`127.1`, `2130706433`)."""
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        number = _parse_ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _parse_ipv4_number(part: str) -> int | None:
    if _HEX.match(part):
        return int(part[2:] or "0", 16)
    if _OCTAL.match(part):
        return int(part, 8)
    if _DECIMAL.match(part):
        return int(part)
    return None


def _encode_label(label: str) -> str:
    if label == "":
        raise HostError("invalid_host", "empty label: two dots in a row, or a leading dot")
    if not label.isascii():
        try:
            return idna.alabel(label).decode("ascii")
        except idna.IDNAError as exc:
            raise HostError(
                "invalid_host", f"label {label!r} is not a valid internationalised name: {exc}"
            ) from exc
    if len(label) > MAX_LABEL_LENGTH:
        raise HostError(
            "invalid_host",
            f"label {label[:20]!r}... is {len(label)} characters; at most {MAX_LABEL_LENGTH}",
        )
    if not _LDH_LABEL.match(label):
        raise HostError("invalid_host", f"label {label!r}: {_ldh_problem(label)}")
    if label.startswith("xn--"):
        try:
            idna.ulabel(label)
        except idna.IDNAError as exc:
            raise HostError(
                "invalid_host", f"label {label!r} is not a valid IDNA A-label: {exc}"
            ) from exc
    return label


def _ldh_problem(label: str) -> str:
    if "_" in label:
        return "underscores are not allowed in host names"
    if label.startswith("-") or label.endswith("-"):
        return "a label can't start or end with a hyphen"
    bad = next((c for c in label if not (c.isalnum() or c == "-")), label)
    return f"{bad!r} is not allowed; use letters, digits and hyphens"
