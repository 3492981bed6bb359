"""Active capacity probes: measure a hop's rate when the traffic alone cannot.

:class:`~hwsched.runtime.reliable.HopMeter` measures a link exactly only while the stream
saturates it. After a switch to a split that sends few bytes the link idles between frames and
the meter yields only a *lower bound* — bytes over the time of unsaturated sends, latency
included. When the link then gets faster, nothing the stream sends shows it, and the
controller cannot see that a split sending more bytes would now win: the switch back waits for
a chance busy period (measured 2.7–8 s, against a 2 s target).

So the sender of a hop probes, but only when it can matter (:func:`probe_could_switch`): the
receiver's latest report says the hop's estimate is only a bound (the link is not saturated),
and the controller's own estimate (:func:`~hwsched.runtime.controller.estimate_throughput_ips`,
from the plan's predictions and the busy times this stage has seen) picks another split if the
hop were infinitely fast but keeps the current one at the rate known now. That is the plan's
``bandwidth_mbps_high`` edge ("a better split exists above") computed with what was measured
rather than predicted: on a host unlike the boards' descriptors the edges are wrong (the
EfficientNet-B0 plan puts its edge at 7.2 Mbit/s, yet the controller, rightly, leaves the wide
split at 20 Mbit/s here), and a probe gated on the stale edge would never be sent. A probe is
a handshake and a train, on the hop's own channel (shaped, queued and limited exactly like the
frames):

1. the sender *announces* a train (messages, bytes, how long to wait);
2. the receiver answers *ready* and computes nothing until the train has arrived (or the wait
   is over), so it reads each message as it lands — a receiver busy computing would read a
   train that had long arrived all at once and make the link look infinitely fast;
3. the sender sends the *padding* train back to back, each message stamped as it goes on the
   wire; the receiver divides the train's wire bytes by the time from the first message's
   stamp to reading the last (:func:`train_mbps`). That time holds the whole transfer plus one
   latency and the read, so the figure does not exceed the link's rate — except through a
   token bucket, whose burst lets the train's head pass at once (the emulated 20 Mbit/s link's
   16 kB bucket made 64 KiB read as 31 Mbit/s, enough to tip a switch). So the figure is also
   capped by the train's *dispersion*, the bytes after the first message over the time between
   reading the first and the last: a first message at least a burst long empties the bucket,
   and the rest cross at the rate itself. (Dispersion alone errs the other way when the first
   read is late, or the last: it is used only over :data:`MIN_DISPERSION_S` at least — trains
   are sized to take 25 ms at the known rate — and the smaller of the two errs least. A link
   far faster than known gives a short dispersion, left out: its train may pass in a burst and
   read too fast, but the link did get much faster.) The result is *exact* — it replaces the
   meter's estimate and is reported as the hop's measured bandwidth. Had the receiver computed
   meanwhile, it is kept as a bound only, and so is a train less than the meter's step
   (:data:`~hwsched.runtime.reliable.STEP_FACTOR`, 2x) faster than the rate measured saturated:
   under load the 20 Mbit/s link's trains still read 31 Mbit/s at times.

Cost, bounded: a train is ``PROBE_DUTY`` (5%) of what is known of the link's rate over
``PROBE_INTERVAL_S``, at least :data:`MIN_PROBE_BYTES`, and trains are spaced so that they
never take more than 5% of the link even at the lower bound (:func:`probe_spacing_s`); the
receiver's pause is the train's time on the wire, the same 5%, and never more than
:data:`MAX_PROBE_STALL_S` whatever a peer announces. ``PROBE_INTERVAL_S`` is half the
controller's hold time, so a faster link is seen within half a hold and the switch follows one
hold later. Probes are answered inside the reliable layer: they never reach a model, the sink,
the acknowledgement of a frame or the hop's byte counts of frames.

>>> probe_size_bytes(exact_mbps=20.0, at_least_mbps=8.0)  # a bound since: probe 64 KiB
65536
>>> probe_size_bytes(exact_mbps=20.0, at_least_mbps=None)  # saturated, measured: no probe
>>> train_mbps(125_000, sent_s=10.0, read_s=10.25)  # 1 Mbit in 250 ms
4.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from hwsched.runtime.controller import (
    DEFAULT_MARGIN,
    AlternativeCost,
    Measured,
    best_alternative,
    estimate_throughput_ips,
    trial_candidate,
)
from hwsched.runtime.frames import HEADER_BYTES, MAX_PROBE_MESSAGES, MAX_PROBE_WAIT_S, Report

#: Largest share of the link's known rate probes may take, and the interval they are sized to.
PROBE_DUTY = 0.05
PROBE_INTERVAL_S = 0.5
#: A train's bytes: at least 4 token-bucket bursts of a 20 Mbit/s emulated link (16 kB each)
#: so a bucket's burst inflates the figure by a third at most; at most 1 MiB.
MIN_PROBE_BYTES = 64 << 10
MAX_PROBE_BYTES = 1 << 20
#: The receiver waits for a train twice its time at the known rate, plus this.
PROBE_WAIT_SLACK_S = 0.05
#: A link so slow that a train would take longer than this on the wire is not probed (the
#: receiver would pause that long): with 64 KiB, links known below about 5 Mbit/s.
MAX_TRAIN_S = 0.1
#: Whatever an announce asks, a receiver pauses at most this long for one train, and after a
#: pause answers no announce for as long again (:class:`~hwsched.runtime.reliable.Receiver`):
#: a lost train, or a peer announcing without end, pauses its stage for half the time at
#: worst, while an honest sender's announces, PROBE_INTERVAL_S apart, are answered even when
#: the stage reads one late (a fixed gate of PROBE_INTERVAL_S refused every such one).
MAX_PROBE_STALL_S = 2 * MAX_TRAIN_S + PROBE_WAIT_SLACK_S
#: A train's dispersion shorter than this is left out: a millisecond's scheduling delay on a
#: loaded host would read it several times too slow (or too fast).
MIN_DISPERSION_S = 0.005
BITS_PER_BYTE = 8
BITS_PER_MBIT = 1e6


@dataclass(frozen=True)
class ProbeTrain:
    """One probe: ``messages`` padding messages of ``payload_bytes`` each; ``train_bytes`` is
    their size on the wire (headers included); the receiver waits at most ``wait_s``."""

    messages: int
    payload_bytes: int
    train_bytes: int
    wait_s: float


def train_mbps(wire_bytes: int, sent_s: float, read_s: float, first_bytes: int = 0,
               first_read_s: float | None = None) -> float | None:
    """A train's rate: its bytes over the time from its first message's send stamp to its last
    message's read, capped by its dispersion when the first message (``first_bytes``, read at
    ``first_read_s``) is given (None when the clocks say the train took no time).

    >>> train_mbps(150_000, sent_s=10.0, read_s=10.5)  # 1.2 Mbit in 0.5 s
    2.4
    >>> train_mbps(150_000, sent_s=10.0, read_s=10.5, first_bytes=50_000, first_read_s=10.0)
    1.6
    """
    if not 0 < sent_s < read_s:
        return None
    rates = [wire_bytes / (read_s - sent_s)]
    if (first_read_s is not None and read_s - first_read_s >= MIN_DISPERSION_S
            and 0 < first_bytes < wire_bytes):
        rates.append((wire_bytes - first_bytes) / (read_s - first_read_s))
    return min(rates) * BITS_PER_BYTE / BITS_PER_MBIT


def _known_mbps(exact_mbps: float | None, at_least_mbps: float | None) -> float | None:
    known = [v for v in (exact_mbps, at_least_mbps) if v is not None and v > 0]
    return max(known, default=None)


def probe_size_bytes(exact_mbps: float | None, at_least_mbps: float | None,
                     duty: float = PROBE_DUTY, interval_s: float = PROBE_INTERVAL_S
                     ) -> int | None:
    """The bytes of a probe of a hop whose receiver reported these, or None: the link is
    saturated and measured (an exact rate and no bound since), or nothing is known yet."""
    if exact_mbps is not None and at_least_mbps is None:
        return None
    known = _known_mbps(exact_mbps, at_least_mbps)
    if known is None:
        return None
    budget = duty * known * BITS_PER_MBIT / BITS_PER_BYTE * interval_s
    return int(min(max(budget, MIN_PROBE_BYTES), MAX_PROBE_BYTES))


def probe_spacing_s(size_bytes: int, known_mbps: float, duty: float = PROBE_DUTY,
                    interval_s: float = PROBE_INTERVAL_S) -> float:
    """Seconds from one probe to the next: ``interval_s``, longer when a probe of
    ``size_bytes`` would otherwise take more than ``duty`` of a link of ``known_mbps``.

    >>> probe_spacing_s(65536, 1.0)  # 64 KiB is 5% of 1 Mbit/s over 10.5 s
    10.48576
    """
    bytes_per_s = known_mbps * BITS_PER_MBIT / BITS_PER_BYTE
    return max(interval_s, size_bytes / (duty * bytes_per_s))


def make_train(size_bytes: int, max_payload_bytes: int, known_mbps: float) -> ProbeTrain:
    """A train of about ``size_bytes`` in equal messages no larger than the hop admits.

    >>> train = make_train(65536, 62720, known_mbps=20.0)  # two messages of 32 KiB, not 61 KiB
    >>> train.messages, train.payload_bytes
    (2, 32768)
    """
    # two messages at least: the second one's arrival gives the train's dispersion
    messages = min(MAX_PROBE_MESSAGES,
                   max(2, math.ceil(size_bytes / max(1, max_payload_bytes))))
    payload = max(1, min(max_payload_bytes, math.ceil(size_bytes / messages)))
    train_bytes = messages * (HEADER_BYTES + payload)
    wait_s = min(MAX_PROBE_WAIT_S, 2 * on_wire_s(train_bytes, known_mbps) + PROBE_WAIT_SLACK_S)
    return ProbeTrain(messages, payload, train_bytes, wait_s)


def on_wire_s(train_bytes: int, mbps: float) -> float:
    return train_bytes * BITS_PER_BYTE / (mbps * BITS_PER_MBIT)


def _at_rate(measured: Measured, hop: int, mbps: float) -> Measured:
    """``measured`` with ``hop`` measured exactly at ``mbps`` (no bound)."""
    least = {h: v for h, v in measured.bandwidth_at_least_mbps.items() if h != hop}
    return replace(measured, bandwidth_mbps={**measured.bandwidth_mbps, hop: mbps},
                   bandwidth_at_least_mbps=least)


def _switch_to(costs: Sequence[AlternativeCost], measured: Measured, current: int,
               margin: float) -> int | None:
    """The split the controller's estimate prefers to ``current`` by ``margin``, or None."""
    ips = {c.id: estimate_throughput_ips(c, measured, costs) for c in costs}
    best = best_alternative(ips)
    better = best != current and ips[best] > ips.get(current, 0.0) * (1 + margin)
    return best if better else None


