"""Adaptive plans at run time: the alternatives' hop specs, and the controller that picks one.

An adaptive plan (``Plan.alternatives``) holds several complete chain splits over the same
boards. Every role loads what it needs of each at start; the *source* decides which
alternative each frame runs on, and a switch is "from sequence number S on, alternative A"
(frames below S finish on the old split). The controller is a small separate process beside
the source (``hwsched-runner DIR --controller --listen URL``): the source forwards it the
reports that come upstream from the stages and the sink (each hop's measured bandwidth, each
stage's busy time per frame), and it answers ``SWITCH`` messages; the source announces the
split it runs the same way — at every switch, scripted or decided, and every second — with
the number of the latest decision it took, so a lost announcement heals and a controller
restarted mid-run learns the split (it commands nothing before) and numbers its decisions on.
It is advice only: a source whose controller is gone keeps streaming on its current split.

The decision is two pure steps, testable without a pipeline:

* :func:`estimate_throughput_ips` — an alternative's throughput under what was measured: each
  stage's predicted time (the plan's cost-model prediction) scaled by how much slower or
  faster that board measured on whichever alternative it ran — from its busy times while no
  link limited that split (:meth:`Measured.reference_busy_ms`: a starved stage computes
  slower) — each hop's bytes (the wire specs, so activation compression counts) at its
  measured bandwidth; throughput is one over the slowest of them, as in the scheduler's cost
  model.
* :func:`decide` — hysteresis: a better alternative must stay the best, by ``margin``, for
  ``hold_s`` before the controller switches, so a flapping measurement switches at most once
  per hold time. The hold scales with the evidence (:func:`strong_evidence`): when the
  better split would stay better even with every hop's measured bandwidth off by
  :data:`STRONG_EVIDENCE_FACTOR` either way — a link that dropped (or recovered) far beyond
  the current split's range — it is :func:`short_hold_s`. A bandwidth flapping within a
  factor below that around a boundary is never strong evidence, so it still switches at most
  once per full hold.
* :func:`trial_candidate` — a trial when the numbers are stale. A split left behind is priced
  by the busy times it measured when it ran, and the host drifts (EfficientNet-B0's wide
  split, fresh runs at 1000 Mbit/s on one host: 78–110 inf/s): after the link recovered, the
  wide split, measured before the fade, was priced within the margin of the narrow one then
  running, or below it (99 vs 92, 82 vs 85–91 inf/s), and the controller switched back late
  or never. So when the link steps far beyond a split's range — a measured hop limited it,
  and now would not with every hop :data:`STRONG_EVIDENCE_FACTOR` times slower — and its
  stale price is within the host's drift of the running split's, the controller switches to
  it for a trial: its stages then report fresh busy times, and :func:`decide` goes back (the
  busy times decide: the full hold) only if it measures worse by the margin. One trial per
  link step: any switch disarms every split, and only being limited by a link arms one again.

Why a trial rather than scaling the stale busy times by the running split's drift: that
scaling prices the stale split by its cost-model prediction times the running split's
measured/predicted ratio, so it inherits the model's error between the two splits — the size
of the margin it has to decide. On three bench rounds whose switch back came late or never
(their reports: ``tests/data/bench_adapt_reports.json``) it priced the wide split at 110, 83
and 114 inf/s against the narrow one's 88, 79 and 87, where fresh runs of the wide split in
the same rounds made 121, 98 and 80: one switch back missed, one made on a 43% overestimate.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import TYPE_CHECKING, Any

from hwsched.deployment import Plan, TensorSpec
from hwsched.runtime.frames import KIND_SWITCH, Message, Report, encode_control, spec_bytes
from hwsched.runtime.routing import hop_specs
from hwsched.units import MS_PER_S

if TYPE_CHECKING:
    from hwsched.runtime.process import RunOptions

log = logging.getLogger("hwsched.runtime")

#: Default hysteresis: how long a better alternative must stay best, and by how much.
DEFAULT_HOLD_S = 1.0
DEFAULT_MARGIN = 0.1
#: Busy reports kept per stage and split (stages report every REPORT_INTERVAL_S, 0.1 s: the
#: last 5 s); their median stands for the split (:meth:`Measured.stage_busy_ms`).
BUSY_HISTORY = 50
#: A better split whose lead survives every hop's measured bandwidth multiplied or divided by
#: this is strong evidence: the controller switches after :func:`short_hold_s` instead of the
#: full hold.
STRONG_EVIDENCE_FACTOR = 4.0
#: The short hold is this fraction of the full one, and never below MIN_SHORT_HOLD_S (nor above
#: the full hold): a couple of reports (REPORT_INTERVAL_S, 0.1 s) must agree before a switch.
SHORT_HOLD_FRACTION = 0.3
MIN_SHORT_HOLD_S = 0.3
#: Evidence is weighed at the 2**hops corners of the box of bandwidths: beyond this many
#: measured hops the controller keeps the full hold (64 corners, each pricing every split).
MAX_EVIDENCE_HOPS = 6
#: A bandwidth scaled by this (and by its inverse) stands for an infinitely fast (slow) link.
UNBOUNDED_SCALE = 1e9
#: A lower bound on a hop's rate overrules the rate measured saturated only when this many
#: times larger (the hop meter's step, :data:`hwsched.runtime.reliable.STEP_FACTOR`): a token
#: bucket's burst lets an isolated message through up to ``B / (B - burst)`` faster than the
#: rate — on the emulated 20 Mbit/s link (16 kB burst) EfficientNet-B0's 37 kB hand-off read
#: as "at least 31 Mbit/s", the wide split was priced at the plan's 1000 Mbit/s and the run
#: switched back to it while the link was still faded.
BOUND_STEP_FACTOR = 2.0
#: A split left behind may run this much faster than its stale busy times say (the host's
#: drift within a run: EfficientNet-B0's wide split, fresh runs at 1000 Mbit/s, 78–110 inf/s,
#: ±17% around the middle): a stale price this close to the running split's earns a trial.
STALE_DRIFT = 0.25
#: Relative change of an estimate below which a link is said not to limit a split.
LINK_TOLERANCE = 1e-9
#: How often the controller tells the source it is alive (a switch to the current split).
HEARTBEAT_S = 0.5
BITS_PER_BYTE = 8
#: Mbit/s × this = bits per millisecond.
BITS_PER_MS_PER_MBPS = 1e3


# -- the alternatives of a plan ------------------------------------------------------------
def alternative_plans(plan: Plan) -> dict[int, Plan]:
    """Alternative id → its chain plan; a fixed plan is its own alternative 0."""
    if not plan.alternatives:
        return {0: plan}
    return {alt.id: alt.plan for alt in plan.alternatives}


def hop_specs_by_alternative(plan: Plan, hop: int) -> dict[int, dict[str, TensorSpec]]:
    """The tensors each alternative sends across ``hop`` (what a receiver checks frames of
    that alternative against)."""
    return {alt: hop_specs(p, hop) for alt, p in alternative_plans(plan).items()}


def sizing_specs(plan: Plan, hop: int) -> dict[str, TensorSpec]:
    """Every tensor any alternative sends across ``hop``, keyed apart: a channel's size limits
    computed from these admit the largest message of any alternative."""
    return {f"{alt}:{name}": spec
            for alt, specs in hop_specs_by_alternative(plan, hop).items()
            for name, spec in specs.items()}


# -- the cost of an alternative under measurement ------------------------------------------
@dataclass(frozen=True)
class AlternativeCost:
    """What the plan says about one alternative: per-stage predicted time (None: not
    predicted), bytes on each inter-stage hop ``1..n-1``, predicted hop time."""

    id: int
    cut_positions: tuple[int, ...]
    stage_ms: tuple[float | None, ...]
    hop_bytes: Mapping[int, int]
    hop_ms: Mapping[int, float | None]


def alternative_costs(plan: Plan) -> tuple[AlternativeCost, ...]:
    costs = []
    for alt, p in alternative_plans(plan).items():
        n = len(p.stages)
        hops = range(1, n)
        costs.append(AlternativeCost(
            id=alt, cut_positions=tuple(p.cut_positions),
            stage_ms=tuple(_predicted(p, "stages", k) for k in range(n)),
            hop_bytes={h: sum(spec_bytes(s) for s in hop_specs(p, h).values()) for h in hops},
            hop_ms={h: _predicted(p, "links", h - 1) for h in hops}))
    return tuple(costs)


def _predicted(plan: Plan, key: str, index: int) -> float | None:
    items = plan.prediction.get(key) or []
    value = items[index].get("latency_ms") if index < len(items) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else None


@dataclass(frozen=True)
class Measured:
    """The latest measurements: hop → Mbit/s measured while the link was saturated (or by a
    capacity probe, :mod:`hwsched.runtime.probe`), hop → a lower bound seen since, and
    (stage, alternative) → busy ms per frame."""

    bandwidth_mbps: Mapping[int, float] = field(default_factory=dict)
    busy_ms: Mapping[tuple[int, int], float] = field(default_factory=dict)
    bandwidth_at_least_mbps: Mapping[int, float] = field(default_factory=dict)
    #: (stage, alternative) → its last :data:`BUSY_HISTORY` busy reports, oldest first.
    busy_history_ms: Mapping[tuple[int, int], tuple[float, ...]] = field(default_factory=dict)
    #: (stage, alternative) → its last :data:`BUSY_HISTORY` busy reports taken while no
    #: measured link limited that split (:meth:`reference_busy_ms`).
    unstarved_history_ms: Mapping[tuple[int, int], tuple[float, ...]] = field(
        default_factory=dict)
    #: The (stage, alternative) pairs whose latest busy report came while a link limited the
    #: split (the stage may have been starved).
    starved: frozenset[tuple[int, int]] = frozenset()

    def with_report(self, report: Report, starved: bool = False) -> Measured:
        """``self`` updated by ``report``; ``starved``: a measured link limited the report's
        split when it came (the controller knows, :func:`link_bound`)."""
        bandwidth, busy = dict(self.bandwidth_mbps), dict(self.busy_ms)
        least = dict(self.bandwidth_at_least_mbps)
        history, unstarved = dict(self.busy_history_ms), dict(self.unstarved_history_ms)
        flagged = set(self.starved)
        if report.bandwidth_mbps is not None and report.bandwidth_mbps > 0:
            bandwidth[report.hop] = report.bandwidth_mbps
        least.pop(report.hop, None)
        if report.bandwidth_at_least_mbps is not None and report.bandwidth_at_least_mbps > 0:
            least[report.hop] = report.bandwidth_at_least_mbps
        if report.busy_ms is not None:
            key = (report.stage, report.alternative)
            busy[key] = report.busy_ms
            history[key] = (*history.pop(key, ())[1 - BUSY_HISTORY:], report.busy_ms)
            if starved:
                flagged.add(key)
            else:
                flagged.discard(key)
                unstarved[key] = (*unstarved.get(key, ())[1 - BUSY_HISTORY:], report.busy_ms)
        return Measured(bandwidth, busy, least, history, unstarved, frozenset(flagged))

    def reference_busy_ms(self, stage: int, alternative: int) -> float | None:
        """What ``stage`` on ``alternative`` computes a frame in when no link starves it: the
        median of its reports from while no measured link limited the split, when its latest
        report came while one did — but never more than :meth:`stage_busy_ms`: starved, a
        stage computes slower, so what it is measured at now bounds the fed time however old
        the fed reports are (the host may have sped up since); else :meth:`stage_busy_ms`.
        A split that never ran is priced from this (:func:`_stage_ms`).

        Why: a stage behind (or before) a link that limits its split computes each frame
        after an idle gap, on cold caches — EfficientNet-B0's first stage, 7.5 ms a frame back
        to back, took 11 ms on the faded link. The narrow split, never run, priced from that
        by the predictions' ratio, led the wide one by about the 10% margin: its lead swung
        around it and the drop's switch took 3.84 s (bench_adapt).

        >>> m = Measured()
        >>> for ms in (7.5,) * 30:
        ...     m = m.with_report(Report(0, 0, None, ms, 0))
        >>> for ms in (11.0,) * 40:
        ...     m = m.with_report(Report(0, 0, None, ms, 0), starved=True)
        >>> m.stage_busy_ms(0, 0), m.reference_busy_ms(0, 0)
        (11.0, 7.5)
        """
        history = self.unstarved_history_ms.get((stage, alternative))
        now_ms = self.stage_busy_ms(stage, alternative)
        if history and (stage, alternative) in self.starved and now_ms is not None:
            return min(statistics.median(history), now_ms)
        return now_ms

    def stage_busy_ms(self, stage: int, alternative: int) -> float | None:
        """Stage ``stage``'s busy ms per frame on ``alternative``: its latest report while the
        stage still runs that split (its latest report is of it), else the median of the
        split's last :data:`BUSY_HISTORY` reports.

        Why not the last report of a split left: a split is left because its conditions
        changed, and its last reports carry that change — on a faded link a starved stage
        computes each frame on cold caches after an idle gap (EfficientNet-B0's first stage:
        7.5 ms a frame back to back, 11 ms one every 26 ms), so the split left looked a third
        slower than it runs once the link recovers, and the controller stayed on the narrow
        split.

        >>> m = Measured()
        >>> for ms in (7.5,) * 30 + (11.0,) * 12:
        ...     m = m.with_report(Report(0, 0, None, ms, 0))
        >>> m.stage_busy_ms(0, 0)  # still running split 0: its latest report
        11.0
        >>> m.with_report(Report(0, 0, None, 10.5, 1)).stage_busy_ms(0, 0)  # split 0 left
        7.5
        """
        history = self.busy_history_ms.get((stage, alternative))
        if not history or self._latest_alternative(stage) == alternative:
            return self.busy_ms.get((stage, alternative))
        return statistics.median(history)

    def _latest_alternative(self, stage: int) -> int | None:
        """The split of ``stage``'s latest busy report (dicts keep insertion order, and
        :meth:`with_report` re-inserts the key it updates)."""
        latest = [alt for (k, alt) in self.busy_history_ms if k == stage]
        return latest[-1] if latest else None

    def best_mbps(self) -> dict[int, float]:
        """Per hop, what is known of its rate (the larger of measured and bound)."""
        hops = set(self.bandwidth_mbps) | set(self.bandwidth_at_least_mbps)
        return {h: max(self.bandwidth_mbps.get(h, 0.0), self.bandwidth_at_least_mbps.get(h, 0.0))
                for h in sorted(hops)}


def _stage_ms(cost: AlternativeCost, k: int, measured: Measured,
              costs: Sequence[AlternativeCost]) -> float:
    """Stage ``k`` of ``cost``: measured on this alternative if it ran; else its prediction
    scaled by the measured/predicted ratio of the board on another alternative; else the
    prediction; else 0 (unknown: only the links can tell the alternatives apart)."""
    own = measured.stage_busy_ms(k, cost.id)
    if own is not None:
        return own
    predicted = cost.stage_ms[k] if k < len(cost.stage_ms) else None
    if predicted is None:
        return 0.0
    for other in costs:
        seen = measured.reference_busy_ms(k, other.id)
        base = other.stage_ms[k] if k < len(other.stage_ms) else None
        if seen is not None and base:
            return predicted * seen / base
    return predicted


def _hop_ms(cost: AlternativeCost, hop: int, measured: Measured) -> float:
    """The hop's time per frame: at the rate measured while the link was saturated, unless a
    lower bound :data:`BOUND_STEP_FACTOR` times larger came since (the link is not what limits
    now); then the plan's predicted time, but no slower than the bound allows."""
    exact = measured.bandwidth_mbps.get(hop)
    least = measured.bandwidth_at_least_mbps.get(hop)
    predicted = cost.hop_ms.get(hop)
    if exact and (least is None or least < exact * BOUND_STEP_FACTOR):
        return _transfer_ms(cost.hop_bytes[hop], exact)
    if least:
        bound_ms = _transfer_ms(cost.hop_bytes[hop], least)
        return bound_ms if predicted is None else min(bound_ms, predicted)
    return predicted or 0.0


