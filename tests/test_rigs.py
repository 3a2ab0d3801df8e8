"""The test rigs themselves: they leave no socket open and put back what they change.

A socket a rig leaks fails whichever test the collector runs in next, with an unclosed-socket or
unclosed-transport warning (warnings are errors here), far from its cause:

- asyncio 3.11 leaks a connection accepted in the moment its server closes: the raw-TCP rigs
  (support.loopback) are closed, or have their port closed, while clients keep connecting;
- nats-py, told not to reconnect, leaves the socket of a failed handshake open: the cluster
  rig's connections are tried against a port that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest
from support.egress import closed_by_peer
from support.flaky_upstream import DOWN, HUNG, UP, flaky_upstream
from support.nats_cluster import _connection
from support.slow_link import slow_link

REQUEST = b"GET / HTTP/1.1\r\nhost: rig\r\n\r\n"


@contextlib.contextmanager
def clients(port: Callable[[], int], n: int = 3) -> Iterator[None]:
    """`n` threads connecting, sending a request and hanging up, as fast as they can."""
    stop = threading.Event()

    def connect() -> None:
        while not stop.is_set():
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port()), timeout=0.25) as s,
            ):
                s.sendall(REQUEST)

    threads = [threading.Thread(target=connect) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(10)


@contextlib.contextmanager
def no_leaks() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks[:3]


def test_the_flaky_upstream_closes_its_port_under_connections_without_a_leak() -> None:
    with no_leaks():
        with flaky_upstream() as up, clients(lambda: up.port):
            for mode in (DOWN, UP, HUNG, DOWN, UP) * 20:
                up.set_mode(mode)
                time.sleep(0.01)
        assert up.open_connections == 0


def test_the_slow_link_closes_under_connections_without_a_leak() -> None:
    with flaky_upstream() as up, no_leaks():
        for _ in range(20):
            with slow_link("127.0.0.1", up.port, delay=0.01) as port, clients(lambda: port):
                time.sleep(0.05)


def test_a_nats_connection_that_fails_its_handshake_is_closed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent, no_leaks():
        url = f"nats://127.0.0.1:{silent.getsockname()[1]}"

        async def attempt() -> None:
            async with _connection(url, connect_timeout=0.2):
                pass

        with pytest.raises(TimeoutError):
            asyncio.run(attempt())


def test_glancing_at_a_socket_keeps_its_timeout() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(10)
        assert not closed_by_peer(a)
        assert a.gettimeout() == 10
        b.close()
        assert closed_by_peer(a)
        assert a.gettimeout() == 10
