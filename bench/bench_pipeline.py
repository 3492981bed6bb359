"""Benchmark: EfficientNet-B0 split in 2 stages at the cut the *calibrated* analysis ranks best,
emulated with each stage on its own core, against the whole model on one core.

Steps: ``hwsched profile`` (segments timed with LiteRT here) →
``schedule.rank_splits(..., profile=)``
over two copies of this machine joined by Gigabit Ethernet → ``export`` of rank 1 (fp32) →
``emulate`` (stage k pinned to core k); the same for the unsplit model (one stage, one core).
Prints one JSON object: both throughputs, their ratio (physical limit 2× on two cores; the main
seed reports 1.475× for two platforms), and measured vs predicted throughput.

    python bench/bench_pipeline.py [--frames 300] [--segments 30] [--no-co-run] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--frames", type=int, default=300)
    # finer segments let the planner balance the stages
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--no-co-run", dest="co_run", action="store_false",
                        help="profile each segment on an idle chip (default: every other core "
                        "runs a copy of it, the load the pipeline puts on the chip)")
    parser.add_argument("--link", default="gige",
                        help="link descriptor for planning (gige); host_loopback is measured "
                        "here through the runtime's transport, the link the emulation uses")
    parser.add_argument("--out", type=Path, help="keep profile, descriptor and plans here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    out.mkdir(parents=True, exist_ok=True)
    # Descriptors of this machine's cores go on the hardware search path, so every tool
    # (planner, exporter) resolves them by name.
    hardware_dir = out / "hardware"
    os.environ["HWSCHED_HARDWARE_PATH"] = str(hardware_dir)

    from hwsched.costs.profile import parse_profile
    from hwsched.export import export
    from hwsched.export.profiling import profile_model
    from hwsched.load import load_model
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.runtime.profile import write_host_descriptor
    from hwsched.schedule import rank_splits

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    loaded = load_model(args.model, progress=say)
    say(f"profiling segments on this machine (1 thread, co-run: {args.co_run})")
    profile = profile_model(loaded, threads=1, segments=args.segments, co_run=args.co_run,
                            progress=say)
    (out / "profile.json").write_text(json.dumps(profile, indent=2))
    # Two cores of this machine as two platforms (the planner wants distinct names).
    names = ("host_core0", "host_core1")
    for name in names:
        # the profile's invoke_overhead_ms is an average over segments; fed in uniformly it
        # under-predicts late segments (small tensors) and mis-balanced the cut, so it is
        # reported, not used
        write_host_descriptor(name, hardware_dir / "platforms" / f"{name}.yaml")
    descriptors = list(names)
    if args.link == "host_loopback":
        from hwsched.runtime.hopcost import write_loopback_link

        say("measuring the loopback hop through the runtime's transport")
        write_loopback_link(hardware_dir / "links" / "host_loopback.yaml")
    profiles = [parse_profile({**profile, "platform": n}, str(out / "profile.json"))
                for n in names]
    ranked = rank_splits(loaded.graph, descriptors, args.link, objective="throughput",
                  profile=profiles)
    best = ranked.best
    say(f"calibrated rank 1: cut after position {best.cut_positions}, predicted "
        f"{best.throughput_ips:.1f} inf/s")
    split_dir, whole_dir = out / "split", out / "whole"
    export(loaded, descriptors, split_dir, cut_positions=best.cut_positions,
           precisions="fp32", link=args.link, prediction=best.to_dict(), progress=say)
    whole = ranked.baselines[0]
    # the unsplit model: a verified one-stage export, the same builder and converter
    export(loaded, descriptors[:1], whole_dir, precisions="fp32", link=args.link,
           prediction=whole.to_dict(), progress=say)
    config = EmulationConfig(frames=args.frames)
    say("emulating the 2-stage pipeline")
    split = emulate(split_dir, config)
    say("emulating the whole model on one core")
    single = emulate(whole_dir, config)
    result = {
        "model": args.model,
        "cut_positions": list(best.cut_positions),
        "cut_after": [loaded.graph.layers[k - 1].name for k in best.cut_positions],
        "pipeline_throughput_ips": split.throughput_ips,
        "single_core_throughput_ips": single.throughput_ips,
        "speedup": split.throughput_ips / single.throughput_ips,
        "predicted_throughput_ips": split.predicted_throughput_ips,
        "throughput_error": split.throughput_error,
        "predicted_single_core_ips": whole.throughput_ips,
        "stage_busy_ms": [s.busy_ms for s in split.stages],
        "predicted_stage_ms": [s.predicted_ms for s in split.stages],
        "single_busy_ms": single.stages[0].busy_ms,
        "latency_ms": split.latency_ms,
        "complete": split.complete and single.complete,
        "profile_total_ms": profile["total_latency_ms"],
        "profile_co_run": profile["co_run"],
        "profile_whole_ms": profile.get("whole_latency_ms"),
        "invoke_overhead_ms": profile.get("invoke_overhead_ms"),
        "frames": args.frames,
        "out": str(out),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
