"""Re-rank splits on better stage times: stages timed whole, or splits run as pipelines.

:func:`rank_splits` costs a stage as the sum of its layers (from the roofline or a segment
profile), plus, given ``runtime``, the runner's own per-frame work on its core
(:mod:`hwsched.schedule.handoff`: :func:`with_runtime_cost` charges one candidate, and is
imported from here too). What it cannot see is measured here, on candidates it ranked:

* :func:`refine` — stage times measured whole, each stage while its partner stage runs on the
  other core (``hwsched analyze --refine K``); those stages' ``latency_source`` is
  ``measured``;
* :func:`refine_iteratively` — the measuring loop: the K splits :func:`distinct_splits` picks
  are measured, the profile is corrected at the splits measured so far (:class:`TimeMap`: a
  monotone map from a stage's predicted time to its measured time, one per stage role and
  board), every split re-ranked on the corrected times, and the corrected rank 1 measured too,
  until the corrected rank 1 is a split already measured. A segment profile that puts the
  time in the wrong layers (early memory-bound layers look heavier cut into small segments
  than inside a stage) ranks the real best split far down; refining only its top K never
  sees it, this loop walks to it. With ``repeats`` (1 or even) it measures every split
  ``repeats - 1`` more times, each pass in the reverse order of the one before, and ranks on
  the means (:func:`mean_of_passes`), so a drift of the machine's speed does not rank a split
  by when it ran; with ``confirm`` it measures the rank 1 so found again, apart from the
  ranking, and gives that figure (the winner's curse: the best of several noisy measurements
  of splits about as fast is, on average, a lucky one — the prediction of the split chosen was
  2-8% above what it then ran at);
* :func:`pipeline_stage_ms` — a stage's time as a running pipeline measured it (each core's
  CPU per frame: ``analyze --refine-by pipeline``), in place of stages timed whole.

Links keep their cost; a candidate's period is again the slowest stage or link, its latency
the sum. Energy keeps the analytic estimate. For two boards :func:`rank_splits` lists every
split, so re-ranking all of them with the runtime cost is exact; ``refine`` re-ranks the
measured ones among themselves.

>>> from hwsched.schedule import rank_splits
>>> from hwsched.schedule.synthetic import synthetic_graph
>>> ranking = rank_splits(synthetic_graph(12, seed=4), ["rpi4", "rpi5"], "gige")
>>> slow_head = {split_key(c): (100.0 - c.cut_positions[0], 1.0) for c in ranking.candidates}
>>> refined = refine(ranking.candidates[:3], slow_head, "throughput")
>>> [c.rank for c in refined.candidates], refined.sources[split_key(refined.best)]
([1, 2, 3], ('measured', 'measured'))
>>> refined.best.cut_positions == max(c.cut_positions for c in ranking.candidates[:3])
True
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hwsched.costs.latency import MEASURED_SOURCE
from hwsched.errors import ScheduleError
from hwsched.schedule.handoff import boundary_bytes, restage, with_runtime_cost
from hwsched.schedule.records import Candidate

__all__ = ["boundary_bytes", "restage", "with_runtime_cost"]  # moved; imported from here too

#: What tells two measured splits apart (:func:`split_key`).
SplitKey = tuple[tuple[int, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def split_key(candidate: Candidate) -> SplitKey:
    """The cuts, each stage's platform and precision, and each link's compression: under
    ``--assign auto`` the same cuts run on other boards in another order (other stage times),
    and a link's compression changes the hand-off charged on top of them, so a measurement
    belongs to a split only by all of these, never by its cuts alone.

    >>> from hwsched.schedule import rank_splits
    >>> from hwsched.schedule.synthetic import synthetic_graph
    >>> ranking = rank_splits(synthetic_graph(8, seed=1), ["rpi4", "jetson_nano"], "gige",
    ...                       assign="auto", stages=2)
    >>> a, b = (c for c in ranking.candidates if c.cut_positions == (4,))
    >>> split_key(a) != split_key(b), a.assignment == b.assignment[::-1]
    (True, True)
    """
    return (candidate.cut_positions, candidate.assignment,
            tuple(stage.cost.precision for stage in candidate.stages),
            tuple(link.compression for link in candidate.links))


def rerank(candidates: Sequence[Candidate], objective: str) -> tuple[Candidate, ...]:
    """Sorted by the objective (ties: the other objectives, then cut positions), ranks 1…n."""
    ordered = sorted(candidates, key=lambda c: c.sort_key(objective, {}))
    return tuple(replace(c, rank=i + 1) for i, c in enumerate(ordered))


@dataclass(frozen=True)
class Refinement:
    """Candidates re-ranked on measured stage times, beside what was predicted before."""

    objective: str
    candidates: tuple[Candidate, ...]
    #: The same splits as first predicted, by :func:`split_key`.
    predicted: Mapping[SplitKey, Candidate]
    #: ``latency_source`` of each stage, by :func:`split_key`.
    sources: Mapping[SplitKey, tuple[str, ...]]
    #: Further per-stage fields for the JSON (e.g. the measured busy and runtime parts).
    extras: Mapping[SplitKey, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    #: In which measuring round each split was measured (0: the first K;
    #: :func:`refine_iteratively`).
    rounds: Mapping[SplitKey, int] = field(default_factory=dict)
    #: How the splits were measured (``analyze --refine-by``): ``paired`` (stages timed whole
    #: beside each other, plus the runner's modelled cost) or ``pipeline`` (run by the runners
    #: for ``frames`` frames).
    measured_by: str = "paired"
    frames: int | None = None
    #: How often each split was measured (:func:`refine_iteratively`'s ``repeats``).
    passes: int = 1
    #: The split measured again after the ranking (:func:`refine_iteratively`'s ``confirm``),
    #: by :func:`split_key`: as its selection passes had it (its figure now is the
    #: confirmation's).
    confirmed: Mapping[SplitKey, Candidate] = field(default_factory=dict)
    #: How often a confirmed split was measured again.
    confirm_passes: int = 0

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def extras_of(self, candidate: Candidate) -> tuple[Mapping[str, Any], ...]:
        """The per-stage extras measured for ``candidate`` (by its :func:`split_key`)."""
        return self.extras[split_key(candidate)]

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for candidate in self.candidates:
            row = candidate.to_dict()
            cuts = split_key(candidate)
            before = self.predicted[cuts]
            extras = self.extras.get(cuts, ({},) * len(row["stages"]))
            for stage, source, old, extra in zip(row["stages"], self.sources[cuts],
                                                 before.stages, extras, strict=True):
                stage["latency_source"] = source
                stage["predicted_latency_ms"] = old.cost.latency_ms
                stage.update(extra)
            row["predicted_rank"] = before.rank
            row["predicted_throughput_ips"] = before.throughput_ips
            if cuts in self.rounds:
                row["refine_round"] = self.rounds[cuts]
            row["confirmed"] = cuts in self.confirmed
            if cuts in self.confirmed:  # what it was ranked first on, before the confirmation
                row["selection_throughput_ips"] = self.confirmed[cuts].throughput_ips
                row["selection_latency_ms"] = self.confirmed[cuts].latency_ms
            rows.append(row)
        method: dict[str, Any] = {"measured_by": self.measured_by, "passes": self.passes,
                                  "confirm_passes": self.confirm_passes}
        if self.frames is not None:
            method["frames"] = self.frames
        return {"objective": self.objective, **method, "candidates": rows,
                "best_cut_positions": list(self.best.cut_positions),
                # under --assign auto the same cuts win or lose by the boards' order
                "best_platforms": list(self.best.assignment)}


def refine(candidates: Sequence[Candidate], stage_ms: Mapping[SplitKey, Sequence[float]],
           objective: str,
           extras: Mapping[SplitKey, tuple[Mapping[str, Any], ...]] | None = None,
           rounds: Mapping[SplitKey, int] | None = None,
           ) -> Refinement:
    """Re-rank ``candidates`` with their stage times replaced by ``stage_ms`` (by
    :func:`split_key`); candidates without measurements are dropped (their times are not
    comparable)."""
    measured = [c for c in candidates if split_key(c) in stage_ms]
    if not measured:
        raise ScheduleError("refine: none of the candidates has measured stage times")
    restaged = [restage(c, stage_ms[split_key(c)]) for c in measured]
    return Refinement(
        objective=objective,
        candidates=rerank(restaged, objective),
        predicted={split_key(c): c for c in measured},
        sources={split_key(c): (MEASURED_SOURCE,) * len(c.stages) for c in measured},
        extras=dict(extras or {}),
        rounds=dict(rounds or {}),
    )


def pipeline_stage_ms(stage_cpu_ms: Sequence[float | None], core_cpu_ms: Sequence[float | None],
                      busy_ms: Sequence[float], runtime_ms: Sequence[float],
                      speeds: Sequence[float | None] | None = None,
                      period_ms: float | None = None) -> list[float]:
    """Each stage's time per frame on its core as a running pipeline measured it, with the
    runner's per-frame cost in it (the basis of charged candidates): the CPU per frame of
    everything on the stage's core (``core_cpu_ms``: the stage process, the source or sink
    pinned beside it, a stage sharing the core); a stage capped at a fraction ``s`` of a core
    (``speeds``) spends its own CPU (``stage_cpu_ms``) over ``1/s`` as long, the rest running
    in the share its cap leaves, so ``max(own / s, core)``. Where a part was not measured:
    the stage's median invocation ``busy_ms`` plus the modelled ``runtime_ms``.

    With the run's measured ``period_ms`` (its steady throughput's), the busiest stage takes
    that time and no stage more: the period is what the pipeline sustained. It exceeds the
    busiest core's CPU per frame where the pipeline waits (a capped board's throttling
    stalls its partner through the window: 8% on EfficientNet-B0 capped at 1.0 / 0.5) and
    falls below it where the CPU counted the run's warm-up and end.

    >>> pipeline_stage_ms([2.0, 3.0], [2.5, 3.5], [1.8, 2.6], [0.3, 0.3])
    [2.5, 3.5]
    >>> pipeline_stage_ms([2.0, 3.0], [2.5, 3.5], [1.8, 2.6], [0.3, 0.3], speeds=[None, 0.5])
    [2.5, 6.0]
    >>> pipeline_stage_ms([None, 3.0], [None, 3.5], [1.5, 2.6], [0.25, 0.3])
    [1.75, 3.5]
    >>> pipeline_stage_ms([2.0, 3.0], [2.5, 3.5], [1.8, 2.6], [0.3, 0.3], period_ms=3.8)
    [2.5, 3.8]
    >>> pipeline_stage_ms([2.0, 3.0], [3.4, 3.5], [1.8, 2.6], [0.3, 0.3], period_ms=3.3)
    [3.3, 3.3]
    """
    n = len(stage_cpu_ms)
    caps = list(speeds) if speeds is not None else [None] * n
    if not n or not len(core_cpu_ms) == len(busy_ms) == len(runtime_ms) == len(caps) == n:
        raise ScheduleError(f"pipeline times of {n}, {len(core_cpu_ms)}, {len(busy_ms)}, "
                            f"{len(runtime_ms)} and {len(caps)} stages do not match")
    times = []
    for own, core, busy, extra, cap in zip(stage_cpu_ms, core_cpu_ms, busy_ms, runtime_ms,
                                            caps, strict=True):
        if own is None or core is None:
            times.append(busy + extra)
        else:
            times.append(max(own / cap, core) if cap else float(core))
    if period_ms is None or period_ms <= 0:
        return times
    busiest = times.index(max(times))
    return [period_ms if k == busiest else min(t, period_ms) for k, t in enumerate(times)]


# -- the measuring loop ------------------------------------------------------------------------
#: ``--refine K`` picks its first K splits among those a profile cannot tell from rank 1:
#: the listed splits (every split, for two boards; ``rank_splits`` lists the top ones for more)
#: whose period, latency or energy (the objective) is at most ``1 + REFINE_BAND`` times rank
#: 1's — segment profiles on these hosts have been off by up to a third, and wrong in the order
#: of cuts 10-15% apart —, and never fewer than the ``REFINE_POOL x K`` best.
REFINE_BAND = 0.25
REFINE_POOL = 4
#: Rounds of follow-up measurements after the first K (each measures the corrected rank 1 and,
#: when it too is new, rank 2).
MAX_FOLLOW_UP_ROUNDS = 4
FOLLOW_UP_PER_ROUND = 2


def refine_pool(candidates: Sequence[Candidate], k: int, objective: str = "throughput",
                band: float = REFINE_BAND) -> list[Candidate]:
    """The distinct feasible splits (by :func:`split_key`, in the given rank order) predicted
    within ``band`` of the best one's ``objective`` (a period, latency or energy at most
    ``1 + band`` times the best), and at least the ``REFINE_POOL x K`` first."""
    distinct: dict[SplitKey, Candidate] = {}
    for candidate in candidates:
        if candidate.feasible:
            distinct.setdefault(split_key(candidate), candidate)
    ranked = list(distinct.values())
    if not ranked:
        return []
    limit = min(c.objective_value(objective) for c in ranked) * (1.0 + band)
    top = max(REFINE_POOL * k, k)
    return [c for i, c in enumerate(ranked) if i < top or c.objective_value(objective) <= limit]


def distinct_splits(candidates: Sequence[Candidate], k: int, objective: str = "throughput",
                    band: float = REFINE_BAND) -> list[Candidate]:
    """Rank 1 and K-1 more splits spread evenly (by cut position) over :func:`refine_pool`: a
    profile that puts time in the wrong layers ranks the real best split anywhere among those
    it predicts within ``band`` of rank 1, on both sides of it, so refining only the next few
    (often cuts inside one block) would miss it; splits spread over the band also give the
    loop's :class:`TimeMap` anchors near both ends, where it would otherwise extrapolate."""
    pool = refine_pool(candidates, k, objective, band)
    if len(pool) <= k:
        return pool
    # by stage count, then by cuts: (5,), (6,), (5, 10), not (5,), (5, 10), (6,)
    first, rest = pool[0], sorted(pool[1:], key=lambda c: (len(c.cut_positions), split_key(c)))
    step = len(rest) / (k - 1) if k > 1 else 0
    return [first, *(rest[int(i * step + step / 2)] for i in range(k - 1))]


