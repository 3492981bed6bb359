"""A probe train queued behind a frame reads the link's rate, however much of the frame had
crossed before the train was stamped (review of adapt11).

adapt11 timed such a train from its first stamp and added the whole frame's bytes: right when
the frame had not started crossing, but a frame mostly across already counted bytes the link
carried before the timing began, and the train read faster than the link — by half again
with a 32 kB frame ahead of a 64 kB train on a fast link (the train's dispersion, shorter
than it takes to trust, did not cap it). An exact train replaces the estimate.

Oracle: a FIFO link of known rate simulated here; the real :class:`Receiver` reads each
message when it has crossed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memchannel import MemoryChannel

from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import (
    MAX_PROBE_WAIT_S,
    encode_data,
    encode_probe_announce,
    encode_probe_padding,
    restamp,
)
from hwsched.runtime.reliable import Receiver

FLOATS = 8_000  # a 32 kB frame
SPECS = {"x": TensorSpec("x", (1, FLOATS), "float32")}
BITS_PER_MBIT = 1e6


class _Clock:
    now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


def _train_after_a_frame(mbps: float, stamped_after: float, messages: int = 2,
                         payload: int = 32_768, stale: bool = False) -> Receiver:
    """A frame stamped at t (``stale``: a message of an older train instead, one whose wait
    ran out), then a train stamped when ``stamped_after`` of it had crossed; each read as it
    arrives. The receiver after the train."""
    clock, channel = _Clock(), MemoryChannel()
    receiver = Receiver(channel, SPECS, clock=clock)
    channel.inbox.append(encode_probe_announce(7, messages, messages * payload,
                                               MAX_PROBE_WAIT_S))  # real clock: the longest
    assert receiver.messages() == [] and receiver.probing

    def crossing_s(parts: list[bytes]) -> float:
        return sum(map(len, parts)) * 8 / (mbps * BITS_PER_MBIT)

    t = 1_000.0
    frame = restamp(encode_probe_padding(5, 32_000) if stale else encode_data(
        0, t, {"x": np.zeros((1, FLOATS), np.float32)}, SPECS), t)
    train_s = t + stamped_after * crossing_s(frame)
    train = [restamp(encode_probe_padding(7, payload), train_s) for _ in range(messages)]
    free_s = t
    for parts in [frame, *train]:
        free_s += crossing_s(parts)
        clock.now_s = free_s
        channel.inbox.append(parts)
        for message in receiver.messages(limit=1):
            receiver.done(message.seq)
    assert receiver.counters.probes_exact == 1
    return receiver


def test_a_train_stamped_late_in_a_frames_crossing_reads_the_link_rate():
    """Failed before: 1.43x the link's rate (the frame's 32 kB counted over 10% of its time)."""
    receiver = _train_after_a_frame(200.0, stamped_after=0.9)
    assert receiver.meter.exact_mbps == pytest.approx(200.0, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(mbps=st.floats(5.0, 1000.0), stamped_after=st.floats(0.0, 0.999),
       messages=st.integers(2, 8))
def test_a_train_behind_a_frame_reads_the_link_rate(mbps, stamped_after, messages):
    receiver = _train_after_a_frame(mbps, stamped_after, messages)
    assert receiver.meter.exact_mbps == pytest.approx(mbps, rel=1e-6)


def test_a_train_behind_a_stale_trains_message_reads_the_link_rate():
    """The link carries what is ahead of the train whatever it is: a message of a train whose
    wait ran out counts as a frame would (failed before: 0.95x, its time charged to the
    train)."""
    receiver = _train_after_a_frame(200.0, stamped_after=0.9, stale=True)
    assert receiver.meter.exact_mbps == pytest.approx(200.0, rel=1e-6)
