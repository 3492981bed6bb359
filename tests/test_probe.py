"""Active capacity probes (issue 11's switch back): the wire format, the handshake and the
estimate with a fake clock over a simulated FIFO link (the oracle: known bytes over known
times), the duty cycle, and that a probe never reaches a model or a sink."""

from __future__ import annotations

import itertools
import math
import struct
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from memchannel import MemoryChannel

from hwsched.deployment import TensorSpec
from hwsched.runtime.controller import (
    DEFAULT_MARGIN,
    STALE_DRIFT,
    STRONG_EVIDENCE_FACTOR,
    AlternativeCost,
    Measured,
)
from hwsched.runtime.frames import (
    HEADER,
    KIND_ACK,
    FrameError,
    Report,
    decode_message,
    encode_control,
    encode_data,
    encode_probe_announce,
    encode_probe_padding,
    encode_probe_ready,
)
from hwsched.runtime.probe import (
    MAX_PROBE_STALL_S,
    MAX_TRAIN_S,
    MIN_DISPERSION_S,
    MIN_PROBE_BYTES,
    PROBE_DUTY,
    PROBE_INTERVAL_S,
    ProbePlanner,
    ProbeTrain,
    make_train,
    probe_could_switch,
    probe_size_bytes,
)
from hwsched.runtime.reliable import Receiver, Sender

SPEC = TensorSpec("x", (1, 2), "float32")
SPECS = {"x": SPEC}
BITS_PER_MBIT = 1e6


def _version(parts: list[bytes]) -> int:
    return HEADER.unpack_from(parts[0])[1]


def _with_version(parts: list[bytes], version: int) -> list[bytes]:
    first = bytearray(parts[0])
    first[4] = version
    return [bytes(first), *parts[1:]]


# -- the wire ------------------------------------------------------------------------------
def test_probe_messages_round_trip_and_only_they_are_version_3():
    announce = decode_message(encode_probe_announce(7, 32, 70_000, 0.25), SPECS)
    assert (announce.kind, announce.seq, announce.probe.phase) == ("probe", 7, "announce")
    assert (announce.probe.messages, announce.probe.train_bytes, announce.probe.wait_s) == (
        32, 70_000, 0.25)
    assert decode_message(encode_probe_ready(7), SPECS).probe.phase == "ready"
    padding = decode_message(encode_probe_padding(7, 2048), SPECS)
    assert (padding.probe.phase, padding.tensors, padding.payload_bytes) == ("padding", {}, 0)
    assert {_version(encode_probe_ready(1)), _version(encode_probe_padding(1, 8))} == {3}
    data = encode_data(0, 0.0, {"x": np.zeros((1, 2), np.float32)}, SPECS)
    assert {_version(data), _version(encode_control(KIND_ACK, 1))} == {2}  # v2 readers: as before


@pytest.mark.parametrize("parts, message", [
    (_with_version(encode_probe_ready(1), 2), "came with version 3"),
    (encode_probe_announce(1, 0, 0, 0.1), "announces 0 messages"),
    (encode_probe_announce(1, 4, 100, math.nan), "wait of nan"),
    (encode_probe_announce(1, 10**6, 100, 0.1), "announces 1000000 messages"),
    ([encode_probe_padding(1, 64)[0][:-1]], "one frame with a 64 B body"),
])
def test_a_bad_probe_message_is_refused(parts, message):
    with pytest.raises(FrameError, match=message):
        decode_message(parts, SPECS)


def test_padding_larger_than_the_hop_admits_is_refused():
    with pytest.raises(FrameError, match="exceeds 100 B"):
        decode_message(encode_probe_padding(1, 101), SPECS, max_payload_bytes=100)


