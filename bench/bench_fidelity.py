"""Benchmark: do the calibrated predictions hold? Per zoo model, the rank-1 2-stage split
predicted vs measured, and its regret against cuts sampled across the model.

For each model: this host as two boards joined by its measured loopback (``benchlib``), the
segment profile, the ranking, ``--refine K`` (stages timed whole beside their partner plus the
runner's per-frame cost; with ``--refine-by pipeline`` each split run by the runners instead,
as ``analyze --refine-by pipeline``), then the refined rank 1 and ``--samples`` single-tensor
cuts spread evenly over the model's work (each the cut nearest a fraction of the whole model's
MACs; spread by list position, six of ten landed in inception_v3's stem) are exported and
emulated,
*interleaved* over ``--rounds`` rounds (every cut once per round, so drift hits all alike).
Before each of rank 1's runs its exported stages are timed again beside each other. Printed
per model:

* rank 1: predicted vs measured throughput (median, spread) and per-stage busy time;
  ``throughput_error`` against the refined prediction (made minutes earlier: the cost model's
  error plus the host's drift) and ``throughput_error_same_round`` against the stages re-timed
  just before the run (the cost model's own);
* every sampled cut: its predicted throughput beside the measured one, and which prediction
  it is (``refined``: stages timed whole; ``profile``: the segment profile + runtime cost);
* regret: ``regret_of_medians`` = 1 - median(rank 1) / the best median among the sampled cuts,
  and ``regret_per_round`` = 1 - rank 1 / the best sampled cut of the same round.

Each model's result is written to ``--out``/MODEL/result.json as soon as it is complete, and a
model that fails is reported as ``{"model": ..., "error": "<one line>"}`` while the others run.

Targets (issue 17): throughput within ±5%, busy times within ±10%, regret <= 3%.

    python bench/bench_fidelity.py [--quick] [--models a,b,…] [--samples 10] [--rounds 3]
                                   [--refine-by paired|pipeline]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import say, summary

MODELS = ("efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small", "resnet50", "densenet121",
          "inception_v3")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--samples", type=int, default=10,
                        help="at least this many single-tensor cuts per model, spread by MACs, "
                        "when the model has them (10)")
    parser.add_argument("--segments", type=int, default=24)
    parser.add_argument("--refine", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help="mobilenet_v3_small only, 4 sampled cuts, 8 segments, 80 frames")
    benchlib.add_runner_cost_option(parser)
    benchlib.add_refine_by_option(parser)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.models, args.samples, args.segments = "mobilenet_v3_small", 4, 8
        args.refine, args.frames = 3, 80
    if args.samples < 1 or args.rounds < 1 or args.frames < 1:
        print("bench_fidelity: --samples, --rounds and --frames must be >= 1", file=sys.stderr)
        return 2
    for name in args.models.split(","):
        if (problem := benchlib.unknown_model(name)) is not None:
            print(f"bench_fidelity: --models: {problem}", file=sys.stderr)
            return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-fidelity-"))
    out.mkdir(parents=True, exist_ok=True)
    runtime = benchlib.host_setup(out, runners=args.runner_cost)
    results = [_model_or_error(name, args, out / name, runtime)
               for name in args.models.split(",")]
    document = {"link": benchlib.LOOPBACK, "refine_by": args.refine_by,
                "refine_passes": args.refine_passes, "refine_confirm": (
                    args.refine_passes if args.refine_confirm is None else args.refine_confirm),
                "rounds": args.rounds,
                "frames": args.frames,
                "runner_frame_ms": benchlib.runner_frame_ms(runtime), "models": results}
    benchlib.write_json(out / "fidelity.json", document)
    print(json.dumps(document, indent=2))
    return 0


def _model_or_error(name: str, args, out: Path, runtime) -> dict:
    """One model's result, saved at once; a failure is one line and the next model runs."""
    try:
        result = _model(name, args, out, runtime)
    except Exception as error:  # any failure of one model must not lose the others
        result = {"model": name, "error": benchlib.one_line(error)}
        out.mkdir(parents=True, exist_ok=True)
        (out / "error.txt").write_text(traceback.format_exc())  # the line hides where
        say(f"{name} failed: {result['error']} (traceback in {out / 'error.txt'})")
    benchlib.write_json(out / "result.json", result)
    return result