@dataclass(frozen=True)
class TimeMap:
    """A monotone map from a stage's predicted ms to its measured ms: linear between anchors
    (predicted, measured) made non-decreasing by pooling adjacent violators, proportional
    beyond the outermost anchors (the ratio there carries on).

    >>> m = TimeMap.fit([(2.0, 1.0), (4.0, 3.0), (8.0, 5.0)])
    >>> [m(x) for x in (1.0, 3.0, 8.0, 16.0)]
    [0.5, 2.0, 5.0, 10.0]
    >>> TimeMap.fit([(1.0, 3.0), (2.0, 1.0)]).anchors   # noise pooled: never decreasing
    ((1.5, 2.0),)
    """

    anchors: tuple[tuple[float, float], ...]

    @classmethod
    def fit(cls, points: Sequence[tuple[float, float]]) -> TimeMap:
        blocks: list[list[float]] = []  # [sum predicted, sum measured, count]
        for predicted, measured in sorted(points):
            blocks.append([predicted, measured, 1.0])
            while len(blocks) > 1 and (blocks[-2][1] / blocks[-2][2]
                                       > blocks[-1][1] / blocks[-1][2]
                                       or blocks[-2][0] / blocks[-2][2]
                                       == blocks[-1][0] / blocks[-1][2]):
                last = blocks.pop()
                blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
        return cls(tuple((p / n, m / n) for p, m, n in blocks))

    def __call__(self, predicted_ms: float) -> float:
        points = self.anchors
        if predicted_ms <= points[0][0]:
            return predicted_ms * _ratio(points[0])
        if predicted_ms >= points[-1][0]:
            return predicted_ms * _ratio(points[-1])
        for (p0, m0), (p1, m1) in itertools.pairwise(points):
            if p0 <= predicted_ms <= p1:
                return m0 + (m1 - m0) * (predicted_ms - p0) / (p1 - p0)
        raise AssertionError("unreachable: anchors cover the range")


