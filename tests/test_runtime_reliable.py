"""Reliable reception: duplicates answered, and no peer can make a receiver hold without bound."""

from __future__ import annotations

import numpy as np
from memchannel import MemoryChannel

from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import encode_data
from hwsched.runtime.reliable import MAX_HELD_WINDOWS, Receiver

SPEC = TensorSpec("x", (1, 2), "float32")
SPECS = {"x": SPEC}


class _Inbox(MemoryChannel):
    """Messages queued in memory; what the receiver sends back (acks) is recorded."""

    def put(self, seq: int) -> None:
        self.inbox.append(encode_data(seq, 0.0, {"x": np.zeros(SPEC.shape, np.float32)}, SPECS))


def test_a_receiver_holds_at_most_a_few_windows_and_drops_the_rest():
    channel = _Inbox()
    receiver = Receiver(channel, SPECS, window=2)
    held = MAX_HELD_WINDOWS * 2
    seqs = [10**12 - i for i in range(held + 2)]  # hostile: far ahead and descending
    for seq in seqs:
        channel.put(seq)
    assert [m.seq for m in receiver.messages()] == seqs[:held]
    assert receiver.counters.rejected == 2 and len(receiver.holding) == held
    receiver.done(seqs[0])
    channel.put(seqs[-1])  # its resend, once a frame was released
    assert [m.seq for m in receiver.messages()] == [seqs[-1]]


def test_a_restarted_receiver_accepts_a_stream_already_far_along():
    channel = _Inbox()
    receiver = Receiver(channel, SPECS, window=2)
    for seq in range(1000, 1000 + 5 * MAX_HELD_WINDOWS * 2):  # earlier frames were acked before
        channel.put(seq)
        (message,) = receiver.messages()
        receiver.done(message.seq)
    assert receiver.counters.rejected == 0
