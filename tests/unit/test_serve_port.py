"""`serve` refuses a port something already listens on: its workers bind with SO_REUSEPORT
(one socket each, so the kernel spreads connections over them), which would otherwise let
a second service start quietly on the same port and take half of the first's traffic."""

from __future__ import annotations

import socket

import pytest

from driftkeeper.errors import DriftkeeperError
from driftkeeper.serving.server import check_port_free


def test_a_port_in_use_is_refused_with_a_message() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a worker's
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(DriftkeeperError, match=f"cannot serve on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)


def test_a_free_port_passes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check_port_free("127.0.0.1", port)