def _ratio(anchor: tuple[float, float]) -> float:
    return anchor[1] / anchor[0] if anchor[0] > 0 else 1.0


def stage_role(k: int, n: int) -> str:
    """``whole``, ``first``, ``last`` or ``middle``: stages in one role of one board share a
    :class:`TimeMap` (a first stage's time grows with its cut, a last stage's shrinks)."""
    if n == 1:
        return "whole"
    return "first" if k == 0 else "last" if k == n - 1 else "middle"


def _map_key(candidate: Candidate, k: int) -> tuple[str, str, str]:
    stage = candidate.stages[k]
    return stage_role(k, len(candidate.stages)), stage.cost.platform, stage.cost.precision


def time_maps(measured: Sequence[tuple[Candidate, Sequence[float]]]
              ) -> dict[tuple[str, str, str] | None, TimeMap]:
    """One :class:`TimeMap` per (role, platform, precision) from candidates and their measured
    stage ms (the same basis as the candidates' stage times), and under ``None`` one
    proportional map of the median ratio over all stages for stages of a key never measured."""
    points: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for candidate, stage_ms in measured:
        for k, ms in enumerate(stage_ms):
            points.setdefault(_map_key(candidate, k), []).append(
                (candidate.stages[k].cost.latency_ms, float(ms)))
    maps: dict[tuple[str, str, str] | None, TimeMap] = {
        key: TimeMap.fit(values) for key, values in points.items()}
    ratios = [m / p for values in points.values() for p, m in values if p > 0]
    if ratios:
        maps[None] = TimeMap(((1.0, statistics.median(ratios)),))
    return maps


