"""Reliability: nothing lost, nothing duplicated, even when a stage dies and restarts.

Every message carries a sequence number (frame ``i`` has seq ``i``; the end-of-stream marker
has seq ``N``). Acknowledgements are *custody transfers*: a stage acknowledges frame ``i`` to
its upstream only once its own result for ``i`` has been acknowledged downstream, and the sink
acknowledges on receipt. So an acknowledged frame has reached the sink, and a frame a killed
stage held is still unacknowledged upstream, which resends it to the restarted stage after
``resend_after_s``. Receivers drop duplicates (re-acknowledging ones already done), the sink
reorders by seq, and the source ends the stream only when every frame is acknowledged.

:class:`Sender` also bounds the frames in flight (``window``): with the transports'
high-water marks this is the pipeline's back-pressure. An optional ``delay_s`` holds each
message before it goes on the wire (link latency emulation; netem is not available).

Measurement rides on the same traffic: a sender stamps each message with the host time it puts
it on the wire (:func:`~hwsched.runtime.frames.restamp`), a receiver turns stamps and arrival
times into the hop's effective bandwidth (:class:`HopMeter`), and ``REPORT`` messages travel
upstream on the acknowledgement path (:meth:`Receiver.report`, :attr:`Sender.reports`).
When the traffic leaves the link idle, a sender may probe its capacity
(:meth:`Sender.start_probe`, :mod:`hwsched.runtime.probe`); the receiver answers and times the
probe itself (:attr:`Receiver.probing`), and no probe is ever a frame.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hwsched.deployment import TensorSpec
from hwsched.runtime.defaults import DEFAULT_RESEND_AFTER_S, DEFAULT_WINDOW
from hwsched.runtime.frames import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    HEADER_BYTES,
    KIND_ACK,
    FrameError,
    HopDecoder,
    Message,
    Report,
    decode_message,
    encode_control,
    encode_probe_announce,
    encode_probe_padding,
    encode_probe_ready,
    encode_report,
    restamp,
    stamp_for_send,
    unstamp,
)
from hwsched.runtime.probe import (
    MAX_PROBE_STALL_S,
    ProbeTrain,
    train_mbps,
)
from hwsched.runtime.transport import Channel

log = logging.getLogger("hwsched.runtime")

#: Control messages (acks) read per poll before the caller gets to compute again.
MAX_BATCH = 64
#: After the transport refuses a send (its queue full, or the peer away), the sender tries
#: again this much later (a message or a signal still wakes its loop at once): retrying at
#: once kept a loop whose next hop had stopped reading spinning on its core, taking it from
#: the model computing there.
REFUSED_RETRY_S = 0.001
#: Unfinished frames a receiver holds at most, in windows (a sender has at most one window
#: unacknowledged): a new frame beyond that is dropped, and resent later, so no peer can make
#: the receiver queue without bound. A count, not a distance from the first unfinished
#: sequence number: a restarted stage never sees the frames its predecessor finished.
MAX_HELD_WINDOWS = 4
#: Reports a sender keeps for its owner to take (older ones are dropped: best effort).
MAX_REPORTS = 256
#: Weight of a new bandwidth sample in the hop's smoothed estimate.
EWMA_ALPHA = 0.3
#: Two exact samples in a row this many times below (or above) the smoothed rate are a step of
#: the link, a fade or a recovery: the estimate restarts from them instead of smoothing its way
#: there (at EWMA_ALPHA a 50x drop takes 11 samples to come within 2x of the new rate). One
#: such sample alone is smoothed as usual: a host's hiccup is not a step.
STEP_FACTOR = 2.0
BITS_PER_BYTE = 8
BITS_PER_MBIT = 1e6
#: A busy period (messages queued back to back) gives a bandwidth sample once it spans this.
MIN_PERIOD_S = 0.05
#: A receiver that computed for more than this fraction of a period paced its own reads.
RECEIVER_BOUND_FRACTION = 0.5


class Throttle:
    """Log the 1st, 2nd, 4th, 8th… occurrence of each kind of repeated warning, with the count
    so far. A peer flooding bad or unwanted frames then costs log lines logarithmic in the
    flood (18 for 200,000 frames) instead of one per frame; counting rather than timing keeps
    what is logged deterministic.

    >>> throttle = Throttle()
    >>> [throttle.due("full") for _ in range(9)]
    [1, 2, None, 4, None, None, None, 8, None]
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def due(self, kind: str) -> int | None:
        """Count one occurrence of ``kind``; the count when it should be logged, else None."""
        count = self.counts.get(kind, 0) + 1
        self.counts[kind] = count
        return count if count & (count - 1) == 0 else None

    def warning(self, kind: str, message: str, *args: object) -> None:
        count = self.due(kind)
        if count is not None:
            suffix = "" if count == 1 else f" ({count} times so far; logging every doubling)"
            log.warning(message + suffix, *args)


