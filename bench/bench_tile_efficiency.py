"""Benchmark: do a fused run's tiles compute as fast per MAC as the unsplit run?

For each run of ``--model`` (zoo, ``weights=None``; ``--run FIRST..LAST[:K[:rA/B/…]]`` as
``export --tiles`` takes it): the run exported as ONE stage (its layers replayed, as
``export`` builds a chain stage) and its tiles (built by
:func:`hwsched.export.tiles.build_tile_model` exactly as ``export --tiles`` builds them), all
converted in ``--precision`` (fp32), then timed here with LiteRT as the runners load them
(default XNNPACK delegate, 1 thread; the process pinned to one core unless ``paired`` is
among the modes, whose timing pins each side itself — the other modes then run unpinned),
in each of ``--modes``: ``warm`` (back to
back), ``cold`` (a 64 MiB buffer rewritten before each invocation, as the rest of a frame's
work evicts a stage's weights), ``paced`` (each invocation after ``--gap-ms`` idle) and
``paired`` (paced, a run's tiles started together on two cores, as ``bench_tiles.py`` times
stages; the unsplit run paced alone). The models take turns within each round; the median per
round, the median over rounds.

Printed (JSON) per run and mode: ``unsplit_ms``, ``tile_ms`` (each tile), ``tiles_sum_ms`` and
``ratio`` (per round and its median) = sum of the tiles / unsplit, ``ratio_per_mac`` (the ratio
over ``1 + halo_mac_fraction``: 1.0 when each tile computes at the unsplit run's speed per MAC);
the planner's tiles (:meth:`hwsched.tiles.planning.TileCoster.tile_region` with each layer's
time that of the timed unsplit run spread by roofline shares) by positions alone
(``planner_*``) and with each tile paying its layers' weight streaming at this host's measured
bandwidth (``planner_weights_*``), beside the timed tiles. Per run: the MAC counts
(``run_macs``, ``tile_macs``, ``halo_mac_fraction``), ``weights_bytes``, the op census of each
model (``ops`` by name, ``delegated`` / ``not_delegated`` by XNNPACK) and ``handoff_ms``: what
a stage's ``run`` spends on each tile's tensors besides the invoke.

    python bench/bench_tile_efficiency.py --model resnet50 \
        --run conv4_block2_1_conv..conv4_block3_out:2:r7/7 [--run A..B …] [--rounds 3] \
        [--modes warm,cold,paced,paired] [--gap-ms 171] [--keep DIR]

``--quick`` times a small convolutional model built here, to prove the benchmark works. The
machine is shared: quote a ratio only from two separate runs.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from benchlib import say

#: Invocations per model per round (after a warm-up of the same number).
RUNS = 10


def census(data: bytes) -> dict[str, Any]:
    """The ops of a ``.tflite`` model by name, and how many XNNPACK takes (LiteRT's default
    delegate, as a runner loads the stage) and leaves on LiteRT's own kernels."""
    from hwsched.litert import open_interpreter, ops_left_on_cpu

    plain = open_interpreter(content=data, delegates=False)._get_ops_details()
    ops = collections.Counter(op["op_name"] for op in plain)
    delegated = open_interpreter(content=data)._get_ops_details()
    left = ops_left_on_cpu(delegated)
    return {"ops": dict(sorted(ops.items())), "op_count": sum(ops.values()),
            "delegated": sum(ops.values()) - len(left),
            "not_delegated": dict(sorted(collections.Counter(left).items()))}


def _runner(data: bytes, seed: int) -> tuple[Any, dict[str, np.ndarray]]:
    from hwsched.litert import open_interpreter

    runner = open_interpreter(content=data).get_signature_runner()
    rng = np.random.default_rng(seed)
    feeds = {name: rng.random(tuple(detail["shape"])).astype(detail["dtype"])
             for name, detail in runner.get_input_details().items()}
    return runner, feeds


#: Bytes written between two cold invocations: past the host's last-level cache (32 MiB).
FLUSH_BYTES = 64 << 20


