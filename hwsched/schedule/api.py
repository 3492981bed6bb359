"""The public calls: :func:`rank_splits` (search and rank) and :func:`evaluate` (one split).

What is listed: the first ``top`` of the ranking plus every Pareto-optimal candidate of the pool
(throughput up, latency down, energy down, feasible only); ``rank`` is the position in the full
ranking over every order and number of stages searched (with ``assign="auto"`` beyond
:data:`~hwsched.schedule.assign.ORDER_LIMIT` orders, only rank 1 is exact over every order: the
rest are the splits of the order the multiset search found). Ranking keys break ties by the
other objectives, then fewer stages, then the order's position among those searched, then cut
positions, so output is deterministic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from hwsched.costs.profile import Profile
from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import ScheduleError, UnknownNameError
from hwsched.hardware import Link, Platform, load_platform
from hwsched.ir import LayerGraph
from hwsched.schedule.assign import search_plan, stage_counts
from hwsched.schedule.context import Context, CostOptions, build_context, cost_model_names
from hwsched.schedule.pareto import mark_pareto
from hwsched.schedule.records import (
    ASSIGN_MODES,
    AUTO_STAGES,
    DEFAULT_TOP_K,
    OBJECTIVES,
    Candidate,
    Ranking,
)
from hwsched.schedule.search import BOUND_RTOL, ENERGY_EXTREME_MAX_STAGES, candidate_cuts


def rank_splits(
    graph: LayerGraph,
    platforms: Sequence[str | Platform],
    link: str | Link,
    objective: str = "throughput",
    assign: str = "fixed",
    profile: Profile | Sequence[Profile] | None = None,
    top: int | None = None,
    max_crossing: int | None = None,
    precision: str | Mapping[str, str] | None = None,
    latency_model: str | None = None,
    memory_model: str | None = None,
    transfer_model: str | None = None,
    energy_model: str | None = None,
    stages: int | str | None = None,
    compression: Sequence[str] = ("fp32",),
    runtime: RuntimeCost | None = None,
) -> Ranking:
    """Rank splits of ``graph`` into consecutive stages on the boards ``platforms``.

    ``platforms`` and ``link`` are registry names, descriptor paths or loaded descriptors; a
    platform may appear any number of times (identical boards). ``stages`` is the number of
    boards to use (default: all of them) or ``"auto"``: every number from 1 to all, exactly.
    ``profile`` is one measured profile or several (one per platform); a platform with a profile
    uses the ``measured`` latency model unless ``latency_model`` is given. ``precision`` is one
    precision for every platform or ``{platform: precision}``; by default each platform's own.
    ``max_crossing`` limits how many tensors may cross a cut. ``compression`` lists the link
    compression levels each link may use (fp32 = as made, fp16, int8); every link of every
    candidate takes its cheapest (``links[k].compression``). ``runtime`` charges every stage
    and single board the runner's hand-off cost on its core (:mod:`hwsched.schedule.handoff`)
    inside the search, so the optimum is the optimum with it, for any number of boards.
    """
    if objective not in OBJECTIVES:
        raise UnknownNameError("objective", objective, OBJECTIVES)
    if assign not in ASSIGN_MODES:
        raise UnknownNameError("assign mode", assign, ASSIGN_MODES)
    if not platforms:
        raise ScheduleError("need at least one platform")
    if top is not None and top < 1:
        raise ScheduleError(f"top must be >= 1, got {top}")
    if stages is None and len(graph) < len(platforms):
        raise ScheduleError(
            f"cannot split {len(graph)} layers of {graph.name!r} into {len(platforms)} stages"
        )
    counts = stage_counts(stages, len(platforms), len(graph))
    loaded = [load_platform(p) for p in platforms]
    options = CostOptions(profile, max_crossing, precision, latency_model, memory_model,
                          transfer_model, energy_model, tuple(compression), runtime)
    ctx, models_used = build_context(graph, loaded, link, options)
    k = top or DEFAULT_TOP_K
    ranked = _ranked_pool(ctx, objective, assign, counts, k)
    notes = _notes(ranked, objective)
    baselines = tuple(ctx.evaluate((name,), ()) for name in ctx.boards.kinds)
    ranked = [replace(c, rank=i + 1) for i, c in enumerate(mark_pareto(ranked, baselines))]
    shown = len(ranked) if (top is None and max(counts) <= 2) else k
    candidates = tuple(c for c in ranked if c.rank <= shown or c.pareto)
    speedup, best_baseline = _speedup(candidates[0] if candidates else None, baselines, objective)
    return Ranking(
        model=graph.name,
        objective=objective,
        assign=assign,
        platforms=ctx.boards.names,
        link=ctx.link.name,
        precisions=ctx.precisions,
        cost_models=cost_model_names(models_used, options),
        candidates=candidates,
        baselines=baselines,
        speedup=speedup,
        best_baseline=best_baseline,
        unscored_layers=tuple(layer.name for layer in graph.unscored_layers),
        estimated_layers={
            n: t.latencies.estimated for n, t in ctx.tables.items() if t.latencies.estimated
        },
        boards=ctx.boards.labels,
        stages=AUTO_STAGES if stages == AUTO_STAGES else counts[0],
        best_by_stage_count=_best_by_stage_count(ranked),
        notes=notes,
    )


def _ranked_pool(
    ctx: Context, objective: str, assign: str, counts: Sequence[int], k: int
) -> list[Candidate]:
    plan = search_plan(ctx, objective, assign, counts)
    order_index = {order: i for i, order in enumerate(plan.orders)}
    pool: dict[tuple[tuple[str, ...], tuple[int, ...]], Candidate] = {}
    for order in plan.orders:
        if _outranked(pool.values(), plan.bounds.get(order), objective, k):
            continue
        for cuts in candidate_cuts(ctx, order, objective, k):
            pool.setdefault((order, cuts), ctx.evaluate(order, cuts))
    for order, cuts in plan.seeds:
        pool.setdefault((order, cuts), ctx.evaluate(order, cuts))
    return sorted(pool.values(), key=lambda c: c.sort_key(objective, order_index))


def _outranked(
    pool: Iterable[Candidate], bound: float | None, objective: str, k: int
) -> bool:
    """Whether ``k`` feasible splits found already beat every split whose objective value is
    at least ``bound`` (so none of those can place in the top ``k``)."""
    if bound is None:
        return False
    values = sorted(c.objective_value(objective) for c in pool if c.feasible)
    return len(values) >= k and bound > values[k - 1] * (1 + BOUND_RTOL)


def _notes(ranked: Sequence[Candidate], objective: str) -> tuple[str, ...]:
    longest = max((len(c.stages) for c in ranked), default=0)
    if objective == "energy" or longest <= ENERGY_EXTREME_MAX_STAGES:
        return ()
    return (
        f"the least-energy split of {longest} stages was not searched for the Pareto front "
        f"(energy's exact search repeats its DP until a bound settles; done up to "
        f"{ENERGY_EXTREME_MAX_STAGES} stages): rank by --objective energy to include it",
    )


def _best_by_stage_count(ranked: Sequence[Candidate]) -> tuple[Candidate, ...]:
    best: dict[int, Candidate] = {}
    for candidate in ranked:  # best first
        best.setdefault(len(candidate.stages), candidate)
    return tuple(best[count] for count in sorted(best))


def _speedup(best: Candidate | None, baselines: Sequence[Candidate], objective: str):
    feasible = [b for b in baselines if b.feasible]
    if best is None or not best.feasible or not feasible:
        return None, None
    base = min(feasible, key=lambda b: (b.objective_value(objective), b.assignment))
    mine = best.objective_value(objective)
    gain = base.objective_value(objective) / mine if mine > 0 else math.inf
    return gain, base.assignment[0]


def evaluate(
    graph: LayerGraph,
    platforms: Sequence[str | Platform],
    link: str | Link,
    cut_positions: Sequence[int],
    *,
    profile: Profile | Sequence[Profile] | None = None,
    max_crossing: int | None = None,
    precision: str | Mapping[str, str] | None = None,
    latency_model: str | None = None,
    memory_model: str | None = None,
    transfer_model: str | None = None,
    energy_model: str | None = None,
    compression: Sequence[str] = ("fp32",),
    runtime: RuntimeCost | None = None,
) -> Candidate:
    """Costs of one given split (stage ``i`` on ``platforms[i]``), without searching; each
    link at the cheapest of the ``compression`` levels."""
    loaded = [load_platform(p) for p in platforms]
    bounds = (0, *cut_positions, len(graph))
    if len(cut_positions) != len(loaded) - 1 or any(b <= a for a, b in itertools.pairwise(bounds)):
        raise ScheduleError(
            f"cut positions {list(cut_positions)} do not split {len(graph)} layers into "
            f"{len(loaded)} non-empty stages"
        )
    options = CostOptions(profile, max_crossing, precision, latency_model, memory_model,
                          transfer_model, energy_model, tuple(compression), runtime)
    ctx, _ = build_context(graph, loaded, link, options)
    return ctx.evaluate(tuple(p.name for p in loaded), tuple(cut_positions))