def cuts_by_mac_fraction(cumulative_macs: list[tuple[int, float]], total_macs: float,
                         count: int) -> list[int]:
    """Cut positions spread over the model's work: for each i < ``count`` the cut whose
    cumulative MACs (``(position, MACs of the head)`` pairs) is nearest ``(i + 0.5) / count``
    of ``total_macs`` among those not yet picked, so the result has ``min(count, len)``
    distinct cuts; ties go to the lower position. Sorted.

    >>> cuts_by_mac_fraction([(1, 10.0), (2, 20.0), (3, 90.0)], 100.0, 2)
    [2, 3]
    >>> cuts_by_mac_fraction([(1, 10.0), (2, 20.0), (3, 90.0)], 100.0, 3)
    [1, 2, 3]
    """
    left = sorted(cumulative_macs)
    picked: list[int] = []
    for i in range(min(count, len(left))):
        target = (i + 0.5) / count * total_macs
        nearest = min(left, key=lambda pm: (abs(pm[1] - target), pm[0]))
        left.remove(nearest)
        picked.append(nearest[0])
    return sorted(picked)


def sampled_cuts(graph, count: int, include: tuple[int, ...]) -> list[tuple[int, ...]]:
    """``count`` single-tensor cuts spread evenly over the model's MACs
    (:func:`cuts_by_mac_fraction`; fewer only when the model has fewer), plus ``include``."""
    from itertools import accumulate

    from hwsched.cuts import enumerate_cuts

    head_macs = [0, *accumulate(layer.macs or 0 for layer in graph.layers)]
    single = [(c.head_layers, float(head_macs[c.head_layers]))
              for c in enumerate_cuts(graph) if c.single_tensor]
    picked = cuts_by_mac_fraction(single, float(head_macs[-1]), count)
    return sorted({(k,) for k in picked} | {include})


def _model(name: str, args, out: Path, runtime) -> dict:
    from hwsched.load import load_model
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.schedule import evaluate

    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(name, progress=say)
    profiles = benchlib.profile_here(loaded, args.segments, out)
    ranking, refinement = benchlib.calibrated(loaded, profiles, runtime, args.refine,
                                              by=args.refine_by, passes=args.refine_passes,
                                              confirm=args.refine_confirm)
    best = refinement.best
    by_cut = {c.cut_positions: c for c in ranking.candidates}
    cuts = sampled_cuts(loaded.graph, args.samples, best.cut_positions)
    for cuts_k in cuts:  # a cut the ranking left out (infeasible, or beyond --top) still runs
        if cuts_k not in by_cut and cuts_k != best.cut_positions:
            by_cut[cuts_k] = evaluate(loaded.graph, list(benchlib.NAMES), benchlib.LOOPBACK,
                                      cuts_k, profile=profiles)
    plans = {}
    for cuts_k in cuts:
        candidate = best if cuts_k == best.cut_positions else by_cut[cuts_k]
        plans[cuts_k] = benchlib.export_split(loaded, candidate,
                                              out / ("cut_" + "_".join(map(str, cuts_k))))
    config = EmulationConfig(frames=args.frames)
    retimed: list[float] = []

    def run(cuts_k: tuple[int, ...], directory: Path):
        if cuts_k == best.cut_positions:
            # the refined prediction is minutes old; the host drifts by up to a third
            retimed.append(benchlib.retimed_prediction(loaded, best, directory, runtime))
            return emulate(directory, config)  # rank 1 failing fails the model
        try:
            return emulate(directory, config)
        except Exception as error:  # one sampled cut failing must not lose the model's hour
            say(f"run of {directory.name} failed: {benchlib.one_line(error)}")
            return benchlib.FailedRun(benchlib.one_line(error))

    def save(key, round_index: int, result) -> None:
        benchlib.write_json(out / "runs" / f"{plans[key].name}_round{round_index}.json",
                            benchlib.run_or_error_record(result))

    runs = benchlib.interleave({c: (lambda c=c, d=d: run(c, d)) for c, d in plans.items()},
                               args.rounds, done=save)
    refined = {c.cut_positions: c for c in refinement.candidates}
    return {
        "model": name,
        **_rank1(loaded, best, refinement, runs[best.cut_positions], retimed),
        **_regret(runs, best.cut_positions),
        "sampled": [_sampled(c, runs[c], refined, by_cut, loaded, runtime) for c in cuts],
        # every split the refine loop measured, in rank order, with its measured parts
        "refinement": refinement.to_dict()["candidates"],
    }


