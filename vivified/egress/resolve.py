"""Name resolution in bounded time, with admin host overrides taking the place of DNS."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from vivified.policy.egress_settings import IPAddress
from vivified.policy.hosts import Host

GetAddrInfo = Callable[..., Awaitable[list[tuple[Any, ...]]]]


@functools.lru_cache(maxsize=1024)
def _address(text: str) -> IPAddress:
    """An override's address, parsed once (`ip_address` is slow; its result is immutable)."""
    return ipaddress.ip_address(text)


class ResolveError(Exception):
    """The name did not resolve; `code` is `dns_failed` or `dns_timeout`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Resolver:
    """Resolves a target to every candidate address (each one is checked before use)."""

    def __init__(self, timeout: float, getaddrinfo: GetAddrInfo | None = None) -> None:
        self._timeout = timeout
        self._getaddrinfo = getaddrinfo

    async def resolve(
        self, host: Host, port: int, overrides: Mapping[str, str]
    ) -> tuple[list[IPAddress], str]:
        """Return (addresses, source) where source is `literal`, `override` or `dns`."""
        if host.kind == "ip":
            return [ipaddress.ip_address(str(host.ip if host.ip is not None else host.value))], (
                "literal"
            )
        if host.value in overrides:
            return [_address(overrides[host.value])], "override"
        lookup = self._getaddrinfo or asyncio.get_running_loop().getaddrinfo
        try:
            infos = await asyncio.wait_for(
                lookup(host.value, port, type=socket.SOCK_STREAM), self._timeout
            )
        except TimeoutError as exc:
            raise ResolveError("dns_timeout", f"resolving {host.value} timed out") from exc
        except (OSError, UnicodeError) as exc:
            raise ResolveError("dns_failed", f"cannot resolve {host.value}: {exc}") from exc
        addresses: list[IPAddress] = []
        for info in infos:
            raw = str(info[4][0]).split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise ResolveError("dns_failed", f"{host.value} has no addresses")
        return addresses, "dns"