def _transfer_ms(transfer_bytes: int, mbps: float) -> float:
    return transfer_bytes * BITS_PER_BYTE / (mbps * BITS_PER_MS_PER_MBPS)


def estimate_throughput_ips(cost: AlternativeCost, measured: Measured,
                            costs: Sequence[AlternativeCost] = ()) -> float:
    """Frames per second of ``cost`` under ``measured``: one over its slowest stage or hop.

    >>> a = AlternativeCost(0, (5,), (2.0, 2.0), {1: 125_000}, {1: None})
    >>> estimate_throughput_ips(a, Measured({1: 100.0}))  # 1 Mbit at 100 Mbit/s: 10 ms
    100.0
    """
    times = [_stage_ms(cost, k, measured, costs or (cost,)) for k in range(len(cost.stage_ms))]
    times += [_hop_ms(cost, h, measured) for h in cost.hop_bytes]
    slowest = max(times, default=0.0)
    return math.inf if slowest <= 0 else MS_PER_S / slowest


# -- hysteresis ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Hold:
    """The controller's memory: the current alternative, and a better one it is watching
    since ``since_s`` (None: none); ``weak``: some observation of the watch was not strong
    evidence, so the watch needs the full hold."""

    current: int
    candidate: int | None = None
    since_s: float = 0.0
    weak: bool = False


