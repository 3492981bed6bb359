"""Which boards take which stages: the orders of platforms the searches run over.

* ``assign="fixed"``: stage ``i`` runs on the ``i``-th board given; with fewer stages than
  boards the last boards stay idle. ``stages="auto"`` reads the best split for every stage count
  off one DP (:func:`~hwsched.schedule.search.best_per_prefix`), then searches the counts best
  first, each unless its best split is already worse than the ``k``-th found: the listing is
  the top of the ranking over every number of stages, not only of the winning one.
* ``assign="auto"``: any of the boards in any order. Identical boards are interchangeable, so
  only *distinct* orders of the multiset of platforms are tried (8 boards of 2 kinds: 70
  orders of all eight, 250 of every length, not 8! = 40,320). Up to :data:`ORDER_LIMIT` orders
  every one is searched. Beyond that throughput and latency use an exact search over the
  multiset of boards still unused (:mod:`hwsched.schedule.multiset`) and search the order it
  finds; energy has no such search and is refused with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from hwsched.errors import ScheduleError
from hwsched.schedule.context import Context
from hwsched.schedule.multiset import min_bottleneck_order, min_latency_order
from hwsched.schedule.records import AUTO_STAGES
from hwsched.schedule.search import best_per_prefix

#: ``assign="auto"`` searches every distinct order up to this many: 6 distinct boards give 720
#: orders of all six, 1,956 of every number of them (``stages="auto"``).
ORDER_LIMIT = 2000

Order = tuple[str, ...]
Cuts = tuple[int, ...]


@dataclass(frozen=True)
class SearchPlan:
    """Orders to search in full, single splits to evaluate beside them, and, per order, a
    lower bound on its splits' objective value: an order whose bound is worse than the ``k``-th
    best split already found cannot place in the top ``k`` and is not searched."""

    orders: tuple[Order, ...]
    seeds: tuple[tuple[Order, Cuts], ...] = ()
    bounds: Mapping[Order, float] = field(default_factory=dict)


def check_stage_count(stages: int | str | None, boards: int) -> None:
    """A cheap check, before any model is built: ``stages`` is None, ``"auto"`` or a whole
    number from 1 to the number of boards."""
    if stages is None or stages == AUTO_STAGES:
        return
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
        raise ScheduleError(f"stages must be 'auto' or a whole number >= 1, got {stages!r}")
    if stages > boards:
        raise ScheduleError(f"stages {stages} is more than the {boards} boards given")


def stage_counts(stages: int | str | None, boards: int, layers: int) -> tuple[int, ...]:
    """The numbers of stages allowed: every count for ``"auto"``, else the one given (all the
    boards when None)."""
    check_stage_count(stages, boards)
    if stages == AUTO_STAGES:
        return tuple(range(1, min(boards, layers) + 1))
    count = boards if stages is None else int(stages)
    if count > layers:
        raise ScheduleError(f"cannot split {layers} layers into {count} stages")
    return (count,)


def search_plan(
    ctx: Context, objective: str, assign: str, counts: Sequence[int]
) -> SearchPlan:
    """The orders to search for ``counts`` stages (see the module docstring)."""
    if assign == "fixed":
        return _fixed_plan(ctx, objective, counts)
    multiset = ctx.boards.counts
    total = sum(count_orders(multiset, k) for k in counts)
    if total <= ORDER_LIMIT:
        given = ctx.boards.names
        orders = [o for k in counts for o in sorted(multiset_orders(multiset, k))]
        first = [given[:k] for k in counts if given[:k] in orders]
        return SearchPlan(tuple(dict.fromkeys([*first, *orders])))
    if objective == "energy":
        raise ScheduleError(
            f"assign='auto' by energy searches every distinct order of the boards: {total} "
            f"orders exceed the exact search's limit of {ORDER_LIMIT} (energy's period term "
            "depends on which boards are used, so there is no search over the multiset); use "
            "throughput or latency (exact over the multiset of boards), assign='fixed' or "
            "fewer boards"
        )
    search = min_bottleneck_order if objective == "throughput" else min_latency_order
    found = search(ctx, multiset, counts)
    return SearchPlan((found[0],) if found else (ctx.boards.names[: max(counts)],))


def _fixed_plan(ctx: Context, objective: str, counts: Sequence[int]) -> SearchPlan:
    """Every count's first boards, best count first, each bounded by its best split (one DP
    gives every count's best: :func:`~hwsched.schedule.search.best_per_prefix`)."""
    names = ctx.boards.names
    if len(counts) == 1:
        return SearchPlan((names[: counts[0]],))
    per_count = best_per_prefix(ctx, names[: max(counts)], objective)
    seeds = tuple(
        (names[:k], cuts) for k, cuts in zip(counts, per_count, strict=True) if cuts is not None
    )
    if not seeds:
        return SearchPlan((names[: max(counts)],))
    bounds = {order: ctx.evaluate(order, cuts).objective_value(objective) for order, cuts in seeds}
    orders = sorted(bounds, key=lambda order: (bounds[order], len(order)))
    return SearchPlan(tuple(orders), seeds, bounds)


# -- distinct orders of a multiset -----------------------------------------------------------
def multiset_orders(counts: Mapping[str, int], length: int) -> Iterator[Order]:
    """Every distinct sequence of ``length`` platforms using each at most ``counts`` times.

    >>> sorted(multiset_orders({"a": 2, "b": 1}, 2))
    [('a', 'a'), ('a', 'b'), ('b', 'a')]
    """
    if length == 0:
        yield ()
        return
    for name, left in counts.items():
        if left:
            rest = {**counts, name: left - 1}
            for tail in multiset_orders(rest, length - 1):
                yield (name, *tail)


def count_orders(counts: Mapping[str, int], length: int) -> int:
    """How many sequences :func:`multiset_orders` yields, without listing them:
    ``length! * [x^length] prod_i sum_{j <= n_i} x^j / j!``.

    >>> count_orders({"a": 2, "b": 1}, 2), count_orders({"a": 4, "b": 4}, 8)
    (3, 70)
    """
    poly = [Fraction(1)]
    for n in counts.values():
        term = [Fraction(1, math.factorial(j)) for j in range(n + 1)]
        poly = [
            sum((poly[i] * term[d - i] for i in range(len(poly)) if 0 <= d - i < len(term)),
                Fraction(0))
            for d in range(len(poly) + len(term) - 1)
        ]
    return int(poly[length] * math.factorial(length)) if length < len(poly) else 0
