"""Benchmark: do the calibrated predictions hold? Per zoo model, the rank-1 2-stage split
predicted vs measured, and its regret against cuts sampled across the model.

For each model: this host as two boards joined by its measured loopback (``benchlib``), the
segment profile, the ranking, ``--refine K`` (stages timed whole beside their partner plus the
runner's per-frame cost), then the refined rank 1 and ``--samples`` single-tensor cuts spread
evenly over the model are exported and emulated, *interleaved* over ``--rounds`` rounds (every
cut once per round, so drift hits all alike). Printed per model:

* rank 1: predicted vs measured throughput (median, spread) and per-stage busy time;
* every sampled cut: its predicted throughput (profile + runtime cost) beside the measured one;
* regret: 1 - measured(rank 1) / the best measured among the sampled cuts.

Targets (issue 17): throughput within ±5%, busy times within ±10%, regret <= 3%.

    python bench/bench_fidelity.py [--quick] [--models a,b,…] [--samples 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import say, summary

MODELS = ("efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small", "resnet50", "densenet121",
          "inception_v3")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--samples", type=int, default=10, help="cuts sampled per model (10)")
    parser.add_argument("--segments", type=int, default=24)
    parser.add_argument("--refine", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help="mobilenet_v3_small only, 4 sampled cuts, 8 segments, 80 frames")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.models, args.samples, args.segments = "mobilenet_v3_small", 4, 8
        args.refine, args.frames = 3, 80
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-fidelity-"))
    out.mkdir(parents=True, exist_ok=True)
    runtime = benchlib.host_setup(out)
    results = [_model(name, args, out / name, runtime) for name in args.models.split(",")]
    print(json.dumps({"link": benchlib.LOOPBACK, "rounds": args.rounds, "frames": args.frames,
                      "models": results}, indent=2))
    return 0


def sampled_cuts(graph, count: int, include: tuple[int, ...]) -> list[tuple[int, ...]]:
    """``count`` single-tensor cuts evenly spread over the topological order, plus ``include``."""
    from hwsched.cuts import enumerate_cuts

    single = [c.head_layers for c in enumerate_cuts(graph) if c.single_tensor]
    step = max(len(single) / count, 1.0)
    picked = {(single[min(int(i * step + step / 2), len(single) - 1)],) for i in range(count)}
    return sorted(picked | {include})


def _model(name: str, args, out: Path, runtime) -> dict:
    from hwsched.load import load_model
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.schedule.refine import with_runtime_cost

    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(name, progress=say)
    profiles = benchlib.profile_here(loaded, args.segments, out)
    ranking, refinement = benchlib.calibrated(loaded, profiles, runtime, args.refine)
    best = refinement.best
    by_cut = {c.cut_positions: c for c in ranking.candidates}
    cuts = sampled_cuts(loaded.graph, args.samples, best.cut_positions)
    plans = {}
    for cuts_k in cuts:
        candidate = best if cuts_k == best.cut_positions else by_cut[cuts_k]
        plans[cuts_k] = benchlib.export_split(loaded, candidate,
                                              out / ("cut_" + "_".join(map(str, cuts_k))))
    config = EmulationConfig(frames=args.frames)
    runs = benchlib.interleave({c: (lambda d=d: emulate(d, config)) for c, d in plans.items()},
                               args.rounds)
    measured = {c: summary([r.throughput_ips for r in rs])["median"] for c, rs in runs.items()}
    best_runs = runs[best.cut_positions]
    stages = len(best.stages)
    return {
        "model": name,
        "rank1_cut_positions": list(best.cut_positions),
        "rank1_cut_after": [loaded.graph.layers[k - 1].name for k in best.cut_positions],
        "predicted_throughput_ips": best.throughput_ips,
        "measured_throughput_ips": summary([r.throughput_ips for r in best_runs]),
        "throughput_error": summary([r.throughput_ips / best.throughput_ips - 1
                                     for r in best_runs]),
        "predicted_stage_busy_ms": [refinement.extras_of(best)[k]["busy_ms"]
                                    for k in range(stages)],
        "measured_stage_busy_ms": [summary([r.stages[k].busy_ms for r in best_runs])
                                   for k in range(stages)],
        "regret": 1 - measured[best.cut_positions] / max(measured.values()),
        "best_sampled_cut_positions": list(max(measured, key=measured.get)),
        "sampled": [
            {"cut_positions": list(c),
             "predicted_throughput_ips": with_runtime_cost(
                 loaded.graph, by_cut[c], runtime).throughput_ips if c in by_cut else None,
             "measured_throughput_ips": summary([r.throughput_ips for r in runs[c]])}
            for c in cuts
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