def best_alternative(throughput_ips: Mapping[int, float]) -> int:
    """The fastest alternative; ties go to the lowest id (deterministic)."""
    return min(throughput_ips, key=lambda alt: (-throughput_ips[alt], alt))


def short_hold_s(hold_s: float) -> float:
    """The hold on strong evidence: :data:`SHORT_HOLD_FRACTION` of ``hold_s``, at least
    :data:`MIN_SHORT_HOLD_S`, at most ``hold_s``.

    >>> short_hold_s(1.0), short_hold_s(3.0), short_hold_s(0.2)
    (0.3, 0.9, 0.2)
    """
    return min(hold_s, max(MIN_SHORT_HOLD_S, round(SHORT_HOLD_FRACTION * hold_s, 9)))


def decide(state: Hold, throughput_ips: Mapping[int, float], now_s: float,
           hold_s: float = DEFAULT_HOLD_S, margin: float = DEFAULT_MARGIN,
           strong: bool = False) -> tuple[Hold, int | None]:
    """The next state, and the alternative to switch to now (or None).

    An alternative qualifies when it is the best and beats the current one by more than
    ``margin`` (a fraction); the switch comes once the same alternative has qualified at
    every observation for ``hold_s`` — or for :func:`short_hold_s` when every one of those
    observations was ``strong`` evidence (:func:`strong_evidence`). Any observation at which
    it does not qualify starts the watch again, so two switches are at least the short hold
    apart, and the full hold apart unless the second one is strong evidence.

    >>> state, switch = decide(Hold(0), {0: 10.0, 1: 20.0}, now_s=0.0)
    >>> switch, state.candidate
    (None, 1)
    >>> decide(state, {0: 10.0, 1: 20.0}, now_s=1.0)
    (Hold(current=1, candidate=None, since_s=0.0, weak=False), 1)
    >>> state, _ = decide(Hold(0), {0: 10.0, 1: 20.0}, now_s=0.0, strong=True)
    >>> decide(state, {0: 10.0, 1: 20.0}, now_s=0.3, strong=True)[1]
    1
    """
    best = best_alternative(throughput_ips)
    current_ips = throughput_ips.get(state.current, 0.0)
    if best == state.current or not throughput_ips[best] > current_ips * (1 + margin):
        return Hold(state.current), None
    if state.candidate != best:
        state = Hold(state.current, best, now_s)
    if not strong:
        state = replace(state, weak=True)
    needed_s = hold_s if state.weak else short_hold_s(hold_s)
    if now_s - state.since_s >= needed_s:
        return Hold(best), best
    return state, None