# -- handshake and estimate over a simulated link ------------------------------------------
class _FakeClock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def _probe_through_link(train: ProbeTrain, mbps: float, latency_s: float,
                        busy_during_s: float = 0.0, bucket_bytes: int = 0) -> Receiver:
    """Announce ``train`` from a sender to a receiver over a simulated FIFO link of ``mbps``
    and ``latency_s``: the sender stamps every message at ``t0`` (back to back), the receiver
    reads message ``i`` when its last byte has crossed (``t0 + latency + bytes so far /
    rate``; behind a full token bucket of ``bucket_bytes``, the first that many cross at
    once). ``busy_during_s``: computing time the receiver reports meanwhile."""
    t0 = 1_000.0
    clock = _FakeClock(t0)
    up, down = MemoryChannel(), MemoryChannel()
    sender = Sender(up, clock=clock)
    receiver = Receiver(down, SPECS, clock=clock)
    assert sender.start_probe(train)
    down.inbox.extend(up.sent)
    up.sent.clear()
    assert receiver.messages() == [] and receiver.probing
    up.inbox.extend(down.sent)  # the ready
    sender.acks()
    assert len(up.sent) == train.messages
    bytes_per_s, crossed = mbps * BITS_PER_MBIT / 8, 0
    for parts in up.sent:
        crossed += sum(len(p) for p in parts)
        clock.now_s = t0 + latency_s + max(0, crossed - bucket_bytes) / bytes_per_s
        down.inbox.append(parts)
        assert receiver.messages(limit=1, busy_s=busy_during_s) == []
    assert crossed == train.train_bytes
    return receiver


@settings(max_examples=60, deadline=None)
@given(mbps=st.floats(1.0, 2000.0), latency_s=st.floats(0.0, 0.005),
       size=st.integers(MIN_PROBE_BYTES, 1 << 20), payload=st.integers(512, 65_536))
def test_a_probe_measures_known_bytes_over_known_time_and_never_overshoots(
        mbps, latency_s, size, payload):
    train = make_train(size, payload, known_mbps=mbps / 10)
    receiver = _probe_through_link(train, mbps, latency_s)
    expected = train.train_bytes * 8 / BITS_PER_MBIT / (latency_s + train.train_bytes * 8
                                                        / (mbps * BITS_PER_MBIT))
    assert receiver.meter.exact_mbps == pytest.approx(expected, rel=1e-9)
    assert receiver.meter.exact_mbps <= mbps * (1 + 1e-9) and receiver.meter.at_least_mbps is None
    assert not receiver.probing and receiver.counters.probes_exact == 1


@settings(max_examples=60, deadline=None)
@given(mbps=st.floats(1.0, 2000.0), bucket=st.integers(1_000, 32_000),
       messages=st.integers(2, 64))
def test_a_token_buckets_burst_does_not_make_a_probe_overshoot(mbps, bucket, messages):
    """Oracle: a full token bucket lets its first ``bucket`` bytes through at once, the rest at
    the rate. A train whose first message is at least a bucket long, and whose rest takes
    MIN_DISPERSION_S or more, reads at the link's rate (before the dispersion cap, 64 KiB
    behind a 16 kB bucket read a third too fast)."""
    payload = 32_768
    train = ProbeTrain(messages, payload, messages * (HEADER.size + payload), 1.0)
    rest_s = (messages - 1) * (HEADER.size + payload) * 8 / (mbps * BITS_PER_MBIT)
    assume(rest_s >= MIN_DISPERSION_S)
    receiver = _probe_through_link(train, mbps, 0.0, bucket_bytes=bucket)
    assert receiver.meter.exact_mbps == pytest.approx(mbps, rel=1e-9)


def test_a_probe_the_receiver_computed_during_is_only_a_bound():
    """A receiver that computed while the train arrived read it late: the figure is kept as a
    lower bound, never as the link's rate (and the old exact estimate stays)."""
    train = make_train(MIN_PROBE_BYTES, 4096, known_mbps=10.0)
    receiver = _probe_through_link(train, 100.0, 0.001, busy_during_s=0.3)
    assert receiver.meter.exact_mbps is None and 0 < receiver.meter.at_least_mbps < 100.0
    assert (receiver.counters.probes_exact, receiver.counters.probes_bound) == (0, 1)


def test_probes_interleaved_with_frames_never_reach_the_caller():
    """Frames around and between a probe's messages come out, each once and in order; the
    probe's messages never do, and count in no frame's bytes."""
    channel = MemoryChannel()
    receiver = Receiver(channel, SPECS)

    def frame(seq: int) -> list[bytes]:
        return encode_data(seq, 0.0, {"x": np.full((1, 2), seq, np.float32)}, SPECS)

    channel.inbox.extend([frame(0), encode_probe_announce(3, 2, 200, 1.0), frame(1),
                          encode_probe_padding(3, 64), frame(2), encode_probe_padding(3, 64)])
    got = receiver.messages()
    assert [(m.kind, m.seq) for m in got] == [("data", 0), ("data", 1), ("data", 2)]
    assert receiver.counters.payload_bytes == 3 * 8 and receiver.counters.rejected == 0
    assert (receiver.counters.probes, receiver.counters.probe_bytes) == (1, 128)
    assert [decode_message(m, {}).kind for m in channel.sent] == ["probe"]  # the ready only


