"""Reliable reception: duplicates answered, and no peer can make a receiver hold without bound."""

from __future__ import annotations

import time

import numpy as np
from memchannel import MemoryChannel, RefusingChannel

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


def test_a_refused_send_is_retried_later_not_at_once(monkeypatch):
    """A next hop that stopped reading used to make its sender's loop spin: the refused frame
    stayed due, so the loop's wait was 0 and every pass tried again. Now the sender waits
    :data:`REFUSED_RETRY_S` (its loop sleeps until ``next_due_s``), then sends in order."""
    from hwsched.runtime import reliable
    from hwsched.runtime.reliable import REFUSED_RETRY_S, Sender

    now = [100.0]
    monkeypatch.setattr(reliable.time, "monotonic", lambda: now[0])
    channel = RefusingChannel()
    sender = Sender(channel, window=4, clock=lambda: 0.0)
    for seq in (1, 2):
        sender.send(seq, list(encode_data(seq, 0.0, {"x": np.zeros(SPEC.shape, np.float32)},
                                          SPECS)))
    assert channel.attempts == 1  # the first was refused; the second waits behind it
    for _ in range(100):  # a loop's passes before the retry time: no attempt
        sender.service()
    assert channel.attempts == 1
    assert sender.next_due_s() == now[0] + REFUSED_RETRY_S  # what the loop sleeps until
    now[0] += REFUSED_RETRY_S
    sender.service()
    assert channel.attempts == 2 and not channel.sent  # still full: wait again
    assert sender.next_due_s() == now[0] + REFUSED_RETRY_S
    channel.open = True
    now[0] += REFUSED_RETRY_S
    sender.service()
    assert [reliable.decode_message(p, SPECS).seq for p in channel.sent] == [1, 2]
    assert sender.next_due_s() == now[0] + sender.resend_after_s  # then only resends are due


def test_a_wait_shorter_than_a_millisecond_still_waits():
    """pyzmq's poll drops a timeout's fraction of a millisecond: a loop whose next timer was
    0.9 ms away (a refused send's retry, a resend) polled with 0 and spun until it was due.
    The waiter rounds up: with nothing to wake it, it waits at least what it was asked."""
    import socket

    from hwsched.runtime.transport import Waiter

    quiet, _other_end = socket.socketpair()
    try:
        waiter = Waiter([], wake_fds=(quiet.fileno(),))
        for asked_s in (0.0002, 0.0009):
            started = time.perf_counter()
            waiter.wait(asked_s)
            assert time.perf_counter() - started >= asked_s
    finally:
        quiet.close()
        _other_end.close()
