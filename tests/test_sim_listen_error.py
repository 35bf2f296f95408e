"""`run_simulator` raises `ListenError` (importable from `asg_audit.sim`, as the README shows)
when a port cannot be had, naming the host and port; a real socket holds the port."""

from __future__ import annotations

import socket

import pytest

from asg_audit.sim import ListenError, WorldConfig, generate_world, run_simulator


def test_a_port_in_use_is_a_listen_error_naming_it() -> None:
    world = generate_world(WorldConfig(seed=1, tasks=5))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        in_use = rf"cannot listen on 127\.0\.0\.1:{port} \(in use\)"
        with pytest.raises(ListenError, match=in_use), run_simulator(world, port=port):
            pass
    assert issubclass(ListenError, OSError)
