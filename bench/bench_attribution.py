"""Why segment timings mis-attribute stage time: A/B measurements on one model's stages.

For each cut, each of the two stages is timed four ways (all 1 thread, pinned to core 0):

* ``isolated``  — each profile segment invoked again and again on its own, times summed (what
  ``hwsched profile`` does; ``isolated_corun``: with a copy of the same segment on core 1,
  what ``profile --co-run`` does);
* ``chained``   — the stage's segments invoked one after another, frame after frame, each
  timed (same invocations, but every segment runs after the others, as inside the stage);
* ``whole``     — the stage as one model (one invocation);
* ``whole_partner`` — the stage as one model while its partner stage loops on core 1 (what a
  2-stage pipeline does).

``chained - whole`` is per-invoke overhead plus fusion lost at the segment borders;
``isolated - chained`` is cache residency (a segment repeated alone keeps its weights and
activations in L2); ``whole_partner - whole`` is co-running contention. Rounds interleave the
ways (A, B, C, D, A, B, …) so drift hits them alike; medians and spreads are printed as JSON.

    python bench/bench_attribution.py [--model efficientnet_b0] [--cuts 60,87] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

WAYS = ("isolated", "isolated_corun", "chained", "whole", "whole_partner")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--cuts", help="head_layers positions (default: 3 single-tensor cuts "
                        "around the MAC midpoint)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="digits_cnn, 1 cut, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.model, args.segments, args.rounds, args.runs = "digits_cnn", 4, 2, 10
    from hwsched.export.profiling import fp32_segments
    from hwsched.load import load_model
    from hwsched.runtime.profile import segment_bounds

    say = _say
    loaded = load_model(args.model, progress=say)
    graph = loaded.graph
    bounds = segment_bounds(graph, args.segments)
    cuts = ([int(c) for c in args.cuts.split(",")] if args.cuts
            else _middle_cuts(bounds, 1 if args.quick else 3))
    pieces: dict[tuple[int, int], bytes] = {}

    def piece(start: int, stop: int) -> bytes:
        if (start, stop) not in pieces:
            say(f"converting {start}..{stop}")
            cuts = [c for c in (start, stop) if 0 < c < len(graph)]
            converted = fp32_segments(loaded, cuts)
            pieces[(start, stop)] = next(p.tflite for p in converted
                                         if (p.start, p.stop) == (start, stop))
        return pieces[(start, stop)]

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-attribution-") as work:
        for cut in cuts:
            for side, (a, b), partner in (("head", (0, cut), (cut, len(graph))),
                                          ("tail", (cut, len(graph)), (0, cut))):
                inner = [x for x in bounds if a < x < b]
                segs = [piece(s, e) for s, e in zip([a, *inner], [*inner, b], strict=True)]
                stage, other = piece(a, b), piece(*partner)
                say(f"cut {cut} ({graph.layers[cut - 1].name}) {side}: {len(segs)} segments")
                rows = _measure(segs, stage, other, args.rounds, args.runs, Path(work))
                results.append({"cut": cut, "after": graph.layers[cut - 1].name, "side": side,
                                "segments": len(segs), **rows})
    print(json.dumps({"model": args.model, "rounds": args.rounds, "results": results},
                     indent=2))
    return 0


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _middle_cuts(bounds: list[int], count: int) -> list[int]:
    inner = bounds[1:-1]
    mid = len(inner) // 2
    return inner[max(mid - count // 2, 0): max(mid - count // 2, 0) + count]


def _measure(segs: list[bytes], stage: bytes, other: bytes, rounds: int, runs: int,
             work: Path) -> dict:
    from hwsched.runtime.profile import co_run_load, time_tflite

    samples: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        samples["isolated"].append(sum(time_tflite(s, 1, 3, runs)[0] for s in segs))
        samples["chained"].append(_chained_ms(segs, runs))
        samples["whole"].append(time_tflite(stage, 1, 3, runs)[0])
        with co_run_load(1, len(segs) + 1) as load:
            total = 0.0
            for s in segs:
                load.load(s)
                total += time_tflite(s, 1, 3, runs)[0]
            samples["isolated_corun"].append(total)
            load.load(other)
            samples["whole_partner"].append(time_tflite(stage, 1, 3, runs)[0])
    return {way: _summary(values) for way, values in samples.items()}


def _chained_ms(segs: list[bytes], runs: int) -> float:
    """Median over frames of the summed per-segment times, segments run back to back."""
    import os

    from hwsched.errors import ProfileError
    from hwsched.runtime.corun import random_feeds
    from hwsched.runtime.interpreter import load_signature_runner

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:1])
    try:
        runners = [load_signature_runner(content=s, threads=1, name=f"segment {i}",
                                         error=ProfileError) for i, s in enumerate(segs)]
        feeds = [random_feeds(r) for r in runners]
        frames = []
        for frame in range(runs + 3):
            total = 0.0
            for runner, feed in zip(runners, feeds, strict=True):
                start = time.perf_counter()
                runner(**feed)
                total += time.perf_counter() - start
            if frame >= 3:
                frames.append(total * 1000.0)
        return statistics.median(frames)
    finally:
        os.sched_setaffinity(0, cpus)


def _summary(values: list[float]) -> dict:
    return {"median_ms": statistics.median(values), "spread_ms": max(values) - min(values),
            "values_ms": values}


if __name__ == "__main__":
    sys.exit(main())
