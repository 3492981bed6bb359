"""Searches over one order of platforms (a chain of consecutive stages), one per objective.

* **2 stages**: every cut position is evaluated, so the ranking is complete and exact.
* **N >= 3 stages**: the exact k-best DP of :mod:`hwsched.schedule.solver` gives the ``k`` best
  splits by the objective (throughput: the best bottleneck first, then, among splits that reach
  it, the lowest latency; if fewer than ``k`` splits reach it, the next best bottlenecks;
  energy: an exact parametric search, see :func:`energy_search`). The single best split by each
  of the other two objectives joins the pool so the Pareto front has its extreme points.
* If fewer than ``k`` feasible splits exist, the pool is filled with the best splits when
  memory, op and precision limits are ignored (listed with ``feasible: false``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from hwsched.schedule.context import Context
from hwsched.schedule.records import OBJECTIVES
from hwsched.schedule.solver import best_per_stage_count, k_best
from hwsched.schedule.tables import INF

#: Relative tolerance of the energy search's period bound (see :func:`energy_search`).
BOUND_RTOL = 1e-9
#: The energy search repeats the DP until its period bound settles (about 50 rounds for 16
#: stages over 1,000 layers); beyond this many stages the least-energy split joins a throughput
#: or latency ranking's pool only when asked for (``--objective energy``), and the ranking says so.
ENERGY_EXTREME_MAX_STAGES = 8

Order = Sequence[str]
Cuts = tuple[int, ...]


def _each_once(arrays: Sequence[np.ndarray], fn) -> list[np.ndarray]:
    """``[fn(a) for a in arrays]``, computing ``fn`` once per distinct array: identical boards
    share one stage matrix, and a 16-board cluster of 4 kinds needs 4 masks, not 16."""
    done: dict[int, np.ndarray] = {}
    return [done.setdefault(id(a), fn(a)) if id(a) not in done else done[id(a)] for a in arrays]


def throughput_search(ctx: Context, order: Order, k: int, relaxed: bool) -> list[Cuts]:
    stages, links = ctx.matrices(order, relaxed)
    best = k_best(stages, links, "max", 1)
    if not best:
        return []
    bound = best[0][0]
    capped = _each_once(stages, lambda m: np.where(m <= bound, m, INF))
    capped_links = _each_once(links, lambda v: np.where(v <= bound, v, INF))
    found = [cuts for _, cuts in k_best(capped, capped_links, "sum", k)]
    if len(found) < k:
        found += [cuts for _, cuts in k_best(stages, links, "max", k)]
    return found


def latency_search(ctx: Context, order: Order, k: int, relaxed: bool) -> list[Cuts]:
    stages, links = ctx.matrices(order, relaxed)
    return [cuts for _, cuts in k_best(stages, links, "sum", k)]


def energy_search(ctx: Context, order: Order, k: int, relaxed: bool) -> list[Cuts]:
    """Exact k best by energy ``E = A + C * period`` where ``A`` (busy and link energy) is
    additive and ``C`` (sum of the period coefficients) is constant for one order.

    Repeat: take the k best by ``A`` among splits whose bottleneck is below ``bound``; an unseen
    split among them has ``A >= A_k`` and so can only enter the current top k (k-th energy
    ``E_k``) if its period is below ``(E_k - A_k) / C``: that becomes the next bound. Stop
    when fewer than k splits remain below the bound.
    """
    times, links = ctx.matrices(order, relaxed)
    # 0 W x an impossible (inf) stage would be NaN: keep impossible stages impossible
    with np.errstate(invalid="ignore"):  # 0 W x inf: the where() below discards it
        busy_by_kind = {
            name: np.where(np.isfinite(m), ctx.energy[name].busy_w * m, INF)
            for name, m in zip(order, times, strict=True)
        }
    busy = [busy_by_kind[name] for name in order]
    link_energy = _each_once(
        [ctx.link_table(h, t).energy_mj for h, t in itertools.pairwise(order)], lambda e: e
    )
    link_energy = [
        np.where(np.isfinite(v), e, INF) for v, e in zip(links, link_energy, strict=True)
    ]
    constant = sum(ctx.energy[name].period_w for name in order)
    pool: dict[Cuts, float] = {}
    bound = INF
    while True:
        if bound == INF:
            stages, link_vectors = busy, link_energy
        else:
            masked = {
                name: np.where(times[order.index(name)] < bound, b, INF)
                for name, b in busy_by_kind.items()
            }
            stages = [masked[name] for name in order]
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


SEARCHES = {
    "throughput": throughput_search,
    "latency": latency_search,
    "energy": energy_search,
}


def candidate_cuts(ctx: Context, order: Order, objective: str, k: int) -> list[Cuts]:
    """The cut positions worth evaluating for one order (see the module docstring)."""
    n_layers = len(ctx.graph)
    if len(order) == 1:
        return [()]
    if len(order) == 2:
        return [(c,) for c in range(1, n_layers) if _are_cuts(ctx, order, (c,))]
    found = SEARCHES[objective](ctx, order, k, relaxed=False)
    for other in OBJECTIVES:
        if other != objective and not skips_energy_extreme(other, order):
            found += SEARCHES[other](ctx, order, 1, relaxed=False)
    if len(set(found)) < k:
        found += SEARCHES[objective](ctx, order, k, relaxed=True)
    return [cuts for cuts in dict.fromkeys(found) if _are_cuts(ctx, order, cuts)]


def _are_cuts(ctx: Context, order: Order, cuts: Cuts) -> bool:
    """Whether every position is a cut point (a stateful model has none inside a variable's
    reads and assigns: :func:`hwsched.cuts.enumerate_cuts` leaves them out)."""
    return all(ctx.link_table(head, tail).costs[position] is not None
               for (head, tail), position in zip(itertools.pairwise(order), cuts, strict=True))


def skips_energy_extreme(objective: str, order: Order) -> bool:
    """Whether the least-energy split is left out of another objective's pool (see
    :data:`ENERGY_EXTREME_MAX_STAGES`)."""
    return objective == "energy" and len(order) > ENERGY_EXTREME_MAX_STAGES


def best_per_prefix(ctx: Context, order: Order, objective: str) -> list[Cuts | None]:
    """Element ``K - 1``: the best feasible cuts using only the first ``K`` platforms of
    ``order`` (``None`` if none). Throughput and latency read every ``K`` off one DP;
    energy's period coefficient changes with ``K``, so it searches each prefix."""
    if objective == "energy":
        found = [energy_search(ctx, order[:count], 1, relaxed=False) for count in
                 range(1, len(order) + 1)]
        return [cuts[0] if cuts else None for cuts in found]
    stages, links = ctx.matrices(order, relaxed=False)
    how = "max" if objective == "throughput" else "sum"
    return [None if best is None else best[1] for best in best_per_stage_count(stages, links, how)]
