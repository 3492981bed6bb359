"""Re-rank splits on better stage times: the runner's per-frame cost, and stages timed whole.

:func:`rank_splits` costs a stage as the sum of its layers (from the roofline or a segment
profile). Two things it cannot see are added here, on candidates it already ranked:

* :func:`with_runtime_cost` — the runner's own per-frame work on each core (encode and send on
  the sending core, receive, decode and hand-off on the receiving one;
  :mod:`hwsched.costs.runtime`), which depends on the bytes that cross each cut;
  :func:`with_handoff_costs` charges a whole ranking and re-ranks it;
* :func:`refine` — stage times measured whole, each stage while its partner stage runs on the
  other core (``hwsched analyze --refine K``); those stages' ``latency_source`` is
  ``measured``.

Links keep their cost; a candidate's period is again the slowest stage or link, its latency
the sum. Energy keeps the analytic estimate. For two boards :func:`rank_splits` lists every
split, so re-ranking all of them with the runtime cost is exact; ``refine`` re-ranks the
measured ones among themselves.

>>> from hwsched.schedule import rank_splits
>>> from hwsched.schedule.synthetic import synthetic_graph
>>> ranking = rank_splits(synthetic_graph(12, seed=4), ["rpi4", "rpi5"], "gige")
>>> slow_head = {c.cut_positions: (100.0 - c.cut_positions[0], 1.0) for c in ranking.candidates}
>>> refined = refine(ranking.candidates[:3], slow_head, "throughput")
>>> [c.rank for c in refined.candidates], refined.sources[refined.best.cut_positions]
([1, 2, 3], ('measured', 'measured'))
>>> refined.best.cut_positions == max(c.cut_positions for c in ranking.candidates[:3])
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hwsched.costs.latency import MEASURED_SOURCE
from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import ScheduleError
from hwsched.ir import LayerGraph
from hwsched.schedule.api import _speedup
from hwsched.schedule.records import Candidate, Ranking


def restage(candidate: Candidate, stage_ms: Sequence[float]) -> Candidate:
    """``candidate`` with its stage times replaced; period and latency recomputed."""
    if len(stage_ms) != len(candidate.stages):
        raise ScheduleError(f"{len(stage_ms)} stage times for a {len(candidate.stages)}-stage "
                            f"split at {list(candidate.cut_positions)}")
    stages = tuple(replace(s, cost=replace(s.cost, latency_ms=float(ms)))
                   for s, ms in zip(candidate.stages, stage_ms, strict=True))
    links = [link.latency_ms for link in candidate.links]
    return replace(candidate, stages=stages, period_ms=max([*stage_ms, *links]),
                   latency_ms=float(sum(stage_ms) + sum(links)))


def rerank(candidates: Sequence[Candidate], objective: str) -> tuple[Candidate, ...]:
    """Sorted by the objective (ties: the other objectives, then cut positions), ranks 1…n."""
    ordered = sorted(candidates, key=lambda c: c.sort_key(objective, {}))
    return tuple(replace(c, rank=i + 1) for i, c in enumerate(ordered))


def boundary_bytes(graph: LayerGraph, candidate: Candidate) -> list[int]:
    """Payload bytes into each stage and out of the last: model input, each cut, output."""
    inputs = sum(t.bytes for layer in graph.input_layers for t in layer.outputs)
    outputs = sum(graph.tensor(name).bytes for name in graph.outputs)
    return [inputs, *(link.transfer_bytes for link in candidate.links), outputs]


def with_runtime_cost(graph: LayerGraph, candidate: Candidate, cost: RuntimeCost) -> Candidate:
    """Each stage's time plus its core's share of the hand-offs it touches: the receiving end
    of the hop into it and the sending end of the hop out of it (the first core also runs the
    source, the last the sink; :mod:`hwsched.costs.runtime`). The period is again the busiest
    core or link; the latency counts every hop whole: both ends in the stages, a cut's wire in
    its link, the source's and the sink's wire added here."""
    sizes = boundary_bytes(graph, candidate)
    n = len(candidate.stages)
    extra = [cost.stage_ms(sizes[k], sizes[k + 1], first=k == 0, last=k == n - 1)
             for k in range(n)]
    charged = restage(candidate, [s.cost.latency_ms + e
                                  for s, e in zip(candidate.stages, extra, strict=True)])
    # a cut's wire is its link's latency already; the source's and the sink's hops have none
    wire_ms = cost.wire_ms(sizes[0]) + cost.wire_ms(sizes[-1])
    return replace(charged, latency_ms=charged.latency_ms + wire_ms)


def with_handoff_costs(graph: LayerGraph, ranking: Ranking, cost: RuntimeCost) -> Ranking:
    """The ranking with every candidate and baseline charged the hand-off cost and re-ranked.

    Exact for two boards, where :func:`~hwsched.schedule.rank_splits` lists every split; with
    more, the splits its search kept are re-ranked among themselves."""
    candidates = rerank([with_runtime_cost(graph, c, cost) for c in ranking.candidates],
                        ranking.objective)
    baselines = tuple(with_runtime_cost(graph, b, cost) for b in ranking.baselines)
    speedup, best_baseline = _speedup(candidates[0] if candidates else None, baselines,
                                      ranking.objective)
    return replace(ranking, candidates=candidates, baselines=baselines, speedup=speedup,
                   best_baseline=best_baseline)


@dataclass(frozen=True)
class Refinement:
    """Candidates re-ranked on measured stage times, beside what was predicted before."""

    objective: str
    candidates: tuple[Candidate, ...]
    #: The same splits as first predicted, by cut positions.
    predicted: Mapping[tuple[int, ...], Candidate]
    #: ``latency_source`` of each stage, by cut positions.
    sources: Mapping[tuple[int, ...], tuple[str, ...]]
    #: Further per-stage fields for the JSON (e.g. the measured busy and runtime parts).
    extras: Mapping[tuple[int, ...], tuple[Mapping[str, Any], ...]] = field(
        default_factory=dict)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for candidate in self.candidates:
            row = candidate.to_dict()
            before = self.predicted[candidate.cut_positions]
            cuts = candidate.cut_positions
            extras = self.extras.get(cuts, ({},) * len(row["stages"]))
            for stage, source, old, extra in zip(row["stages"], self.sources[cuts],
                                                 before.stages, extras, strict=True):
                stage["latency_source"] = source
                stage["predicted_latency_ms"] = old.cost.latency_ms
                stage.update(extra)
            row["predicted_rank"] = before.rank
            row["predicted_throughput_ips"] = before.throughput_ips
            rows.append(row)
        return {"objective": self.objective, "candidates": rows,
                "best_cut_positions": list(self.best.cut_positions)}


def refine(candidates: Sequence[Candidate], stage_ms: Mapping[tuple[int, ...], Sequence[float]],
           objective: str,
           extras: Mapping[tuple[int, ...], tuple[Mapping[str, Any], ...]] | None = None,
           ) -> Refinement:
    """Re-rank ``candidates`` with their stage times replaced by ``stage_ms`` (by cut
    positions); candidates without measurements are dropped (their times are not comparable)."""
    measured = [c for c in candidates if c.cut_positions in stage_ms]
    if not measured:
        raise ScheduleError("refine: none of the candidates has measured stage times")
    restaged = [restage(c, stage_ms[c.cut_positions]) for c in measured]
    return Refinement(
        objective=objective,
        candidates=rerank(restaged, objective),
        predicted={c.cut_positions: c for c in measured},
        sources={c.cut_positions: (MEASURED_SOURCE,) * len(c.stages) for c in measured},
        extras=dict(extras or {}),
    )