@dataclass
class _Outstanding:
    parts: list[bytes]
    due_s: float
    sends: int = 0


@dataclass
class LinkCounters:
    """What a hop saw; ``send_s`` is time spent handing frames to the transport."""

    sent: int = 0
    resent: int = 0
    acked: int = 0
    duplicates: int = 0
    rejected: int = 0
    send_s: float = 0.0
    payload_bytes: int = 0
    #: Probes: announced (sender) or answered (receiver); padding bytes sent or read; trains
    #: the receiver timed exactly (``probes_exact``) or only as a bound (``probes_bound``).
    probes: int = 0
    probe_bytes: int = 0
    probes_exact: int = 0
    probes_bound: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


class Sender:
    """Windowed reliable sending to the next hop; ``clock``: the host time messages are
    stamped with (a test's fake clock)."""

    def __init__(self, channel: Channel, *, window: int = DEFAULT_WINDOW,
                 resend_after_s: float = DEFAULT_RESEND_AFTER_S, delay_s: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.channel, self.window, self.clock = channel, window, clock
        self.resend_after_s, self.delay_s = resend_after_s, delay_s
        self.outstanding: dict[int, _Outstanding] = {}
        #: No send is tried before this (:data:`REFUSED_RETRY_S` after a refusal).
        self.refused_until_s = 0.0
        self.counters = LinkCounters()
        self.throttle = Throttle()
        #: Reports that came back from downstream, oldest first, for the owner to take.
        self.reports: list[Report] = []
        #: The probe announced and not yet sent (id → train), and the next probe's id.
        self.probe: tuple[int, ProbeTrain] | None = None
        self.probe_ids = 0

    def has_room(self) -> bool:
        return len(self.outstanding) < self.window

    @property
    def idle(self) -> bool:
        return not self.outstanding

    def send(self, seq: int, parts: list[bytes]) -> None:
        self.outstanding[seq] = _Outstanding(parts, time.monotonic() + self.delay_s)
        self.service()

    def service(self) -> None:
        """Transmit what is due: first sends after the link delay, resends after the timeout;
        nothing until :data:`REFUSED_RETRY_S` after the transport refused one."""
        now = time.monotonic()
        if now < self.refused_until_s:
            return
        for seq, item in sorted(self.outstanding.items()):
            if item.due_s > now:
                continue
            start = time.perf_counter()
            parts, in_place = stamp_for_send(item.parts, self.clock(), item.sends == 0)
            if not self.channel.send(parts):
                if in_place:
                    unstamp(item.parts)
                self.refused_until_s = now + REFUSED_RETRY_S
                break  # transport full or peer away: keep order, retry a little later
            self.counters.send_s += time.perf_counter() - start
            self.counters.sent += 1
            self.counters.resent += item.sends > 0
            if item.sends > 0:
                log.info("resent frame %d (attempt %d)", seq, item.sends + 1)
            item.sends += 1
            item.due_s = now + self.resend_after_s

    def start_probe(self, train: ProbeTrain) -> bool:
        """Announce ``train``; it goes out when the receiver answers ready (a probe announced
        earlier and not answered is forgotten: its receiver was busy, gone or too old)."""
        probe_id = self.probe_ids
        if not self.channel.send(encode_probe_announce(probe_id, train.messages,
                                                       train.train_bytes, train.wait_s)):
            return False
        self.probe, self.probe_ids = (probe_id, train), probe_id + 1
        self.counters.probes += 1
        return True

    def _send_train(self, probe_id: int) -> None:
        """The announced train, back to back, each message stamped as it goes on the wire.
        A full transport is waited for, within the receiver's wait: ZeroMQ takes no more than
        its high-water mark (8 messages) before its I/O thread has moved them on, so a longer
        train sent without waiting was always cut short. A transport still full at the end of
        the wait ends the train (the receiver's wait runs out: no measurement)."""
        if self.probe is None or self.probe[0] != probe_id:
            return
        train = self.probe[1]
        self.probe = None
        parts = encode_probe_padding(probe_id, train.payload_bytes)
        until_s = time.monotonic() + min(train.wait_s, MAX_PROBE_STALL_S)  # as the receiver
        sent = 0
        while sent < train.messages:
            if self.channel.send(restamp(parts, self.clock())):
                sent += 1
                self.counters.probe_bytes += train.payload_bytes
                continue
            left_s = until_s - time.monotonic()
            if left_s <= 0 or not self.channel.wait_writable(left_s):
                break

    def next_due_s(self) -> float | None:
        """When :meth:`service` next has something to send (None: nothing outstanding)."""
        due = min((i.due_s for i in self.outstanding.values()), default=None)
        return None if due is None else max(due, self.refused_until_s)

    def take_reports(self) -> list[Report]:
        reports, self.reports = self.reports, []
        return reports

    def acks(self) -> list[int]:
        """Sequence numbers newly acknowledged by the next hop (reports coming back with them
        are kept in :attr:`reports`)."""
        acked = []
        for _ in range(MAX_BATCH):
            received = self.channel.receive()
            if received is None:
                break
            try:
                message = decode_message(received[1], {})
            except FrameError as error:
                self.counters.rejected += 1
                self.throttle.warning("malformed", "dropped a malformed acknowledgement: %s",
                                      error)
                continue
            if message.kind == "report" and message.report is not None:
                self.reports = [*self.reports[-(MAX_REPORTS - 1):], message.report]
                continue
            if message.kind == "probe" and message.probe is not None:
                if message.probe.phase == "ready":
                    self._send_train(message.seq)
                continue
            if message.kind != "ack":
                self.counters.rejected += 1
                self.throttle.warning("kind", "dropped a %s message on the acknowledgement path",
                                      message.kind)
                continue
            if self.outstanding.pop(message.seq, None) is not None:
                self.counters.acked += 1
                acked.append(message.seq)
        return acked


@dataclass
class _DoneSet:
    """Sequence numbers finished: a contiguous prefix plus the ones above it."""

    below: int = 0
    above: set[int] = field(default_factory=set)

    def add(self, seq: int) -> None:
        self.above.add(seq)
        while self.below in self.above:
            self.above.discard(self.below)
            self.below += 1

    def __contains__(self, seq: int) -> bool:
        return seq < self.below or seq in self.above


class HopMeter:
    """The bandwidth of a receiver's incoming hop, in Mbit/s, from the sender's stamp (when it
    put a message on the wire) and the time the receiver read it.

    * A *busy period* — consecutive messages, each stamped before its predecessor was read, so
      queued behind it — means the link delivered them back to back: their bytes over the time
      between the period's first and last read are the link's rate (bursty delivery, a token
      bucket's or TCP's, averages out over :data:`MIN_PERIOD_S`). These samples are exact, and
      smoothed (EWMA) into :attr:`exact_mbps`: they exist exactly when the link limits the
      stream, which is when its rate matters. Two in a row :data:`STEP_FACTOR` away from the
      estimate on the same side replace it (the later one): the link stepped
      (:attr:`steps`).
    * Anything else gives a lower bound, kept as the largest seen since the last exact sample
      (:attr:`at_least_mbps`): an *isolated* message (the link was idle before it) crossed in at
      most ``read - stamp``, latency and the wait to be read included — mostly latency for a
      small message on a fast link, so it says little about the rate; and a busy period during
      which the receiver computed more than half the time was paced by the receiver.

    The controller prices a hop from the exact rate while no larger bound contradicts it, and
    otherwise takes the plan's prediction capped by the bound: a link that is not saturated is
    assumed as fast as planned, until it saturates and is measured — or until the sender probes
    it (:meth:`observe_probe`), which it does when a faster link would change the split.

    Both use one clock for the stamp and the read: true under emulation (one host). Real boards
    need their clocks synchronised (PTP; NTP is coarse for small messages on fast links); the
    busy-period sample needs only the order of stamp and read, so a bounded offset errs by at
    most that offset per period.

    >>> meter = HopMeter()
    >>> meter.observe(125_000, sent_s=10.0, read_s=10.5, busy_s=0.0)  # isolated: ≥ 2 Mbit/s
    >>> meter.exact_mbps, meter.at_least_mbps
    (None, 2.0)
    >>> meter.observe(125_000, sent_s=10.4, read_s=10.6, busy_s=0.0)  # queued: 10 Mbit/s
    >>> round(meter.exact_mbps, 6), meter.at_least_mbps, round(meter.mbps, 6)
    (10.0, None, 10.0)
    """

    def __init__(self, alpha: float = EWMA_ALPHA) -> None:
        self.alpha = alpha
        self.exact_mbps: float | None = None
        self.at_least_mbps: float | None = None
        self.samples = 0
        #: Steps of the link seen (two samples in a row far from the estimate, same side).
        self.steps = 0
        self._step: tuple[float, float] | None = None  # (estimate before it, first sample)
        self._last_read_s: float | None = None
        self._period_start_s = 0.0
        self._period_busy_s = 0.0
        self._period_bytes = 0

    @property
    def mbps(self) -> float | None:
        """What is known of the rate: the exact estimate, or a larger lower bound."""
        known = [v for v in (self.exact_mbps, self.at_least_mbps) if v is not None]
        return max(known, default=None)

    def observe(self, wire_bytes: int, sent_s: float, read_s: float, busy_s: float) -> None:
        """One message of ``wire_bytes``; ``busy_s`` is the receiver's computing time so far."""
        if not self._chain(wire_bytes, sent_s, read_s, busy_s):
            if 0 < sent_s < read_s:
                self._take(wire_bytes / (read_s - sent_s), exact=False)
            return
        span_s = read_s - self._period_start_s
        if span_s >= MIN_PERIOD_S:
            receiver_bound = (busy_s - self._period_busy_s) / span_s > RECEIVER_BOUND_FRACTION
            self._take(self._period_bytes / span_s, exact=not receiver_bound)
            self._start_period(read_s, busy_s)

    def carried(self, wire_bytes: int, sent_s: float, read_s: float, busy_s: float) -> None:
        """A message the link carried that is no frame (a probe train's): no sample of its
        own (:meth:`observe_probe` times the train), but a busy period of frames it falls in
        counts its bytes, and the next frame queued behind it continues the period — else a
        train sent while frames were in flight made the frames behind it look slow by the
        train's time on the wire, and two such samples were a step down (bench_adapt: the
        estimate of EfficientNet-B0's 20 Mbit/s hop fell to 8.4 Mbit/s across a train).
        """
        self._chain(wire_bytes, sent_s, read_s, busy_s)

    def _chain(self, wire_bytes: int, sent_s: float, read_s: float, busy_s: float) -> bool:
        """Whether the message was queued behind its predecessor (stamped before that was
        read): then its bytes join the busy period; else a new period starts at its read."""
        queued = self._last_read_s is not None and 0 < sent_s <= self._last_read_s
        self._last_read_s = read_s
        if not queued:
            self._start_period(read_s, busy_s)
            return False
        self._period_bytes += wire_bytes
        return True

    def observe_probe(self, wire_bytes: int, sent_s: float, read_s: float, exact: bool,
                      first_bytes: int = 0, first_read_s: float | None = None) -> float | None:
        """A probe train of ``wire_bytes``, its first message (``first_bytes``) stamped
        ``sent_s`` and read at ``first_read_s``, its last read at ``read_s``
        (:func:`~hwsched.runtime.probe.train_mbps`); ``exact`` when the receiver only waited
        for it meanwhile. An exact train
        *replaces* the estimate: probes are sent while the link is not saturated, so the
        saturated samples smoothed so far are older and may predate a change of the link —
        unless it is within :data:`STEP_FACTOR` of the saturated estimate: then a slower train
        is smoothed in like a saturated sample and a faster one kept as a bound. A token
        bucket's burst lets a train's head through at once (the emulated 20 Mbit/s link's
        trains read 31 Mbit/s under load, and EfficientNet-B0 switched back to the wide split
        mid-fade on them), and a train's dispersion varies (one read 14.6 there: had it
        replaced the estimate, the next 31 Mbit/s train would have been a "step" above it); a
        recovery worth a switch is a step. Returns the train's rate (Mbit/s).

        >>> meter = HopMeter()
        >>> meter.observe(125_000, sent_s=10.4, read_s=10.5, busy_s=0.0)
        >>> meter.observe_probe(125_000, sent_s=11.0, read_s=11.25, exact=True)
        4.0
        >>> meter.exact_mbps, meter.at_least_mbps
        (4.0, None)
        """
        mbps = train_mbps(wire_bytes, sent_s, read_s, first_bytes, first_read_s)
        if mbps is None:
            return None
        self.samples += 1
        saturated = self.exact_mbps
        if exact and (not saturated or not
                      saturated / STEP_FACTOR < mbps < saturated * STEP_FACTOR):
            self.exact_mbps, self.at_least_mbps, self._step = mbps, None, None
        elif exact and mbps <= saturated:  # not a step: smoothed like a saturated sample
            self.exact_mbps = self.alpha * mbps + (1 - self.alpha) * saturated
            self.at_least_mbps = None
        else:
            self.at_least_mbps = max(self.at_least_mbps or 0.0, mbps)
        return mbps

    def _start_period(self, read_s: float, busy_s: float) -> None:
        self._period_start_s, self._period_busy_s, self._period_bytes = read_s, busy_s, 0

    def _take(self, bytes_per_s: float, exact: bool) -> None:
        sample = bytes_per_s * BITS_PER_BYTE / BITS_PER_MBIT
        self.samples += 1
        if not exact:
            self.at_least_mbps = max(self.at_least_mbps or 0.0, sample)
            return
        self.exact_mbps = self._smoothed(sample)
        self.at_least_mbps = None  # bounds from before this measurement may predate a change

    def _smoothed(self, sample: float) -> float:
        """The estimate after ``sample``: the EWMA, or ``sample`` itself when it and the
        sample before are both a step away (:data:`STEP_FACTOR`), on the same side, from the
        estimate before that one (the earlier one may straddle the step).

        >>> meter, estimates = HopMeter(), []
        >>> for mbps in (1000.0, 20.0, 21.0, 22.0):  # a 50x drop: one sample smoothed, then
        ...     meter._take(mbps * 125_000, exact=True)  # the second confirms the step
        ...     estimates.append(round(meter.exact_mbps, 2))
        >>> estimates, meter.steps
        ([1000.0, 706.0, 21.0, 21.3], 1)
        """
        before = self.exact_mbps
        if before is None:
            return sample
        if self._step is not None and _step_side(sample, self._step[0]) == _step_side(
                self._step[1], self._step[0]):
            self._step = None
            self.steps += 1
            return sample
        self._step = (before, sample) if _step_side(sample, before) else None
        return self.alpha * sample + (1 - self.alpha) * before


def _step_side(sample: float, estimate: float) -> int:
    """-1 when ``sample`` is :data:`STEP_FACTOR` or more below ``estimate``, 1 above, else 0."""
    if sample * STEP_FACTOR <= estimate:
        return -1
    return 1 if sample >= estimate * STEP_FACTOR else 0


@dataclass
class _ProbeWait:
    """A probe train the receiver answered (monotonic ``answered_s``) and waits for until
    ``until_s``."""

    probe_id: int
    messages: int
    answered_s: float
    until_s: float
    busy_s: float  # the receiver's computing time when it answered
    received: int = 0
    wire_bytes: int = 0
    first_sent_s: float = 0.0
    first_bytes: int = 0
    first_read_s: float = 0.0
    #: The read of the latest frame (or stale train's message) read before the train's first
    #: message.
    frame_ahead_read_s: float = 0.0

    def start_s(self) -> float:
        """When the link began carrying the train: its first stamp, or the read of a frame
        queued ahead of it (FIFO) if later. Timing the train from its stamp over its bytes
        and the frame's instead overstates the rate by the part of the frame that crossed
        before the stamp (all of it but 10%: 1.43x, a 32 kB frame ahead of a 64 kB train)."""
        return max(self.first_sent_s, self.frame_ahead_read_s)


class Receiver:
    """De-duplicating reception from the previous hop; :meth:`done` acknowledges. With
    ``alternatives`` (alternative id → the tensors it sends on this hop) a data message is
    checked against the alternative it names. ``clock``: the host time a message is read at
    (a test's fake clock)."""

    def __init__(self, channel: Channel, specs: Mapping[str, TensorSpec],
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 window: int = DEFAULT_WINDOW,
                 alternatives: Mapping[int, Mapping[str, TensorSpec]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.channel, self.specs = channel, dict(specs)
        self.alternatives = None if alternatives is None else {
            alt: dict(s) for alt, s in alternatives.items()}
        self.meter = HopMeter()
        self.last_peer: bytes | None = None
        self.max_payload_bytes = max_payload_bytes
        self.decoder = HopDecoder(self.specs, max_payload_bytes, self.alternatives)
        self.max_held = MAX_HELD_WINDOWS * window
        self.finished = _DoneSet()
        self.holding: dict[int, bytes] = {}  # seq → peer to acknowledge when done
        self.counters = LinkCounters()
        self.throttle = Throttle()
        self.clock = clock
        self.probe_wait: _ProbeWait | None = None
        #: The next announce is answered from this time on (monotonic): the last pause's end
        #: plus its length, so a stage runs at least as long as it paused.
        self.answer_from_s = -math.inf

    @property
    def probing(self) -> bool:
        """Whether a probe train is expected: its owner should compute nothing meanwhile, or
        the train would wait unread and be timed as faster than the link."""
        if self.probe_wait is not None and time.monotonic() >= self.probe_wait.until_s:
            self._end_wait(self.probe_wait.until_s)  # the train did not come (whole)
        return self.probe_wait is not None

    def _end_wait(self, end_s: float) -> None:
        """The pause for a train is over at ``end_s``: answer no announce for as long again."""
        wait = self.probe_wait
        assert wait is not None
        self.probe_wait = None
        self.answer_from_s = end_s + (end_s - wait.answered_s)

    def messages(self, limit: int = MAX_BATCH, busy_s: float = 0.0) -> list[Message]:
        """New messages (data or end), each once; duplicates of finished ones are re-acked.
        ``busy_s``: the caller's computing time so far (for :class:`HopMeter`)."""
        fresh = []
        for _ in range(limit):
            received = self.channel.receive()
            if received is None:
                break
            arrived_s = self.clock()
            peer, parts = received
            message = self._decode(parts)
            if message is None:
                continue
            self.last_peer = peer
            if message.kind == "probe":
                self._take_probe(message, peer, sum(len(p) for p in parts), arrived_s, busy_s)
                continue
            if message.kind == "data":
                self._note_frame(sum(len(p) for p in parts), message.sent_s, arrived_s, busy_s)
            if message.seq in self.finished:
                self.counters.duplicates += 1
                self._ack(message.seq, peer)
            elif message.seq in self.holding:
                self.counters.duplicates += 1
                self.holding[message.seq] = peer  # the sender may have restarted: answer it
            elif len(self.holding) >= self.max_held:
                self.counters.rejected += 1
                self.throttle.warning("full", "dropped frame %d: already holding %d unfinished "
                                      "frames", message.seq, len(self.holding))
            else:
                self.holding[message.seq] = peer
                self.counters.payload_bytes += message.payload_bytes
                fresh.append(message)
        return fresh

    def _note_frame(self, wire_bytes: int, sent_s: float, read_s: float, busy_s: float) -> None:
        self.meter.observe(wire_bytes, sent_s, read_s, busy_s)
        self._note_ahead(read_s)

    def _note_ahead(self, read_s: float) -> None:
        """A message other than the awaited train's, read at ``read_s``: before the train's
        first message, the link carried it ahead of the train (:meth:`_ProbeWait.start_s`)."""
        wait = self.probe_wait
        if wait is not None and wait.received == 0:
            wait.frame_ahead_read_s = read_s

    def _decode(self, parts: list[bytes]) -> Message | None:
        try:
            message = self.decoder.decode(parts)
        except FrameError as error:
            self.counters.rejected += 1
            self.throttle.warning("malformed", "rejected a frame: %s", error)
            return None
        if message.kind not in ("data", "end", "probe") or (
                message.kind == "probe" and message.probe is not None
                and message.probe.phase == "ready"):
            self.counters.rejected += 1
            self.throttle.warning("ack", "rejected a%s %s message on the data path (seq %d)",
                                  "n" if message.kind[0] in "aeiou" else "", message.kind,
                                  message.seq)
            return None
        return message

    def _take_probe(self, message: Message, peer: bytes, wire_bytes: int, read_s: float,
                    busy_s: float) -> None:
        """Answer an announce (and wait for its train), or count a train message; the last
        one's read time gives the measurement (:meth:`HopMeter.observe_probe`)."""
        probe = message.probe
        assert probe is not None
        if probe.phase == "announce":
            now_s = time.monotonic()
            if self.probing or now_s < self.answer_from_s:
                return  # unanswered: the sender measures nothing this time, and tries later
            self.probe_wait = _ProbeWait(message.seq, probe.messages, now_s,
                                         now_s + min(probe.wait_s, MAX_PROBE_STALL_S), busy_s)
            self.counters.probes += 1
            self.channel.send(encode_probe_ready(message.seq), peer)
            return
        self.meter.carried(wire_bytes, message.sent_s, read_s, busy_s)
        wait = self.probe_wait
        if wait is None or wait.probe_id != message.seq:
            # a train whose wait ran out, or from a sender since restarted: ahead of the
            # train waited for, it held the link like a frame
            self._note_ahead(read_s)
            return
        wait.received += 1
        wait.wire_bytes += wire_bytes
        self.counters.probe_bytes += wire_bytes - HEADER_BYTES
        if wait.received == 1:
            wait.first_sent_s, wait.first_bytes, wait.first_read_s = (
                message.sent_s, wire_bytes, read_s)
        if wait.received < wait.messages:
            return
        self._end_wait(min(time.monotonic(), wait.until_s))
        exact = busy_s == wait.busy_s  # computed nothing since it answered
        if self.meter.observe_probe(wait.wire_bytes, wait.start_s(), read_s, exact,
                                    wait.first_bytes, wait.first_read_s):
            self.counters.probes_exact += exact
            self.counters.probes_bound += not exact

    def report(self, seq: int, report: Report) -> None:
        """Send ``report`` upstream to whoever sent the last message (best effort: a report
        lost to a full queue or a restarting peer is superseded by the next one)."""
        if self.last_peer is not None:
            self.channel.send(encode_report(seq, report), self.last_peer)

    def new_stream(self) -> None:
        """Forget the finished sequence numbers: the next stream numbers its frames from 0."""
        self.finished = _DoneSet()
        self.holding.clear()

    def release(self, seq: int) -> None:
        """Forget a frame the caller will not take now, without acknowledging it: its sender
        resends it after the resend timeout, and the resend is taken as new."""
        self.holding.pop(seq, None)

    def done(self, seq: int) -> None:
        peer = self.holding.pop(seq, None)
        self.finished.add(seq)
        if peer is not None:
            self._ack(seq, peer)

    def _ack(self, seq: int, peer: bytes) -> None:
        # An ack lost to a full queue is harmless: the sender resends and is acked again.
        self.channel.send(encode_control(KIND_ACK, seq), peer)