def _rank1(loaded, best, refinement, best_runs, retimed: list[float]) -> dict:
    ips = [r.throughput_ips for r in best_runs]
    stages = len(best.stages)
    return {
        "rank1_cut_positions": list(best.cut_positions),
        "rank1_cut_after": [loaded.graph.layers[k - 1].name for k in best.cut_positions],
        "predicted_throughput_ips": best.throughput_ips,
        "measured_throughput_ips": summary(ips),
        "throughput_error": summary([m / best.throughput_ips - 1 for m in ips]),
        "predicted_throughput_ips_same_round": summary(retimed),
        "throughput_error_same_round": summary(
            [m / p - 1 for m, p in zip(ips, retimed, strict=True)]),
        "predicted_stage_busy_ms": [refinement.extras_of(best)[k]["busy_ms"]
                                    for k in range(stages)],
        "measured_stage_busy_ms": [summary([r.stages[k].busy_ms for r in best_runs])
                                   for k in range(stages)],
        "runs": [benchlib.run_record(r) for r in best_runs],
    }


def _regret(runs: dict, rank1: tuple[int, ...]) -> dict:
    """Regret of medians (rounds mixed) and per round (rank 1 against that round's best);
    failed runs of sampled cuts are left out."""
    ips = {c: [benchlib.run_ips(r) for r in rs] for c, rs in runs.items()}
    medians = {c: m for c, v in ips.items() if (m := summary(v)["median"]) is not None}
    per_round = benchlib.per_round_best_ratio(ips, rank1)
    best_median = max(medians, key=medians.get)
    return {
        "regret_of_medians": 1 - medians[rank1] / medians[best_median],
        "regret": 1 - medians[rank1] / medians[best_median],
        "regret_per_round": summary([None if q is None else 1 - q for q in per_round]),
        "best_sampled_cut_positions": list(best_median),
        "best_sampled_cut_positions_per_round": [
            list(max((c for c in ips if ips[c][r] is not None), key=lambda c, r=r: ips[c][r]))
            for r in range(len(ips[rank1]))],
    }


def _sampled(cuts_k, runs_k, refined: dict, by_cut: dict, loaded, runtime) -> dict:
    """One sampled cut: measured, its profile prediction (``predicted_throughput_ips``, as
    before: profile plus the runner's cost) and the refined one where refine timed it."""
    from hwsched.schedule.refine import with_runtime_cost

    profile = (with_runtime_cost(loaded.graph, by_cut[cuts_k], runtime).throughput_ips
               if cuts_k in by_cut else None)
    refined_ips = refined[cuts_k].throughput_ips if cuts_k in refined else None
    best_source = "refined" if refined_ips is not None else "profile" if profile else None
    return {"cut_positions": list(cuts_k),
            "cut_after": [loaded.graph.layers[k - 1].name for k in cuts_k],
            "predicted_throughput_ips": profile,
            "predicted_throughput_ips_refined": refined_ips, "prediction": best_source,
            "measured_throughput_ips": summary([benchlib.run_ips(r) for r in runs_k]),
            "runs": [benchlib.run_or_error_record(r) for r in runs_k]}


if __name__ == "__main__":
    sys.exit(main())