# -- the weight of the evidence ------------------------------------------------------------
def qualifies(costs: Sequence[AlternativeCost], measured: Measured, current: int,
              candidate: int, margin: float = DEFAULT_MARGIN) -> bool:
    """Whether ``candidate`` is the best split under ``measured`` and beats ``current`` by
    more than ``margin`` (what :func:`decide` asks of every observation of a watch)."""
    ips = {c.id: estimate_throughput_ips(c, measured, costs) for c in costs}
    return best_alternative(ips) == candidate != current and (
        ips[candidate] > ips.get(current, 0.0) * (1 + margin))


def _beats(costs: Sequence[AlternativeCost], measured: Measured, first: int, second: int
           ) -> bool:
    """Whether split ``first`` is strictly faster than ``second`` under ``measured``."""
    by_id = {c.id: c for c in costs}
    return (estimate_throughput_ips(by_id[first], measured, costs)
            > estimate_throughput_ips(by_id[second], measured, costs))


def _scaled(measured: Measured, scale_by_hop: Mapping[int, float]) -> Measured:
    """``measured`` with each hop's bandwidth (measured and bound) times its scale."""
    def scale(rates: Mapping[int, float]) -> dict[int, float]:
        return {h: v * scale_by_hop.get(h, 1.0) for h, v in rates.items()}

    return replace(measured, bandwidth_mbps=scale(measured.bandwidth_mbps),
                   bandwidth_at_least_mbps=scale(measured.bandwidth_at_least_mbps))


