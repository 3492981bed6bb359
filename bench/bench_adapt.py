"""Benchmark: a 2-stage split that adapts to a fading link (issue 11), against fresh runs.

Steps, each through the documented CLI:

1. ``hwsched export MODEL --platforms A,B --stages 2 --link LINK --adaptive K`` (with
   ``--sweep-bandwidth``/``--cut-positions`` when given) → one plan with K alternatives;
2. each alternative written out as a fixed plan of its own (its nested plan and its stage
   files), so a *fresh* run of a split knows nothing of the others;
3. the export's verification samples (inputs, and the whole model's outputs computed by the
   model itself at export) → the stream's inputs; the source cycles through them;
4. interleaved rounds (``--rounds``), each: a fresh run of every alternative on a link shaped
   to the high and to the low rate (``emulate --link-emulation --bandwidth-schedule 0:R``),
   then the fading run ``--bandwidth-schedule 0:HIGH,T1:LOW,T2:HIGH`` with adaptation
   (``--adapt``) and without (``--no-adapt``), its frames sized from the fresh runs so that the
   stream outlasts T2 by ``--tail`` seconds.

Prints one JSON object. For every change of the rate: the switch delay (the first switch after
the change minus the moment ``tc`` applied it), the throughput after the switch (timeline
buckets from the switch, settled, to the next change) against the fresh run of the split that
is fastest at that rate, and the no-adaptation run's throughput in the same window. For the
whole run: frames lost, duplicated and out of order as the sink counted them, the outputs
against the model's own, and the capacity probes each hop's sender made (announced, timed
exactly or only as a bound, padding bytes: ``hwsched.runtime.probe``). Each figure: median,
spread (max - min) and values over the rounds.
Targets (issue 11): switch within 2 s, throughput within 10% of the fresh best split, no frame
lost, duplicated or out of order, outputs equal to the model's.

Needs root and iproute2 (network namespaces, ``tc``). Run it on a quiet machine.

    python bench/bench_adapt.py [--quick] [--model efficientnet_b0] [--platforms rpi4,rpi4]
        [--link gige] [--adaptive 2] [--sweep-bandwidth LO:HI[:N]] [--cut-positions K]
        [--high 1000] [--low 20] [--fade-at 10] [--recover-at 25] [--tail 10] [--fresh 8]
        [--rounds 3]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import say, summary

#: Timeline buckets this long after a switch are left out: the pipeline refills.
SETTLE_S = 0.5
#: Frames beyond the estimate, so that a slower round still outlasts the schedule.
FRAMES_MARGIN = 1.25
#: Frames of the probe that sizes the fresh runs, and the seconds a fresh run streams.
PROBE_FRAMES = 300
FRESH_S = 8.0
#: Targets of issue 11.
MAX_SWITCH_DELAY_S = 2.0
MIN_THROUGHPUT_RATIO = 0.9
#: Relative tolerance of an fp32 chain against the model (``hwsched.export.verify``).
FP32_RELATIVE_TOLERANCE = 1e-4


def main() -> int:
    args = _arguments()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-adapt-"))
    out.mkdir(parents=True, exist_ok=True)
    plan_dir = _export(args, out)
    alternatives = _alternatives(plan_dir, out)
    inputs, references = _samples(plan_dir, out)
    fading = f"0:{args.high:g},{args.fade_at:g}:{args.low:g},{args.recover_at:g}:{args.high:g}"
    sizes = _fresh_sizes(args, alternatives, inputs, out)
    fresh: dict[str, list[dict]] = {}
    runs: dict[str, list[dict]] = {"adapt": [], "no_adapt": []}
    for r in range(args.rounds):
        for alt_id, alt_dir in alternatives.items():
            for rate in (args.high, args.low):
                key = _fresh_key(alt_id, rate)
                say(f"round {r + 1}/{args.rounds}: fresh run of alternative {alt_id} at "
                    f"{rate:g} Mbit/s ({sizes[key]} frames)")
                fresh.setdefault(key, []).append(_emulate(
                    alt_dir, out / f"r{r}_{key}", sizes[key], f"0:{rate:g}", inputs))
        frames = _frames(args, fresh, alternatives)
        for mode in ("adapt", "no_adapt"):
            say(f"round {r + 1}/{args.rounds}: fading run ({mode}, {frames} frames, {fading})")
            run_dir = out / f"r{r}_{mode}"
            runs[mode].append(_emulate(plan_dir, run_dir, frames, fading, inputs,
                                       ["--adapt" if mode == "adapt" else "--no-adapt",
                                        "--keep", str(run_dir / "keep")]))
    print(json.dumps(_result(args, plan_dir, alternatives, fresh, runs, references, out),
                     indent=2))
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--platforms", default="rpi4,rpi4")
    parser.add_argument("--link", default="gige")
    parser.add_argument("--adaptive", type=int, default=2, metavar="K")
    # the descriptors' boards are slower than this host's cores: on them the best cut of
    # EfficientNet-B0 changes only below ~10 Mbit/s, so the sweep reaches down to 2 Mbit/s
    parser.add_argument("--sweep-bandwidth", metavar="LO:HI[:N]", default="2:2000:13",
                        help="the export's bandwidth sweep (default: 2:2000:13)")
    parser.add_argument("--cut-positions", metavar="K[,K…]",
                        help="a split the export must keep among the alternatives")
    parser.add_argument("--high", type=float, default=1000.0, help="Mbit/s before and after")
    parser.add_argument("--low", type=float, default=20.0, help="Mbit/s while faded")
    parser.add_argument("--fade-at", type=float, default=10.0, metavar="S")
    parser.add_argument("--recover-at", type=float, default=25.0, metavar="S")
    parser.add_argument("--tail", type=float, default=10.0, metavar="S",
                        help="seconds streamed after the link recovers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", type=float, default=FRESH_S, metavar="S",
                        help=f"seconds each fresh run streams (default: {FRESH_S:g})")
    parser.add_argument("--quick", action="store_true",
                        help="digits_cnn, fade at 3 s, recover at 8 s, 4 s tail, 3 s fresh "
                        "runs, one round")
    parser.add_argument("--out", type=Path, help="keep plans, runs and outputs here")
    args = parser.parse_args()
    if args.quick:
        args.model, args.fade_at, args.recover_at, args.tail, args.rounds, args.fresh = (
            "digits_cnn", 3.0, 8.0, 4.0, 1, 3.0)
    if not 0 < args.fade_at < args.recover_at:
        parser.error("need 0 < --fade-at < --recover-at")
    return args


# -- the plan and its alternatives -----------------------------------------------------------------
def _hwsched(*argv: str, log: Path) -> None:
    """One hwsched command; its output goes to ``log``, a failure ends the benchmark."""
    with log.open("w") as handle:
        # run from the log's directory: ``-m`` puts the working directory first on the path
        done = subprocess.run([sys.executable, "-m", "hwsched", *argv], stdout=handle,
                              stderr=subprocess.STDOUT, cwd=log.parent)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"bench_adapt: hwsched {argv[0]} failed ({done.returncode}): {tail[0]}"
                         f" — see {log}")


def _export(args: argparse.Namespace, out: Path) -> Path:
    plan_dir = out / "adaptive"
    if (plan_dir / "plan.json").is_file():
        return plan_dir
    say(f"exporting {args.model} with --adaptive {args.adaptive}")
    extra = [*(["--sweep-bandwidth", args.sweep_bandwidth] if args.sweep_bandwidth else []),
             *(["--cut-positions", args.cut_positions] if args.cut_positions else [])]
    _hwsched("export", args.model, "--platforms", args.platforms, "--stages", "2", "--link",
             args.link, "--adaptive", str(args.adaptive), *extra, "--out", str(plan_dir),
             log=out / "export.log")
    return plan_dir


def _alternatives(plan_dir: Path, out: Path) -> dict[int, Path]:
    """Each alternative as a fixed plan in a directory of its own (its stage files copied)."""
    from hwsched.deployment import load_plan, save_plan

    plan = load_plan(plan_dir)
    if len(plan.alternatives) < 2:
        raise SystemExit(f"bench_adapt: {plan_dir} has {len(plan.alternatives)} alternative(s); "
                         "the export found no second split to switch to")
    dirs = {}
    for alt in plan.alternatives:
        alt_dir = out / f"alt{alt.id}"
        if not (alt_dir / "plan.json").is_file():
            alt_dir.mkdir(parents=True, exist_ok=True)
            for stage in alt.plan.stages:
                shutil.copyfile(plan_dir / stage.file, alt_dir / stage.file)
            save_plan(alt.plan, alt_dir)
        dirs[alt.id] = alt_dir
    return dirs


def _samples(plan_dir: Path, out: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The stream's inputs (``.npy``) and the model's own output for each."""
    import numpy as np

    from hwsched.export.verify import SAMPLES_FILE, load_samples

    samples, references = load_samples(plan_dir / SAMPLES_FILE)
    if len(samples[0]) != 1:
        raise SystemExit("bench_adapt: a model with one input is needed (--data FILE.npy)")
    name = next(iter(samples[0]))
    path = out / "inputs.npy"
    np.save(path, np.concatenate([s[name] for s in samples]))
    return path, references