def probe_could_switch(costs: Sequence[AlternativeCost], measured: Measured, hop: int,
                       current: int, known_mbps: float, margin: float = DEFAULT_MARGIN) -> bool:
    """Whether measuring ``hop`` can change the split: with the hop infinitely fast the
    estimate leaves ``current`` for another split, or earns one a trial
    (:func:`~hwsched.runtime.controller.trial_candidate`: a split priced from stale busy times
    close to the current one's), at ``known_mbps`` it does neither.

    >>> wide = AlternativeCost(0, (3,), (4.0, 4.0), {1: 125_000}, {1: None})
    >>> narrow = AlternativeCost(1, (6,), (8.0, 0.5), {1: 100}, {1: None})
    >>> probe_could_switch((wide, narrow), Measured(), 1, current=1, known_mbps=20.0)
    True
    >>> probe_could_switch((wide, narrow), Measured(), 1, current=1, known_mbps=500.0)
    False
    >>> probe_could_switch((wide, narrow), Measured(), 1, current=0, known_mbps=20.0)
    False
    """
    known, fast = _at_rate(measured, hop, known_mbps), _at_rate(measured, hop, math.inf)
    if _switch_to(costs, known, current, margin) is not None:
        return False  # the controller leaves it already: nothing to learn
    every = frozenset(c.id for c in costs)  # which splits the controller armed is its own
    return _switch_to(costs, fast, current, margin) is not None or (
        trial_candidate(costs, fast, current, every) is not None
        and trial_candidate(costs, known, current, every) is None)