def corrected(candidate: Candidate, maps: Mapping[Any, TimeMap]) -> Candidate:
    """``candidate`` with each stage's time mapped by its key's :class:`TimeMap`."""
    identity = TimeMap(((1.0, 1.0),))
    stage_ms = [maps.get(_map_key(candidate, k), maps.get(None, identity))(s.cost.latency_ms)
                for k, s in enumerate(candidate.stages)]
    return restage(candidate, stage_ms)


def follow_ups(candidates: Sequence[Candidate], measured: Mapping[SplitKey, Sequence[float]],
               objective: str, charge: Callable[[Candidate], Candidate] = lambda c: c,
               per_round: int = FOLLOW_UP_PER_ROUND) -> list[Candidate]:
    """The splits to measure next: re-rank every feasible candidate on its times corrected at
    the splits measured so far (``charge`` adds what the measurement does not hold, e.g. the
    runner's hand-off cost); none when the corrected rank 1 is already measured, else the
    best ``per_round`` not yet measured among the first ``per_round``."""
    by_key = {split_key(c): c for c in candidates}
    maps = time_maps([(by_key[key], ms) for key, ms in measured.items() if key in by_key])
    feasible = [c for c in candidates if c.feasible]
    if not maps or not feasible:
        return []
    ranked = rerank([charge(corrected(c, maps)) for c in feasible], objective)
    if split_key(ranked[0]) in measured:
        return []
    return [by_key[split_key(c)] for c in ranked[:per_round] if split_key(c) not in measured]