def _known_rates(measured: Measured) -> Measured:
    """``measured`` with each hop priced at what is known of its rate, as an exact rate: the
    saturated estimate, or the bound where it overrules the estimate (:func:`_hop_ms`: none,
    or the bound :data:`BOUND_STEP_FACTOR` times above it). The box of :func:`strong_evidence` and
    :func:`link_free` asks what happens at rates ``factor`` times off the measured ones; a hop
    whose bound overrules its estimate is otherwise priced at the plan's prediction, which no
    scale moves, so every corner of the box would hold on a bound alone — and a token bucket's
    burst gives an isolated message a bound above the sustained rate (bench_adapt: an estimate
    stepped down to 9.9 Mbit/s on two slow samples, a 31 Mbit/s bound over the faded 20
    Mbit/s link, and a trial of the wide split 7 s into the fade)."""
    rates = dict(measured.bandwidth_mbps)
    for hop, least in measured.bandwidth_at_least_mbps.items():
        exact = rates.get(hop)
        if not exact or least >= exact * BOUND_STEP_FACTOR:  # where _hop_ms takes the bound
            rates[hop] = least
    return replace(measured, bandwidth_mbps=rates, bandwidth_at_least_mbps={})


def strong_evidence(costs: Sequence[AlternativeCost], measured: Measured, current: int,
                    candidate: int, margin: float = DEFAULT_MARGIN,
                    factor: float = STRONG_EVIDENCE_FACTOR) -> bool:
    """Whether switching from ``current`` to ``candidate`` is driven by the links and would
    still qualify (:func:`qualifies`) had every measured hop's bandwidth been ``factor``
    times higher or lower (each hop either way: the box's corners).

    Why corners suffice: a split's throughput as a function of a hop's rate is flat, then
    proportional, then flat (compute, link, compute); where two splits' ratio is monotone in
    the rates — the case of two splits over a chain, the one that sends more bytes gaining as
    the link gets faster — the rates at which the candidate qualifies form an interval, and
    one that holds both ends of ``[b / factor, b * factor]`` holds all of it. So a bandwidth
    oscillating within less than ``factor`` across a boundary of the current split's range
    is never strong evidence at any of its values. A switch the links do not drive (the
    current split is faster neither with every link infinitely fast nor infinitely slow, so it
    has no range of bandwidth to leave: the busy times decide) is not strong evidence either:
    busy times flap at the full hold.

    >>> wide = AlternativeCost(0, (3,), (0.5, 0.5), {1: 100_000}, {1: None})
    >>> narrow = AlternativeCost(1, (6,), (2.0, 0.5), {1: 1_000}, {1: None})
    >>> # narrow wins by the 10% margin below 364 Mbit/s (800 / b ms > 2.2 ms)
    >>> strong_evidence((wide, narrow), Measured({1: 20.0}), current=0, candidate=1)
    True
    >>> strong_evidence((wide, narrow), Measured({1: 100.0}), current=0, candidate=1)
    False
    """
    hops = _measured_hops(costs, measured)
    if not hops or len(hops) > MAX_EVIDENCE_HOPS:
        return False
    measured = _known_rates(measured)
    if not any(_beats(costs, _scaled(measured, dict.fromkeys(hops, s)), current, candidate)
               for s in (1 / UNBOUNDED_SCALE, UNBOUNDED_SCALE)):
        return False  # the current split wins at no bandwidth: the busy times decide
    return all(qualifies(costs, _scaled(measured, dict(zip(hops, corner, strict=True))),
                         current, candidate, margin)
               for corner in product((1 / factor, factor), repeat=len(hops)))


