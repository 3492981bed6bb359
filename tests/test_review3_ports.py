"""Review of ``emulate.port_picker``: concurrent runs must not draw the same ports because a
caller seeded Python's global random state, and the fallback (no room below the kernel's
ephemeral range) must keep the ports of one run distinct."""

from __future__ import annotations

import random

from hwsched.runtime import emulate


def _picks(count: int) -> list[int]:
    pick = emulate.port_picker()
    return [pick() for _ in range(count)]


def test_a_seeded_global_random_does_not_fix_the_ports():
    """``keras.utils.set_random_seed(0)`` calls ``random.seed(0)``; two runs (processes) that
    seed it draw the same sequence from it, so their listeners collide. Two pickers after the
    same seed must draw independently (eight equal draws by chance: (1/12000)**8)."""
    random.seed(0)
    first = _picks(8)
    random.seed(0)
    second = _picks(8)
    assert first != second


def test_ports_stay_distinct_when_there_is_no_room_outside_the_ephemeral_range(monkeypatch):
    """With the whole unprivileged range ephemeral there is no room outside it, and the picker
    takes the kernel's choice: a closed port the kernel handed out once it hands out again
    (the oracle is the set of ports itself; 600 draws from the kernel's ~28,000 ports repeat
    one with probability ~1 - exp(-600**2 / 2 / 28000) without the check)."""
    monkeypatch.setattr(emulate, "_ephemeral_range", lambda: (1024, 65535))
    ports = _picks(600)
    assert len(set(ports)) == len(ports)


def test_a_range_starting_low_leaves_the_ports_above_it(monkeypatch):
    """``1024 60999``: nothing below the range, but connect() never takes a port above 60999.
    Failed before: the picker fell back to the kernel's choice, inside the range, where any
    connecting socket may take the port before the runner binds it."""
    monkeypatch.setattr(emulate, "_ephemeral_range", lambda: (1024, 60999))
    ports = _picks(50)
    assert len(set(ports)) == len(ports) and all(60999 < port <= 65535 for port in ports)
