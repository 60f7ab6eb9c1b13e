"""The suite is offline by design: tests/network_guard.py stops every non-loopback socket."""

import os
import socket
import threading
from pathlib import Path

import pytest

import network_guard

# RFC 5737 documentation address: never routed. The guard stops the connect before any packet,
# and each test checks the guard is in place before it tries, so nothing leaves even if it broke.
NON_LOCAL = ("192.0.2.1", 80)


@pytest.fixture(autouse=True)
def guard_in_place():
    assert network_guard.installed(), "the network guard is not installed; not trying the network"


def test_the_guard_stops_a_socket_to_a_non_local_address():
    with network_guard.expect_blocked() as made, socket.socket() as s:
        s.settimeout(0.5)
        with pytest.raises(network_guard.NetworkBlocked, match="192.0.2.1"):
            s.connect(NON_LOCAL)
    assert made == ["connect to ('192.0.2.1', 80)"]


def test_the_guard_stops_ipv6_udp_and_name_lookups():
    with network_guard.expect_blocked() as made:
        with socket.socket(socket.AF_INET6) as s, pytest.raises(network_guard.NetworkBlocked):
            s.connect_ex(("2001:db8::1", 80, 0, 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(network_guard.NetworkBlocked):
            s.sendto(b"x", NON_LOCAL)
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("huggingface.co", 443)
        with pytest.raises(network_guard.NetworkBlocked):
            socket.create_connection(NON_LOCAL, timeout=0.5)
    assert len(made) == 4, made


def test_loopback_still_works():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        accepted = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0].recv(5)))
        thread.start()
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            client.sendall(b"hello")
        thread.join(5)
    assert accepted == [b"hello"]
    assert socket.getaddrinfo("localhost", 80)


def test_hugging_face_libraries_are_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE


def test_a_test_that_swallows_the_error_still_fails(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    pytester.makepyfile(test_inner="""
        import socket

        def test_quietly_online():
            try:
                socket.create_connection(("192.0.2.1", 80), timeout=0.5)
            except OSError:
                pass  # what an HTTP client does before it falls back to a cache

        def test_loopback_is_fine():
            assert socket.getaddrinfo("localhost", 80)
    """)
    result = pytester.runpytest_subprocess("-p", "network_guard", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*tried to use the network*192.0.2.1*"])
