"""Reliable reception: duplicates answered, and no peer can make a receiver hold without bound."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from hwsched.plan import TensorSpec
from hwsched.runtime.frames import encode_data
from hwsched.runtime.reliable import MAX_AHEAD_WINDOWS, Receiver
from hwsched.runtime.transport import Channel

SPEC = TensorSpec("x", (1, 2), "float32")
SPECS = {"x": SPEC}


class _Inbox(Channel):
    """Messages queued in memory; what the receiver sends back (acks) is recorded."""

    def __init__(self) -> None:
        self.inbox: deque[list[bytes]] = deque()
        self.sent: list[list[bytes]] = []

    def put(self, seq: int) -> None:
        self.inbox.append(encode_data(seq, 0.0, {"x": np.zeros(SPEC.shape, np.float32)}, SPECS))

    def send(self, parts: Sequence[bytes], peer: bytes = b"") -> bool:
        self.sent.append(list(parts))
        return True

    def receive(self) -> tuple[bytes, list[bytes]] | None:
        return (b"peer", self.inbox.popleft()) if self.inbox else None

    def poll_handle(self) -> None:
        return None

    def close(self) -> None:
        pass


def test_sequence_numbers_far_ahead_are_dropped_and_counted():
    channel = _Inbox()
    receiver = Receiver(channel, SPECS, window=2)
    ahead = MAX_AHEAD_WINDOWS * 2
    for seq in (0, ahead - 1, ahead, 10**12):
        channel.put(seq)
    assert [m.seq for m in receiver.messages()] == [0, ahead - 1]
    assert receiver.counters.rejected == 2
    assert sorted(receiver.holding) == [0, ahead - 1]
    receiver.done(0)
    channel.put(ahead)  # the sender's resend, once the window has moved on
    assert [m.seq for m in receiver.messages()] == [ahead]
