"""Benchmark: branch-parallel placement vs the whole model on one core, one frame at a time.

For each model (a balanced two-branch model built here, and ``inception_v3``): profile its
segments on this machine (LiteRT, 1 thread; ``--co-run``: the other core busy), paced as the
emulation feeds frames (``--compute-gap-ms``, default ``PACED_GAP_MS`` idle before each timed
invocation: one frame at a time a branch computed 16.0-17.1 ms against 15.2-15.6 ms profiled
back to back, the prediction's whole error; why is in :mod:`hwsched.runtime.profile`), describe two
cores of it as two boards, let ``--placement graph``'s search pick the lowest-latency
placement with the calibrated costs, export it (fp32, verified), and emulate it with each
board's stages pinned to its core, at a rate low enough that nothing queues; the same for the
whole model as one stage on one core, the two emulated alternately (``--rounds``, medians).
The prediction charges the runner's hand-off cost on both ends of every edge, measured on
loopback as the emulation meets it: the cores' shares back to back, the wire part (wake-ups)
from frames ``PACED_GAP_MS`` apart (``hopcost --gap-ms``), on every edge, inside a board too;
and (unless ``--no-runner-cost``) each runner's own loop per sending and receiving end, as
every benchmark charges it (``benchlib.host_setup``), measured beside a stand-in that sweeps
what this model's pass streams, its weights and every tensor it writes, at most the default
sweep (twice the last-level cache here) (:func:`hwsched.runtime.runnercost.model_evict_bytes`;
per model, JSON ``runner_frame_ms`` and ``runner_evict_bytes``). Without them, two runs on the
EPYC VM predicted the placement 3.5% and 11.2% fast, its cross-core hand-offs taking 0.8-1.75
ms more each (by the kept events) than the bare hop ends priced; with the terms of a 64 MiB
sweep, the two next runs +12.7% and +9.2% slow: the two-branch model's pass (11.6 MB) leaves
most of the 32 MiB L3 warm.
Prints one JSON object: measured single-frame latency (p50) of both, their ratio, the
calibrated prediction beside each, and ``measured_breakdown_ms``: where a frame's time went,
read from the placement run's events (kept in ``OUT/<model>_graph_run``), with each compute's
involuntary context switches, a count, apart in ``measured_breakdown_counts``.

A hop between two stages on one core (stem to branch a, branch a to the join) is priced with
its own wire part, measured with both ends on that core (unless ``--no-same-core``): there
the sending runner's rest of its pass, both ZeroMQ I/O threads and the receiving runner take
turns, where across two cores they overlap (paced 884 KB: 1.5-1.6 ms one way against 1.1).
What a same-core downstream shows as its sender's "fan-out" also holds the downstream's own
work, its compute included: the scheduler runs the woken receiver first (``perf sched``).

Issue 13's pricing (unless ``--old-pricing``): the paced profile also times every segment
back to back and paced beside a copy on the other core (invoked together), so a stage pays the
wake after idle once, not once per segment, and the two cores' stages that compute at the same
time are priced co-run for their overlap (:mod:`hwsched.costs.placement`; the two "boards"
share this host's memory). The same placement priced the old way is printed beside it
(``*_old_pricing``; ``*_wake_only``: the wake once, no co-run pricing, hops as the headline;
``predicted_stage_compute_ms*`` leave the runner's share out, as the busy times do). Then
(unless ``--no-refine``) the exported stages are timed whole, paced, each beside the stage it
overlaps in the one-frame schedule, and one frame is played from those times and the hand-off
cost (``refined_placement_latency_ms``, ``refined_prediction_error``:
:func:`hwsched.schedule.refine.time_graph_plan`; same-core hops priced as the headline
prices them), as ``bench_tiles`` does for tiles.

    python bench/bench_placement.py [--models two_branch,inception_v3] [--frames 40]
                                    [--rounds 3] [--depth 4] [--out DIR]

The two-branch model (48x48x96, four 3x3 convolutions per branch by default): its branches
are the heavy part. At ``--depth 2`` (8-9 ms a branch of ~19 ms on one core, stem 0.3-0.4 ms,
join 0.5-0.6 ms) the hand-offs are half a branch, so the default is four. What it costs
is the hand-off: each branch receives and sends an 884 KB float32 tensor, so a frame crosses
four hops (27 KB in, 884 KB to a branch, 884 KB to the join, 40 B out). Measured where one
frame's time goes (events of a kept run, before the fixes of this version): stem 0.45 ms, its
fan-out 1.0 ms (encoding the tensor twice, ZeroMQ's I/O thread and the other branch's
reception on the same core), the hop to a branch 1.2-1.6 ms, the branch 8.3-9.3 ms, its
send and the hop to the join 2.3 ms, the join 0.6 ms and 0.5 ms to the sink: ~6 ms of
hand-offs against a 9 ms branch. The fan-out now encodes once and an encoding copies each
tensor once, not twice; the rest is the transport's work on cold, idle cores: a hop paced
at 50 ms takes about twice a back-to-back one (wake-ups of three threads, cold caches), which
the prediction used to miss (it charged back-to-back costs: -17 % to -46 %).

The machine is shared (load 5-7 on 2 cores while this was measured): a segment profile or a
whole-model run taken during someone else's benchmark can be 50 % slow, and the prediction
and ratio with it; numbers from one run are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import ratio_summary, summary

#: Idle ms between frames when measuring the hand-off cost: the emulation feeds one frame
#: every few tens of ms, so every hop wakes sleeping threads and finds cold caches (see
#: ``hwsched.runtime.hopcost.measure_hop_ends``); back to back, a hop costs about half.
PACED_GAP_MS = 50.0


def two_branch_model(size: int, channels: int, depth: int = 2):
    """Stem, two branches of ``depth`` 3x3 convolutions of equal cost, added, pooled,
    classified."""
    import keras

    layers = keras.layers
    inputs = keras.Input(batch_shape=(1, size, size, 3), name="image")
    stem = layers.Conv2D(channels, 3, padding="same", activation="relu", name="stem")(inputs)
    arms = []
    for arm in "ab":
        x = stem
        for k in range(depth):
            x = layers.Conv2D(channels, 3, padding="same", activation="relu",
                              name=f"{arm}{k}")(x)
        arms.append(x)
    x = layers.Add(name="join")(arms)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="two_branch")


def _stage_events(run_dir: Path, warmup: int):
    """The kept run's graph-stage events of frames after ``warmup`` (those with reads)."""
    for path in sorted(run_dir.glob("events[0-9]*.jsonl")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["frame"] >= warmup and "read_s" in event:
                yield event


def latency_breakdown(run_dir: Path, warmup: int) -> dict[str, float]:
    """Medians (ms) over the kept run's frames (after ``warmup``) of where one frame's time
    went, from the graph stages' events: each stage's compute and fan-out (end of compute
    until its last message is handed to the transport), each edge from being put on the wire
    until the receiving stage read it, and each stage's wait from its last input's read to
    its start; with the runner's CPU accounting, each compute's CPU time on the runner's own
    thread (``compute cpu``) and the wall time beyond it (``compute preempted``: the time the
    core was taken away, with ``--threads`` 1 as here; with more interpreter threads the
    compute's work on the others counts as preempted too, so it overstates)."""
    parts: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        parts.setdefault(key, []).append(seconds * 1000.0)

    for event in _stage_events(run_dir, warmup):
        k = event["stage"]
        for upstream, read_s in event["read_s"].items():
            add(f"edge {upstream}->{k}", read_s - event["wire_s"][upstream])
        add(f"stage {k} join wait", event["start_s"] - max(event["read_s"].values()))
        add(f"stage {k} compute", event["end_s"] - event["start_s"])
        if "cpu_s" in event:  # what the compute really got of its core
            add(f"stage {k} compute cpu", event["cpu_s"])
            add(f"stage {k} compute preempted",
                event["end_s"] - event["start_s"] - event["cpu_s"])
        add(f"stage {k} fan-out", event["sent_s"] - event["end_s"])
    return {key: statistics.median(values) for key, values in sorted(parts.items())}


def switch_counts(run_dir: Path, warmup: int) -> dict[str, float]:
    """Medians over the same frames of each compute's involuntary context switches on the
    runner's thread (a count, not ms: how often the core was taken away during it; empty
    without the runner's CPU accounting)."""
    counts: dict[str, list[int]] = {}
    for event in _stage_events(run_dir, warmup):
        if "involuntary_switches" in event:
            counts.setdefault(f"stage {event['stage']} compute involuntary switches",
                              []).append(event["involuntary_switches"])
    return {key: statistics.median(values) for key, values in sorted(counts.items())}


#: A paced profile's extra timings (back to back, co-run), each taken at its least as well.
VARIANT_FIELDS = ("back_to_back_ms", "co_run_ms")


def quietest(profiles: list[dict]) -> dict:
    """The first profile with each segment's and the whole model's time the least of all
    profiles': another engineer's benchmark only ever adds to a time, and it comes and goes,
    so the least of a few passes is the machine's own (each timing variant on its own).

    >>> quietest([{"segments": [{"latency_ms": 3.0}], "whole_latency_ms": 9.0},
    ...           {"segments": [{"latency_ms": 2.0}], "whole_latency_ms": 10.0}])
    {'segments': [{'latency_ms': 2.0}], 'whole_latency_ms': 9.0}
    """
    first = profiles[0]
    segments = []
    for i, segment in enumerate(first["segments"]):
        merged_segment = dict(segment)
        for field in ("latency_ms", *VARIANT_FIELDS):
            if field in segment:
                merged_segment[field] = min(p["segments"][i][field] for p in profiles)
        segments.append(merged_segment)
    merged = {**first, "segments": segments}
    for field in ("whole_latency_ms", "whole_back_to_back_ms"):
        wholes = [p[field] for p in profiles if p.get(field) is not None]
        if wholes:
            merged[field] = min(wholes)
    return merged


def old_pricing(profile: dict, fields: tuple[str, ...] = VARIANT_FIELDS) -> dict:
    """The profile without its back-to-back and co-run timings (or only the ``fields``
    named): priced as before issue 13's wake-once and co-run pricing (every stage the sum of
    its paced segments, alone), or with the wake once but alone (``("co_run_ms",)``).

    >>> old_pricing({"segments": [{"latency_ms": 3.0, "co_run_ms": 3.5}],
    ...              "whole_back_to_back_ms": 2.0})
    {'segments': [{'latency_ms': 3.0}]}
    """
    segments = [{k: v for k, v in s.items() if k not in fields} for s in profile["segments"]]
    dropped = {"whole_back_to_back_ms"} if "back_to_back_ms" in fields else set()
    return {**{k: v for k, v in profile.items() if k not in dropped}, "segments": segments}


def latency_given_compute(coster, cost, busy_ms: list[float]) -> float:
    """The cost model's frame latency with each stage's compute as measured in the last run
    (its busy time) instead of profiled, hand-offs and schedule as predicted: the prediction's
    error without the segment profile's, which a loaded machine swings by tens of percent."""
    from hwsched.costs.placement import _schedule_one_frame

    compute = [ms + stage.runtime_ms for ms, stage in zip(busy_ms, cost.stages, strict=True)]
    edges = [coster._edge_cost(cost.placement, edge) for edge in cost.placement.edges]
    ends = _schedule_one_frame(cost.placement, compute, edges)[1]
    return coster._frame_latency_ms(cost.placement, ends)  # the source's and sink's wire too


def _refined_fields(refined, measured_ms: float) -> dict:
    """The refined prediction (stages timed whole beside their overlapping stage) beside the
    measured latency; empty with ``--no-refine``."""
    if refined is None:
        return {}
    return {"refined_placement_latency_ms": refined.latency_ms,
            "refined_prediction_error": refined.latency_ms / measured_ms - 1,
            "refined_stage_ms": list(refined.stage_ms),
            "refined_partners": list(refined.partners)}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pricings(graph, boards, args, profile: dict, name: str, runtime):
    """The headline coster, the old pricing's (as before issue 13: paced segments summed,
    alone; every hop at the cross-core wire) and the wake-only one (the headline's but for
    co-run pricing: its hops are the headline's, same-core ones included, so the two differ
    by co-run pricing alone)."""
    from hwsched.costs.placement import PlacementCoster
    from hwsched.costs.profile import parse_profile

    # the two "boards" are two cores of this host: their stages contend when they co-run
    coster = PlacementCoster(graph, boards, args.link,
                             profile=parse_profile(profile, f"{name} profile"),
                             runtime=runtime, shared_chips=[("core0", "core1")],
                             same_core_runtime=args.same_core_cost)
    old_coster = PlacementCoster(graph, boards, args.link,
                                 profile=parse_profile(old_pricing(profile), f"{name} profile"),
                                 runtime=runtime)
    wake_coster = PlacementCoster(graph, boards, args.link, profile=parse_profile(
        old_pricing(profile, ("co_run_ms",)), f"{name} profile"), runtime=runtime,
        same_core_runtime=args.same_core_cost)
    return coster, old_coster, wake_coster


def bench_model(name: str, out: Path, args) -> dict:
    from hwsched.costs.profile import parse_profile
    from hwsched.export import export
    from hwsched.export.graph import export_placement
    from hwsched.export.profiling import profile_model
    from hwsched.load import LoadedModel, load_model
    from hwsched.load.keras_reader import read_keras_model
    from hwsched.placement import Board, Stage, placement_from_stages
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.runtime.hopcost import DEFAULT_SIZES, with_measured_runners
    from hwsched.runtime.runnercost import model_evict_bytes
    from hwsched.schedule.graph_search import search_graph_placements
    from hwsched.schedule.refine import time_graph_plan

    if name == "two_branch":
        model = two_branch_model(args.size, args.channels, args.depth)
        graph, binding = read_keras_model(model, name, source="bench two_branch")
        loaded = LoadedModel(graph=graph, source="bench", kind="keras", keras=binding)
    else:
        loaded = load_model(name, progress=say)
    graph = loaded.graph
    say(f"{name}: profiling {args.segments} segments {args.profiles} times (co-run: "
        f"{args.co_run}, {args.compute_gap_ms:g} ms idle before each timed invocation)")
    profiles = [profile_model(loaded, threads=1, segments=args.segments, co_run=args.co_run,
                              progress=say, gap_ms=args.compute_gap_ms,
                              variants=not args.old_pricing)
                for _ in range(args.profiles)]
    profile = quietest(profiles)
    boards = (Board("core0", "host", (0,)), Board("core1", "host", (1,)))
    runtime, evict = args.runtime_cost, None
    if args.runner_cost:  # the runners' own loops beside a stand-in that sweeps what this
        # model's pass streams (at most the default sweep: twice the last-level cache here)
        evict = model_evict_bytes(graph)
        say(f"{name}: measuring the runners' own loops beside a stand-in sweeping "
            f"{evict / 2**20:.1f} MiB a frame (the model's weights and tensors)")
        runtime = with_measured_runners(runtime, DEFAULT_SIZES, evict_bytes=evict)
    coster, old_coster, wake_coster = pricings(graph, boards, args, profile, name, runtime)
    report = search_graph_placements(coster, boards)
    best = min(report.candidates, key=lambda c: c.latency_ms)
    best_old, best_wake = (c.evaluate(best.placement) for c in (old_coster, wake_coster))
    whole = coster.evaluate(placement_from_stages(graph, boards[:1],
                                                  [Stage("core0", range(len(graph)))]))
    say(f"{name}: best placement has {len(best.placement.stages)} stages, predicted "
        f"{best.latency_ms:.2f} ms vs {whole.latency_ms:.2f} ms on one core")
    dag_dir, whole_dir = out / f"{name}_graph", out / f"{name}_whole"
    export_placement(loaded, best.placement, dag_dir, link=args.link, samples=2,
                     progress=say, force=True)
    export(loaded, ["host"], whole_dir, precisions="fp32", samples=2)  # verified, one stage
    refined = None
    if not args.no_refine:
        partners = coster.co_run_partners(best)
        say(f"{name}: timing the placement's stages paced, beside {list(partners)}")
        refined = time_graph_plan(dag_dir, partners, runtime, graph.outputs,
                                  gap_ms=args.compute_gap_ms, progress=say,
                                  same_core_runtime=args.same_core_cost)
    rate = 1000.0 / (3 * max(whole.latency_ms, 1.0))  # one frame at a time: nothing queues
    config = EmulationConfig(frames=args.frames, rate_hz=rate, warmup_frames=5)
    run_dir = out / f"{name}_graph_run"
    placed, alone_runs = [], []
    for round_ in range(args.rounds):  # alternated: the machine's load drifts over both alike
        say(f"{name}: round {round_ + 1}: emulating the placement at {rate:.1f} frames/s")
        shutil.rmtree(run_dir, ignore_errors=True)
        graph_run = emulate(dag_dir, replace(config, keep_dir=run_dir))
        say(f"{name}: round {round_ + 1}: emulating the whole model on one core")
        whole_run = emulate(whole_dir, config)
        placed.append(graph_run.latency_ms["p50"])
        alone_runs.append(whole_run.latency_ms["p50"])
        complete = graph_run.complete and whole_run.complete
    measured, alone = statistics.median(placed), statistics.median(alone_runs)
    say(f"{name}: per-stage compute predicted "
        f"{[round(s.compute_ms - s.runtime_ms, 2) for s in best.stages]} ms (old pricing "
        f"{[round(s.compute_ms - s.runtime_ms, 2) for s in best_old.stages]}), busy "
        f"{[round(s.busy_ms, 2) for s in graph_run.stages]} ms in the last round")
    handoffs = latency_given_compute(coster, best, [s.busy_ms for s in graph_run.stages])
    handoffs_whole = latency_given_compute(coster, whole,
                                           [s.busy_ms for s in whole_run.stages])
    return {
        "layers": len(graph),
        "stages": len(best.placement.stages),
        "parallel_blocks": report.parallel_blocks,
        "placement_latency_ms": measured,
        "whole_latency_ms": alone,
        "latency_ratio": alone / measured,
        "predicted_placement_latency_ms": best.latency_ms,
        "predicted_whole_latency_ms": whole.latency_ms,
        "placement_prediction_error": best.latency_ms / measured - 1,
        "whole_prediction_error": whole.latency_ms / alone - 1,
        "predicted_with_measured_compute_ms": handoffs,
        "whole_predicted_with_measured_compute_ms": handoffs_whole,
        "handoff_prediction_error": handoffs / graph_run.latency_ms["p50"] - 1,
        "whole_handoff_prediction_error": handoffs_whole / whole_run.latency_ms["p50"] - 1,
        "stage_busy_ms": [s.busy_ms for s in graph_run.stages],
        "predicted_stage_ms": [s.compute_ms for s in best.stages],
        "predicted_stage_runtime_ms": [s.runtime_ms for s in best.stages],
        "placement_latency_ms_per_round": placed,
        "whole_latency_ms_per_round": alone_runs,
        "placement_latency_summary_ms": summary(placed),
        "whole_latency_summary_ms": summary(alone_runs),
        "latency_ratio_per_round": ratio_summary(alone_runs, placed),
        "placement_prediction_error_per_round": summary(
            [best.latency_ms / ms - 1 for ms in placed]),
        "complete": complete,
        "measured_breakdown_ms": latency_breakdown(run_dir, config.warmup_frames),
        "measured_breakdown_counts": switch_counts(run_dir, config.warmup_frames),
        "predicted_stage_compute_ms": [s.compute_ms - s.runtime_ms for s in best.stages],
        "predicted_stage_compute_ms_old_pricing": [s.compute_ms - s.runtime_ms
                                                   for s in best_old.stages],
        "predicted_placement_latency_ms_old_pricing": best_old.latency_ms,
        "placement_prediction_error_old_pricing": best_old.latency_ms / measured - 1,
        "predicted_stage_compute_ms_wake_only": [s.compute_ms - s.runtime_ms
                                                 for s in best_wake.stages],
        "predicted_placement_latency_ms_wake_only": best_wake.latency_ms,
        "placement_prediction_error_wake_only": best_wake.latency_ms / measured - 1,
        "profile_wake_ms": parse_profile(profile, name).wake_ms,
        "runner_frame_ms": benchlib.runner_frame_ms(runtime),
        "runner_evict_bytes": evict,
        **_refined_fields(refined, measured),
        "profile_whole_ms": profile.get("whole_latency_ms"),
        "profile_gap_ms": profile.get("gap_ms"),
        "invoke_overhead_ms": profile.get("invoke_overhead_ms"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="two_branch,inception_v3")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--size", type=int, default=48, help="two_branch: input height/width")
    parser.add_argument("--channels", type=int, default=96, help="two_branch: channels")
    parser.add_argument("--profiles", type=int, default=3,
                        help="profile the segments this many times; each takes the least")
    parser.add_argument("--rounds", type=int, default=3,
                        help="emulate placement and whole model alternately this many times "
                             "(>= 3: issue 17's rule for every benchmark)")
    parser.add_argument("--depth", type=int, default=4,
                        help="two_branch: 3x3 convolutions per branch")
    parser.add_argument("--back-to-back", action="store_true",
                        help="measure the hand-off cost with frames back to back (as before), "
                             f"not paced {PACED_GAP_MS:g} ms apart")
    parser.add_argument("--compute-gap-ms", type=float, default=PACED_GAP_MS, metavar="MS",
                        help="profile the segments paced, MS idle before each timed invocation "
                             f"(default {PACED_GAP_MS:g}, as the emulation feeds frames; 0: "
                             "back to back, as before)")
    parser.add_argument("--co-run", action="store_true",
                        help="profile each segment while the other core runs a copy of it")
    parser.add_argument("--old-pricing", action="store_true",
                        help="profile paced only (no back-to-back and co-run timings): every "
                             "stage priced as the sum of its paced segments, alone")
    parser.add_argument("--no-refine", action="store_true",
                        help="skip timing the exported stages beside their overlapping stage")
    parser.add_argument("--no-same-core", action="store_true",
                        help="price a hop between two stages on one core with the cross-core "
                             "hop's wire part (as before), not with its own, measured")
    benchlib.add_runner_cost_option(parser)
    parser.add_argument("--out", type=Path, help="keep descriptors, profiles and plans here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-placement-"))
    out.mkdir(parents=True, exist_ok=True)
    hardware_dir = out / "hardware"
    os.environ["HWSCHED_HARDWARE_PATH"] = str(hardware_dir)

    from hwsched.runtime.hopcost import hop_cpus, measure_runtime_cost, write_loopback_link
    from hwsched.runtime.profile import write_host_descriptor

    write_host_descriptor("host", hardware_dir / "platforms" / "host.yaml")
    gap_s = 0.0 if args.back_to_back else PACED_GAP_MS / 1000.0
    say(f"measuring the runner's per-frame hand-off cost, frames {gap_s * 1000:g} ms apart "
        "(charged on both ends of every edge; its wire part is the loopback link)")
    # the bare hop ends; each model adds its runners' own loops (unless --no-runner-cost), and
    # a same-core hop's ends are charged those cross-core ends too, only its wire part is its
    # own (hwsched.costs.runtime)
    args.runtime_cost = measure_runtime_cost(gap_s=gap_s)
    args.same_core_cost = None
    if not args.no_same_core:
        say("measuring it again with both ends on one core (a hop inside a core: its ends "
            "take turns)")
        first = hop_cpus()[0]
        args.same_core_cost = measure_runtime_cost(gap_s=gap_s, cpus=(first, first))
    write_loopback_link(hardware_dir / "links" / "host_loopback.yaml", cost=args.runtime_cost)
    args.link = "host_loopback"
    results = {name: bench_model(name, out, args) for name in args.models.split(",")}
    same_core = args.same_core_cost.to_dict() if args.same_core_cost else None
    print(json.dumps({"frames": args.frames, "out": str(out),
                      "runtime_cost": args.runtime_cost.to_dict(),
                      "same_core_runtime_cost": same_core, "models": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