def refine_iteratively(candidates: Sequence[Candidate], k: int,
                       measure: Callable[[Candidate], tuple[Sequence[float],
                                                            tuple[Mapping[str, Any], ...]]],
                       objective: str, charge: Callable[[Candidate], Candidate] = lambda c: c,
                       max_rounds: int = MAX_FOLLOW_UP_ROUNDS, repeats: int = 1,
                       confirm: int = 0) -> Refinement:
    """Measure :func:`distinct_splits`' K splits, then follow the corrected ranking
    (:func:`follow_ups`) for at most ``max_rounds`` more rounds; re-rank the measured splits.
    With ``repeats`` (1 or even) > 1, every measured split is measured again, ``repeats - 1``
    more passes, each in the reverse order of the one before (A B C, C B A, A B C, C B A: a
    drift of the machine's speed that is linear in time then weighs on every split alike,
    which an odd number of passes would not give), and ranked on each stage's mean; its
    extras are the passes' means (:func:`mean_of_passes`), and ``pass_ms`` each pass's stage
    time as ranked (the charge added).

    With ``confirm`` > 0, the split ranked first is then measured ``confirm`` times more and
    its times become the mean of those measurements alone: selecting the best of several noisy
    measurements picks, on average, a lucky one, so the figure it was selected on is biased
    (optimistic); a measurement made after the choice, which the choice does not depend on,
    is not. It stays first, also when that figure falls behind the next split's: that one's
    figure is one of the noisy measurements the choice was made among (re-ranking on the new
    figure and confirming the next split in turn brings the bias back: the last split
    confirmed would be the one whose confirmation came out lucky).

    ``measure(candidate)`` returns ``(busy_ms, extras)``: each stage's measured time on the
    basis of the candidates' own stage times, and per-stage JSON extras; ``charge`` turns a
    candidate with such times into one with what else a frame costs (the runner's hand-off),
    so ranks compare like with like. Pure but for ``measure``."""
    if repeats < 1 or (repeats > 1 and repeats % 2):
        raise ScheduleError(f"refine: {repeats} passes; 1 or an even number (each pass pairs "
                            f"with one in the reverse order)")
    if confirm < 0:
        raise ScheduleError(f"refine: {confirm} confirmation passes; 0 or more")
    passes: dict[SplitKey, list[tuple[list[float], tuple[Mapping[str, Any], ...]]]] = {}
    rounds: dict[SplitKey, int] = {}
    measured: dict[SplitKey, Candidate] = {}

    def take(candidate: Candidate) -> None:
        stage_busy, stage_extras = measure(candidate)
        passes.setdefault(split_key(candidate), []).append((list(stage_busy), stage_extras))

    def first_pass() -> dict[SplitKey, Sequence[float]]:
        return {key: runs[0][0] for key, runs in passes.items()}

    for candidate in distinct_splits(candidates, k, objective):
        measured[split_key(candidate)], rounds[split_key(candidate)] = candidate, 0
        take(candidate)
    for round_index in range(1, max_rounds + 1):
        nxt = follow_ups(candidates, first_pass(), objective, charge)
        if not nxt:
            break
        for candidate in nxt:
            measured[split_key(candidate)], rounds[split_key(candidate)] = candidate, round_index
            take(candidate)
    order = list(passes)
    for _ in range(repeats - 1):
        order.reverse()
        for key in order:
            take(measured[key])

    def ranked_ms(key: SplitKey, stage_ms: Sequence[float]) -> list[float]:
        return [s.cost.latency_ms for s in charge(restage(measured[key], stage_ms)).stages]

    busy: dict[SplitKey, list[float]] = {}
    extras: dict[SplitKey, tuple[Mapping[str, Any], ...]] = {}
    for key, runs in passes.items():
        if repeats == 1:
            busy[key], extras[key] = runs[0][0], runs[0][1]
        else:
            busy[key], extras[key] = mean_of_passes(
                runs, [ranked_ms(key, stage_ms) for stage_ms, _ in runs])
    charged = {key: ranked_ms(key, times) for key, times in busy.items()}
    refinement = replace(refine(list(measured.values()), charged, objective, extras, rounds),
                         passes=repeats)
    if not confirm:
        return refinement
    # the split chosen, measured again: a figure its choice did not depend on
    key = split_key(refinement.best)
    runs = [measure(measured[key]) for _ in range(confirm)]
    again_ms, again = mean_of_passes([(list(ms), more) for ms, more in runs],
                                     [ranked_ms(key, ms) for ms, _ in runs])
    best = replace(restage(measured[key], ranked_ms(key, again_ms)), rank=1)
    confirmed_extras = tuple({**stage, "selection_pass_ms": before.get("pass_ms", [ms])}
                             for stage, before, ms in zip(again, extras[key], charged[key],
                                                          strict=True))
    return replace(refinement, candidates=(best, *refinement.candidates[1:]),
                   extras={**refinement.extras, key: confirmed_extras},
                   confirmed={key: refinement.best}, confirm_passes=confirm)


