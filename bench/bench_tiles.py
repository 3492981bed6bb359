"""Benchmark: one fused-tile run over two emulated boards vs the whole model on one core.

For each model (VGG-16 and ResNet-50 from the zoo, ``weights=None``): this host as two boards
(one core each) joined by its measured loopback (``benchlib``); the whole model exported as one
stage and timed here with LiteRT (1 thread); the boards' per-layer roofline latencies scaled so
that their sum is that measured time (one factor per model: the prediction of the *tiling* is
what is checked, not the descriptor's speed); then the best single tiled run
(:func:`hwsched.tiles.planning.best_single_run`, exact strips) is exported with ``export
--tiles`` (fp32, verified) and emulated one frame at a time (scatter, tile 0 and gather pinned
to core 0, tile 1 to core 1), interleaved with the whole model over ``--rounds`` rounds.
``--unequal`` adds the same on two unequal boards (speeds 1.0 and 0.5: board 1's stage capped
at half a core with the emulator's CPU cap, root only), planned for those speeds.

Printed per model (JSON): measured single-frame latency p50 (median over rounds, spread) of the
whole model and of each tiled plan, the speedup, the prediction beside each measurement, and
the tile stages' busy times (balance: both tiles should finish within 10% of each other).
Targets (issue 14): >= 1.5x on VGG-16 with two equal boards, prediction within 10%.

    python bench/bench_tiles.py [--quick] [--models vgg16,resnet50] [--rounds 3] [--frames 12]

``--quick`` runs a small convolutional model built here, to prove the benchmark works.
The machine is shared: numbers from one run are indicative only.
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

BOARDS = benchlib.NAMES
#: Frames are sent at most every 3 × this (or 3 × the whole model's time): one at a time.
MIN_PERIOD_MS = 10.0


def tiny_model():
    """A small VGG-like model: two conv blocks, pooled, classified (for ``--quick``)."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    x = inputs = keras.Input(batch_shape=(1, 96, 96, 3), name="image")
    for block, channels in enumerate((16, 32), start=1):
        for k in (1, 2):
            x = layers.Conv2D(channels, 3, padding="same", activation="relu",
                              name=f"b{block}_conv{k}")(x)
        x = layers.MaxPooling2D(2, name=f"b{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="tiny_vgg")


def load(name: str):
    from hwsched.load import LoadedModel, load_model
    from hwsched.load.keras_reader import read_keras_model

    if name != "tiny_vgg":
        return load_model(name, progress=say)
    graph, binding = read_keras_model(tiny_model(), name, source="bench tiny_vgg")
    return LoadedModel(graph=graph, source="bench", kind="keras", keras=binding)


def whole_ms_here(plan_dir: Path) -> float:
    """The whole model's stage timed here (median of LiteRT invocations, 1 thread)."""
    from hwsched.deployment import load_plan
    from hwsched.runtime.profile import time_chain

    plan = load_plan(plan_dir)
    ((median_ms, _, _),) = time_chain([(plan_dir / plan.stages[0].file).read_bytes()], 1)
    return median_ms


def coster_for(loaded, scale: float, speeds: tuple[float, float]):
    """Two boards with per-layer latencies = roofline × ``scale`` / speed, on the loopback."""
    from hwsched.hardware import load_link, load_platform
    from hwsched.tiles.planning import (
        TileBoard,
        TileCoster,
        boards_from_platforms,
        link_from_descriptor,
    )

    platforms = [load_platform(name) for name in BOARDS]
    raw = boards_from_platforms(loaded.graph, platforms, "fp32")
    boards = [TileBoard(b.name, tuple(ms * scale / speed for ms in b.layer_ms), b.overhead_ms)
              for b, speed in zip(raw, speeds, strict=True)]
    return TileCoster(loaded.graph, boards, link_from_descriptor(load_link(benchlib.LOOPBACK)))


def plan_and_export(loaded, scale: float, speeds: tuple[float, float], directory: Path):
    from hwsched.export.tiles import export_tiles
    from hwsched.tiles.layout import TilesOption
    from hwsched.tiles.planning import best_single_run

    coster = coster_for(loaded, scale, speeds)
    best = best_single_run(coster, 2)
    if best is None:
        raise SystemExit(f"{loaded.graph.name}: no tileable run")
    graph, run = loaded.graph, best.cost.run
    first, last = graph.layers[run.start].name, graph.layers[run.end].name
    say(f"{graph.name} at speeds {speeds}: tiling {first}..{last} in strips of "
        f"{best.row_sizes} rows, predicted {best.latency_ms:.2f} ms")
    if not (directory / "plan.json").is_file():
        export_tiles(loaded, TilesOption(first, last, 2, 2, 1), list(BOARDS), directory,
                     link=benchlib.LOOPBACK, precisions="fp32", samples=2,
                     row_sizes=best.row_sizes, progress=say,
                     prediction={"placement": "tiles", "latency_ms": best.latency_ms})
    return best, directory


def runtime_ms(loaded, runtime, tiles=None) -> float:
    """The runner's own cost on the critical path of one frame (``hwsched.costs.runtime``):
    the source and sink hops at both ends, and for a tiled plan the root's sends and receives
    of every tile (serial on its core) plus one tile's own receive and send."""
    graph = loaded.graph
    in_bytes = sum(graph.tensor(t.name).bytes for layer in graph.input_layers
                   for t in layer.outputs)
    out_bytes = sum(graph.tensor(name).bytes for name in graph.outputs)
    ms = 2 * runtime.end_ms(in_bytes) + 2 * runtime.end_ms(out_bytes)
    if tiles is None:
        return ms
    ends = [runtime.end_ms(t.scatter_bytes) + runtime.end_ms(t.gather_bytes) for t in tiles]
    return ms + sum(ends) + max(ends)


def emulate_once(plan_dir: Path, frames: int, rate_hz: float, speeds=()):
    from hwsched.runtime.emulate import EmulationConfig, emulate

    config = EmulationConfig(frames=frames, rate_hz=rate_hz, warmup_frames=3,
                             board_speed=tuple(speeds))
    result = emulate(plan_dir, config)
    return {"latency_ms": result.latency_ms["p50"], "complete": result.complete,
            "busy_ms": [s.busy_ms for s in result.stages]}


def bench_model(name: str, args, out: Path, runtime) -> dict:
    from hwsched.export import export

    loaded = load(name)
    whole_dir = out / "whole"
    if not (whole_dir / "plan.json").is_file():
        export(loaded, [BOARDS[0]], whole_dir, precisions="fp32", samples=2, progress=say)
    whole_ms = whole_ms_here(whole_dir)
    roofline_ms = sum(coster_for(loaded, 1.0, (1.0, 1.0)).boards[0].layer_ms)
    scale = whole_ms / roofline_ms
    say(f"{name}: whole model {whole_ms:.2f} ms here (roofline {roofline_ms:.2f} ms: x{scale:.3g})")
    scenarios = {"equal": (1.0, 1.0)}
    if args.unequal:
        scenarios["unequal"] = (1.0, 0.5)
    plans = {key: plan_and_export(loaded, scale, speeds, out / f"tiles_{key}")
             for key, speeds in scenarios.items()}
    # one frame at a time: nothing queues (a hop alone costs milliseconds on a loaded host)
    rate = 1000.0 / (3 * max(whole_ms, MIN_PERIOD_MS))
    runs = {"whole": lambda: emulate_once(whole_dir, args.frames, rate)}
    for key, (_, directory) in plans.items():
        speeds = () if key == "equal" else (1.0, 1.0, scenarios[key][1], 1.0)
        runs[key] = (lambda d=directory, s=speeds: emulate_once(d, args.frames, rate, s))
    measured = benchlib.interleave(runs, args.rounds)
    whole = [r["latency_ms"] for r in measured["whole"]]
    whole_predicted = whole_ms + runtime_ms(loaded, runtime)
    result = {"layers": len(loaded.graph), "whole_ms_timed": whole_ms,
              "whole_latency_ms": summary(whole), "predicted_whole_latency_ms": whole_predicted,
              "whole_prediction_error": summary([whole_predicted / m - 1 for m in whole]),
              "roofline_scale": scale, "tiled": {}}
    for key, (best, _) in plans.items():
        latencies = [r["latency_ms"] for r in measured[key]]
        busy = [r["busy_ms"] for r in measured[key]]
        tiles_busy = [b[1:3] for b in busy]
        run = best.cost.run
        predicted = best.latency_ms + runtime_ms(loaded, runtime, best.cost.tiles)
        result["tiled"][key] = {
            "speeds": scenarios[key],
            "run": [loaded.graph.layers[run.start].name, loaded.graph.layers[run.end].name],
            "rows": best.row_sizes,
            "latency_ms": summary(latencies),
            "speedup": benchlib.ratio_summary(whole, latencies),
            "predicted_latency_ms": predicted,
            "predicted_plan_ms": best.latency_ms,
            "prediction_error": summary([predicted / m - 1 for m in latencies]),
            "predicted_tile_ms": [t.latency_ms for t in best.cost.tiles],
            "stage_busy_ms": busy,
            "tile_imbalance": summary([abs(a - b) / max(a, b) for a, b in tiles_busy]),
            "halo_macs": best.cost.halo_macs,
            "complete": all(r["complete"] for r in measured[key]),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vgg16,resnet50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--unequal", action=argparse.BooleanOptionalAction, default=True,
                        help="also two unequal boards (1.0, 0.5; needs root for the CPU cap)")
    parser.add_argument("--quick", action="store_true",
                        help="a small model built here, 2 rounds of 6 frames, equal boards only")
    parser.add_argument("--out", type=Path, help="keep descriptors and plans here")
    args = parser.parse_args()
    if args.quick:
        args.models, args.rounds, args.frames, args.unequal = "tiny_vgg", 2, 6, False
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    out.mkdir(parents=True, exist_ok=True)
    runtime = benchlib.host_setup(out)
    results = {name: bench_model(name, args, out / name, runtime)
               for name in args.models.split(",")}
    print(json.dumps({"link": benchlib.LOOPBACK, "rounds": args.rounds, "frames": args.frames,
                      "out": str(out), "models": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