class ProbePlanner:
    """When the sender of ``hop`` probes: from the receiver's latest report on the hop, and
    from the plan's alternatives (``costs``) priced with the reports this stage has seen and
    its own (:func:`probe_could_switch`). A fixed plan has one split and never probes."""

    def __init__(self, hop: int, costs: Sequence[AlternativeCost], max_payload_bytes: int,
                 duty: float = PROBE_DUTY, interval_s: float = PROBE_INTERVAL_S,
                 margin: float = DEFAULT_MARGIN) -> None:
        self.hop, self.costs = hop, tuple(costs)
        self.max_payload_bytes = max_payload_bytes
        self.duty, self.interval_s, self.margin = duty, interval_s, margin
        self.measured = Measured()
        self.latest: Report | None = None
        self.next_s = -math.inf

    def note(self, report: Report) -> None:
        """Take a report (a downstream role's or the stage's own); keep the latest on the hop."""
        self.measured = self.measured.with_report(report)
        if report.hop == self.hop:
            self.latest = report

    def due(self, now_s: float, alternative: int) -> ProbeTrain | None:
        """The probe to send now, or None; a returned probe counts as sent (the next one is
        spaced from ``now_s``)."""
        if self.latest is None or now_s < self.next_s:
            return None
        exact, least = self.latest.bandwidth_mbps, self.latest.bandwidth_at_least_mbps
        size = probe_size_bytes(exact, least, self.duty, self.interval_s)
        known = _known_mbps(exact, least)
        if size is None or known is None or not probe_could_switch(
                self.costs, self.measured, self.hop, alternative, known, self.margin):
            return None
        train = make_train(size, self.max_payload_bytes, known)
        if on_wire_s(train.train_bytes, known) > MAX_TRAIN_S:
            return None
        self.next_s = now_s + probe_spacing_s(train.train_bytes, known, self.duty,
                                              self.interval_s)
        return train