def _measured_hops(costs: Sequence[AlternativeCost], measured: Measured) -> list[int]:
    """The inter-stage hops some split prices and something was measured on (the source's
    and the sink's hops are not priced)."""
    priced = {h for c in costs for h in c.hop_bytes}
    return sorted(priced & (set(measured.bandwidth_mbps) | set(measured.bandwidth_at_least_mbps)))


# -- trials: re-measuring a split left behind when the link favours it again --------------
@dataclass(frozen=True)
class Trial:
    """The controller's memory of trials: ``armed`` splits were limited by a measured link
    since the last trial; ``candidate`` has qualified for a trial at every observation since
    ``since_s`` (None: none)."""

    armed: frozenset[int] = frozenset()
    candidate: int | None = None
    since_s: float = 0.0


def link_bound(cost: AlternativeCost, measured: Measured,
               costs: Sequence[AlternativeCost] = ()) -> bool:
    """Whether a measured hop limits ``cost``: it would be faster with every measured hop
    infinitely fast.

    >>> a = AlternativeCost(0, (5,), (2.0, 2.0), {1: 125_000}, {1: None})
    >>> link_bound(a, Measured({1: 100.0})), link_bound(a, Measured({1: 1000.0}))
    (True, False)
    """
    return _link_scaled_ips(cost, measured, costs, UNBOUNDED_SCALE) > (
        estimate_throughput_ips(cost, measured, costs) * (1 + LINK_TOLERANCE))


def link_free(cost: AlternativeCost, measured: Measured, costs: Sequence[AlternativeCost] = (),
              factor: float = STRONG_EVIDENCE_FACTOR) -> bool:
    """Whether no link limits ``cost`` even with every measured hop ``factor`` times slower
    (far from the edge of its range: the low corner of :func:`strong_evidence`'s box).

    >>> a = AlternativeCost(0, (5,), (2.0, 2.0), {1: 125_000}, {1: None})
    >>> link_free(a, Measured({1: 1000.0})), link_free(a, Measured({1: 2000.0}))
    (False, True)
    """
    if not _measured_hops(costs or (cost,), measured):
        return False
    return _link_scaled_ips(cost, _known_rates(measured), costs, 1 / factor) >= (
        estimate_throughput_ips(cost, measured, costs) * (1 - LINK_TOLERANCE))


def _link_scaled_ips(cost: AlternativeCost, measured: Measured,
                     costs: Sequence[AlternativeCost], scale: float) -> float:
    hops = _measured_hops(costs or (cost,), measured)
    return estimate_throughput_ips(cost, _scaled(measured, dict.fromkeys(hops, scale)), costs)


def trial_candidate(costs: Sequence[AlternativeCost], measured: Measured, current: int,
                    armed: frozenset[int], factor: float = STRONG_EVIDENCE_FACTOR,
                    drift: float = STALE_DRIFT) -> int | None:
    """The split worth a trial now (the fastest by its stale price; None: none): one
    ``armed`` (a link limited it since the last trial), not the current one, that has run
    (its price is stale: :func:`_ran`), that no link
    limits even ``factor`` times slower, and whose price times ``1 + drift`` beats the current
    split's (its stale busy times may be that much too slow).

    >>> wide = AlternativeCost(0, (3,), (8.0, 8.0), {1: 87_000}, {1: None})
    >>> narrow = AlternativeCost(1, (6,), (10.0, 5.0), {1: 62_000}, {1: None})
    >>> m = Measured({1: 1000.0}, {(0, 0): 11.5, (1, 0): 8.0, (0, 1): 10.5, (1, 1): 5.0})
    >>> trial_candidate((wide, narrow), m, current=1, armed=frozenset({0}))  # 87 vs 95 inf/s
    0
    >>> trial_candidate((wide, narrow), m, current=1, armed=frozenset())  # no link step
    >>> trial_candidate((wide, narrow), replace(m, bandwidth_mbps={1: 200.0}), 1,
    ...                 frozenset({0}))  # 200 / 4 Mbit/s would limit it: near the edge
    """
    ips = {c.id: estimate_throughput_ips(c, measured, costs) for c in costs}
    fits = {c.id: ips[c.id] for c in costs
            if c.id in armed and c.id != current and _ran(measured, c.id)
            and ips[c.id] * (1 + drift) > ips[current] and link_free(c, measured, costs, factor)}
    return best_alternative(fits) if fits else None