def mean_of_passes(runs: Sequence[tuple[Sequence[float], tuple[Mapping[str, Any], ...]]],
                   shown_ms: Sequence[Sequence[float]] | None = None
                   ) -> tuple[list[float], tuple[dict[str, Any], ...]]:
    """Each stage's mean time over the passes, and its extras: of each field any pass gave,
    the mean where every pass gave a number, the value where all gave the same, else None;
    and ``pass_ms``, the stage's time in each pass (``shown_ms``, default the runs' own).

    >>> times, (first, second) = mean_of_passes([
    ...     ([2.0, 4.0], ({"busy_ms": 1.0, "x": "a"}, {"busy_ms": 3.0})),
    ...     ([4.0, 6.0], ({"busy_ms": 2.0, "x": "a"}, {"busy_ms": None, "y": 1}))])
    >>> times
    [3.0, 5.0]
    >>> first
    {'busy_ms': 1.5, 'x': 'a', 'pass_ms': [2.0, 4.0]}
    >>> second
    {'busy_ms': None, 'y': None, 'pass_ms': [4.0, 6.0]}
    """
    stages = len(runs[0][0])
    shown = shown_ms if shown_ms is not None else [run[0] for run in runs]
    times = [statistics.fmean(float(run[0][k]) for run in runs) for k in range(stages)]

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    merged = []
    for k in range(stages):
        names = list(dict.fromkeys(name for run in runs for name in run[1][k]))
        stage: dict[str, Any] = {}
        for name in names:
            values = [run[1][k].get(name) for run in runs]
            stage[name] = (statistics.fmean(values) if all(number(v) for v in values)
                           else values[0] if all(v == values[0] for v in values) else None)
        stage["pass_ms"] = [float(ms[k]) for ms in shown]
        merged.append(stage)
    return times, tuple(merged)