def test_a_train_that_does_not_come_stops_the_wait():
    receiver = Receiver(MemoryChannel(), SPECS)
    receiver.channel.inbox.append(encode_probe_announce(1, 4, 400, 0.01))
    receiver.messages()
    assert receiver.probing
    limit = time.monotonic() + 30.0  # a bound for a loaded machine, not a measurement
    while receiver.probing and time.monotonic() < limit:
        time.sleep(0.005)
    assert not receiver.probing and receiver.meter.mbps is None


def test_a_ready_for_another_probe_sends_nothing():
    up = MemoryChannel()
    sender = Sender(up)
    sender.start_probe(make_train(MIN_PROBE_BYTES, 4096, 10.0))
    up.inbox.append(encode_probe_ready(99))
    sender.acks()
    assert len(up.sent) == 1 and sender.counters.probe_bytes == 0  # the announce only


# -- when to probe -------------------------------------------------------------------------
@pytest.mark.parametrize("exact, least, probes", [
    (20.0, 8.0, True),  # a bound since the last exact rate: the link is not saturated
    (None, 8.0, True),
    (20.0, None, False),  # saturated and measured
    (None, None, False),  # nothing known
])
def test_a_probe_is_sized_only_for_a_link_known_by_a_bound(exact, least, probes):
    assert (probe_size_bytes(exact, least) is not None) == probes


def _ips(stage_ms: tuple[float, float], hop_bytes: int, mbps: float) -> float:
    """The test's own throughput: one over the slowest stage or the hop at ``mbps``."""
    hop_ms = 0.0 if math.isinf(mbps) else hop_bytes * 8 / (mbps * 1e3)
    return 1e3 / max(*stage_ms, hop_ms)


@settings(max_examples=200, deadline=None)
@given(wide=st.tuples(st.floats(0.1, 50.0), st.floats(0.1, 50.0)),
       narrow=st.tuples(st.floats(0.1, 50.0), st.floats(0.1, 50.0)),
       wide_bytes=st.integers(1_000, 10**6), known=st.floats(0.1, 2000.0))
def test_a_probe_is_called_for_exactly_when_a_faster_link_would_switch_or_try(
        wide, narrow, wide_bytes, known):
    """Oracle: two splits priced by hand (slowest stage or hop); on the narrow one (16 B
    across), a probe is called for iff the wide one does not beat it by the margin at the
    known rate, but on an infinitely fast link beats it by the margin — or earns a trial
    there (within the host's drift of it, no link limiting it at a quarter of the rate)
    and does not at the known rate; a trial only for a wide split that ran."""
    costs = (AlternativeCost(0, (3,), wide, {1: wide_bytes}, {1: None}),
             AlternativeCost(1, (6,), narrow, {1: 16}, {1: None}))

    def better(mbps: float) -> bool:
        return _ips(wide, wide_bytes, mbps) > _ips(narrow, 16, mbps) * (1 + DEFAULT_MARGIN)

    def trial(mbps: float) -> bool:
        ips = _ips(wide, wide_bytes, mbps)
        free = _ips(wide, wide_bytes, mbps / STRONG_EVIDENCE_FACTOR) >= ips * (1 - 1e-9)
        return free and ips * (1 + STALE_DRIFT) > _ips(narrow, 16, mbps)

    expected = not better(known) and (better(math.inf) or (trial(math.inf) and not trial(known)))
    ran = Measured(busy_ms={(0, 0): wide[0], (1, 0): wide[1]})  # the wide split ran: stale
    assert probe_could_switch(costs, ran, 1, current=1, known_mbps=known) == expected
    # never ran: no trial to earn (its price is the fresh one), only a switch
    never = not better(known) and better(math.inf)
    assert probe_could_switch(costs, Measured(), 1, current=1, known_mbps=known) == never


