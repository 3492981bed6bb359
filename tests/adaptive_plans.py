"""An adaptive plan for runtime tests, built with the ordinary export (until ``export
--adaptive`` writes one): digits_cnn exported twice in two fp32 stages at two different cuts,
both exports' stage files in one directory, and a ``plan.json`` whose ``alternatives`` are the
two plans (alternative 0 = the plan's own split, as the plan record requires)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from hwsched.deployment import Alternative, Plan, load_plan, save_plan
from hwsched.runtime.frames import spec_bytes
from hwsched.runtime.routing import hop_specs

#: The two splits: digits_cnn's best and second-best 2-stage candidates.
CANDIDATES = (1, 2)


def export_candidate(out: Path, rank: int) -> Path:
    from hwsched.cli import main

    argv = ["export", "digits_cnn", "--candidate", str(rank), "--stages", "2",
            "--platforms", "rpi4,jetson_nano", "--precision", "fp32", "--out", str(out)]
    assert main(argv) == 0
    return out


def _renamed(plan: Plan, prefix: str) -> Plan:
    """The plan with every stage file renamed ``prefix + file`` (two exports name their files
    alike; the adaptive plan holds both)."""
    return replace(plan, stages=tuple(replace(s, file=prefix + s.file) for s in plan.stages))


def hop_bytes(plan: Plan, hop: int = 1) -> int:
    return sum(spec_bytes(s) for s in hop_specs(plan, hop).values())


def build_adaptive_plan(work: Path) -> Path:
    """``work/adaptive``: a 2-stage digits_cnn plan with two alternatives. The split that sends
    fewer bytes across the middle link wins below the bandwidth at which the two tie."""
    plans = []
    for rank in CANDIDATES:
        export_dir = export_candidate(work / f"candidate{rank}", rank)
        plans.append((export_dir, _renamed(load_plan(export_dir), f"alt{rank}_")))
    (dir_a, plan_a), (dir_b, plan_b) = plans
    assert plan_a.cut_positions != plan_b.cut_positions, "the two candidates cut alike"
    out = work / "adaptive"
    out.mkdir(parents=True, exist_ok=True)
    for export_dir, plan, rank in ((dir_a, plan_a, 1), (dir_b, plan_b, 2)):
        for stage in plan.stages:
            shutil.copyfile(export_dir / stage.file.removeprefix(f"alt{rank}_"),
                            out / stage.file)
    small_b = hop_bytes(plan_b) < hop_bytes(plan_a)
    edge_mbps = 10.0
    alternatives = (
        Alternative(0, plan_a.cut_positions, edge_mbps if small_b else 0.0,
                    float("inf") if small_b else edge_mbps, plan_a),
        Alternative(1, plan_b.cut_positions, 0.0 if small_b else edge_mbps,
                    edge_mbps if small_b else float("inf"), plan_b),
    )
    save_plan(replace(plan_a, alternatives=alternatives), out)
    return out


def with_large_first(adaptive: Path, out: Path) -> Path:
    """The adaptive plan in ``adaptive`` with its alternatives reordered so that the split
    sending more bytes across the middle link is alternative 0, the one a run starts on
    (a run over a slow link should then switch away from it)."""
    plan = load_plan(adaptive)
    ordered = sorted(plan.alternatives, key=lambda alt: -hop_bytes(alt.plan))
    alternatives = tuple(replace(alt, id=i) for i, alt in enumerate(ordered))
    shutil.copytree(adaptive, out)
    save_plan(replace(alternatives[0].plan, alternatives=alternatives), out)
    return out
