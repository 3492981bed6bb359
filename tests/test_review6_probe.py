"""Review 6: the capacity probe's handshake under the timing a real stage loop gives it."""

from __future__ import annotations

import types

import pytest
from memchannel import MemoryChannel

from hwsched.deployment import TensorSpec
from hwsched.runtime import reliable
from hwsched.runtime.frames import (
    decode_message,
    encode_probe_announce,
    encode_probe_padding,
)
from hwsched.runtime.probe import PROBE_INTERVAL_S
from hwsched.runtime.reliable import Receiver

SPECS = {"x": TensorSpec("x", (1, 2), "float32")}


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock for the reliable layer (the receiver's pause and its gate)."""
    now = types.SimpleNamespace(s=1000.0)
    fake = types.SimpleNamespace(monotonic=lambda: now.s, time=lambda: now.s,
                                 perf_counter=lambda: now.s)
    monkeypatch.setattr(reliable, "time", fake)
    return now


def _readies(channel: MemoryChannel) -> list[int]:
    return [m.seq for m in (decode_message(p, {}) for p in channel.sent)
            if m.kind == "probe" and m.probe.phase == "ready"]


def _answer(receiver: Receiver, clock, probe_id: int, read_at_s: float) -> None:
    clock.s = read_at_s
    receiver.channel.inbox.append(encode_probe_announce(probe_id, 2, 2 * 1100, 0.2))
    receiver.messages()


def _train(receiver: Receiver, clock, probe_id: int, read_at_s: float) -> None:
    clock.s = read_at_s
    for _ in range(2):
        receiver.channel.inbox.append(encode_probe_padding(probe_id, 1024))
    receiver.messages()


def test_announces_an_interval_apart_are_answered_when_the_first_was_read_late(clock):
    """The planner spaces announces PROBE_INTERVAL_S apart; a stage reads one when its loop
    gets to it, a frame's compute later when busy, at once when idle. Announce 0 read 30 ms
    late, announce 1 read 5 ms late: 475 ms between the reads, and the second must still be
    answered (it was refused: the gate was exactly the sender's spacing)."""
    receiver = Receiver(MemoryChannel(), SPECS)
    t0 = 1000.0
    _answer(receiver, clock, 0, t0 + 0.030)
    _train(receiver, clock, 0, t0 + 0.060)  # the train came: the pause lasted 30 ms
    assert not receiver.probing
    _answer(receiver, clock, 1, t0 + PROBE_INTERVAL_S + 0.005)
    assert _readies(receiver.channel) == [0, 1]


def test_a_peer_announcing_without_end_pauses_the_receiver_half_the_time_at_most(clock):
    receiver = Receiver(MemoryChannel(), SPECS)
    paused_s, t, step_s = 0.0, 1000.0, 0.01
    for probe_id in range(2000):  # an announce every 10 ms, never a train
        _answer(receiver, clock, probe_id, t)
        if receiver.probing:
            paused_s += step_s
        t += step_s
    assert paused_s <= 0.52 * 2000 * step_s  # half, and a step of the fake clock per pause
    assert len(_readies(receiver.channel)) >= 2


def test_a_train_longer_than_the_high_water_mark_reaches_the_receiver_whole():
    """ZeroMQ takes a message only while its pipe holds fewer than the high-water mark (8): a
    train sent back to back stopped at about the 8th message, and the receiver then paused for
    the whole wait and measured nothing. A train of 1 MiB in 32 KiB messages (the planner's
    size for a hop known at 200 Mbit/s, its largest tensor 32 KiB) is 32 messages."""
    import time

    from hwsched.runtime.probe import make_train
    from hwsched.runtime.reliable import Sender
    from hwsched.runtime.transport import ZmqChannel, parse_endpoint

    listen = ZmqChannel(parse_endpoint("tcp://127.0.0.1:0", listen=True), listen=True,
                        max_message_bytes=1 << 20, hwm=8)
    connect = ZmqChannel(parse_endpoint(listen.bound_url, listen=False), listen=False,
                         max_message_bytes=1 << 20, hwm=8)
    try:
        receiver, sender = Receiver(listen, SPECS), Sender(connect)
        train = make_train(1 << 20, 32 << 10, known_mbps=200.0)
        assert train.messages == 32
        limit = time.monotonic() + 20.0  # a bound for a loaded machine, not a measurement
        while not sender.start_probe(train) and time.monotonic() < limit:
            time.sleep(0.01)  # the DEALER takes nothing before it is connected
        while not receiver.probing and time.monotonic() < limit:
            receiver.messages()
        assert receiver.probing
        while sender.probe is not None and time.monotonic() < limit:
            sender.acks()  # the ready: the train goes out
        assert sender.counters.probe_bytes == 32 * train.payload_bytes
        while receiver.probe_wait is not None and time.monotonic() < limit:
            receiver.messages()
        assert receiver.counters.probe_bytes == 32 * train.payload_bytes
        assert receiver.counters.probes_exact + receiver.counters.probes_bound == 1
    finally:
        connect.close()
        listen.close()
