"""Exact dynamic programming over consecutive splits, with the K best solutions.

A split of ``L`` layers into ``N`` consecutive non-empty stages is a boundary vector
``0 = c_0 < c_1 < ... < c_{N-1} < c_N = L``. Its value combines the stage costs
``stage[s][c_s, c_{s+1}]`` and the link costs ``link[s][c_{s+1}]`` (between stage ``s`` and
``s+1``) either by ``sum`` (latency, energy) or by ``max`` (pipeline bottleneck). Both are
monotone, so keeping the ``k`` best partial values per (stage, boundary) state yields the ``k``
best complete values exactly (Lawler's k-best DP). ``inf`` marks an infeasible stage or link.

Cost: with ``k == 1`` each stage is one vectorised min over an ``(L+1) x (L+1)`` matrix,
``O(N L^2)`` element operations; with ``k > 1`` a partial selection of ``k`` out of ``k b``
candidates per boundary ``b``. Ties are broken by the smallest earlier boundary, so results are
deterministic.

>>> import numpy as np
>>> inf = np.inf
>>> stage = np.array([[inf, 1, 3, 6], [inf, inf, 2, 5], [inf, inf, inf, 3], [inf] * 4])
>>> link = np.array([inf, 0.5, 0.5, inf])
>>> k_best([stage, stage], [link], "max", k=2)      # split 3 layers into 2 stages
[(3.0, (2,)), (5.0, (1,))]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

INF = float("inf")
COMBINERS = ("sum", "max")


def _combine(how: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return left + right if how == "sum" else np.maximum(left, right)


def k_best(
    stages: Sequence[np.ndarray], links: Sequence[np.ndarray], how: str, k: int
) -> list[tuple[float, tuple[int, ...]]]:
    """The ``k`` best finite ``(value, cut_positions)`` of an N-stage split, best first."""
    if how not in COMBINERS:
        raise ValueError(f"unknown combiner {how!r}")
    if len(links) != len(stages) - 1:
        raise ValueError("need one link vector between each pair of stages")
    if k == 1:
        return _best(stages, links, how)
    size = stages[0].shape[0]
    values = np.full((size, k), INF)
    values[:, 0] = stages[0][0]
    pointers: list[np.ndarray] = []  # per stage >= 1: [b, rank] -> flat index a * k + rank'
    for stage, link in zip(stages[1:], links, strict=True):
        entering = _combine(how, values, link[:, None])  # value of stages so far + the link
        by_stop = np.ascontiguousarray(stage.T)  # rows: stage end; contiguous slices below
        new_values = np.full((size, k), INF)
        new_pointers = np.zeros((size, k), dtype=np.int64)
        for stop in range(1, size):
            candidates = _combine(how, entering[:stop], by_stop[stop, :stop, None]).ravel()
            take = min(k, candidates.size)
            chosen = np.argpartition(candidates, take - 1)[:take]
            chosen = chosen[np.lexsort((chosen, candidates[chosen]))]
            new_values[stop, :take] = candidates[chosen]
            new_pointers[stop, :take] = chosen
        values = new_values
        pointers.append(new_pointers)
    results = []
    for rank in range(k):
        value = float(values[size - 1, rank])
        if value == INF:
            break
        results.append((value, _trace(pointers, size - 1, rank, k)))
    return results


def _trace(pointers: list[np.ndarray], stop: int, rank: int, k: int) -> tuple[int, ...]:
    cuts: list[int] = []
    for table in reversed(pointers):
        flat = int(table[stop, rank])
        stop, rank = divmod(flat, k)
        cuts.append(stop)
    return tuple(reversed(cuts))


def _best(
    stages: Sequence[np.ndarray], links: Sequence[np.ndarray], how: str
) -> list[tuple[float, tuple[int, ...]]]:
    """k == 1: whole-matrix vectorised DP."""
    found = best_per_stage_count(stages, links, how)[-1]
    return [] if found is None else [found]


def best_per_stage_count(
    stages: Sequence[np.ndarray], links: Sequence[np.ndarray], how: str
) -> list[tuple[float, tuple[int, ...]] | None]:
    """Element ``K - 1``: the best ``(value, cut_positions)`` over the first ``K`` stages only
    (``None`` if none is finite), for every ``K`` at the cost of the one DP over all of them:
    after stage ``K`` the DP's value at the last boundary is exactly that optimum.

    Each stage is one column-wise min over an ``(L+1) x (L+1)`` matrix; which start reached the
    min is found only on the traced paths (one column each), not for every boundary.

    >>> inf = np.inf
    >>> stage = np.array([[inf, 1, 3, 6], [inf, inf, 2, 5], [inf, inf, inf, 3], [inf] * 4])
    >>> best_per_stage_count([stage, stage], [np.array([inf, 0.5, 0.5, inf])], "max")
    [(6.0, ()), (3.0, (2,))]
    """
    combine = np.add if how == "sum" else np.maximum
    values = stages[0][0].copy()
    entering: list[np.ndarray] = []  # per stage >= 1: value of the stages before + the link
    buffer = np.empty(stages[0].shape)
    found = [_traced(values, stages, entering, combine)]
    for stage, link in zip(stages[1:], links, strict=True):
        entering.append(combine(values, link))
        combine(entering[-1][:, None], stage, out=buffer)
        values = buffer.min(axis=0)
        found.append(_traced(values, stages, entering, combine))
    return found


def _traced(values, stages, entering, combine) -> tuple[float, tuple[int, ...]] | None:
    """Walk back from the last boundary: each stage's start is the first minimum of its
    column, the smallest earlier boundary on ties."""
    value = float(values[-1])
    if value == INF:
        return None
    stop = len(values) - 1
    cuts: list[int] = []
    for step in range(len(entering), 0, -1):
        stop = int(np.argmin(combine(entering[step - 1], stages[step][:, stop])))
        cuts.append(stop)
    return value, tuple(reversed(cuts))
