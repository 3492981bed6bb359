"""Emulating a stage-graph plan: one address per edge, stages pinned to their core sets.

:func:`hwsched.runtime.emulate.emulate` calls these for a plan with ``edges``; everything else
(processes, readiness, the source and sink, the summary) is the chain's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hwsched.deployment import Plan
from hwsched.runtime.graph_stage import SINK, SOURCE, downstreams, upstreams


def graph_urls(plan: Plan, free_port: Callable[[], int]) -> dict[str, str]:
    """``"U->K"`` for every edge into stage K (U a stage or ``source``), ``sink``, and
    ``stage0`` (= the source's edge, where the chain's source code sends)."""
    urls = {}
    for k in range(len(plan.stages)):
        for u in upstreams(plan, k):
            urls[f"{u}->{k}"] = f"tcp://127.0.0.1:{free_port()}"
    urls[SINK] = f"tcp://127.0.0.1:{free_port()}"
    urls["stage0"] = urls[f"{SOURCE}->0"]
    return urls


def graph_cpu_sets(plan: Plan, given: Sequence[Sequence[int]] | None
                   ) -> tuple[tuple[int, ...], ...]:
    """Each stage's ``cores`` from the plan (taken modulo the CPUs this process may use), else
    stage k on CPU k mod that count."""
    if given is not None:
        return tuple(tuple(c) for c in given)
    cpus = sorted(os.sched_getaffinity(0))
    return tuple(
        tuple(dict.fromkeys(cpus[c % len(cpus)] for c in stage.cores)) if stage.cores
        else (cpus[k % len(cpus)],)
        for k, stage in enumerate(plan.stages)
    )


def graph_stage_argv(plan: Plan, k: int, urls: Mapping[str, str]) -> list[str]:
    """The runner flags that wire stage ``k`` to its edges."""
    argv = []
    for u in upstreams(plan, k):
        argv += ["--listen-from", f"{u}={urls[f'{u}->{k}']}"]
    for d in downstreams(plan, k):
        argv += ["--next-to", f"{d}={urls[SINK] if d == SINK else urls[f'{k}->{d}']}"]
    return argv


def graph_hops(plan: Plan, source: Mapping[str, Any], stages: Sequence[Mapping[str, Any]],
               sink: Mapping[str, Any], hop_type: Callable[..., Any]) -> tuple[Any, ...]:
    """One measured hop per edge: the source's, every stage-to-stage edge, the sink's."""
    last = len(plan.stages) - 1
    pairs: list[tuple[str, Mapping[str, Any], Mapping[str, Any], int]] = [
        ("source→stage0", source["downstream"], stages[0]["edges_in"][SOURCE],
         stages[0]["frames"])]
    for edge in plan.edges:
        a, b = edge.from_stage, edge.to_stage
        pairs.append((f"stage{a}→stage{b}", stages[a]["edges_out"][str(b)],
                      stages[b]["edges_in"][str(a)], stages[b]["frames"]))
    pairs.append((f"stage{last}→sink", stages[last]["edges_out"][SINK], sink["upstream"],
                  sink["frames"]))
    return tuple(
        hop_type(hop=i, name=name, payload_bytes_per_frame=up["payload_bytes"] / max(frames, 1),
                 send_ms=down["send_s"] / max(down["sent"], 1) * 1000.0, resent=down["resent"],
                 duplicates=up["duplicates"], rejected=up["rejected"], predicted_ms=None)
        for i, (name, down, up, frames) in enumerate(pairs)
    )
