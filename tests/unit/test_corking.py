"""The response cork, on a real gunicorn request over a real loopback TCP connection: the
hooks find the client socket with the installed gunicorn (an upgrade that hides it fails
here, not silently in production), cork it for the response and push it after."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

from driftkeeper.serving import corking

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server side) of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _request(client: socket.socket, server: socket.socket, head: bytes):
    client.sendall(head)
    return next(iter(RequestParser(Config(), server, ("127.0.0.1", 1))))


def _corked(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)


def test_a_request_is_corked_until_its_response_is_done(connection) -> None:
    client, server = connection
    req = _request(client, server, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: 2\r\n\r\n{}")
    assert corking.request_socket(req) is server
    corking.cork(None, req)
    assert _corked(server) == 1
    server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    server.sendall(b"ok")
    corking.push(None, req, {}, None)
    assert _corked(server) == 0
    client.settimeout(5)
    received = b""
    while not received.endswith(b"ok"):
        received += client.recv(1024)
    assert received == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_request_expecting_100_continue_is_never_corked(connection) -> None:
    """Its interim answer must leave before the client sends the body."""
    client, server = connection
    req = _request(client, server, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                   b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    corking.cork(None, req)
    assert _corked(server) == 0


def test_a_closed_socket_is_no_error(connection) -> None:
    client, server = connection
    req = _request(client, server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    server.close()
    corking.cork(None, req)
    corking.push(None, req, {}, None)