def _ran(measured: Measured, alternative: int) -> bool:
    """Whether ``alternative`` has busy times of its own (it ran): only then is its price
    stale. One that never ran is priced from the running split's fresh busy times, and a
    trial of it would be a bet on the cost model's error between the two splits (see the
    module docstring): :func:`decide` prices it as well as anything can."""
    return any(alt == alternative for _, alt in measured.busy_ms)


def next_trial(trial: Trial, costs: Sequence[AlternativeCost], measured: Measured,
               current: int, now_s: float, hold_s: float = DEFAULT_HOLD_S,
               watched: int | None = None, switched: bool = False) -> tuple[Trial, int | None]:
    """The next trial memory, and the split to try now (or None): a candidate of
    :func:`trial_candidate` at every observation for :func:`short_hold_s` (the hold of strong
    evidence: the link step is). Not while :func:`decide` watches (``watched``) another split;
    while it watches the same one the trial's hold runs on — a stale price that qualifies at
    some observations and not at others would restart both watches for ever.

    A switch (``switched``: :func:`decide` has just made one) disarms every split, as a trial
    does: the link step that armed them has been acted on. Otherwise the split a fade made the
    controller leave stays armed after the switch back, and tries again on a steady link as
    soon as the busy times drift (seen replaying the bench's reports: a trial 4 s and 20 s
    after the switch back, each undone a hold later)."""
    if switched:
        return Trial(), None
    armed = trial.armed | {c.id for c in costs if link_bound(c, measured, costs)}
    candidate = trial_candidate(costs, measured, current, armed)
    if watched not in (None, candidate):
        candidate = None
    if candidate is None:
        return Trial(armed), None
    since_s = trial.since_s if trial.candidate == candidate else now_s
    if now_s - since_s >= short_hold_s(hold_s):
        return Trial(), candidate
    return Trial(armed, candidate, since_s), None


# -- the controller process ----------------------------------------------------------------
@dataclass
class _Controller:
    costs: tuple[AlternativeCost, ...]
    hold_s: float
    margin: float
    started_s: float = field(default_factory=time.monotonic)
    state: Hold = field(default_factory=lambda: Hold(0))
    trial: Trial = field(default_factory=Trial)
    measured: Measured = field(default_factory=Measured)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    reports: int = 0
    #: Whether the source has told this controller its split. ``run_controller`` starts
    #: without: a controller (re)started mid-run would otherwise command and decide from split
    #: 0 while the stream runs on another, and its first heartbeat — its own count of
    #: decisions, which the source has not seen — would read as a decision to go back to it.
    split_known: bool = True
    #: The number of the latest decision, the seq of :meth:`command`: decisions made here,
    #: and never below the number the source announces having taken (:meth:`take`), so a
    #: controller restarted mid-run numbers its decisions on from its predecessor's — from 0
    #: again its first decision would carry a number the source has applied, and read as a
    #: heartbeat, and its heartbeats as decisions.
    decision_seq: int = 0

    def take(self, message: Message) -> list[Report]:
        """The reports in ``message``; a switch the source made (a scripted one, or one of
        this controller's decisions as the source applied it) becomes the current split, so
        the controller reasons from what the stream runs on — the source announces every
        switch in the order it makes them, so the last announcement is its split even when a
        decision crossed a scripted switch. A switch to another split disarms the trials, as
        the controller's own switches do (:func:`next_trial`): a split armed before it would
        otherwise be tried at once, with no link step since. An announcement numbered below
        this controller's latest decision was sent before the source took it: it says the
        split the source ran until then, so it changes nothing here (taken, it would undo the
        decision in flight, and a heartbeat would then reach the source as a decision)."""
        if message.kind == "switch" and message.alternative in {c.id for c in self.costs}:
            if message.seq < self.decision_seq and self.split_known:
                return [message.report] if message.report is not None else []
            if message.alternative != self.state.current:
                self.trial, self.state = Trial(), Hold(message.alternative)
            self.split_known = True
            self.decision_seq = max(self.decision_seq, message.seq)
        return [message.report] if message.report is not None else []

    def command(self) -> list[bytes] | None:
        """The switch message to the source: the split the controller believes current, with
        the number of the latest decision as its seq (:attr:`decision_seq`), so the source
        tells a new decision from a heartbeat (one sent before a scripted switch reached here
        would undo it). None until the source has told its split (:attr:`split_known`)."""
        if not self.split_known:
            return None
        return encode_control(KIND_SWITCH, self.decision_seq, time.time(), self.state.current)

    def observe(self, reports: Sequence[Report], now_s: float) -> int | None:
        """Take ``reports`` into the measurements; the split to switch to now, or None (always
        None until the split the stream runs on is known)."""
        by_id = {c.id: c for c in self.costs}
        for report in reports:
            cost = by_id.get(report.alternative)
            starved = cost is not None and link_bound(cost, self.measured, self.costs)
            self.measured = self.measured.with_report(report, starved)
        self.reports += len(reports)
        if not self.split_known:
            return None
        estimates = {c.id: estimate_throughput_ips(c, self.measured, self.costs)
                     for c in self.costs}
        watch, best = self.state, best_alternative(estimates)
        strong = best != watch.current and strong_evidence(self.costs, self.measured,
                                                           watch.current, best, self.margin)
        self.state, switch = decide(watch, estimates, now_s, self.hold_s, self.margin, strong)
        weak = not strong or (watch.candidate == switch and watch.weak)
        self.trial, trial = next_trial(self.trial, self.costs, self.measured, self.state.current,
                                       now_s, self.hold_s, self.state.candidate,
                                       switch is not None)
        if trial is not None:
            self.state, switch, weak = Hold(trial), trial, False
        if switch is not None:
            self.decision_seq += 1
            self._record(now_s, watch.current, switch, estimates, weak, trial is not None)
        return switch

    def _record(self, now_s: float, source: int, switch: int, estimates: Mapping[int, float],
                weak: bool, trial: bool) -> None:
        self.decisions.append({
            "at_s": now_s - self.started_s, "from": source, "to": switch,
            "hold_s": self.hold_s if weak else short_hold_s(self.hold_s),
            "throughput_ips": {str(k): v for k, v in estimates.items() if math.isfinite(v)},
            "measured_bandwidth_mbps": {str(h): v for h, v in
                                        self.measured.best_mbps().items()},
            "trial": trial})
        log.info("switch to alternative %d%s (estimates %s)", switch,
                 " for a trial" if trial else "", estimates)


