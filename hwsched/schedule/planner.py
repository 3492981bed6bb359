"""Plans: rank splits of a graph over platforms joined by one link type.

:func:`plan` is the entry point; see the package docstring for an example. How candidates are
found:

* **2 platforms**: every cut position is evaluated, so the ranking is complete and exact.
* **N >= 3 platforms**: the exact k-best DP of :mod:`hwsched.schedule.solver` gives the ``top``
  best splits by the objective (throughput: the best bottleneck first, then, among splits that
  reach it, the lowest latency; if fewer than ``top`` splits reach it, the next best bottlenecks;
  energy: an exact parametric search, see :func:`_energy_search`). The single best split by each
  of the other two objectives joins the pool so the Pareto front has its extreme points.
* ``assign="auto"`` repeats this for every distinct order of the platforms.
* If fewer than ``top`` feasible splits exist, the pool is filled with the best splits when
  memory, op and precision limits are ignored; they are listed with ``feasible: false`` and
  their reasons, after every feasible one.

The listed candidates are the first ``top`` of the ranking plus every Pareto-optimal candidate
of the pool (throughput up, latency down, energy down, feasible only); ``rank`` is the position
in the full ranking. Ranking keys break ties by the other objectives, then platform order, then
cut positions, so output is deterministic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwsched.costs import DEFAULT_MODELS, get_model
from hwsched.costs.energy import EnergyCoefficients
from hwsched.costs.profile import Profile
from hwsched.errors import ProfileError, ScheduleError, UnknownNameError
from hwsched.hardware import PRECISION_DTYPES, Link, Platform, load_link, load_platform
from hwsched.ir import LayerGraph
from hwsched.schedule.solver import k_best
from hwsched.schedule.tables import (
    INF,
    LinkTable,
    PlatformTable,
    StageCost,
    build_link_table,
    build_platform_table,
    peak_matrix,
)
from hwsched.units import MS_PER_S

OBJECTIVES = ("throughput", "latency", "energy")
ASSIGN_MODES = ("fixed", "auto")
#: Candidates listed for N >= 3 platforms when ``top`` is not given.
DEFAULT_TOP_K = 20
#: ``assign="auto"`` tries N! orders; beyond this many platforms that is too slow to be useful.
MAX_AUTO_PLATFORMS = 6
#: Relative tolerance of the energy search's period bound (see :func:`_energy_search`).
BOUND_RTOL = 1e-9


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageResult:
    cost: StageCost
    first_layer: str
    last_layer: str
    energy_mj: float

    def to_dict(self) -> dict[str, Any]:
        c = self.cost
        return {
            "platform": c.platform,
            "precision": c.precision,
            "first_layer": self.first_layer,
            "last_layer": self.last_layer,
            "layers": c.stop - c.first,
            "macs": c.macs,
            "weights_bytes": c.weights_bytes,
            "peak_activation_bytes": c.peak_activation_bytes,
            "memory_bytes": c.memory_bytes,
            "latency_ms": c.latency_ms,
            "energy_mj": self.energy_mj,
            "fits_memory": c.fits_memory,
            "reasons": list(c.reasons),
        }


@dataclass(frozen=True)
class LinkResult:
    link: str
    cut_position: int
    dtype: str
    messages: int
    transfer_bytes: int
    wire_bytes: int
    latency_ms: float
    energy_mj: float
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "cut_position": self.cut_position,
            "dtype": self.dtype,
            "messages": self.messages,
            "transfer_bytes": self.transfer_bytes,
            "wire_bytes": self.wire_bytes,
            "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj,
        }


@dataclass(frozen=True)
class Candidate:
    """One split: stages in pipeline order and the links between them."""

    cut_positions: tuple[int, ...]
    stages: tuple[StageResult, ...]
    links: tuple[LinkResult, ...]
    latency_ms: float
    period_ms: float
    energy_mj: float
    rank: int = 0
    pareto: bool = False

    @property
    def assignment(self) -> tuple[str, ...]:
        return tuple(stage.cost.platform for stage in self.stages)

    @property
    def throughput_ips(self) -> float:
        return MS_PER_S / self.period_ms if self.period_ms > 0 else INF

    @property
    def reasons(self) -> tuple[str, ...]:
        stage_reasons = (r for stage in self.stages for r in stage.cost.reasons)
        return (*stage_reasons, *(r for link in self.links for r in link.reasons))

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def objective_value(self, objective: str) -> float:
        """The objective as a quantity to minimise."""
        return {"throughput": self.period_ms, "latency": self.latency_ms, "energy": self.energy_mj}[
            objective
        ]

    def sort_key(self, objective: str, order_index: Mapping[tuple[str, ...], int]) -> tuple:
        others = [o for o in OBJECTIVES if o != objective]
        return (
            not self.feasible,
            self.objective_value(objective),
            *(self.objective_value(o) for o in others),
            order_index.get(self.assignment, 0),
            self.cut_positions,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "cut_positions": list(self.cut_positions),
            "stages": [stage.to_dict() for stage in self.stages],
            "links": [link.to_dict() for link in self.links],
            "latency_ms": self.latency_ms,
            "throughput_ips": self.throughput_ips,
            "period_ms": self.period_ms,
            "energy_mj": self.energy_mj,
            "feasible": self.feasible,
            "pareto": self.pareto,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Ranking:
    """The ranked candidates, the single-platform baselines and the gain of rank 1."""

    model: str
    objective: str
    assign: str
    platforms: tuple[str, ...]
    link: str
    precisions: Mapping[str, str]
    cost_models: Mapping[str, str]
    candidates: tuple[Candidate, ...]
    baselines: tuple[Candidate, ...]
    #: Rank 1 over the best feasible baseline, in the objective's sense (>1 is better).
    speedup: float | None
    best_baseline: str | None
    unscored_layers: tuple[str, ...]
    estimated_layers: Mapping[str, tuple[str, ...]]

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "objective": self.objective,
            "assign": self.assign,
            "platforms": list(self.platforms),
            "link": self.link,
            "precisions": dict(self.precisions),
            "cost_models": dict(self.cost_models),
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "baselines": [
                {"platform": b.stages[0].cost.platform, **b.to_dict()} for b in self.baselines
            ],
            "speedup": self.speedup,
            "best_baseline": self.best_baseline,
            "unscored_layers": list(self.unscored_layers),
            "estimated_layers": {k: list(v) for k, v in self.estimated_layers.items()},
        }


# -- context: everything precomputed once ----------------------------------------------------
@dataclass(eq=False)
class _Context:
    graph: LayerGraph
    platforms: Mapping[str, Platform]
    link: Link
    precisions: Mapping[str, str]
    tables: Mapping[str, PlatformTable]
    energy: Mapping[str, EnergyCoefficients]
    transfer_model: str | None
    max_crossing: int | None
    _links: dict[tuple[str, str], LinkTable]
    _peaks: dict[str, np.ndarray]

    def link_table(self, head: str, tail: str) -> LinkTable:
        key = (self.precisions[head], self.precisions[tail])
        if key not in self._links:
            self._links[key] = build_link_table(
                self.graph,
                self.link,
                *key,
                transfer_model=self.transfer_model,
                max_crossing=self.max_crossing,
            )
        return self._links[key]

    def stage_matrix(self, name: str, relaxed: bool) -> np.ndarray:
        table = self.tables[name]
        latency = table.latency_matrix()
        if relaxed:
            return latency
        key = f"masked:{name}"
        if key not in self._peaks:
            live_key = f"live:{table.precision}:{name}"
            if live_key not in self._peaks:
                self._peaks[live_key] = peak_matrix(table.live)
            feasible = table.feasible_matrix(self._peaks[live_key])
            self._peaks[key] = np.where(feasible, latency, INF)
        return self._peaks[key]

    def evaluate(self, order: Sequence[str], cuts: Sequence[int]) -> Candidate:
        bounds = (0, *cuts, len(self.graph))
        costs = [
            self.tables[name].stage(a, b)
            for name, (a, b) in zip(order, itertools.pairwise(bounds), strict=True)
        ]
        pairs = zip(itertools.pairwise(order), cuts, strict=True)
        links = [self._link_result(h, t, c) for (h, t), c in pairs]
        period = max([c.latency_ms for c in costs] + [lk.latency_ms for lk in links])
        latency = sum(c.latency_ms for c in costs) + sum(lk.latency_ms for lk in links)
        stages = tuple(
            StageResult(
                cost=cost,
                first_layer=self.graph.layers[cost.first].name,
                last_layer=self.graph.layers[cost.stop - 1].name,
                energy_mj=self.energy[name].busy_w * cost.latency_ms
                + self.energy[name].period_w * period,
            )
            for name, cost in zip(order, costs, strict=True)
        )
        energy = sum(s.energy_mj for s in stages) + sum(lk.energy_mj for lk in links)
        return Candidate(tuple(cuts), stages, tuple(links), latency, period, energy)

    def _link_result(self, head: str, tail: str, position: int) -> LinkResult:
        table = self.link_table(head, tail)
        cost = table.costs[position]
        assert cost is not None  # every position 1..L-1 is a cut
        messages = int(table.messages[position])
        reasons = ()
        if self.max_crossing is not None and messages > self.max_crossing:
            reasons = (
                f"cut {position} sends {messages} tensors > max_crossing {self.max_crossing}",
            )
        return LinkResult(
            link=self.link.name,
            cut_position=position,
            dtype=table.dtype,
            messages=messages,
            transfer_bytes=int(table.payload_bytes[position]),
            wire_bytes=cost.wire_bytes,
            latency_ms=cost.latency_ms,
            energy_mj=cost.energy_mj,
            reasons=reasons,
        )


# -- searching -------------------------------------------------------------------------------
def _matrices(ctx: _Context, order: Sequence[str], relaxed: bool):
    stages = [ctx.stage_matrix(name, relaxed) for name in order]
    links = [ctx.link_table(h, t).latency_ms for h, t in itertools.pairwise(order)]
    return stages, links


def _throughput_search(ctx: _Context, order, k: int, relaxed: bool) -> list[tuple[int, ...]]:
    stages, links = _matrices(ctx, order, relaxed)
    best = k_best(stages, links, "max", 1)
    if not best:
        return []
    bound = best[0][0]
    capped = [np.where(m <= bound, m, INF) for m in stages]
    capped_links = [np.where(v <= bound, v, INF) for v in links]
    found = [cuts for _, cuts in k_best(capped, capped_links, "sum", k)]
    if len(found) < k:
        found += [cuts for _, cuts in k_best(stages, links, "max", k)]
    return found


def _latency_search(ctx: _Context, order, k: int, relaxed: bool) -> list[tuple[int, ...]]:
    stages, links = _matrices(ctx, order, relaxed)
    return [cuts for _, cuts in k_best(stages, links, "sum", k)]


def _energy_search(ctx: _Context, order, k: int, relaxed: bool) -> list[tuple[int, ...]]:
    """Exact k best by energy ``E = A + C * period`` where ``A`` (busy and link energy) is
    additive and ``C`` (sum of the period coefficients) is constant for one order.

    Repeat: take the k best by ``A`` among splits whose bottleneck is below ``bound``; an unseen
    split among them has ``A >= A_k`` and so can only enter the current top k (k-th energy
    ``E_k``) if its period is below ``(E_k - A_k) / C``: that becomes the next bound. Stop
    when fewer than k splits remain below the bound.
    """
    times, links = _matrices(ctx, order, relaxed)
    # 0 W x an impossible (inf) stage would be NaN: keep impossible stages impossible
    busy = [
        np.where(np.isfinite(m), ctx.energy[name].busy_w * m, INF)
        for name, m in zip(order, times, strict=True)
    ]
    link_energy = [
        np.where(np.isfinite(v), ctx.link_table(h, t).energy_mj, INF)
        for v, (h, t) in zip(links, itertools.pairwise(order), strict=True)
    ]
    constant = sum(ctx.energy[name].period_w for name in order)
    pool: dict[tuple[int, ...], float] = {}
    bound = INF
    while True:
        if bound == INF:
            stages, link_vectors = busy, link_energy
        else:
            stages = [np.where(t < bound, b, INF) for t, b in zip(times, busy, strict=True)]
            link_vectors = [
                np.where(v < bound, e, INF) for v, e in zip(links, link_energy, strict=True)
            ]
        found = k_best(stages, link_vectors, "sum", k)
        for _, cuts in found:
            pool.setdefault(cuts, ctx.evaluate(order, cuts).energy_mj)
        if len(found) < k or constant <= 0:
            break
        kth_energy = sorted(pool.values())[k - 1]
        # E = A + C * period is exact only up to rounding, so step strictly below the bound:
        # splits within BOUND_RTOL of the k-th energy are ties, not improvements.
        next_bound = (kth_energy - found[-1][0]) / constant
        next_bound -= BOUND_RTOL * max(abs(next_bound), 1.0)
        if not next_bound < bound or next_bound <= 0:
            break
        bound = next_bound
    return sorted(pool, key=lambda cuts: (pool[cuts], cuts))[:k]


_SEARCHES = {
    "throughput": _throughput_search,
    "latency": _latency_search,
    "energy": _energy_search,
}


def _candidate_cuts(ctx: _Context, order, objective: str, k: int) -> list[tuple[int, ...]]:
    n_layers = len(ctx.graph)
    if len(order) == 1:
        return [()]
    if len(order) == 2:
        return [(c,) for c in range(1, n_layers)]
    found = _SEARCHES[objective](ctx, order, k, relaxed=False)
    for other in OBJECTIVES:
        if other != objective:
            found += _SEARCHES[other](ctx, order, 1, relaxed=False)
    if len(set(found)) < k:
        found += _SEARCHES[objective](ctx, order, k, relaxed=True)
    return list(dict.fromkeys(found))


def _mark_pareto(
    candidates: list[Candidate], baselines: Sequence[Candidate] = ()
) -> list[Candidate]:
    """Flag feasible candidates that no other feasible candidate dominates — nor any feasible
    single board running the whole model (baselines compete, but are not marked)."""
    rivals = [c for c in [*candidates, *baselines] if c.feasible]
    metrics = np.array([[c.period_ms, c.latency_ms, c.energy_mj] for c in rivals])
    marked = []
    for candidate in candidates:
        pareto = False
        if candidate.feasible:
            own = np.array([candidate.period_ms, candidate.latency_ms, candidate.energy_mj])
            no_worse = np.all(metrics <= own, axis=1)
            better = np.any(metrics < own, axis=1)
            pareto = not np.any(no_worse & better)
        marked.append(replace(candidate, pareto=pareto))
    return marked


# -- the API ---------------------------------------------------------------------------------
def _resolve_precisions(
    platforms: Sequence[Platform], precision: str | Mapping[str, str] | None
) -> dict[str, str]:
    given = [precision] if isinstance(precision, str) else list((precision or {}).values())
    for name in given:
        if name not in PRECISION_DTYPES:
            raise UnknownNameError("precision", name, tuple(PRECISION_DTYPES))
    chosen = {}
    for platform in platforms:
        if precision is None:
            chosen[platform.name] = platform.default_precision
        elif isinstance(precision, str):
            chosen[platform.name] = precision
        else:
            chosen[platform.name] = precision.get(platform.name, platform.default_precision)
    return chosen


def _profile_for(name: str, profile: Profile | Sequence[Profile] | None) -> Profile | None:
    profiles = [] if profile is None else [profile] if isinstance(profile, Profile) else profile
    matches = [p for p in profiles if p.platform == name]
    if len(matches) > 1:
        raise ProfileError(
            f"{len(matches)} profiles are for platform {name!r} "
            f"({', '.join(p.source for p in matches)}); give one per platform"
        )
    return matches[0] if matches else None


def _check_profiles_match(profile: Profile | Sequence[Profile] | None, names: list[str]) -> None:
    profiles = [] if profile is None else [profile] if isinstance(profile, Profile) else profile
    for p in profiles:
        if p.platform not in names:
            raise ProfileError(
                f"{p.source}: profile is for platform {p.platform!r}, which is not among the "
                f"platforms {', '.join(names)}"
            )


def _orders(names: tuple[str, ...], assign: str) -> list[tuple[str, ...]]:
    if assign == "fixed":
        return [names]
    if len(names) > MAX_AUTO_PLATFORMS:
        raise ScheduleError(
            f"assign='auto' tries every order of {len(names)} platforms; use at most "
            f"{MAX_AUTO_PLATFORMS} or assign='fixed'"
        )
    return [names, *sorted(set(itertools.permutations(names)) - {names})]


def _speedup(best: Candidate | None, baselines: Sequence[Candidate], objective: str):
    feasible = [b for b in baselines if b.feasible]
    if best is None or not best.feasible or not feasible:
        return None, None
    base = min(feasible, key=lambda b: (b.objective_value(objective), b.assignment))
    mine = best.objective_value(objective)
    gain = base.objective_value(objective) / mine if mine > 0 else math.inf
    return gain, base.assignment[0]


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
) -> Ranking:
    """Rank splits of ``graph`` into ``len(platforms)`` consecutive stages (see module doc).

    ``platforms`` and ``link`` are registry names, descriptor paths or loaded descriptors.
    ``profile`` is one measured profile or several (one per platform); a platform with a profile
    uses the ``measured`` latency model unless ``latency_model`` is given. ``precision`` is one
    precision for every platform or ``{platform: precision}``; by default each platform's own.
    ``max_crossing`` limits how many tensors may cross a cut.
    """
    if objective not in OBJECTIVES:
        raise UnknownNameError("objective", objective, OBJECTIVES)
    if assign not in ASSIGN_MODES:
        raise UnknownNameError("assign mode", assign, ASSIGN_MODES)
    if not platforms:
        raise ScheduleError("need at least one platform")
    loaded = [load_platform(p) for p in platforms]
    names = tuple(p.name for p in loaded)
    if len(set(names)) != len(names):
        raise ScheduleError(f"platforms repeat a name: {', '.join(names)}")
    if len(graph) < len(loaded):
        raise ScheduleError(
            f"cannot split {len(graph)} layers of {graph.name!r} into {len(loaded)} stages"
        )
    if top is not None and top < 1:
        raise ScheduleError(f"top must be >= 1, got {top}")
    ctx, models_used = _build_context(
        graph,
        loaded,
        link,
        CostOptions(profile, max_crossing, precision, latency_model, memory_model,
                    transfer_model, energy_model),
    )
    link_descriptor, precisions, tables = ctx.link, ctx.precisions, ctx.tables
    orders = _orders(names, assign)
    order_index = {order: i for i, order in enumerate(orders)}
    k = top or DEFAULT_TOP_K
    pool: dict[tuple[tuple[str, ...], tuple[int, ...]], Candidate] = {}
    for order in orders:
        for cuts in _candidate_cuts(ctx, order, objective, k):
            pool.setdefault((order, cuts), ctx.evaluate(order, cuts))
    ranked = sorted(pool.values(), key=lambda c: c.sort_key(objective, order_index))
    baselines = tuple(ctx.evaluate((name,), ()) for name in names)
    ranked = [replace(c, rank=i + 1) for i, c in enumerate(_mark_pareto(ranked, baselines))]
    shown = len(ranked) if (top is None and len(loaded) <= 2) else k
    candidates = tuple(c for c in ranked if c.rank <= shown or c.pareto)
    speedup, best_baseline = _speedup(candidates[0] if candidates else None, baselines, objective)
    return Ranking(
        model=graph.name,
        objective=objective,
        assign=assign,
        platforms=names,
        link=link_descriptor.name,
        precisions=precisions,
        cost_models={
            **{f"latency:{n}": m for n, m in models_used.items()},
            "memory": memory_model or DEFAULT_MODELS["memory"],
            "transfer": transfer_model or DEFAULT_MODELS["transfer"],
            "energy": energy_model or DEFAULT_MODELS["energy"],
        },
        candidates=candidates,
        baselines=baselines,
        speedup=speedup,
        best_baseline=best_baseline,
        unscored_layers=tuple(layer.name for layer in graph.unscored_layers),
        estimated_layers={
            n: t.latencies.estimated for n, t in tables.items() if t.latencies.estimated
        },
    )


@dataclass(frozen=True)
class CostOptions:
    """How stages and links are costed: the options ``plan`` and ``evaluate`` share."""

    profile: Profile | Sequence[Profile] | None = None
    max_crossing: int | None = None
    precision: str | Mapping[str, str] | None = None
    latency_model: str | None = None
    memory_model: str | None = None
    transfer_model: str | None = None
    energy_model: str | None = None


def _build_context(
    graph: LayerGraph, loaded: Sequence[Platform], link: str | Link, options: CostOptions
) -> tuple[_Context, dict[str, str]]:
    profile, max_crossing, precision = options.profile, options.max_crossing, options.precision
    latency_model, memory_model = options.latency_model, options.memory_model
    transfer_model, energy_model = options.transfer_model, options.energy_model
    link_descriptor = load_link(link)
    _check_profiles_match(profile, [p.name for p in loaded])
    precisions = _resolve_precisions(loaded, precision)
    energy_fn = get_model("energy", energy_model)
    tables = {}
    models_used = {}
    for platform in loaded:
        own_profile = _profile_for(platform.name, profile)
        model = latency_model or ("measured" if own_profile else None)
        tables[platform.name] = build_platform_table(
            graph,
            platform,
            precisions[platform.name],
            latency_model=model,
            memory_model=memory_model,
            profile=own_profile,
        )
        models_used[platform.name] = tables[platform.name].latencies.model
    ctx = _Context(
        graph=graph,
        platforms={p.name: p for p in loaded},
        link=link_descriptor,
        precisions=precisions,
        tables=tables,
        energy={p.name: energy_fn(p) for p in loaded},
        transfer_model=transfer_model,
        max_crossing=max_crossing,
        _links={},
        _peaks={},
    )
    return ctx, models_used


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
) -> Candidate:
    """Costs of one given split (stage ``i`` on ``platforms[i]``), without searching."""
    loaded = [load_platform(p) for p in platforms]
    bounds = (0, *cut_positions, len(graph))
    if len(cut_positions) != len(loaded) - 1 or any(b <= a for a, b in itertools.pairwise(bounds)):
        raise ScheduleError(
            f"cut positions {list(cut_positions)} do not split {len(graph)} layers into "
            f"{len(loaded)} non-empty stages"
        )
    ctx, _ = _build_context(
        graph,
        loaded,
        link,
        CostOptions(profile, max_crossing, precision, latency_model, memory_model,
                    transfer_model, energy_model),
    )
    return ctx.evaluate(tuple(p.name for p in loaded), tuple(cut_positions))