def _median_ms(call: Any, runs: int, flush: np.ndarray | None = None,
               gap_ms: float = 0.0) -> float:
    """Median ms of ``call``; with ``flush``, the buffer is rewritten (untimed) before each
    invocation, as the rest of a pipeline's work evicts a stage's weights between frames; with
    ``gap_ms``, each invocation follows that long idle (as ``profile --gap-ms`` and
    ``bench_tiles.py`` time stages)."""
    times = []
    for _ in range(runs):
        if flush is not None:
            flush += 1
        if gap_ms:
            time.sleep(gap_ms / 1e3)
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_interleaved(models: dict[str, bytes], rounds: int, runs: int = RUNS,
                     cold: bool = False, gap_ms: float = 0.0) -> dict[str, list[float]]:
    """Per model, the median invoke ms of each round; the models take turns within a round.
    ``cold``: the caches flushed before each invocation (:data:`FLUSH_BYTES`); ``gap_ms``:
    each invocation after that long idle."""
    flush = np.zeros(FLUSH_BYTES // 8) if cold else None
    loaded = {name: _runner(data, seed) for seed, (name, data) in enumerate(models.items())}
    for runner, feeds in loaded.values():
        for _ in range(runs):
            runner(**feeds)
    result: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, (runner, feeds) in loaded.items():
            result[name].append(_median_ms(lambda r=runner, f=feeds: r(**f), runs, flush,
                                           gap_ms))
    return result


def handoff_ms(data: bytes, runs: int = RUNS) -> float:
    """What a stage's ``run`` spends on this model's tensors besides computing: the inputs
    through the plan's hand-off (``apply_handoff``; in fp32 nothing) and copied into the
    interpreter, and the outputs copied out (what LiteRT's signature runner does around its
    invoke), median ms."""
    from hwsched.deployment import Requantization
    from hwsched.handoff import apply_handoff

    runner, feeds = _runner(data, 0)
    outputs = runner(**feeds)
    step = Requantization("x", None, None, "none")

    def convert() -> None:
        for value in feeds.values():
            np.copyto(np.empty_like(value), apply_handoff(value, step, str(value.dtype)))
        for value in outputs.values():
            value.copy()
    return _median_ms(convert, runs)


def build_run(loaded: Any, option: str) -> tuple[Any, list[Any], Any]:
    """The unsplit run's Keras model and its tiles' (as ``export --tiles`` builds them) for
    one ``--tiles`` option (``FIRST..LAST:K[:rA/B/…]``)."""
    from hwsched.export.graph import GraphStageSlice
    from hwsched.export.keras_stages import build_keras_stage
    from hwsched.export.stages import signature_names
    from hwsched.export.tiles import build_tile_model
    from hwsched.tiles.layout import layout_for, parse_tiles_option

    graph = loaded.graph
    names = signature_names(list(graph.tensors))
    layout = layout_for(graph, [parse_tiles_option(option)])
    placed = layout.runs[0]
    run = placed.run
    whole = build_keras_stage(loaded.keras, graph, GraphStageSlice(
        -1, tuple(run.positions), run.inputs, (run.output,)), names)
    parts = [build_tile_model(loaded.keras, graph, layout.stages[k], names)
             for k in placed.tiles]
    return whole, parts, layout


def run_macs(graph: Any, layout: Any) -> tuple[int, list[int]]:
    from hwsched.tiles.receptive import tile_macs

    run = layout.run
    macs = sum(graph.layers[p].macs or 0 for p in run.positions)
    return macs, [tile_macs(graph, plan) for plan in layout.tiles]


@functools.cache
def host_bandwidth_gbps(size_bytes: int = 256 << 20, runs: int = 5) -> float:
    """This host's memory bandwidth as STREAM's copy counts it (bytes read + written per
    second; the platform descriptors cite STREAM copy), best of ``runs``; measured once."""
    source, target = np.ones(size_bytes // 4, np.float32), np.empty(size_bytes // 4, np.float32)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * size_bytes / best / 1e9


def planner_tiles_ms(graph: Any, layout: Any, unsplit_ms: float, bandwidth_gbps: float | None
                     ) -> list[float]:
    """The planner's tiles (:meth:`hwsched.tiles.planning.TileCoster.tile_region`, compute
    only) with each layer's time that of the timed unsplit run spread over the run's layers by
    their rpi4 roofline shares (as a measured profile is spread); ``bandwidth_gbps``: each
    layer's weights streamed at that bandwidth, whole per tile (None: positions alone, the
    rule before the weights were priced)."""
    import dataclasses

    from hwsched.hardware import load_platform
    from hwsched.tiles.planning import TileBoard, TileCoster, TileLink, boards_from_platforms

    run = layout.run
    platform = load_platform("rpi4")
    (roof,) = boards_from_platforms(graph, [platform], "fp32")
    share = np.zeros(len(graph.layers))
    share[list(run.positions)] = [roof.layer_ms[p] for p in run.positions]
    layer_ms = tuple(float(ms) for ms in unsplit_ms * share / share.sum())
    weight_ms: tuple[float, ...] = ()
    if bandwidth_gbps is not None:
        from hwsched.tiles.planning import weight_stream_ms

        host = dataclasses.replace(platform, memory_bandwidth_gbps=bandwidth_gbps)
        weight_ms = weight_stream_ms(graph, host, "fp32", layer_ms)
    coster = TileCoster(graph, [TileBoard("host", layer_ms, weight_ms=weight_ms)],
                        TileLink(1e9))
    return [coster.tile_region(run, 0, plan.output).compute_ms for plan in layout.tiles]


def _summary(times: dict[str, list[float]], tiles: int, halo: float, graph: Any,
             layout: Any, bandwidth_gbps: float) -> dict[str, Any]:
    rounds = len(times["unsplit"])
    unsplit = statistics.median(times["unsplit"])
    tile_ms = [statistics.median(times[f"tile{k}"]) for k in range(tiles)]
    ratios = [sum(times[f"tile{k}"][r] for k in range(tiles)) / times["unsplit"][r]
              for r in range(rounds)]
    positions = planner_tiles_ms(graph, layout, unsplit, None)
    weighed = planner_tiles_ms(graph, layout, unsplit, bandwidth_gbps)
    return {"unsplit_ms": unsplit, "tile_ms": tile_ms, "tiles_sum_ms": sum(tile_ms),
            "ratio": statistics.median(ratios), "ratio_by_round": ratios,
            "ratio_per_mac": statistics.median(ratios) / (1 + halo),
            "planner_tile_ms": positions,
            "planner_error": [p / t - 1 for p, t in zip(positions, tile_ms, strict=True)],
            "planner_tiles_sum_error": sum(positions) / sum(tile_ms) - 1,
            "planner_weights_tile_ms": weighed,
            "planner_weights_error": [p / t - 1 for p, t in zip(weighed, tile_ms, strict=True)],
            "planner_weights_tiles_sum_error": sum(weighed) / sum(tile_ms) - 1}


def run_weight_bytes(graph: Any, run: Any) -> int:
    return sum(graph.layers[p].weight_bytes for p in run.positions)


#: How the models are timed: see the module docstring.
MODES = ("warm", "cold", "paced", "paired")


def time_mode(models: dict[str, bytes], mode: str, rounds: int, gap_ms: float
              ) -> dict[str, list[float]]:
    """Per model, the median ms of each round, timed as ``mode`` says."""
    if mode != "paired":
        return time_interleaved(models, rounds, cold=mode == "cold",
                                gap_ms=gap_ms if mode == "paced" else 0.0)
    from hwsched.runtime.profile import time_stages_paired, time_tflite

    tiles = [data for name, data in models.items() if name != "unsplit"]
    result: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        result["unsplit"].append(time_tflite(models["unsplit"], 1, runs=RUNS,
                                             gap_ms=gap_ms)[0])
        for k, ms in enumerate(time_stages_paired(tiles, 1, runs=RUNS, gap_ms=gap_ms)):
            result[f"tile{k}"].append(ms)
    return result


def measure_run(loaded: Any, option: str, precision: str, rounds: int, modes: list[str],
                keep: Path | None, gap_ms: float, bandwidth_gbps: float) -> dict[str, Any]:
    from hwsched.export.convert import convert_stage

    say(f"{option}: building and converting the unsplit run and its tiles")
    whole, parts, layout = build_run(loaded, option)
    models = {"unsplit": convert_stage(whole, precision, label="unsplit run")}
    for k, part in enumerate(parts):
        models[f"tile{k}"] = convert_stage(part, precision, label=f"tile {k}")
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for name, data in models.items():
            (keep / f"{option.replace('/', '-')}_{name}.tflite").write_bytes(data)
    graph = loaded.graph
    macs, per_tile = run_macs(graph, layout)
    halo = (sum(per_tile) - macs) / macs
    record: dict[str, Any] = {
        "run": option, "tiles": len(parts), "precision": precision,
        "output_shape": list(graph.tensor(layout.run.output).shape),
        "tile_rows": [plan.output.rows.size for plan in layout.tiles],
        "run_macs": macs, "tile_macs": per_tile, "halo_mac_fraction": halo,
        "weights_bytes": run_weight_bytes(graph, layout.run)}
    for mode in modes:
        say(f"{option}: timing {len(models)} models {mode}, {rounds} interleaved rounds")
        times = time_mode(models, mode, rounds, gap_ms)
        record[mode] = _summary(times, len(parts), halo, graph, layout, bandwidth_gbps)
    record["handoff_ms"] = [handoff_ms(models[f"tile{k}"]) for k in range(len(parts))]
    record["census"] = {name: census(data) for name, data in models.items()}
    return record


def quick_model(directory: Path) -> tuple[str, list[str]]:
    """A small residual conv stack saved as ``.keras`` (the benchmark's smoke test), and its
    one run."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    x = inputs = keras.Input(batch_shape=(1, 32, 32, 8), name="image")
    y = layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    y = layers.Conv2D(16, 3, padding="same", name="c2")(y)
    shortcut = layers.Conv2D(16, 1, name="c0")(x)
    y = layers.Activation("relu", name="out")(layers.Add(name="add")([y, shortcut]))
    y = layers.Dense(4, name="head")(layers.GlobalAveragePooling2D(name="gap")(y))
    path = directory / "quick.keras"
    keras.Model(inputs, y).save(path)
    return str(path), ["c1..out:2"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--run", action="append", metavar="FIRST..LAST[:K[:rA/B/…]]",
                        help="a run as export --tiles takes it (K defaults to --tiles)")
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="warm,cold",
                        help="comma-separated: warm (back to back), cold (caches flushed before "
                        "each invoke), paced (each after --gap-ms idle), paired (paced, the "
                        "tiles started together on two cores, as bench_tiles.py times them)")
    parser.add_argument("--gap-ms", type=float, default=171.0,
                        help="idle before each paced invocation (bench_tiles' ResNet-50 gap)")
    parser.add_argument("--keep", type=Path, help="write the .tflite files here")
    parser.add_argument("--quick", action="store_true",
                        help="a small model built here, one run, 2 rounds: the smoke test")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"--modes: unknown {unknown}; valid: {', '.join(MODES)}")
    if "paired" not in modes:  # paired timing pins itself and its partner
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from hwsched.load import load_model

    with tempfile.TemporaryDirectory(prefix="tile-efficiency-") as scratch:
        if args.quick:
            args.model, args.run = quick_model(Path(scratch))
            args.rounds = min(args.rounds, 2)
        print(json.dumps(measure(load_model(args.model), args, modes), indent=1))
    return 0


def measure(loaded: Any, args: argparse.Namespace, modes: list[str]) -> dict[str, Any]:
    options = [text if ":" in text else f"{text}:{args.tiles}" for text in args.run or []]
    bandwidth = host_bandwidth_gbps()
    say(f"this host's memory bandwidth (STREAM copy): {bandwidth:.1f} GB/s")
    result = {"model": args.model, "rounds": args.rounds, "gap_ms": args.gap_ms,
              "host_bandwidth_gbps": bandwidth, "runs": [
                  measure_run(loaded, option, args.precision, args.rounds, modes, args.keep,
                              args.gap_ms, bandwidth)
                  for option in options]}
    return result


if __name__ == "__main__":
    raise SystemExit(main())
