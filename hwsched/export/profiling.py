"""Profiling's conversion: a model's segments as float32 TFLite, made by export's own stage
builder and converter (the ones every exported stage goes through, with the stage cache), then
timed by :mod:`hwsched.runtime.profile`, which needs LiteRT only.

>>> from hwsched.load import load_model                                       # doctest: +SKIP
>>> profile = profile_model(load_model("digits_cnn"), segments=3, runs=5)     # doctest: +SKIP
>>> len(profile["segments"]), profile["whole_latency_ms"] > 0                 # doctest: +SKIP
(3, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hwsched.errors import ProfileError
from hwsched.export.cache import StageCache
from hwsched.export.data import default_source
from hwsched.export.stages import signature_names, slice_stages
from hwsched.load import LoadedModel
from hwsched.progress import Progress, silent
from hwsched.runtime.profile import (
    DEFAULT_RUNS,
    DEFAULT_SEGMENTS,
    DEFAULT_WARMUP,
    Segment,
    check_gap_ms,
    segment_bounds,
    time_segments,
    with_pacing_variants,
)


def fp32_segments(loaded: LoadedModel, cut_positions: Sequence[int], cache: bool = True,
                  progress: Progress = silent) -> list[Segment]:
    """The model cut at ``cut_positions`` (none: the whole model), one fp32 flatbuffer per
    piece. A ``.tflite`` model is split at the flatbuffer level, as ``hwsched export`` does."""
    from hwsched.export.api import build_stages

    graph = loaded.graph
    slices = slice_stages(graph, sorted(cut_positions))
    files = build_stages(loaded, slices, ["fp32"] * len(slices), signature_names(list(
        graph.tensors)), default_source(graph), 0, StageCache(enabled=cache), progress)
    return [Segment(s.start, s.end, data) for s, data in zip(slices, files, strict=True)]


def profile_model(loaded: LoadedModel, *, threads: int = 1, segments: int = DEFAULT_SEGMENTS,
                  platform: str = "host", warmup: int = DEFAULT_WARMUP, runs: int = DEFAULT_RUNS,
                  co_run: bool = False, cache: bool = True,
                  progress: Progress | None = None, board_speed: float | None = None,
                  chained: bool = False, gap_ms: float = 0.0,
                  variants: bool = False) -> dict[str, Any]:
    """Convert the model's MAC-balanced segments and the whole model, then time them; returns
    the measured profile (see :mod:`hwsched.runtime.profile`). A ``.tflite`` model's ops are
    already fused, so it is timed whole, as one segment. ``gap_ms`` > 0 times each invocation
    after that long idle (paced, as a pipeline fed one frame at a time runs); checked before
    anything is converted. With ``variants`` (paced, not chained) every segment and the whole
    model are also timed back to back, and every segment paced beside a copy on every other
    core, invoked together (:func:`~hwsched.runtime.profile.with_pacing_variants`): what a
    stage's wake once per stage and co-running stages are priced from."""
    report = progress or silent
    gap_ms = check_gap_ms(gap_ms)
    if variants and co_run:  # the wake is paced minus back to back, both timed alone
        raise ProfileError("the pacing variants time their own co-run pass: profile alone "
                           "(no --co-run), or the wake would include the co-runners' contention")
    graph = loaded.graph
    if loaded.kind == "tflite":
        assert loaded.tflite_bytes is not None
        pieces, whole = [Segment(0, len(graph), loaded.tflite_bytes)], None
    else:
        bounds = segment_bounds(graph, segments)
        report(f"converting {len(bounds) - 1} segments")
        pieces = fp32_segments(loaded, bounds[1:-1], cache, report)
        whole = None
        if len(pieces) > 1:
            report("converting the whole model")
            whole = fp32_segments(loaded, (), cache, report)[0].tflite
    def timed(gap: float, beside: bool) -> dict[str, Any]:
        return time_segments(graph, pieces, whole, threads=threads, platform=platform,
                             warmup=warmup, runs=runs, co_run=beside, name=loaded.source,
                             progress=report, board_speed=board_speed, chained=chained,
                             gap_ms=gap)

    profile = timed(gap_ms, co_run)
    if not variants or not gap_ms or chained:
        return profile
    report("timing the segments back to back, then paced beside co-runners")
    return with_pacing_variants(profile, timed(0.0, False), timed(gap_ms, True))