# -- runs ------------------------------------------------------------------------------------------
def _fresh_key(alt_id: int, rate_mbps: float) -> str:
    return f"alt{alt_id}@{rate_mbps:g}"


def _emulate(plan_dir: Path, run_dir: Path, frames: int, schedule: str, inputs: Path,
             extra: list[str] | None = None) -> dict[str, Any]:
    """One ``hwsched emulate --link-emulation`` run; its JSON document (outputs beside it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _hwsched("emulate", str(plan_dir), "--link-emulation", "--bandwidth-schedule", schedule,
             "--frames", str(frames), "--data", str(inputs), "--json", str(run_dir / "run.json"),
             "--outputs", str(run_dir / "outputs.npz"), *(extra or []),
             log=run_dir / "emulate.log")
    return {**json.loads((run_dir / "run.json").read_text()), "dir": str(run_dir)}


def _fresh_sizes(args: argparse.Namespace, alternatives, inputs: Path, out: Path
                 ) -> dict[str, int]:
    """Frames for each fresh run to stream ``--fresh`` seconds, from a short probe run."""
    sizes = {}
    for alt_id, alt_dir in alternatives.items():
        for rate in (args.high, args.low):
            key = _fresh_key(alt_id, rate)
            say(f"probing alternative {alt_id} at {rate:g} Mbit/s")
            probe = _emulate(alt_dir, out / f"probe_{key}", PROBE_FRAMES, f"0:{rate:g}", inputs)
            sizes[key] = max(PROBE_FRAMES, math.ceil(probe["throughput_ips"] * args.fresh))
    return sizes


def _steady_ips(run: dict) -> float:
    """Delivered throughput by the same measure as the fading run's phases (timeline buckets
    after the refill), so fresh and fading runs are compared like for like."""
    ips = _window_ips(run, SETTLE_S, _stream_end_s(run))
    return run["throughput_ips"] if ips is None else ips


def _median_ips(runs: list[dict]) -> float:
    return summary([_steady_ips(r) for r in runs])["median"]


def _frames(args: argparse.Namespace, fresh: dict[str, list[dict]], alternatives) -> int:
    """Enough frames for the fastest split to stream past the recovery plus the tail."""
    high = max(_median_ips(fresh[_fresh_key(a, args.high)]) for a in alternatives)
    low = max(_median_ips(fresh[_fresh_key(a, args.low)]) for a in alternatives)
    seconds_high = args.fade_at + args.tail
    return math.ceil(FRAMES_MARGIN * (high * seconds_high
                                      + low * (args.recover_at - args.fade_at)))


# -- what the runs say -----------------------------------------------------------------------------
def _bucket_s(run: dict) -> float:
    times = [b["t_s"] for b in run.get("timeline") or []]
    steps = sorted(b - a for a, b in pairwise(times) if b > a)
    return steps[len(steps) // 2] if steps else 0.25


def _window_ips(run: dict, start_s: float, stop_s: float) -> float | None:
    """Mean delivered throughput of the whole timeline buckets inside ``[start, stop)``."""
    width = _bucket_s(run)
    inside = [b["throughput_ips"] for b in run.get("timeline") or []
              if b["t_s"] >= start_s and b["t_s"] + width <= stop_s]
    return sum(inside) / len(inside) if inside else None


def _stream_end_s(run: dict) -> float:
    timeline = run.get("timeline") or []
    return timeline[-1]["t_s"] + _bucket_s(run) if timeline else 0.0


def _phases(run: dict) -> list[tuple[float, float, float]]:
    """``(from_s, to_s, Mbit/s)`` for each stretch of the stream at one link rate, each from
    the moment ``tc`` applied it."""
    applied = [(s["applied_at_s"], s["bandwidth_mbps"]) for s in run.get("bandwidth_schedule")
               or [] if s["hop"] is None]
    end = _stream_end_s(run)
    applied = [(t, rate) for t, rate in applied if t < end]
    return [(t, applied[k + 1][0] if k + 1 < len(applied) else end, rate)
            for k, (t, rate) in enumerate(applied)]


def _best_fresh(fresh: dict[str, list[dict]], alternatives, rate: float) -> tuple[int, float]:
    return max(((a, _median_ips(fresh[_fresh_key(a, rate)])) for a in alternatives),
               key=lambda item: item[1])


def _phase_figures(run: dict, no_adapt: dict, fresh, alternatives) -> list[dict[str, Any]]:
    """Per stretch at one rate: the switch into it, the throughput after, the fresh best."""
    figures = []
    for start, stop, rate in _phases(run):
        best_alt, best_ips = _best_fresh(fresh, alternatives, rate)
        switch = next((s for s in run.get("switches") or [] if start <= s["at_s"] < stop), None)
        settled_from = (switch["at_s"] if switch else start) + SETTLE_S
        ips = _window_ips(run, settled_from, stop)
        running = _running_at(run, start)
        figures.append({
            "from_s": start, "to_s": stop, "bandwidth_mbps": rate,
            "fresh_best_alternative": best_alt, "fresh_best_throughput_ips": best_ips,
            "running_at_change": running,
            "switch_needed": start > 0 and running != best_alt,
            "switched_to": None if switch is None else switch.get("to_alternative"),
            "switch_delay_s": None if switch is None or start == 0 else switch["at_s"] - start,
            "alternative_after": _active_alternative(run, settled_from),
            "throughput_ips": ips,
            "throughput_vs_fresh_best": None if ips is None else ips / best_ips,
            "no_adapt_throughput_ips": _window_ips(no_adapt, start + SETTLE_S, stop),
        })
    return figures


def _running_at(run: dict, at_s: float) -> int:
    """The split the stream ran on at ``at_s``: the last switch before it (before any, the
    split the stream started on, :func:`_start_alternative`). The timeline's buckets are too
    coarse for this: a switch 0.35 s after a change fell in the change's first bucket, which
    then said the stream already ran on its target.

    >>> run = {"switches": [{"at_s": 2.0, "from_alternative": 1, "to_alternative": 0}]}
    >>> _running_at(run, 1.0), _running_at(run, 3.0)
    (1, 0)
    """
    before = [s for s in run.get("switches") or [] if s["at_s"] < at_s]
    return before[-1]["to_alternative"] if before else _start_alternative(run)


def _start_alternative(run: dict) -> int:
    """The split the stream started on, from the run's own record: the first switch's
    ``from_alternative``, else the first timeline bucket's split (a run that never switched),
    else alternative 0 (the plan's own split, where ``emulate`` starts unless told).

    >>> _start_alternative({"switches": [], "timeline": [{"t_s": 0.0, "alternative": 2}]})
    2
    >>> _start_alternative({"switches": [{"at_s": 1.0, "from_alternative": 1,
    ...                                   "to_alternative": 0}], "timeline": []})
    1
    >>> _start_alternative({})
    0
    """
    switches = run.get("switches") or []
    if switches:
        return switches[0]["from_alternative"]
    first = next((b["alternative"] for b in run.get("timeline") or []
                  if b.get("alternative") is not None), None)
    return 0 if first is None else first


def _active_alternative(run: dict, at_s: float) -> int | None:
    """The split of the first timeline bucket from ``at_s`` on."""
    later = [b["alternative"] for b in run.get("timeline") or [] if b["t_s"] >= at_s]
    return later[0] if later else None


def _outputs_vs_model(run: dict, references: list[dict[str, Any]]) -> dict[str, Any]:
    """Every delivered frame's outputs against the model's own for its input (the stream
    cycles through the samples): max differences and top-1 agreement."""
    import numpy as np

    from hwsched.export.verify import judge

    with np.load(Path(run["dir"]) / "outputs.npz") as archive:
        outputs = {name: archive[name] for name in archive.files}
    frames = len(next(iter(outputs.values())))
    got = [{n: v[i].reshape(references[0][n].shape) for n, v in outputs.items()}
           for i in range(frames)]
    want = [references[i % len(references)] for i in range(frames)]
    verdict = judge(got, want, "model", exact=True)
    return {"frames": frames, "max_abs_diff": verdict.max_abs_diff,
            "max_rel_diff": verdict.max_rel_diff, "top1_agreement": verdict.top1_agreement,
            "equal": verdict.max_rel_diff <= FP32_RELATIVE_TOLERANCE}


def _frame_counts(run: dict) -> dict[str, Any]:
    sent, delivered = run.get("frames_sent"), run.get("frames_delivered")
    return {"sent": sent, "delivered": delivered,
            "lost": None if sent is None or delivered is None else sent - delivered,
            "duplicated": run.get("frames_duplicated"),
            "out_of_order": run.get("frames_out_of_order"),
            "complete_in_order": bool(run.get("complete") and run.get("in_order"))}


def _probes(run: dict) -> dict[str, int]:
    """The capacity probes of a run, summed over its stages' outgoing hops (from the stage
    stats the run kept)."""
    totals = {"announced": 0, "timed_exactly": 0, "timed_as_bound": 0, "padding_bytes": 0}
    for path in sorted((Path(run["dir"]) / "keep").glob("stage*.json")):
        stats = json.loads(path.read_text())
        down, up = stats.get("downstream") or {}, stats.get("upstream") or {}
        totals["announced"] += down.get("probes", 0)
        totals["padding_bytes"] += down.get("probe_bytes", 0)
        totals["timed_exactly"] += up.get("probes_exact", 0)
        totals["timed_as_bound"] += up.get("probes_bound", 0)
    return totals


def _per_phase(phases: list[list[dict]], key: str) -> list[dict[str, Any]]:
    """One summary per phase over the rounds (rounds with fewer phases leave theirs out)."""
    count = max((len(p) for p in phases), default=0)
    return [summary([p[k][key] for p in phases if k < len(p) and p[k][key] is not None])
            for k in range(count)]


def _result(args, plan_dir: Path, alternatives, fresh, runs, references, out: Path) -> dict:
    from hwsched.deployment import load_plan

    plan = load_plan(plan_dir)
    phases = [_phase_figures(a, n, fresh, alternatives)
              for a, n in zip(runs["adapt"], runs["no_adapt"], strict=True)]
    counts = [_frame_counts(r) for r in runs["adapt"]]
    outputs = [_outputs_vs_model(r, references) for r in runs["adapt"]]
    delays = [p["switch_delay_s"] for ps in phases for p in ps[1:] if p["switch_needed"]]
    ratios = [p["throughput_vs_fresh_best"] for ps in phases for p in ps[1:]]
    return {
        "model": args.model, "platforms": args.platforms, "link": args.link,
        "alternatives": [{"id": a.id, "cut_positions": list(a.cut_positions),
                          "bandwidth_mbps_low": a.bandwidth_mbps_low,
                          "bandwidth_mbps_high": None if math.isinf(a.bandwidth_mbps_high)
                          else a.bandwidth_mbps_high}
                         for a in plan.alternatives],
        "schedule": {"high_mbps": args.high, "low_mbps": args.low, "fade_at_s": args.fade_at,
                     "recover_at_s": args.recover_at, "tail_s": args.tail},
        "fresh_throughput_ips": {key: summary([_steady_ips(r) for r in rs])
                                 for key, rs in fresh.items()},
        "fresh_emulate_throughput_ips": {key: summary([r["throughput_ips"] for r in rs])
                                         for key, rs in fresh.items()},
        "phases": phases,
        "switch_delay_s": _per_phase(phases, "switch_delay_s"),
        "throughput_after_switch_ips": _per_phase(phases, "throughput_ips"),
        "throughput_vs_fresh_best": _per_phase(phases, "throughput_vs_fresh_best"),
        "no_adapt_throughput_ips": _per_phase(phases, "no_adapt_throughput_ips"),
        "adapt_throughput_ips": summary([r["throughput_ips"] for r in runs["adapt"]]),
        "no_adapt_whole_run_throughput_ips": summary([r["throughput_ips"]
                                                      for r in runs["no_adapt"]]),
        "frames": counts,
        "no_adapt_frames": [_frame_counts(r) for r in runs["no_adapt"]],
        "outputs_vs_model": outputs,
        "probes": [_probes(r) for r in runs["adapt"]],
        "targets": {
            # every change after which the running split was not the fresh best
            "switch_within_2_s": all(d is not None and d <= MAX_SWITCH_DELAY_S
                                     for d in delays),
            "changes_needing_a_switch": len(delays),
            "throughput_within_10_percent": bool(ratios) and all(
                r is not None and r >= MIN_THROUGHPUT_RATIO for r in ratios),
            "no_frame_lost_duplicated_or_reordered": all(
                c["lost"] == 0 and c["duplicated"] == 0 and c["out_of_order"] == 0
                and c["complete_in_order"] for c in counts),
            "outputs_equal_to_model": all(o["equal"] for o in outputs),
        },
        "rounds": args.rounds,
        "out": str(out),
    }


if __name__ == "__main__":
    sys.exit(main())
