"""The emulator's listening ports: distinct, free, and never from the kernel's ephemeral range,
where any connecting socket may take a port between the check and the runner's bind (a
28-stage tiled VGG-16 plan failed to start on "Address already in use")."""

from __future__ import annotations

import socket
from pathlib import Path

from hwsched.runtime.emulate import port_picker


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    low, _ = _ephemeral_range()
    pick = port_picker()
    ports = [pick() for _ in range(60)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)  # connect() takes source ports from [low, high]
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_picked():
    pick = port_picker()
    held = []
    try:
        for _ in range(20):  # hold listeners on ports the picker gave, then pick again
            s = socket.socket()
            s.bind(("127.0.0.1", pick()))
            s.listen()
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        fresh = port_picker()
        assert not taken & {fresh() for _ in range(200)}
    finally:
        for s in held:
            s.close()