def _planner(known: float, max_payload_bytes: int = 8192) -> ProbePlanner:
    """A planner on the narrow split (alternative 1) of two where only a fast link favours the
    wide one (alternative 0), with the hop known at ``known`` Mbit/s by a bound."""
    costs = (AlternativeCost(0, (3,), (1.0, 1.0), {1: 10**9}, {1: None}),
             AlternativeCost(1, (6,), (2.0, 0.1), {1: 16}, {1: None}))
    planner = ProbePlanner(1, costs, max_payload_bytes=max_payload_bytes)
    planner.note(Report(2, 1, None, None, 1, 0.0, known))
    return planner


@settings(max_examples=60, deadline=None)
@given(known=st.floats(6.0, 2000.0), step_s=st.floats(0.001, 0.2), span_s=st.floats(5.0, 120.0))
def test_probes_take_at_most_their_duty_of_the_link_and_one_per_interval(known, step_s, span_s):
    """Oracle: the planner asked at every ``step_s`` for ``span_s`` with the link known at
    ``known`` Mbit/s (a bound): the trains' bytes stay within the duty cycle of the known rate
    (plus the first train), and two probes are an interval apart."""
    planner = _planner(known)
    sent: list[tuple[float, int]] = []
    for k in range(int(span_s / step_s)):
        train = planner.due(k * step_s, alternative=1)
        if train is not None:
            sent.append((k * step_s, train.train_bytes))
    assert sent
    budget = PROBE_DUTY * known * BITS_PER_MBIT / 8 * (sent[-1][0] - sent[0][0])
    assert sum(b for _, b in sent[1:]) <= budget * (1 + 1e-9)
    assert all(b - a >= PROBE_INTERVAL_S for (a, _), (b, _) in itertools.pairwise(sent))


def test_a_link_too_slow_for_a_short_train_is_not_probed():
    """64 KiB take more than MAX_TRAIN_S below about 5.2 Mbit/s: the receiver would pause
    longer than a probe is worth."""
    slowest = MIN_PROBE_BYTES * 8 / MAX_TRAIN_S / BITS_PER_MBIT
    assert _planner(slowest * 0.9).due(0.0, alternative=1) is None
    assert _planner(slowest * 1.1).due(0.0, alternative=1) is not None


def test_a_receiver_pauses_for_a_train_no_longer_than_its_cap():
    receiver = Receiver(MemoryChannel(), SPECS)
    receiver.channel.inbox.append(encode_probe_announce(1, 4, 400, 10.0))  # asks for 10 s
    receiver.messages()
    assert receiver.probing
    assert receiver.probe_wait.until_s <= time.monotonic() + MAX_PROBE_STALL_S


def test_the_planner_probes_only_its_hop_and_only_when_a_faster_link_would_switch():
    planner = _planner(20.0, max_payload_bytes=2048)
    assert planner.due(0.0, alternative=0) is None  # the wide split: nothing better if faster
    train = planner.due(0.0, alternative=1)
    assert train is not None and train.payload_bytes == 2048
    assert train.train_bytes >= MIN_PROBE_BYTES and planner.due(0.1, alternative=1) is None
    other_hop = _planner(20.0)
    other_hop.latest = None
    other_hop.note(Report(1, 0, None, None, 1, 0.0, 20.0))  # another hop's report
    assert other_hop.due(0.0, alternative=1) is None


def test_the_announce_record_is_what_the_receiver_waits_for():
    train = make_train(100_000, 4096, known_mbps=20.0)
    (frame,) = encode_probe_announce(0, train.messages, train.train_bytes, train.wait_s)
    assert struct.unpack_from("<IQd", frame, HEADER.size) == (
        train.messages, train.train_bytes, train.wait_s)


def test_a_stage_takes_the_users_switch_margin_for_its_probe_decision():
    """``emulate --margin`` reached the controller but not the stages, which decided whether
    to probe with the default margin."""
    from hwsched.runtime.cli import _options, build_parser

    stage = ["plan", "--stage", "1", "--listen", "tcp://127.0.0.1:1", "--next",
             "tcp://127.0.0.1:2"]
    for extra, expected in ((["--margin", "0.35"], 0.35), ([], None)):
        args = build_parser().parse_args([*stage, *extra])
        args.started_s = 0.0  # main() sets it
        assert _options(args).margin == expected
