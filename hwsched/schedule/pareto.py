"""Pareto marking: which feasible candidates no other feasible split or single board beats on
every objective (throughput up, latency down, energy down)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from hwsched.schedule.records import Candidate


def mark_pareto(
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