@dataclass(frozen=True)
class GraphPlanTiming:
    """An exported stage graph's stages timed whole on this machine, and the frame latency
    they predict with the runner's hand-off cost (:func:`time_graph_plan`)."""

    #: Per stage, in the plan's order: ms of one invocation, beside its partner.
    stage_ms: tuple[float, ...]
    #: Per stage: the stage it was timed beside (None: alone).
    partners: tuple[int | None, ...]
    latency_ms: float


def _plan_resource(stage) -> str:
    """What a plan stage computes on, as :func:`hwsched.costs.placement.resource_of` names it:
    its board, or the board's core set when the plan pins it (stages of one board on disjoint
    core sets compute at once); a stage without a board is a resource of its own."""
    if stage.board is None:
        return f"#{stage.index}"
    if stage.cores is None:
        return stage.board
    return f"{stage.board}[{','.join(str(c) for c in sorted(stage.cores))}]"


def _single_cpu_resources(plan) -> frozenset[str]:
    """The plan's resources (:func:`_plan_resource`) that are one CPU: a stage pinned to a
    core set of exactly one. A board without cores runs its stages on CPUs of their own in
    ``emulate``, and a set of several CPUs runs a hop's two ends at once."""
    return frozenset(_plan_resource(stage) for stage in plan.stages
                     if stage.board is not None and stage.cores is not None
                     and len(set(stage.cores)) == 1)


def time_graph_plan(plan_dir, partners: Sequence[int | None], runtime, model_outputs:
                    Sequence[str], *, gap_ms: float = 0.0, threads: int = 1,
                    runs: int | None = None, progress=None,
                    same_core_runtime=None) -> GraphPlanTiming:
    """Time an exported stage-graph plan's stages paced (``gap_ms``), each beside the stage
    that overlaps it in the one-frame schedule
    (:meth:`hwsched.costs.placement.PlacementCoster.co_run_partners`), and play one frame
    from those times and ``runtime``'s hand-offs, each board's stages on its core
    (:func:`hwsched.tiles.timing.plan_frame_latency_ms`): the refined prediction a graph
    candidate's measured stages give, as ``--refine`` gives a chain's. With
    ``same_core_runtime`` a hop whose ends share one CPU is priced with its wire part, as the
    planner's :class:`~hwsched.costs.placement.PlacementCoster` given it prices it.
    TensorFlow-free."""
    from pathlib import Path

    from hwsched.deployment import check_stage_file, load_plan
    from hwsched.runtime.profile import DEFAULT_RUNS, time_stages_beside
    from hwsched.tiles.timing import plan_frame_latency_ms

    plan = load_plan(Path(plan_dir))
    if len(partners) != len(plan.stages):
        raise ScheduleError(f"{plan_dir}: {len(partners)} partners given for "
                            f"{len(plan.stages)} stages")
    contents = [check_stage_file(Path(plan_dir), stage).read_bytes() for stage in plan.stages]
    stage_ms = time_stages_beside(contents, partners, threads=threads,
                                  runs=runs or DEFAULT_RUNS, progress=progress, gap_ms=gap_ms)
    cores = [_plan_resource(stage) for stage in plan.stages]
    latency = plan_frame_latency_ms(plan, stage_ms, cores, runtime, model_outputs,
                                    same_core_runtime=same_core_runtime,
                                    single_cpu=_single_cpu_resources(plan))
    return GraphPlanTiming(tuple(stage_ms), tuple(partners), latency)