def run_controller(plan: Plan, listen: str, options: RunOptions, *, hold_s: float = DEFAULT_HOLD_S,
                   margin: float = DEFAULT_MARGIN) -> dict[str, Any]:
    """Serve the source until it ends the stream (or the deadline / a signal)."""
    from hwsched.runtime.frames import FrameError, decode_message
    from hwsched.runtime.process import POLL_S, StopFlag, mark_ready, write_stats
    from hwsched.runtime.transport import open_channel, wait_readable

    stop = StopFlag()
    controller = _Controller(alternative_costs(plan), hold_s, margin, split_known=False)
    channel = open_channel(listen, listen=True, hwm=options.hwm, curve=options.curve(),
                           specs={})
    peer: bytes | None = None
    ended, beat_s = False, 0.0
    try:
        mark_ready(options.ready, channel.bound_url)
        deadline = options.deadline_s()
        while not stop.set and not ended and time.monotonic() < deadline:
            wait_readable([channel], POLL_S)
            reports = []
            while (received := channel.receive()) is not None:
                try:
                    message = decode_message(received[1], {})
                except FrameError as error:
                    log.warning("controller: dropped a malformed message: %s", error)
                    continue
                peer = received[0]
                ended = ended or message.kind == "end"
                reports += controller.take(message)
            switch = controller.observe(reports, time.monotonic()) if reports else None
            command = controller.command()
            if peer is not None and command is not None and (
                    switch is not None or time.monotonic() >= beat_s):
                channel.send(command, peer)
                beat_s = time.monotonic() + HEARTBEAT_S
    finally:
        channel.close()
    stats = {"role": "controller", "reports": controller.reports,
             "decisions": controller.decisions, "ended": ended}
    write_stats(options.stats, stats)
    return stats


def parse_switch_schedule(text: str, alternatives: int | None = None
                          ) -> tuple[tuple[int, int], ...]:
    """``SEQ:ALT[,SEQ:ALT…]`` → sorted ``(seq, alternative)`` pairs (a scripted switch: from
    frame SEQ on, run on ALT).

    >>> parse_switch_schedule("40:1,10:0")
    ((10, 0), (40, 1))
    """
    from hwsched.errors import RunError

    pairs = []
    for item in (x for x in text.split(",") if x.strip()):
        seq, _, alt = item.partition(":")
        if not (seq.strip().isdigit() and alt.strip().isdigit()):
            raise RunError(f"--switch-at {text!r}: each entry is SEQ:ALT (e.g. 40:1)")
        if alternatives is not None and int(alt) >= alternatives:
            raise RunError(f"--switch-at {text!r}: alternative {int(alt)} is not in the plan "
                           f"(0..{alternatives - 1})")
        pairs.append((int(seq), int(alt)))
    return tuple(sorted(pairs))
