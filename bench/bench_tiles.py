"""Benchmark: fused-tile plans over two emulated boards vs the whole model on one core.

For each model (VGG-16 and ResNet-50 from the zoo, ``weights=None``): this host as two boards
(one core each) joined by its measured loopback (``benchlib``); the whole model exported as one
stage and timed here with LiteRT (1 thread). The planner's costs are calibrated here: the
model's ``--segments`` segments profiled as ``hwsched profile --gap-ms G --pacing-variants``
profiles them for a latency ranking (paced, and also back to back and paced beside a copy on
the other core), a board of speed 0.5 under its CPU cap (``--segments 0``: the roofline
scaled so that its sum is the measured whole-model time), and the boards built from those
profiles by the rule ``analyze --tiles --profile`` uses
(:func:`hwsched.tiles.planning.boards_from_platforms`: the co-run timings spread over the
layers, both boards being cores of this host, and the wake after idle charged once per stage
— each tile and gather is an invocation woken by its message; until 2026-11-30 the segments
were timed chained and no stage but the first paid a wake); the runner's measured hand-off
cost is folded into each tile's overhead and the link. The least-latency plan of tiled runs
(:func:`hwsched.tiles.planning.plan_tiles`, exact strips; dense layers and convolutions may be
split by output channels) is exported with ``export --tiles`` (fp32, verified), its stages are timed
here (the root's chained, each run's tiles paired, a capped board under its cap), and when a
run's tiles differ by more than ``BALANCE`` its strips are re-sized in proportion to their
measured speed (rows per ms) and exported and timed again; then (``--rebalance`` steps) one
frame is played from the timed stages and every run whose tiles' strips reach the gather more
than ``BALANCE`` of its longest tile apart is re-sized on those measured finishes
(:mod:`hwsched.tiles.rebalance`, EdgeCI's step: the root's scatter before its own tile
included), exported and timed again. The prediction is the plan's
single-frame latency from those timed stages and the hand-off cost on every edge, stages on
one core never overlapping (:func:`hwsched.tiles.timing.plan_frame_latency_ms`); the planner's
own figure is printed beside it. Each plan is emulated one frame at a time (root stages and
tile 0 of every run pinned to core 0, tile 1 to core 1), interleaved with the whole model over
``--rounds`` rounds; just before each run its stages (or the whole model) are timed again,
paced, and the frame predicted from them (``*_error_same_round``: what is left is the model's
error, not the host's drift since the stages were first timed), and the emulation's logs give,
per round and row run, how far apart its tiles' strips reach the gather (the gather stage's
read of each, as the planner and the timed spread take them; median over frames:
``tile_finish_spread_by_round``, the compute ends' spread beside it). Every timing (the whole
model, the profiles, the stages) is paced as the emulation runs one frame at a time:
``--gap-ms`` idle before each frame (default: the emulation's period less the whole model's
time, at most ``MAX_GAP_MS``); back to back, tiles timed 168-181 ms per board were busy 188-229
ms emulated (predictions -17 % / -26 %; why is in :mod:`hwsched.runtime.profile`).
``--unequal`` adds two unequal boards (speeds 1.0 and 0.5: board 1's stages capped at half a
core with the emulator's CPU cap, root only).

Printed per model (JSON): measured single-frame latency p50 (median over rounds, spread) of the
whole model and of each tiled plan, the speedup, both predictions beside each measurement, and
the tile stages' timed and busy times (balance: both tiles should finish within 10%).
Targets (issue 14): >= 1.5x on VGG-16 with two equal boards, prediction within 10%.

    python bench/bench_tiles.py [--quick] [--models vgg16,resnet50] [--rounds 3] [--frames 12]
                                [--unequal]

``--quick`` runs a small convolutional model built here, to prove the benchmark works.
The machine is shared: numbers from one run are indicative only.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
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
#: Longest idle before a paced timing (a longer idle made no measurable difference on the
#: development VM: see ``hwsched.runtime.profile``), so that timing VGG-16 stays short.
MAX_GAP_MS = 200.0
#: Tiles whose timed stages differ by more than this share are re-sized on measured speed.
BALANCE = 0.05


def vgg_like(name: str, size: int, channels: tuple[int, ...]):
    """A VGG-like model: a block of two 3×3 convolutions and a 2×2 pooling per entry of
    ``channels`` at ``size``×``size``, pooled and classified."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    x = inputs = keras.Input(batch_shape=(1, size, size, 3), name="image")
    for block, width in enumerate(channels, start=1):
        for k in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", activation="relu",
                              name=f"b{block}_conv{k}")(x)
        x = layers.MaxPooling2D(2, name=f"b{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name=name)


def tiny_model():
    """Two conv blocks at 96×96 (for ``--quick``)."""
    return vgg_like("tiny_vgg", 96, (16, 32))


def small_vgg():
    """Three conv blocks at 128×128 (``--models small_vgg``: tiles of a few ms, to study
    balance without VGG-16's minutes)."""
    return vgg_like("small_vgg", 128, (32, 64, 128))


BUILT = {"tiny_vgg": tiny_model, "small_vgg": small_vgg}


def load(name: str):
    from hwsched.load import LoadedModel, load_model
    from hwsched.load.keras_reader import read_keras_model

    if name not in BUILT:
        return load_model(name, progress=say)
    graph, binding = read_keras_model(BUILT[name](), name, source=f"bench {name}")
    return LoadedModel(graph=graph, source="bench", kind="keras", keras=binding)


def whole_ms_here(plan_dir: Path, gap_ms: float = 0.0) -> float:
    """The whole model's stage timed here (median of LiteRT invocations, 1 thread; with
    ``gap_ms`` each one after that long idle, as the emulation feeds it)."""
    from hwsched.deployment import load_plan
    from hwsched.runtime.profile import time_chain

    plan = load_plan(plan_dir)
    ((median_ms, _, _),) = time_chain([(plan_dir / plan.stages[0].file).read_bytes()], 1,
                                      gap_ms=gap_ms)
    return median_ms


def emulation_gap_ms(whole_ms: float, asked_ms: float | None) -> tuple[float, float]:
    """The emulation's frame period (``3 ×`` the whole model's back-to-back time, at least
    ``3 × MIN_PERIOD_MS``: one frame at a time) and the idle a stage meets in it (the period
    less the whole model's time, at most ``MAX_GAP_MS``), unless ``asked_ms`` is given.

    >>> emulation_gap_ms(20.0, None)
    (60.0, 40.0)
    >>> emulation_gap_ms(400.0, None), emulation_gap_ms(20.0, 0.0)
    ((1200.0, 200.0), (60.0, 0.0))
    """
    period_ms = 3 * max(whole_ms, MIN_PERIOD_MS)
    gap_ms = min(period_ms - whole_ms, MAX_GAP_MS) if asked_ms is None else asked_ms
    return period_ms, gap_ms


def host_weight_ms(graph, platform, layer_ms, speed: float) -> tuple[float, ...]:
    """Each layer's weights streamed at this host's measured bandwidth (the host descriptors
    copy rpi4's), slowed with the board: what every tile pays whole
    (:func:`hwsched.tiles.planning.weight_stream_ms`)."""
    from bench_tile_efficiency import host_bandwidth_gbps

    from hwsched.tiles.planning import weight_stream_ms

    here = dataclasses.replace(platform, memory_bandwidth_gbps=host_bandwidth_gbps() * speed)
    return weight_stream_ms(graph, here, "fp32", layer_ms)


def coster_for(loaded, scale: float, speeds: tuple[float, float], runtime, profiles=None,
               weight_speeds: tuple[float, float] | None = None):
    """Two boards with per-layer latencies = roofline × ``scale`` / speed (or, with
    ``profiles``, the measured segment times spread over their layers by roofline shares
    / speed), on the loopback; each layer's weight streaming at this host's bandwidth times
    the board's real speed (``weight_speeds``, default ``speeds``: with profiles ``speeds``
    only correct the timed layers, which hold the board's speed already, while a capped
    board streams its weights that much slower too);
    the runner's own cost folded in: per tile its four hop ends (the root's send and receive,
    the tile's receive and send) as stage overhead, its per-byte cost at both ends of a hop
    on the link (not per plan: the root's other hops are the model input's and output's,
    :func:`runtime_ms`; until revmisc they were charged here too, 4 hop ends more)."""
    from hwsched.hardware import load_link, load_platform
    from hwsched.tiles.planning import (
        TileCoster,
        boards_from_platforms,
        charge_runtime,
        link_from_descriptor,
    )

    platforms = [load_platform(name) for name in BOARDS]
    # with profiles, analyze --tiles --profile's rule (settled co-run segments, the wake once
    # per stage); ``speeds`` then only correct the profiles
    raw = boards_from_platforms(loaded.graph, platforms, "fp32", profiles=profiles,
                                co_run=True)
    if profiles is not None:
        scale = 1.0
    boards = [dataclasses.replace(
        b, layer_ms=layer_ms,
        weight_ms=host_weight_ms(loaded.graph, platform, layer_ms, real))
        for b, platform, speed, real in zip(raw, platforms, speeds,
                                            weight_speeds or speeds, strict=True)
        for layer_ms in [tuple(ms * scale / speed for ms in b.layer_ms)]]
    # the hops' cost, as analyze --tiles --runtime-cost charges it (the same function)
    boards, link = charge_runtime(boards, link_from_descriptor(load_link(benchlib.LOOPBACK)),
                                  runtime)
    return TileCoster(loaded.graph, boards, link)


def plan_and_export(loaded, scale: float, speeds: tuple[float, float], runtime,
                    directory: Path, profiles=None,
                    weight_speeds: tuple[float, float] | None = None):
    """The least-latency plan of row-tiled runs (the DP, exact strips) exported as it is."""
    from hwsched.export.tiles import export_tiles
    from hwsched.tiles.planning import Segment, TilingPlan, best_single_run, plan_tiles

    coster = coster_for(loaded, scale, speeds, runtime, profiles, weight_speeds)
    plan = plan_tiles(coster)
    graph = loaded.graph
    if not plan.runs:  # tiling does not pay here: measure the best single run all the same
        single = best_single_run(coster, 2)
        if single is None:
            raise SystemExit(f"{graph.name}: no tileable run")
        say(f"{graph.name}: the plan tiles no run (one board is faster); measuring the best "
            "single tiled run instead")
        plan = TilingPlan((Segment(single.cost.run.start, single.cost.run.end, single.cost,
                                   single.cost.latency_ms),), single.latency_ms)
    options = [_option(graph, segment) for segment in plan.segments
               if segment.tiled is not None or segment.channels is not None]
    described = ", ".join(f"{o.first_layer}..{o.last_layer} {o.row_sizes or o.channel_sizes}"
                          for o in options)
    say(f"{graph.name} at speeds {speeds}: {len(options)} tiled runs and channel splits "
        f"({described}), predicted {plan.latency_ms:.2f} ms")
    if not (directory / "plan.json").is_file():
        export_tiles(loaded, options, list(BOARDS), directory, link=benchlib.LOOPBACK,
                     precisions="fp32", samples=2, progress=say,
                     prediction={"placement": "tiles", "latency_ms": plan.latency_ms})
    return plan, directory, coster


def export_plan(loaded, plan, directory: Path) -> None:
    """Export ``plan``'s tiled runs and channel splits as they are (fp32, verified)."""
    from hwsched.export.tiles import export_tiles

    options = [_option(loaded.graph, segment) for segment in plan.segments
               if segment.tiled is not None or segment.channels is not None]
    if not (directory / "plan.json").is_file():
        export_tiles(loaded, options, list(BOARDS), directory, link=benchlib.LOOPBACK,
                     precisions="fp32", samples=2, progress=say,
                     prediction={"placement": "tiles", "latency_ms": plan.latency_ms})


def rebalance(loaded, coster, plan, directory: Path, stage_ms, runtime):
    """EdgeCI's step on measured times (:mod:`hwsched.tiles.rebalance`): ``(plan with the
    unbalanced runs re-sized, or None when none changed; each row run's finish spread)``."""
    from hwsched.deployment import load_plan
    from hwsched.tiles.planning import TilingPlan
    from hwsched.tiles.rebalance import finish_spread, measured_runs, rebalanced_rows
    from hwsched.tiles.timing import plan_frame_schedule

    exported = load_plan(directory)
    cores = [s.board for s in _stages(directory)]
    schedule = plan_frame_schedule(exported, stage_ms, cores, runtime, loaded.graph.outputs)
    links = [(link.from_stage, link.to_stage) for link in exported.links]
    splits = [g for g in plan.segments if g.tiled is not None or g.channels is not None]
    measured = dict(zip(map(id, splits), measured_runs(exported.tiles, links, stage_ms,
                                                       schedule), strict=True))
    segments, spreads = [], []
    for segment in plan.segments:
        tiles = measured.get(id(segment))
        if tiles is not None:
            spreads.append(finish_spread(tiles))
            if spreads[-1] > BALANCE:
                run, boards = segment.tiled.run, len(tiles)
                segment = _resized(coster, segment, rebalanced_rows(
                    tiles, _predicted_compute(coster, run, boards),
                    _messages(coster, run, boards), runtime))
        segments.append(segment)
    if all(a is b for a, b in zip(segments, plan.segments, strict=True)):
        return None, spreads
    latency_ms = coster.boards[0].overhead_ms + sum(s.latency_ms for s in segments)
    return TilingPlan(tuple(segments), latency_ms), spreads


def _predicted_compute(coster, run, boards):
    import math

    from hwsched.errors import TilingError

    def predicted(k, rows):
        try:
            return coster.tile(run, k, rows, boards - 1).compute_ms
        except TilingError:  # a strip lying in the run's zero padding
            return math.inf

    return predicted


def _messages(coster, run, boards):
    """The planner's bytes of a strip's scatter and gather messages (the paths' re-sizing)."""
    from hwsched.errors import TilingError

    def messages(k, rows):
        try:
            return coster.tile(run, k, rows, boards - 1).message_bytes
        except TilingError:  # a strip lying in the run's zero padding: priced infinite anyway
            return 0, 0

    return messages


def _resized(coster, segment, rows):
    from hwsched.tiles.planning import Segment

    if rows == tuple(t.region.rows.size for t in segment.tiled.tiles):
        return segment
    cost = coster.run_cost(segment.tiled.run, rows)
    return Segment(segment.start, segment.end, cost, cost.latency_ms)


def _option(graph, segment):
    """The ``--tiles`` run of one tiled or channel-split segment of a plan."""
    from hwsched.tiles.layout import TilesOption

    first, last = graph.layers[segment.start].name, graph.layers[segment.end].name
    if segment.channels is not None:
        sizes = tuple(p.channels.size for p in segment.channels.parts)
        return TilesOption(first, last, len(sizes), len(sizes), 1, None, sizes)
    rows = tuple(t.region.rows.size for t in segment.tiled.tiles)
    return TilesOption(first, last, len(rows), len(rows), 1, rows)


def runtime_ms(loaded, runtime) -> float:
    """The runner's cost of the source and sink hops (both ends of each, and their wire),
    which every plan pays once per frame, as ``analyze --tiles --runtime-cost`` charges it
    (``hwsched.schedule.tiles.runner_io_ms``)."""
    from hwsched.schedule.tiles import runner_io_ms

    return sum(runner_io_ms(loaded.graph, runtime))


#: Frames the emulation sends before it measures (left out of the tiles' finish spread too).
WARMUP_FRAMES = 3


def emulate_once(plan_dir: Path, frames: int, rate_hz: float, speeds=(), keep: Path | None = None,
                 tile_runs=()):
    """One emulation; with ``keep`` (a fresh directory for its logs) also how far apart each
    run of ``tile_runs`` (its tiles' stage indices and its gather stage's) has its tiles'
    strips reach the gather, per frame."""
    from hwsched.runtime.emulate import EmulationConfig, emulate

    config = EmulationConfig(frames=frames, rate_hz=rate_hz, warmup_frames=WARMUP_FRAMES,
                             board_speed=tuple(speeds), keep_dir=keep)
    result = emulate(plan_dir, config)
    measured = {"latency_ms": result.latency_ms["p50"], "complete": result.complete,
                "busy_ms": [s.busy_ms for s in result.stages]}
    if keep is not None and tile_runs:
        measured["tile_finish_spread"] = tile_finish_spreads(keep, tile_runs)
    return measured


def tile_finish_spreads(logs: Path, tile_runs) -> list[dict]:
    """Per run ``(tile stages, gather stage)``: the median over the measured frames of how far
    apart its tiles' strips reach the gather (``ms``, host clock: the stages share it) and of
    that over the frame's longest tile compute (``share``): the arrival the planner sizes the
    strips on and the timed spread (:func:`hwsched.tiles.rebalance.finish_spread`) plays. A
    strip's arrival is the gather stage's read of it (its event's ``read_s``), else the tile's
    send (``sent_s``), else its compute's end (a log without either: ``arrival`` says which
    the run's frames used, the weakest). ``compute_end_ms``/``compute_end_share``: the same
    over the tiles' compute ends, the figure this reported before."""
    records = _stage_records(logs)
    spreads = []
    for stages, gather in tile_runs:
        frames = sorted({f for s, f in records if s == stages[0]})[WARMUP_FRAMES:]
        arrived, ended, used = [], [], set()
        for frame in frames:
            ran = [records.get((s, frame)) for s in stages]
            if None in ran:
                continue
            longest = max(e.end_s - e.start_s for e, _ in ran)
            arrivals = [_arrival(stage, ran_k, records.get((gather, frame)), used)
                        for stage, ran_k in zip(stages, ran, strict=True)]
            arrived.append(_spread(arrivals, longest))
            ended.append(_spread([e.end_s for e, _ in ran], longest))
        spreads.append({**_medians(arrived, "ms", "share"),
                        **_medians(ended, "compute_end_ms", "compute_end_share"),
                        "frames": len(arrived),
                        "arrival": next((a for a in ARRIVALS[::-1] if a in used), None)})
    return spreads


#: What a strip's arrival at the gather is read from, best first (:func:`tile_finish_spreads`).
ARRIVALS = ("read_s", "sent_s", "end_s")


def _stage_records(logs: Path) -> dict:
    """``(stage, frame) -> (event, its JSON record)`` from every stage's events log (the
    record keeps the fields a graph stage adds: ``sent_s``, ``read_s`` per upstream)."""
    import json

    from hwsched.errors import HwschedError
    from hwsched.power.energy import read_events

    records = {}
    for path in sorted(logs.glob("events*.jsonl")):
        if path.name == "events.jsonl":
            continue
        try:  # an incomplete or killed run may leave an empty log: no spread, no abort
            stage_events = read_events(path)
        except HwschedError as error:
            print(f"bench_tiles: {path}: {error}", file=sys.stderr)
            continue
        extra = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:  # read_events checked every line but an unterminated last one
                record = json.loads(line)
            except ValueError:
                continue
            extra[(record["stage"], record["frame"])] = record
        for event in stage_events:
            key = (event.stage, event.frame)
            records[key] = (event, extra.get(key, {}))
    return records


def _arrival(stage: int, ran, gather, used: set) -> float:
    """When tile ``stage``'s strip reached the gather (:func:`tile_finish_spreads`)."""
    event, record = ran
    read = (gather[1].get("read_s") or {}).get(str(stage)) if gather is not None else None
    for name, value in (("read_s", read), ("sent_s", record.get("sent_s"))):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            used.add(name)
            return float(value)
    used.add("end_s")
    return event.end_s


def _spread(times, longest_s: float) -> tuple[float, float]:
    """``(ms, share of the longest compute)`` between the first and the last of ``times``."""
    gap = max(times) - min(times)
    return gap * 1e3, gap / longest_s if longest_s > 0 else 0.0


def _medians(pairs, ms_name: str, share_name: str) -> dict:
    import statistics

    return {ms_name: statistics.median(p[0] for p in pairs) if pairs else None,
            share_name: statistics.median(p[1] for p in pairs) if pairs else None}


def _stages(directory: Path):
    """Per stage of an exported tiled plan: its board (0 = the root) and whether it is a tile."""
    from types import SimpleNamespace

    from hwsched.deployment import load_plan

    plan = load_plan(directory)
    # a row run lists its "tiles", an output-channel split its "parts"
    tiles = {t["stage"] for run in plan.tiles for t in run.get("tiles", run.get("parts", []))}
    boards = [plan.stages[0].board, *(s.board for s in plan.stages)]
    names = list(dict.fromkeys(boards))
    return [SimpleNamespace(index=s.index, board=names.index(s.board), tile_run=s.index in tiles)
            for s in plan.stages]


def profiles_here(loaded, segments: int, speed_sets, gap_ms: float = 0.0,
                  keep: Path | None = None) -> dict:
    """Per scenario (boards' speeds), one profile per board: the model's segments timed here as
    ``hwsched profile --gap-ms G --pacing-variants`` times them (each invocation after
    ``gap_ms`` idle, and also back to back and paced beside a copy on the other core: the wake
    after idle and the co-run times), a board slower than a core under its CPU cap (each speed
    measured once): the planner's calibrated per-layer costs. ``keep``: write each speed's
    profile there (``profile_speed<F>.json``, as ``hwsched profile --out`` writes one)."""
    from hwsched.costs.profile import parse_profile
    from hwsched.documents.profile import ProfileDocument
    from hwsched.export.profiling import profile_model
    from hwsched.fileio import write_json

    measured = {}
    for speed in sorted({s for speeds in speed_sets for s in speeds}, reverse=True):
        say(f"profiling {segments} segments (board speed {speed:g}, paced {gap_ms:g} ms, "
            "with the pacing variants)")
        # back to back (--gap-ms 0) there are no pacing variants: time the segments beside
        # a copy instead, the co-run timings the boards are priced from
        measured[speed] = profile_model(loaded, threads=1, segments=segments, progress=say,
                                        gap_ms=gap_ms, variants=bool(gap_ms),
                                        co_run=not gap_ms,
                                        board_speed=None if speed >= 1.0 else speed)
        if keep is not None:
            path = keep / f"profile_speed{speed:g}.json"
            write_json(path, ProfileDocument.from_dict(measured[speed], str(path)).to_dict())
    return {speeds: [parse_profile({**measured[speed], "platform": name}, f"{name}@{speed:g}")
                     for name, speed in zip(BOARDS, speeds, strict=True)]
            for speeds in speed_sets}


def time_stages(directory: Path, speeds, gap_ms: float = 0.0) -> list[float]:
    """Each stage of the exported plan timed here: the root's own stages chained on one core
    (as its runner invokes them every frame), every run's tiles paired (each timed while its
    partner loops on the other core, a capped board under its cap); with ``gap_ms`` paced as
    the emulation runs them, one frame at a time (a frame's root stages after that idle, a
    run's tiles started together after it)."""
    from hwsched.deployment import load_plan
    from hwsched.runtime.profile import time_chain, time_stages_paired

    plan = load_plan(directory)
    contents = [(directory / stage.file).read_bytes() for stage in plan.stages]
    placed = _stages(directory)
    ms = [0.0] * len(contents)
    root = [s.index for s in placed if not s.tile_run]
    for index, (median, _, _) in zip(root, time_chain([contents[i] for i in root], 1,
                                                      gap_ms=gap_ms), strict=True):
        ms[index] = median
    for run in plan.tiles:
        members = [t["stage"] for t in run.get("tiles", run.get("parts", []))]
        caps = [None if speeds[placed[i].board] >= 1.0 else speeds[placed[i].board]
                for i in members]
        timed = time_stages_paired([contents[i] for i in members], 1, speeds=caps,
                                   gap_ms=gap_ms)
        for index, value in zip(members, timed, strict=True):
            ms[index] = value
    return ms


def predict_timed(loaded, directory: Path, stage_ms, runtime) -> float:
    """The single-frame latency of the exported plan from its timed stages and the measured
    hand-off cost on every edge (:func:`hwsched.tiles.timing.plan_frame_latency_ms`)."""
    from hwsched.deployment import load_plan
    from hwsched.tiles.timing import plan_frame_latency_ms

    cores = [s.board for s in _stages(directory)]
    return plan_frame_latency_ms(load_plan(directory), stage_ms, cores, runtime,
                                 loaded.graph.outputs)


def planned_member_ms(coster, plan, directory: Path) -> dict[int, tuple[int, float]]:
    """Per tile or part stage of the exported plan (by stage index): its board (0 = the root)
    and the planner's compute of it (a tile's ``compute_ms``, weights and halo included; a
    part's share of its layer), the figures its timed stages are compared with."""
    from hwsched.deployment import load_plan

    exported = load_plan(directory)
    planned = {}
    splits = [g for g in plan.segments if g.tiled is not None or g.channels is not None]
    for segment, run in zip(splits, exported.tiles, strict=True):
        members = run.get("tiles", run.get("parts", []))
        for k, member in enumerate(members):
            if segment.tiled is not None:
                ms = segment.tiled.tiles[k].compute_ms
            else:
                position, parts = segment.channels.position, segment.channels.parts
                width = sum(p.channels.size for p in parts)
                ms = coster.boards[k].layer_ms[position] * parts[k].channels.size / width
            planned[member["stage"]] = (k, ms)
    return planned


def measured_speeds(coster, plan, speeds, stage_ms, directory: Path
                    ) -> tuple[float, ...] | None:
    """Each board's speed corrected by its tiles' timed stages: ``speed × planned / timed``,
    the planned time being the planner's compute of the same tiles and parts, summed over every
    run (one factor per board, so one run's noisy timing does not move its strips alone).
    None when the boards' corrections agree within ``BALANCE`` (the plan is balanced)."""
    planned, timed = [0.0, 0.0], [0.0, 0.0]
    for stage, (k, ms) in planned_member_ms(coster, plan, directory).items():
        planned[k] += ms
        timed[k] += stage_ms[stage]
    factors = [p / t for p, t in zip(planned, timed, strict=True)]
    if abs(factors[1] / factors[0] - 1) <= BALANCE:
        return None
    return tuple(speed * f for speed, f in zip(speeds, factors, strict=True))


def bench_model(name: str, args, out: Path, runtime) -> dict:
    from hwsched.export import export

    loaded = load(name)
    whole_dir = out / "whole"
    if not (whole_dir / "plan.json").is_file():
        export(loaded, [BOARDS[0]], whole_dir, precisions="fp32", samples=2, progress=say)
    period_ms, gap_ms = emulation_gap_ms(whole_ms_here(whole_dir), args.gap_ms)
    whole_ms = whole_ms_here(whole_dir, gap_ms)  # paced, as emulated: one frame at a time
    roofline_ms = sum(coster_for(loaded, 1.0, (1.0, 1.0), runtime).boards[0].layer_ms)
    scale = whole_ms / roofline_ms
    say(f"{name}: whole model {whole_ms:.2f} ms here (roofline {roofline_ms:.2f} ms: x{scale:.3g})")
    scenarios = {"equal": (1.0, 1.0)}
    if args.unequal:
        scenarios["unequal"] = (1.0, 0.5)
    profiles = (profiles_here(loaded, args.segments, tuple(scenarios.values()), gap_ms, out)
                if args.segments else {})
    plans, timed, finish_spreads = {}, {}, {}
    for key, speeds in scenarios.items():
        profiled = profiles.get(speeds)
        planned = speeds if profiled is None else (1.0, 1.0)  # a profile holds the speed
        plan, directory, coster = plan_and_export(loaded, scale, planned, runtime,
                                                  out / f"tiles_{key}", profiled, speeds)
        stage_ms = time_stages(directory, speeds, gap_ms)
        corrected = measured_speeds(coster, plan, planned, stage_ms, directory)
        if corrected is not None:  # one step on measured speed: planned, exported, timed again
            say(f"{name} {key}: tiles timed {[round(ms, 2) for ms in stage_ms]}; boards' "
                f"measured speeds {corrected}")
            real = tuple(s * c / p for s, c, p in zip(speeds, corrected, planned, strict=True))
            plan, directory, coster = plan_and_export(
                loaded, scale, corrected, runtime, out / f"tiles_{key}_measured", profiled, real)
            stage_ms = time_stages(directory, speeds, gap_ms)
        spreads = []
        for step in range(args.rebalance + 1):  # EdgeCI's steps on measured finishes
            rebalanced, spreads = rebalance(loaded, coster, plan, directory, stage_ms, runtime)
            if rebalanced is None or step == args.rebalance:
                break
            say(f"{name} {key}: tiles timed {[round(ms, 2) for ms in stage_ms]}, finishing "
                f"{[round(x, 3) for x in spreads]} of the longest tile apart: re-sized")
            plan, directory = rebalanced, out / f"tiles_{key}_rebalanced{step + 1}"
            export_plan(loaded, plan, directory)
            stage_ms = time_stages(directory, speeds, gap_ms)
        finish_spreads[key] = spreads
        options = [_option(loaded.graph, g) for g in plan.segments
                   if g.tiled is not None or g.channels is not None]
        plans[key] = (plan, directory, options, planned_member_ms(coster, plan, directory))
        timed[key] = (stage_ms, predict_timed(loaded, directory, stage_ms, runtime))
    # one frame at a time: nothing queues (a hop alone costs milliseconds on a loaded host);
    # before each run, its stages timed again (paced, as above): the same round's prediction,
    # so the error left is the model's, not the host's drift since the stages were timed
    rate = 1000.0 / period_ms
    logs = out / "emulations"

    def whole_round():
        whole_now = whole_ms_here(whole_dir, gap_ms)
        return {**emulate_once(whole_dir, args.frames, rate),
                "same_round_predicted_ms": whole_now + runtime_ms(loaded, runtime)}

    runs = {"whole": whole_round}
    for key, (_, directory, _, _) in plans.items():
        runs[key] = _tiled_round(loaded, key, directory, scenarios[key], args.frames, rate,
                                 gap_ms, runtime, logs)
    measured = benchlib.interleave(runs, args.rounds)
    whole = [r["latency_ms"] for r in measured["whole"]]
    whole_predicted = whole_ms + runtime_ms(loaded, runtime)
    result = {"layers": len(loaded.graph), "whole_ms_timed": whole_ms,
              "whole_latency_ms": summary(whole), "predicted_whole_latency_ms": whole_predicted,
              "whole_prediction_error": summary([whole_predicted / m - 1 for m in whole]),
              "whole_prediction_error_same_round": _same_round_error(measured["whole"]),
              "roofline_scale": scale, "timing_gap_ms": gap_ms, "tiled": {},
              # what waking after idle cost each board's paced invocations (charged per stage)
              "profile_wake_ms": {key: [p.wake_ms for p in profiles[speeds]]
                                  for key, speeds in scenarios.items() if speeds in profiles}}
    for key, (plan, directory, options, members) in plans.items():
        result["tiled"][key] = _tiled_result(loaded, plan, directory, options, timed[key],
                                             measured[key], whole, runtime, scenarios[key],
                                             members)
        # per row run: how far apart its tiles' strips reach the gather in the frame played
        # from the timed stages, as a share of its longest tile
        result["tiled"][key]["timed_finish_spread"] = finish_spreads[key]
    return result


def _tiled_round(loaded, key, directory, speeds, frames, rate, gap_ms, runtime, logs):
    """One round of a tiled plan: its stages timed again (paced, capped as in the plan), the
    frame predicted from them, then the emulation (its logs kept for the tiles' finishes)."""
    placed = _stages(directory)
    caps = () if key == "equal" else tuple(speeds[s.board] for s in placed)
    tile_runs = _tile_runs(directory)
    rounds = itertools.count(1)

    def run():
        stage_ms = time_stages(directory, speeds, gap_ms)
        predicted = predict_timed(loaded, directory, stage_ms, runtime)
        keep = logs / f"{key}_round{next(rounds)}"
        return {**emulate_once(directory, frames, rate, caps, keep, tile_runs),
                "same_round_predicted_ms": predicted, "same_round_stage_ms": stage_ms}

    return run


def _tile_runs(directory: Path) -> list[tuple[list[int], int]]:
    """Per row run of an exported plan, its tiles' stage indices and its gather stage's."""
    from hwsched.deployment import load_plan

    return [([t["stage"] for t in run["tiles"]], run["gather_stage"])
            for run in load_plan(directory).tiles if "tiles" in run]


def _same_round_error(measured) -> dict:
    """Per round: the prediction from the stages timed just before it, over its measurement."""
    return summary([r["same_round_predicted_ms"] / r["latency_ms"] - 1 for r in measured])


def _tiled_result(loaded, plan, directory, options, timed, measured, whole, runtime, speeds,
                  members):
    latencies = [r["latency_ms"] for r in measured]
    busy = [r["busy_ms"] for r in measured]
    placed = _stages(directory)
    tiles = {s.index for s in placed if s.tile_run}
    by_board = [[sum(b[k] for k in tiles if placed[k].board == board) for board in (0, 1)]
                for b in busy]
    stage_ms, predicted = timed
    planned = plan.latency_ms + runtime_ms(loaded, runtime)
    return {
        "speeds": speeds,
        "runs": [[o.first_layer, o.last_layer, o.row_sizes or o.channel_sizes]
                 for o in options],
        "stages": len(placed),
        "latency_ms": summary(latencies),
        "speedup": benchlib.ratio_summary(whole, latencies),
        "predicted_latency_ms": predicted,
        "prediction_error": summary([predicted / m - 1 for m in latencies]),
        "prediction_error_same_round": _same_round_error(measured),
        "predicted_latency_ms_same_round": summary([r["same_round_predicted_ms"]
                                                    for r in measured]),
        # per round, per row run: how far apart the tiles finish in the emulation (median
        # over frames), in ms and as a share of the frame's longest tile
        "tile_finish_spread_by_round": [r.get("tile_finish_spread") for r in measured],
        "planner_latency_ms": planned,
        "planner_error": summary([planned / m - 1 for m in latencies]),
        "stage_ms_timed": stage_ms,
        # the planner's compute of each tile or part stage (None: a root stage), beside the
        # stages timed, and summed per board: where the planner's own figure goes wrong
        "planner_stage_ms": [members[k][1] if k in members else None
                             for k in range(len(placed))],
        "planner_tile_ms_by_board": [sum(ms for b, ms in members.values() if b == board)
                                     for board in (0, 1)],
        "stage_busy_ms": [list(b) for b in busy],
        "tile_ms_timed_by_board": [sum(stage_ms[k] for k in tiles if placed[k].board == board)
                                   for board in (0, 1)],
        "tile_busy_ms_by_board": by_board,
        "tile_imbalance": summary([abs(a - b) / max(a, b) for a, b in by_board]),
        # emulated over timed, per board: 1 when a tile runs in the pipeline as it was timed
        # (a board whose tiles run faster here than timed, e.g. a cap that idles, unbalances)
        "tile_busy_over_timed_by_board": [
            summary([b[board] / t for b in by_board]) for board, t in enumerate(
                sum(stage_ms[k] for k in tiles if placed[k].board == board) for board in (0, 1))
            if t > 0],
        "halo_macs": sum(r.halo_macs for r in plan.runs),
        "run_macs": sum(r.run_macs for r in plan.runs),
        "scatter_gather_bytes": sum(r.transfer_bytes for r in plan.runs),
        "complete": all(r["complete"] for r in measured),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vgg16,resnet50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--segments", type=int, default=24,
                        help="plan with this many segments timed here (chained, beside a copy "
                        "on the other core); 0: roofline scaled to the whole model's time")
    parser.add_argument("--unequal", action=argparse.BooleanOptionalAction, default=None,
                        help="also two unequal boards (1.0, 0.5; needs root for the CPU cap; "
                        "default: yes, but for --quick)")
    parser.add_argument("--rebalance", type=int, default=1,
                        help="steps of re-sizing unbalanced runs on their measured finishes "
                        "(each exports and times the plan again)")
    parser.add_argument("--gap-ms", type=float, metavar="MS",
                        help="time stages and segments paced, MS idle before each frame "
                        "(default: the emulation's idle, its period less the whole model's "
                        f"time, at most {MAX_GAP_MS:g}; 0: back to back, as before)")
    parser.add_argument("--quick", action="store_true",
                        help="a small model built here, 2 rounds of 6 frames, equal boards "
                        "only unless --unequal")
    benchlib.add_runner_cost_option(parser)
    parser.add_argument("--out", type=Path, help="keep descriptors and plans here")
    args = parser.parse_args()
    if args.quick:
        args.models, args.rounds, args.frames = "tiny_vgg", 2, 6
        args.segments = min(args.segments, 4)
    if args.unequal is None:
        args.unequal = not args.quick
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    out.mkdir(parents=True, exist_ok=True)
    runtime = benchlib.host_setup(out, runners=args.runner_cost)
    results = {name: bench_model(name, args, out / name, runtime)
               for name in args.models.split(",")}
    print(json.dumps({"link": benchlib.LOOPBACK, "rounds": args.rounds, "frames": args.frames,
                      "runner_frame_ms": benchlib.runner_frame_ms(runtime),
                      "out": str(out), "models": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
