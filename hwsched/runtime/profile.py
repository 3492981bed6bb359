"""Profiling: time a model's segments (between cut points) with LiteRT on this machine.

``profile_model`` picks ``segments`` pieces of roughly equal MACs whose boundaries are
single-tensor cut points, converts each piece to float32 TFLite, and times one invocation with
LiteRT (``threads`` threads, random inputs): ``warmup`` runs first, then the median of ``runs``.
The result is the measured-profile format of :mod:`hwsched.costs.profile`, which
``hwsched analyze --profile FILE`` and ``schedule.plan(..., profile=...)`` use instead of the
roofline: a stage made of whole segments is predicted as the sum of their measured times.

A ``.tflite`` model cannot be cut here (its ops are already fused), so it is timed whole, as
one segment. The profile names a platform (``host`` by default); :func:`write_host_descriptor`
writes a descriptor of that name so the planner can use it (its roofline numbers, copied from
a base descriptor, only spread a segment's time over its layers).
"""

from __future__ import annotations

import itertools
import platform as pyplatform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.cuts import enumerate_cuts
from hwsched.errors import ProfileError
from hwsched.ir import LayerGraph
from hwsched.load import LoadedModel
from hwsched.runtime.interpreter import load_signature_runner

DEFAULT_SEGMENTS = 8
DEFAULT_WARMUP = 5
DEFAULT_RUNS = 30
#: Stop timing a segment after this long even if fewer runs were done (big models, slow boards).
MAX_TIMING_S = 10.0
MS_PER_S = 1000.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SegmentTiming:
    start: int
    stop: int
    first_layer: str
    last_layer: str
    latency_ms: float
    runs: int
    spread_ms: float  # interquartile range of the runs


def segment_bounds(graph: LayerGraph, segments: int) -> list[int]:
    """Boundaries ``0 = b0 < b1 < … < len(graph)`` at single-tensor cuts, MAC-balanced."""
    if segments < 1:
        raise ProfileError(f"--segments must be >= 1, got {segments}")
    single = [c for c in enumerate_cuts(graph) if c.single_tensor]
    total = max(graph.total_macs, 1)
    chosen: list[int] = []
    for i in range(1, segments):
        if not single:
            break
        target = total * i / segments
        best = min(single, key=lambda c: (abs(c.head_macs - target), c.head_layers))
        if best.head_layers not in chosen and (not chosen or best.head_layers > chosen[-1]):
            chosen.append(best.head_layers)
    return [0, *chosen, len(graph)]


def time_tflite(content: bytes, threads: int, warmup: int = DEFAULT_WARMUP,
                runs: int = DEFAULT_RUNS, seed: int = 0) -> tuple[float, int, float]:
    """Median and IQR (ms) of one invocation, and the runs timed."""
    runner = load_signature_runner(content=content, threads=threads)
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, detail in runner.get_input_details().items():
        dtype = np.dtype(detail["dtype"])
        shape = tuple(int(d) for d in detail["shape"])
        feeds[name] = (rng.random(shape, dtype=np.float32).astype(dtype)
                       if dtype.kind == "f" else np.zeros(shape, dtype))
    for _ in range(warmup):
        runner(**feeds)
    times: list[float] = []
    limit = time.monotonic() + MAX_TIMING_S
    while len(times) < runs and (len(times) < 3 or time.monotonic() < limit):
        start = time.perf_counter()
        runner(**feeds)
        times.append((time.perf_counter() - start) * MS_PER_S)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return statistics.median(times), len(times), q3 - q1


def profile_model(loaded: LoadedModel, *, threads: int = 1, segments: int = DEFAULT_SEGMENTS,
                  platform: str = "host", warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Time the model's segments; returns the profile as a JSON-ready dict."""
    report = progress or (lambda _m: None)
    graph = loaded.graph
    if loaded.kind == "tflite":
        bounds = [0, len(graph)]
        pieces = [(0, len(graph), loaded.tflite_bytes)]
    else:
        from hwsched.runtime.segments import keras_tensors, segment_model

        bounds = segment_bounds(graph, segments)
        tensors = keras_tensors(loaded)
        pieces = []
        for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
            report(f"converting segment {i + 1}/{len(bounds) - 1}")
            pieces.append((start, stop, segment_model(loaded, start, stop, tensors).tflite))
    timings = []
    for i, (start, stop, content) in enumerate(pieces):
        report(f"timing segment {i + 1}/{len(pieces)} ({graph.layers[start].name}…)")
        median_ms, done, spread = time_tflite(content, threads, warmup, runs)
        timings.append(SegmentTiming(start, stop, graph.layers[start].name,
                                     graph.layers[stop - 1].name, median_ms, done, spread))
    return profile_dict(graph, timings, platform, threads, warmup, runs)


def profile_dict(graph: LayerGraph, timings: list[SegmentTiming], platform: str, threads: int,
                 warmup: int, runs: int) -> dict[str, Any]:
    return {
        "model": graph.name,
        "platform": platform,
        "precision": "fp32",
        "threads": threads,
        "segments": [
            {"first_layer": t.first_layer, "last_layer": t.last_layer,
             "latency_ms": t.latency_ms, "runs": t.runs, "iqr_ms": t.spread_ms,
             "positions": [t.start, t.stop]}
            for t in timings
        ],
        "total_latency_ms": sum(t.latency_ms for t in timings),
        "warmup": warmup,
        "runs": runs,
        "machine": {"node": pyplatform.node(), "processor": pyplatform.machine(),
                    "python": pyplatform.python_version()},
        "tool": "hwsched profile",
    }


def write_host_descriptor(platform: str, path: Path, base: str = "rpi4",
                          invoke_overhead_ms: float | None = None) -> Path:
    """A platform descriptor named ``platform`` (for a profile of this machine), copied from
    ``base``; its per-invocation overhead can be set to a measured value."""
    import yaml

    from hwsched.hardware import _resolve, load_platform

    data = yaml.safe_load(_resolve("platform", base).read_text())
    data["name"] = platform
    data["description"] = (f"this machine, profiled with hwsched profile (roofline figures "
                           f"copied from {base}; only used to spread measured segment times)")
    if invoke_overhead_ms is not None:
        data["overhead"]["invoke_ms"] = {
            "value": invoke_overhead_ms, "source": "derived: measured by hwsched profile"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_platform(path)  # validate what was written
    return path
