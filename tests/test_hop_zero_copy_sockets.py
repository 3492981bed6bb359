"""The in-place stamp over real ZeroMQ sockets: no receiver ever reads a byte the sender did
not mean to send at the moment it handed the message over.

A frame of 64 KB or more is sent zero-copy (``copy=False`` above pyzmq's copy threshold): the
I/O thread reads the sender's own ``bytearray`` after ``send`` returned. The sender stamps a
fresh message in place, a fan-out's two downstreams share one encoding, sends are refused at
a high-water mark of 1 and retried, and every frame is resent once (the receiver releases it
unacknowledged the first time). The oracle: the bytes of every message at the moment a send
succeeded (snapshotted before the call, so a later change shows up as a mismatch), against
the bytes each receiver read.
"""

from __future__ import annotations

import numpy as np
from waiting import wait_until

from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import decode_message, encode_data
from hwsched.runtime.reliable import Receiver, Sender
from hwsched.runtime.transport import Channel, Waiter, open_channel

FLOATS = 64 * 1024  # 256 KB: well above pyzmq's zero-copy threshold
FRAMES = 24


class _Recording(Channel):
    """A real channel that remembers the bytes of every message it accepted, as they were
    when it was handed them."""

    def __init__(self, channel: Channel) -> None:
        self.channel, self.accepted, self.refused = channel, [], 0

    def send(self, parts, peer: bytes = b"") -> bool:
        snapshot = tuple(bytes(p) for p in parts)
        if not self.channel.send(parts, peer):
            self.refused += 1
            return False
        self.accepted.append(snapshot)
        return True

    def receive(self):
        return self.channel.receive()

    def poll_handle(self):
        return self.channel.poll_handle()

    def close(self) -> None:
        self.channel.close()


def _tensor(seq: int) -> np.ndarray:
    return np.full((1, FLOATS), seq, np.float32) + np.arange(FLOATS, dtype=np.float32)


def test_receivers_read_exactly_what_each_send_handed_over():
    specs = {"x": TensorSpec("x", (1, FLOATS), "float32")}
    ups = [open_channel("tcp://127.0.0.1:0", listen=True, specs=specs, hwm=1) for _ in "ab"]
    downs = [_Recording(open_channel(u.bound_url, listen=False, specs=specs, hwm=1))
             for u in ups]
    senders = [Sender(d, window=4, resend_after_s=0.05) for d in downs]
    receivers = [Receiver(u, specs, window=4) for u in ups]
    released: list[set[int]] = [set(), set()]
    read: list[list[tuple[bytes, ...]]] = [[], []]
    done: list[set[int]] = [set(), set()]
    waiter = Waiter([*ups, *downs])
    state = {"next": 0}

    def step() -> bool:
        for sender in senders:
            sender.acks()
        seq = state["next"]
        if seq < FRAMES and all(s.has_room() for s in senders):
            shared = encode_data(seq, 1.0, {"x": _tensor(seq)}, specs)
            for sender in senders:  # a fan-out: both downstreams get the same encoding
                sender.send(seq, shared)
            state["next"] += 1
        for i, (up, receiver) in enumerate(zip(ups, receivers, strict=True)):
            _read_into(up, receiver, read[i], released[i], done[i])
        for sender in senders:
            sender.service()
        waiter.wait(0.01)
        return all(len(d) == FRAMES for d in done)

    try:
        wait_until(step, what="every frame read by both downstreams")
    finally:
        for channel in (*ups, *downs):
            channel.close()
    for i, down in enumerate(downs):
        meant = set(down.accepted)
        assert all(parts in meant for parts in read[i])  # not a byte changed after handing
        for parts in read[i]:
            message = decode_message(list(parts), specs)
            assert np.array_equal(message.tensors["x"], _tensor(message.seq))
    assert sum(s.counters.resent for s in senders) >= 2 * FRAMES  # every frame resent
    stamps = [{(m.seq, m.sent_s) for m in (decode_message(list(p), specs) for p in r)}
              for r in read]
    assert stamps[0] & stamps[1]  # the fan-out's second send shared the first's stamp
    assert sum(d.refused for d in downs) > 0  # the high-water mark refused sends


def _read_into(up: Channel, receiver: Receiver, read: list, released: set, done: set) -> None:
    """Read what arrived; release each frame unacknowledged the first time (so its sender
    resends it), acknowledge it the second; keep every message's bytes."""
    while True:
        received = up.receive()
        if received is None:
            return
        read.append(tuple(bytes(p) for p in received[1]))
        receiver.channel = _Replay(up, received)
        for message in receiver.messages(limit=1):
            if message.seq in released:
                receiver.done(message.seq)
                done.add(message.seq)
            else:
                released.add(message.seq)
                receiver.release(message.seq)
        receiver.channel = up


class _Replay(Channel):
    """The real channel, whose next receive returns a message already taken from it."""

    def __init__(self, channel: Channel, received) -> None:
        self.channel, self.received = channel, received

    def send(self, parts, peer: bytes = b"") -> bool:
        return self.channel.send(parts, peer)

    def receive(self):
        received, self.received = self.received, None
        return received

    def poll_handle(self):
        return self.channel.poll_handle()

    def close(self) -> None:
        self.channel.close()


def test_a_waiting_loop_wakes_for_each_queued_message_read_one_at_a_time():
    """The read asks ZeroMQ for its events before receiving (which consumes the socket's
    edge-triggered notification): a message already queued when the loop waits must still
    end the wait at once, pass after pass, when each pass reads only one. A lost wake-up
    would wait the whole (minute-long) timeout."""
    import time

    specs = {"x": TensorSpec("x", (1, 4), "float32")}
    up = open_channel("tcp://127.0.0.1:0", listen=True, specs=specs)
    down = open_channel(up.bound_url, listen=False, specs=specs)
    waiter = Waiter([up])
    try:
        assert up.receive() is None  # the events asked with nothing queued
        for seq in range(20):
            wait_until(lambda seq=seq: down.send(
                encode_data(seq, 0.0, {"x": np.zeros((1, 4), np.float32)}, specs)),
                what="room to send")
        for seq in range(20):
            start = time.monotonic()
            waiter.wait(60.0)
            assert time.monotonic() - start < 30.0, f"waited out the timeout before {seq}"
            received = up.receive()
            assert received is not None, f"woke with nothing to read before frame {seq}"
            assert decode_message(received[1], specs).seq == seq
    finally:
        up.close()
        down.close()
