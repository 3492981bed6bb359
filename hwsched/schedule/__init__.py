"""Hardware-aware scheduling: rank splits of a layer graph over boards joined by a link.

The obvious call is :func:`rank_splits`::

    from hwsched.schedule import rank_splits, DEFAULT_PLATFORMS, DEFAULT_LINK
    result = rank_splits(graph, ["rpi4", "jetson_nano"], "gige", objective="throughput")
    result.best.cut_positions        # head_layers values of the best split's cuts
    result.speedup                   # rank 1 over the best feasible single board
    json.dumps(result.to_dict())     # candidates, baselines, speedup, ...

Objectives: ``throughput`` (pipeline: 1 / max over stage and link times), ``latency`` (sum of
stage and link times for one inference), ``energy`` (per inference: active power x busy time +
idle power x the rest of the pipeline period, plus link energy). A platform may be given any
number of times (identical boards, labelled ``rpi4#1``, ``rpi4#2``). ``stages="auto"`` lets
the planner use any number of the boards; ``assign="auto"`` also chooses which board takes
which stage (every distinct order: identical boards are never swapped). Platforms and links are
names from ``hardware/`` or paths to descriptor files. With a measured profile (``profile=``) that
platform's layer times come from measurements. The solver is an exact dynamic program
(:mod:`hwsched.schedule.solver`); how candidates are chosen is described in
:mod:`hwsched.schedule.search` (one order of boards), :mod:`hwsched.schedule.assign` (which
boards, how many, in which order) and :mod:`hwsched.schedule.api` (what is listed).

Modules by role: ``records`` (results), ``tables`` (prefix tables), ``context`` (the boards and
every cached matrix), ``solver`` (the DP), ``search``, ``assign``, ``pareto``, ``api``.

>>> from hwsched.schedule.synthetic import synthetic_graph
>>> p = rank_splits(synthetic_graph(40, seed=1), ["rpi4", "jetson_nano"], "gige")
>>> p.best.assignment, len(p.candidates), p.candidates[0].rank
(('rpi4', 'jetson_nano'), 39, 1)
"""

from __future__ import annotations

from hwsched.schedule.api import evaluate, rank_splits
from hwsched.schedule.records import (
    ASSIGN_MODES,
    AUTO_STAGES,
    DEFAULT_TOP_K,
    OBJECTIVES,
    Candidate,
    LinkResult,
    Ranking,
    StageResult,
)
from hwsched.schedule.solver import k_best

#: Default boards of ``hwsched analyze MODEL``: a CPU board handing its tail to a GPU board,
#: the classic heterogeneous pair (a Pi 4 camera node next to a Jetson Nano).
DEFAULT_PLATFORMS: tuple[str, ...] = ("rpi4", "jetson_nano")
#: Default link: both boards have Gigabit Ethernet on board.
DEFAULT_LINK = "gige"

__all__ = [
    "ASSIGN_MODES",
    "AUTO_STAGES",
    "DEFAULT_LINK",
    "DEFAULT_PLATFORMS",
    "DEFAULT_TOP_K",
    "OBJECTIVES",
    "Candidate",
    "LinkResult",
    "Ranking",
    "StageResult",
    "evaluate",
    "k_best",
    "rank_splits",
]
