"""The hop meter is not walked down by a probe train sharing a nearly saturated link (issue 11).

Seen in ``bench/bench_adapt.py`` (EfficientNet-B0 on the narrow split, 20 Mbit/s): a stage
probes its hop on a duty cycle while frames are in flight; the frames sent after the train
queue behind it, and the busy period they continue spans the train's time on the wire while
counting only the frames' bytes — a sample slow by the train's share. Two such samples are
a "step" down (the estimate fell to 8.4, then 9.9 Mbit/s, on the 20 Mbit/s link) and the
controller then took a burst's lower bound as overruling it.

Oracle: a FIFO link of known rate simulated here, carrying frames (a sender computing about
as fast as the link carries, jittered, within a window) and probe trains at random moments;
the real :class:`Receiver` reads every message at the time the simulation says (read delays
jittered). Its meter must never step, and never read the link a step slower than it is.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memchannel import MemoryChannel

from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import encode_data, encode_probe_padding, restamp
from hwsched.runtime.reliable import STEP_FACTOR, Receiver

FLOATS = 8_000  # a 32 kB frame
SPECS = {"x": TensorSpec("x", (1, FLOATS), "float32")}
WINDOW = 8
BITS_PER_MBIT = 1e6


class _Clock:
    now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


def _frame(seq: int, sent_s: float) -> list[bytes]:
    parts = encode_data(seq, sent_s, {"x": np.zeros((1, FLOATS), np.float32)}, SPECS)
    return restamp(parts, sent_s)


def _stream(mbps: float, pace: tuple[float, float], read_delay: float, trains: float,
            frames: int, seed: int):
    """``(read_s, parts, is_frame)`` in read order: frames computed every ``pace`` × their
    time on the wire (uniform), at most WINDOW unread; before a frame, with probability
    ``trains``, a train of 2–6 probe messages of half a frame each goes on the link first.
    Each message is read when it has crossed plus a delay up to ``read_delay`` × a frame's
    time on the wire (in order)."""
    rng = random.Random(seed)
    frame_bytes = sum(len(p) for p in _frame(0, 1.0))
    wire_s = frame_bytes * 8 / (mbps * BITS_PER_MBIT)
    link_free_s, last_read_s, frame_reads, sent_s = 1_000.0, 1_000.0, [], 1_000.0
    for seq in range(frames):
        window_s = frame_reads[seq - WINDOW] if seq >= WINDOW else 0.0
        sent_s = max(sent_s, window_s) + wire_s * rng.uniform(*pace)
        if rng.random() < trains:
            for k in range(rng.randint(2, 6)):
                padding = encode_probe_padding(7, frame_bytes // 2)
                stamped = restamp(padding, sent_s + k * 1e-5)
                link_free_s = max(sent_s, link_free_s) + sum(map(len, stamped)) * 8 / (
                    mbps * BITS_PER_MBIT)
                last_read_s = max(last_read_s, link_free_s + rng.uniform(0, read_delay) * wire_s)
                yield last_read_s, stamped, False
            sent_s += 1e-4  # the sender resumes its frames once the train is handed over
        link_free_s = max(sent_s, link_free_s) + wire_s
        last_read_s = max(last_read_s, link_free_s + rng.uniform(0, read_delay) * wire_s)
        frame_reads.append(last_read_s)
        yield last_read_s, _frame(seq, sent_s), True


def _metered(mbps, pace, read_delay, trains, seed, frames=300):
    clock, channel = _Clock(), MemoryChannel()
    receiver = Receiver(channel, SPECS, clock=clock)
    lowest = None
    for read_s, parts, is_frame in _stream(mbps, pace, read_delay, trains, frames, seed):
        clock.now_s = read_s
        channel.inbox.append(parts)
        for message in receiver.messages(limit=1):
            receiver.done(message.seq)
        if is_frame and receiver.meter.exact_mbps is not None:
            lowest = min(lowest or np.inf, receiver.meter.exact_mbps)
    return receiver.meter, lowest


@settings(max_examples=60, deadline=None)
@given(mbps=st.floats(5.0, 200.0), slow=st.floats(0.7, 1.0), fast=st.floats(1.0, 1.4),
       read_delay=st.floats(0.0, 0.5), seed=st.integers(0, 2**32))
def test_no_step_on_a_steady_nearly_saturated_link_with_probe_trains(
        mbps, slow, fast, read_delay, seed):
    """A steady link, a sender about as fast as it, trains now and then: no step, and the
    estimate never a step below the link (failed before: the periods spanning a train read
    slow by its share, and two in a row stepped the estimate down)."""
    meter, lowest = _metered(mbps, (slow, fast), read_delay, 0.05, seed)
    assert meter.steps == 0
    assert lowest is None or lowest > mbps / STEP_FACTOR


def test_the_steady_link_property_is_not_vacuous():
    """The property's stream saturates the link: its estimate is the link's rate."""
    meter, _ = _metered(20.0, (0.5, 0.9), 0.0, 0.05, seed=3)
    assert meter.exact_mbps == pytest.approx(20.0, rel=0.05)


def test_a_frame_queued_behind_a_train_reads_the_link_rate():
    """The case itself: a frame in flight, a train sent behind it, the next frame behind the
    train — the busy period counts the train's bytes, and reads the link's rate."""
    clock, channel = _Clock(), MemoryChannel()
    receiver = Receiver(channel, SPECS, clock=clock)
    mbps = 20.0
    frame_bytes = sum(len(p) for p in _frame(0, 1.0))

    def crossing_s(wire_bytes: int) -> float:
        return wire_bytes * 8 / (mbps * BITS_PER_MBIT)

    # two frames stamped at once: the second a busy period's first sample
    t = 1_000.0
    messages = [(_frame(0, t), True), (_frame(1, t), True)]
    messages += [(restamp(encode_probe_padding(7, 4 * frame_bytes), t + 0.001), False)]
    messages += [(_frame(2, t + 0.002), True)]
    free_s = t
    for parts, _ in messages:
        free_s += crossing_s(sum(map(len, parts)))
        clock.now_s = free_s
        channel.inbox.append(parts)
        for message in receiver.messages(limit=1):
            receiver.done(message.seq)
    assert receiver.meter.exact_mbps == pytest.approx(mbps, rel=1e-6)


def test_a_train_queued_behind_a_frame_reads_the_link_rate():
    """The mirror case: a train sent while a frame was on the wire is timed from its first
    stamp, and the frame ahead of it took part of that time — counted, the train reads the
    link's rate (failed before: slower by the frame's share, and an exact train a step below
    the estimate replaces it)."""
    from hwsched.runtime.frames import MAX_PROBE_WAIT_S, encode_probe_announce

    clock, channel = _Clock(), MemoryChannel()
    receiver = Receiver(channel, SPECS, clock=clock)
    mbps, t, messages, payload = 20.0, 1_000.0, 4, 16_000
    # the receiver's wait runs on the real clock: the longest, for a loaded machine
    channel.inbox.append(encode_probe_announce(7, messages, messages * payload,
                                               MAX_PROBE_WAIT_S))
    assert receiver.messages() == [] and receiver.probing
    frame = _frame(0, t)
    train = [restamp(encode_probe_padding(7, payload), t + 0.001) for _ in range(messages)]
    free_s = t
    for parts in [frame, *train]:
        free_s += sum(map(len, parts)) * 8 / (mbps * BITS_PER_MBIT)
        clock.now_s = free_s
        channel.inbox.append(parts)
        for message in receiver.messages(limit=1):
            receiver.done(message.seq)
    assert receiver.counters.probes_exact == 1
    assert receiver.meter.exact_mbps == pytest.approx(mbps, rel=1e-6)
