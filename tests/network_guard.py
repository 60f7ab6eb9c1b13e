"""Pytest plugin: no test touches the network (loaded with `-p network_guard`, see pyproject.toml).

Sockets may connect only to loopback (127.0.0.0/8, ::1, localhost) or to a Unix path, and host
names other than localhost are not resolved. Anything else is stopped before a packet leaves,
with NetworkBlocked, and recorded: a test during which an attempt was made fails, even when the
code under test caught the error (as HTTP clients and hub libraries do when they go offline).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

import pytest

attempts: list[str] = []  # every blocked attempt, as "what (where)"


class NetworkBlocked(ConnectionError):
    """A test tried to reach a host other than this machine."""


def _is_loopback(host) -> bool:
    if host is None or host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _block(what: str, address) -> None:
    attempts.append(f"{what} {address!r}")
    raise NetworkBlocked(f"tests may not use the network: {what} {address!r} was stopped")


def _allowed(sock: socket.socket, address) -> bool:
    return sock.family not in (socket.AF_INET, socket.AF_INET6) or _is_loopback(address[0])


_real = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto")}
_real_getaddrinfo = socket.getaddrinfo


def _connect(self, address):
    if not _allowed(self, address):
        _block("connect to", address)
    return _real["connect"](self, address)


def _connect_ex(self, address):
    if not _allowed(self, address):
        _block("connect to", address)
    return _real["connect_ex"](self, address)


def _sendto(self, data, *args):
    address = args[-1]
    if not _allowed(self, address):
        _block("sendto", address)
    return _real["sendto"](self, data, *args)


def _getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        try:  # a numeric address needs no lookup; connect() decides about it
            ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            attempts.append(f"name lookup of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not use the network: lookup of {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.socket.sendto = _sendto
    socket.getaddrinfo = _getaddrinfo


def installed() -> bool:
    return socket.socket.connect is _connect and socket.getaddrinfo is _getaddrinfo


@contextlib.contextmanager
def expect_blocked():
    """For the guard's own tests: yields the attempts made inside, which then do not fail the test."""
    start = len(attempts)
    made: list[str] = []
    try:
        yield made
    finally:
        made.extend(attempts[start:])
        del attempts[start:]


def pytest_configure(config):
    install()


def _network_use_fails_the_phase():
    """A hook wrapper for one test phase (setup, call, teardown): fails it if it tried the network."""

    @pytest.hookimpl(wrapper=True)
    def guard(item):
        start = len(attempts)
        try:
            return (yield)
        finally:
            if len(attempts) > start:
                new = attempts[start:]
                del attempts[start:]
                pytest.fail("the test tried to use the network (stopped): " + "; ".join(new), pytrace=False)

    return guard


pytest_runtest_setup = _network_use_fails_the_phase()
pytest_runtest_call = _network_use_fails_the_phase()
pytest_runtest_teardown = _network_use_fails_the_phase()
