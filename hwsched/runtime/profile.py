"""Profiling: time a model's segments (between cut points) with LiteRT on this machine.

:func:`segment_bounds` picks ``segments`` pieces of roughly equal MACs whose boundaries are
single-tensor cut points; export converts each piece to float32 TFLite with the stage builder
and converter every exported stage goes through
(:func:`hwsched.export.profiling.profile_model`: TensorFlow stays on the export side), and
:func:`time_segments` times one invocation of each with LiteRT (``threads`` threads, random
inputs): ``warmup`` runs first, then the median of ``runs``.
The result is the measured-profile format of :mod:`hwsched.costs.profile`, which
``hwsched analyze --profile FILE`` and ``schedule.rank_splits(..., profile=...)`` use instead of the
roofline: a stage made of whole segments is predicted as the sum of their measured times.

With ``co_run`` (``hwsched profile --co-run``) the timing process is pinned to its own
core(s) and every other core runs a copy of the segment being timed in a loop (a separate
process each, :mod:`hwsched.runtime.corun`): in a pipeline every core is busy, and a stage then
runs slower than alone on an idle chip (shared caches and memory bandwidth), so a profile taken
on an idle chip over-predicts pipeline throughput (paced, ``gap_ms``, a copy runs once with
each timed invocation instead: :func:`_co_run_pacing`). The profile records ``"co_run": true``.

When the model is cut into several segments the whole model is timed as well, in the same
conditions: ``n`` segment invocations cover the same layers as one whole invocation, so
``(sum of segments - whole) / (n - 1)`` is the measured cost of one extra invocation (input and
output copies, interpreter call, fusion lost at the cut; timed ``chained``, only the invocation
is timed, so no copies: :func:`time_chain`). The profile records it as
``invoke_overhead_ms``. A descriptor's ``overhead.invoke_ms`` makes the planner subtract it from
every segment and add it back once per stage; ``hwsched profile --descriptor`` writes
:attr:`hwsched.costs.profile.Profile.invocation_overhead_ms` there: the same figure with a
paced profile's wake taken off (the planner charges that per stage apart) and solved so that
a segment shorter than it is not charged below 0, so one stage of every layer costs the whole
model as timed.

With ``gap_ms`` (``hwsched profile --gap-ms``) every timed invocation follows that long idle
(the warm-up stays back to back; the statistic is the same): the compute of a pipeline fed one
frame at a time, which is slower than back to back, so a profile for ``analyze --objective
latency`` should be paced. The profile records ``gap_ms``. Why paced is slower, measured on the
2-core development VM (KVM guest: no cpufreq and no cpuidle driver inside it, 2 MB L2 per core;
1 LiteRT thread, as the runners use, so no LiteRT thread pool is involved) on a 4-convolution
48x48x96 branch (bench_placement's ``two_branch_model``), blocks of 15 invocations per variant
interleaved over 6-10 rounds, medians, other engineers' load on the machine (load 2-6;
``python bench/bench_paced_compute.py`` repeats it, its precursors gave the figures below):

* It is not the caches, and no warm-up helps reliably. Sweeping 16 MB (8x L2) before each
  invocation, back to back: CPU time 15.66 vs 15.97 ms without; after a 50 ms sleep 14.94 /
  15.87 vs 15.33 / 17.13 ms without (two runs). After the sleep, touching the weights (1.3 MB):
  15.15 / 16.27 ms; spinning 5 ms (wake the core, ramp its clock): 14.88 / 15.10 / 16.35 vs
  15.33 / 15.02 / 17.13 ms, 1 ms: 15.15 vs 15.02 ms. Differences of either sign, within the
  runs' noise (sleeping 100 ms with no warm-up: 15.03 / 14.99 / 15.82 ms), and none shortens
  the wall time, which is what slows (below); so the runner does none.
* The compute itself barely slows: CPU time (``thread_time``) back to back 14.56 / 14.83 ms,
  spinning 50 ms between invocations 14.78 / 14.90, sleeping 20 / 50 / 100 ms 15.15 / 15.33 /
  15.03 and 15.02 / 14.99 (two runs): +1-5 %, and no longer a gap costs more.
* The wall time is what slows: the idle core is given to other work, which the stage then
  shares when its frame arrives. Wall medians back to back 18.7 / 35.3 ms, paced 50 ms 30.7 /
  47.0 ms (the load differed between the runs); in the quieter rounds of a third run wall
  14.5-15.4 vs 15.1-16.8 ms while CPU 14.5-15.3 vs 14.6-15.1 ms, and an involuntary context
  switch during 40-60 % of back-to-back invocations against 80-87 % of paced ones. The same
  paced invocations under ``SCHED_FIFO`` (never preempted): wall 15.27 ms against 20.0 paced
  and 17.4 back to back (six interleaved rounds); in the script's run at load 5, 16.9 ms
  wall = CPU while every other variant's wall median was 23.8-40.3 ms. A real-time runner
  would remove the slowdown rather than predict it; it needs root and is left to the runtime
  (not done here). Which work takes the core, measured inside the emulation (issue 13:
  ``perf sched`` over bench_placement's two-branch plan, each graph stage's events carrying
  its compute's thread CPU time, switches and faults): on a quiet machine 0.7-1.1 ms of a
  17-19 ms branch compute went to the emulation's own processes on its core — the join
  receiving the other branch's tensor, the stem finishing its pass, and idle ticks (the join's
  and sink's 50 ms poll, the unpinned supervisor's), which no longer tick; the compute's own
  CPU time stayed at 16-19 ms, no page faults. Branch computes of 25-45 ms wall were other
  users' processes taking the pinned core (8-26 ms of it per compute), the CPU time mostly
  17-21 ms, in one run 31 ms (a heavy process sharing the core and its caches).
* Whether the gap before one invocation matters: shuffling the variants invocation by
  invocation (so every one runs at the same overall duty cycle) left them all at 15.6-16.1 ms
  CPU: what slows a paced frame is the sustained idling, not the last gap alone; so a profile
  paced like the pipeline predicts it, whatever the exact gap (20-100 ms alike).

A paced profile may carry two more timings per segment (``profile_model(..., variants=True)``,
merged by :func:`with_pacing_variants`): back to back, so what waking after idle costs one
invocation is known and a stage pays it once (:attr:`hwsched.costs.profile.Profile.wake_ms`),
and paced beside a copy on every other core, started together (paced co-runners always are),
for stages that compute at the same moment on one chip (co-run pricing in
:mod:`hwsched.costs.placement`).
:func:`time_stages_beside` times an exported stage graph's stages that way, each beside the
stage its one-frame schedule overlaps.

A ``.tflite`` model cannot be cut here (its ops are already fused), so it is timed whole, as
one segment. The profile names a platform (``host`` by default); :func:`write_host_descriptor`
writes a descriptor of that name so the planner can use it (its roofline numbers, copied from
a base descriptor, only spread a segment's time over its layers).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform as pyplatform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.cuts import enumerate_cuts
from hwsched.errors import ProfileError
from hwsched.ir import LayerGraph
from hwsched.litert import open_interpreter
from hwsched.progress import Progress, silent
from hwsched.runtime.corun import GO, random_feeds
from hwsched.runtime.cpucap import StageCaps
from hwsched.runtime.interpreter import load_signature_runner
from hwsched.runtime.process import keep_freed_memory
from hwsched.units import MS_PER_S

DEFAULT_SEGMENTS = 8
DEFAULT_WARMUP = 5
DEFAULT_RUNS = 30
#: Stop timing a segment after this long even if fewer runs were done (big models, slow boards).
MAX_TIMING_S = 10.0
#: Longest a co-runner may take to load a segment and invoke it once.
CO_RUN_READY_TIMEOUT_S = 60.0
CO_RUN_STOP_TIMEOUT_S = 5.0
#: Under a CPU cap, time for at least this long (many cap periods) and report the mean.
CAPPED_MIN_S = 1.0
#: Warm up for at least this long as well as ``warmup`` runs: on the development VM a model
#: just loaded ran its first ~0.7 s about 1.5x slower (EfficientNet-B0's second half: 11 ms,
#: then 7.3 ms), so a few warm-up runs timed the slow phase and predictions swung by a third.
WARMUP_MIN_S = 1.0


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
                runs: int = DEFAULT_RUNS, seed: int = 0, name: str = "model",
                capped: bool = False, gap_ms: float = 0.0,
                on_start: Callable[[], object] | None = None) -> tuple[float, int, float]:
    """Median and IQR (ms) of one invocation, and the runs timed. Under a CPU cap
    (``capped``) single invocations are bimodal (full speed while quota is left, stalled
    after), so the figure is instead the mean over at least ``CAPPED_MIN_S`` of wall time
    (paced: the mean of the invocations, the idle gaps left out).

    With ``gap_ms`` every timed invocation follows that long idle (see :func:`paced_pause`;
    the warm-up stays back to back); ``on_start`` is called just before each one is timed
    (a paired partner is started there), and, paced, once after the warm-up (the partner's
    loop ends there: it idles in the first gap as in the others)."""
    runner = load_signature_runner(content=content, threads=threads, name=name,
                                   error=ProfileError)
    feeds = random_feeds(runner, seed)
    _warm_up(lambda: runner(**feeds), warmup)
    if on_start is not None and gap_ms > 0:
        on_start()  # a paired partner stops looping now, so it idles in the first gap too
    times: list[float] = []
    begin = time.perf_counter()
    limit = time.monotonic() + MAX_TIMING_S + runs * gap_ms / MS_PER_S
    floor = time.monotonic() + (CAPPED_MIN_S if capped else 0.0)
    while (len(times) < runs or time.monotonic() < floor) and (
            len(times) < 3 or time.monotonic() < limit):
        paced_pause(gap_ms)
        if on_start is not None:
            on_start()
        start = time.perf_counter()
        runner(**feeds)
        times.append((time.perf_counter() - start) * MS_PER_S)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    if capped and gap_ms:
        return statistics.fmean(times), len(times), q3 - q1
    if capped:
        return (time.perf_counter() - begin) * MS_PER_S / len(times), len(times), q3 - q1
    return statistics.median(times), len(times), q3 - q1


def paced_s(timings: int, runs: int, gap_ms: float) -> float:
    """Seconds pacing may add to ``timings`` timings of ``runs`` runs: each run's gap, and one
    more run's that may start just before a timing's limit.

    >>> paced_s(2, 30, 1000.0)
    62.0
    """
    return timings * (runs + 1) * gap_ms / MS_PER_S


def paced_pause(gap_ms: float) -> None:
    """Sleep ``gap_ms`` before a paced invocation, as a stage fed one frame at a time idles
    between frames (nothing when 0). See the module docstring for what the idle costs."""
    if gap_ms > 0:
        time.sleep(gap_ms / MS_PER_S)


def check_gap_ms(gap_ms: float) -> float:
    """``gap_ms`` if it is a finite number >= 0, else a :class:`ProfileError` naming it.

    >>> check_gap_ms(50)
    50.0
    """
    if not math.isfinite(gap_ms) or gap_ms < 0:
        raise ProfileError(f"gap_ms must be a finite number of ms >= 0, got {gap_ms}")
    return float(gap_ms)


class CoRunners:
    """One :mod:`hwsched.runtime.corun` process per CPU in ``cpus``, each invoking the segment
    last given to :meth:`load` in a loop; :meth:`close` ends and reaps them all."""

    def __init__(self, cpus: Sequence[int], workdir: Path, max_seconds: float) -> None:
        self.workdir, self.loaded = workdir, 0
        self.children: list[subprocess.Popen] = []
        for cpu in cpus:
            with (workdir / f"corun{cpu}.log").open("wb") as log:
                self.children.append(subprocess.Popen(
                    [sys.executable, "-m", "hwsched.runtime.corun", "--cpu", str(cpu),
                     "--max-seconds", f"{max_seconds:g}"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log))

    def load(self, content: bytes) -> None:
        """Switch every co-runner to ``content``; returns once each has invoked it."""
        path = self.workdir / f"segment{self.loaded}.tflite"
        path.write_bytes(content)
        self.loaded += 1
        self._tell(str(path))
        limit = time.monotonic() + CO_RUN_READY_TIMEOUT_S
        for cpu, child in enumerate(self.children):
            self._await_ready(child, limit, cpu)

    def go(self) -> None:
        """Start one invocation in every co-runner now; from the first ``go`` after a
        :meth:`load` on, they invoke once per ``go`` instead of in a loop (paced pairing)."""
        self._tell(GO)

    def _tell(self, line: str) -> None:
        """Send ``line`` to every co-runner; one that has died (killed, or its deadline
        passed) is a :class:`ProfileError` naming the logs, not a broken pipe."""
        for index, child in enumerate(self.children):
            assert child.stdin is not None
            try:
                child.stdin.write(f"{line}\n".encode())
                child.stdin.flush()
            except (BrokenPipeError, ValueError) as error:
                raise ProfileError(f"co-runner {index} has ended ({error}); see "
                                   f"{self.workdir}/corun*.log") from None

    def _await_ready(self, child: subprocess.Popen, limit: float, index: int) -> None:
        assert child.stdout is not None
        fd, seen = child.stdout.fileno(), b""
        while b"\n" not in seen:
            remaining = limit - time.monotonic()
            readable, _, _ = select.select([fd], [], [], max(remaining, 0.0))
            chunk = os.read(fd, 64) if readable else b""
            if not chunk:
                raise ProfileError(f"co-runner {index} did not start the segment; see "
                                   f"{self.workdir}/corun*.log")
            seen += chunk

    def close(self) -> None:
        for child in self.children:
            with contextlib.suppress(OSError):
                child.stdin.close()  # type: ignore[union-attr]  # EOF: the co-runner ends
        limit = time.monotonic() + CO_RUN_STOP_TIMEOUT_S
        for child in self.children:
            try:
                child.wait(timeout=max(limit - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()


def check_co_run_cpus(threads: int, flag: str = "--co-run") -> list[int]:
    """The CPUs this process may use, when more than ``threads`` (the rest run co-runners);
    else one line naming ``flag`` (the option that asked for co-runners), checked before a
    model loads."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) <= threads:
        raise ProfileError(f"{flag} needs more CPUs than --threads {threads} "
                           f"({len(cpus)} available)")
    return cpus


@contextlib.contextmanager
def co_run_load(threads: int, segments: int, paced_s: float = 0.0) -> Iterator[CoRunners]:
    """Pin this process to its first ``threads`` CPUs and load every other CPU it may use with
    a co-runner; affinity is restored and the co-runners reaped on exit. ``paced_s``: what
    pacing adds to the ``segments`` timings (:func:`paced_s`), so the co-runners' deadline
    does not pass mid-profile."""
    cpus = check_co_run_cpus(threads)
    max_seconds = (segments * (MAX_TIMING_S + CO_RUN_READY_TIMEOUT_S) + CO_RUN_READY_TIMEOUT_S
                   + paced_s)
    with tempfile.TemporaryDirectory(prefix="hwsched-corun-") as workdir:
        runners = CoRunners(cpus[threads:], Path(workdir), max_seconds)
        try:
            os.sched_setaffinity(0, cpus[:threads])
            yield runners
        finally:
            os.sched_setaffinity(0, cpus)
            runners.close()


@dataclass(frozen=True)
class Segment:
    """Layers ``[start, stop)`` of the topological order, converted to one ``.tflite``."""

    start: int
    stop: int
    tflite: bytes


def time_segments(graph: LayerGraph, segments: Sequence[Segment], whole: bytes | None, *,
                  threads: int = 1, platform: str = "host", warmup: int = DEFAULT_WARMUP,
                  runs: int = DEFAULT_RUNS, co_run: bool = False, name: str = "model",
                  progress: Progress | None = None, board_speed: float | None = None,
                  chained: bool = False, gap_ms: float = 0.0) -> dict[str, Any]:
    """Time converted segments (and the whole model, when given and there are several);
    returns the profile as a JSON-ready dict. With ``co_run`` every other core runs the
    segment being timed (see the module docstring). The conversion is export's
    (:func:`hwsched.export.profiling.profile_model`): this module only times, with LiteRT.

    With ``board_speed`` this process is capped at that fraction of a core while it times
    (:mod:`hwsched.runtime.cpucap`), as ``hwsched emulate --board-speed`` caps a stage. With
    ``chained`` the segments are timed in a chain (:func:`time_chain`); with ``co_run`` beside
    a copy of the whole model. With ``gap_ms`` each timed invocation (chained: each frame)
    follows that long idle, as in a pipeline fed one frame at a time, and co-runners are
    paced with it (:func:`_co_run_pacing`). The profile records ``gap_ms`` (0: back to
    back)."""
    report = progress or silent
    gap_ms = check_gap_ms(gap_ms)
    caps = StageCaps([board_speed])  # fails here, before timing, when caps cannot be made
    capped = board_speed is not None
    with contextlib.ExitStack() as stack:
        load = stack.enter_context(co_run_load(
            threads, len(segments), paced_s(len(segments) + 1, runs, gap_ms))) if co_run else None
        stack.enter_context(caps).attach([(0, os.getpid())])
        timings = []
        whole_ms = None
        if whole is not None and len(segments) > 1:
            report("timing the whole model" + (" with co-runners" if load else ""))
            if chained:  # as the segments are: the invocation only, not its copies
                if load is not None:
                    load.load(whole)
                whole_ms = time_chain([whole], threads, warmup, runs, capped=capped,
                                      gap_ms=gap_ms, on_start=_co_run_pacing(load, gap_ms))[0][0]
            else:
                whole_ms = _time_loaded(whole, threads, warmup, runs, load, name, capped,
                                        gap_ms)[0]
        if chained:  # co-runners, if any, keep running the whole model they were given (paced:
            # once per frame)
            report(f"timing {len(segments)} segments chained")
            results = time_chain([s.tflite for s in segments], threads, warmup, runs,
                                 capped=capped, gap_ms=gap_ms,
                                 on_start=_co_run_pacing(load, gap_ms))
            timings = [SegmentTiming(s.start, s.stop, graph.layers[s.start].name,
                                     graph.layers[s.stop - 1].name, *result)
                       for s, result in zip(segments, results, strict=True)]
        for i, segment in enumerate([] if chained else segments):
            first, last = graph.layers[segment.start].name, graph.layers[segment.stop - 1].name
            report(f"timing segment {i + 1}/{len(segments)} ({first}…)"
                   + (" with co-runners" if load else ""))
            median_ms, done, spread = _time_loaded(segment.tflite, threads, warmup, runs, load,
                                                   f"{name} segment {i + 1}", capped, gap_ms)
            timings.append(SegmentTiming(segment.start, segment.stop, first, last, median_ms,
                                         done, spread))
    profile = profile_dict(graph, timings, platform, threads, warmup, runs)
    profile["co_run"] = co_run
    profile["board_speed"] = board_speed
    profile["chained"] = chained
    profile["gap_ms"] = gap_ms
    if whole_ms is not None:
        profile["whole_latency_ms"] = whole_ms
        extra = (profile["total_latency_ms"] - whole_ms) / (len(segments) - 1)
        profile["invoke_overhead_ms"] = max(extra, 0.0)
    return profile


def _time_loaded(content: bytes, threads: int, warmup: int, runs: int,
                 load: CoRunners | None, name: str, capped: bool = False, gap_ms: float = 0.0
                 ) -> tuple[float, int, float]:
    """:func:`time_tflite` of ``content``, the co-runners (if any) switched to it first."""
    if load is not None:
        load.load(content)
    return time_tflite(content, threads, warmup, runs, name=name, capped=capped,
                       gap_ms=gap_ms, on_start=_co_run_pacing(load, gap_ms))


def _co_run_pacing(load: CoRunners | None, gap_ms: float) -> Callable[[], object] | None:
    """Paced (``gap_ms``), the co-runners invoke once with each timed invocation instead of
    looping (:meth:`CoRunners.go`), as :func:`time_stages_paired` paces its partner. Why: in a
    pipeline fed one frame per period every core computes its stage once per frame and idles
    for the rest of the period; the other cores' bursts start about when this core's does (the
    frames before and after this one reach them at the same period's start) and they idle in
    the same gap. A co-runner looping back to back would instead load the shared caches and
    memory bandwidth all through the timed core's idle, which no paced pipeline does. Back to
    back (no gap) they keep looping: that is the saturated pipeline."""
    return load.go if load is not None and gap_ms > 0 else None


def with_pacing_variants(paced: dict[str, Any], back_to_back: dict[str, Any],
                         co_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """A paced profile with each segment's ``back_to_back_ms`` (and ``co_run_ms``) and the
    whole model's ``whole_back_to_back_ms`` taken from profiles of the same segments timed
    back to back (and paced beside co-runners): what
    :attr:`hwsched.costs.profile.Profile.wake_ms` and co-run pricing read. The paced
    profile's own fields are unchanged.

    >>> one = lambda ms: {"segments": [{"positions": [0, 2], "latency_ms": ms}],
    ...                   "whole_latency_ms": None}
    >>> with_pacing_variants(one(3.0), one(2.0), one(3.5))["segments"]
    [{'positions': [0, 2], 'latency_ms': 3.0, 'back_to_back_ms': 2.0, 'co_run_ms': 3.5}]
    """
    variants = [("back_to_back_ms", back_to_back), ("co_run_ms", co_run)]
    for field, other in variants:
        if other is not None and len(other["segments"]) != len(paced["segments"]):
            raise ProfileError(f"profile variants time {len(other['segments'])} segments "
                               f"for {field}, the paced profile {len(paced['segments'])}")
    segments = []
    for k, segment in enumerate(paced["segments"]):
        merged = dict(segment)
        for field, other in variants:
            if other is None:
                continue
            theirs = other["segments"][k]
            if theirs.get("positions") != segment.get("positions"):
                raise ProfileError(f"profile variants time different segments at {k}: "
                                   f"{theirs.get('positions')} vs {segment.get('positions')}")
            merged[field] = theirs["latency_ms"]
        segments.append(merged)
    merged_profile = {**paced, "segments": segments}
    if back_to_back.get("whole_latency_ms") is not None:
        merged_profile["whole_back_to_back_ms"] = back_to_back["whole_latency_ms"]
    return merged_profile


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


def time_chain(contents: Sequence[bytes], threads: int, warmup: int = DEFAULT_WARMUP,
               runs: int = DEFAULT_RUNS, seed: int = 0, capped: bool = False,
               gap_ms: float = 0.0, on_start: Callable[[], object] | None = None
               ) -> list[tuple[float, int, float]]:
    """``(median ms, runs, IQR ms)`` of each segment invoked in a chain: every frame runs all
    segments one after another, as a stage made of them would. A segment invoked again and
    again on its own keeps its weights and activations in the core's cache; in a stage the
    other segments have evicted them since its last frame, so late, weight-heavy segments
    timed alone are several times too fast (see ``bench/bench_attribution.py``).

    Only the invocation is timed. Inside a stage a segment reads the tensor the layer before
    it has just written, in place; here its inputs are copied in just before (untimed: the
    data is as fresh in the cache as a producer leaves it) and its outputs are never read. A
    signature-runner call would add the copies of both, which inside a stage do not exist:
    for EfficientNet-B0's 4.8 MB early activations that is several times the segment's own
    compute, and it made a profile put the stage time in the early layers. The copies at a
    stage's own borders are the runner's hand-off cost (:mod:`hwsched.costs.runtime`).
    Under a CPU cap each figure is the mean over at least ``CAPPED_MIN_S``. With ``gap_ms``
    every timed frame follows that long idle (the segments of a frame still run back to
    back, as in a stage); the warm-up frames do not. ``on_start`` is called as in
    :func:`time_tflite`: before each timed frame and, paced, once after the warm-up."""
    keep_freed_memory()
    chain = [_invocable(content, threads, f"segment {i + 1}", seed)
             for i, content in enumerate(contents)]
    times: list[list[float]] = [[] for _ in chain]

    def one_frame(record: bool) -> None:
        for (interpreter, feeds), seen in zip(chain, times, strict=True):
            for index, value in feeds:
                interpreter.set_tensor(index, value)
            start = time.perf_counter()
            interpreter.invoke()
            if record:
                seen.append((time.perf_counter() - start) * MS_PER_S)

    _warm_up(lambda: one_frame(False), warmup)
    if on_start is not None and gap_ms > 0:
        on_start()  # a paced partner stops looping now, so it idles in the first gap too
    limit = time.monotonic() + MAX_TIMING_S * len(chain) + runs * gap_ms / MS_PER_S
    floor = time.monotonic() + (CAPPED_MIN_S if capped else 0.0)
    frame = 0
    while (frame < runs or time.monotonic() < floor) and (
            frame < 3 or time.monotonic() < limit):
        paced_pause(gap_ms)
        if on_start is not None:
            on_start()
        one_frame(True)
        frame += 1
    results = []
    for seen in times:
        q1, _, q3 = statistics.quantiles(seen, n=4) if len(seen) > 1 else (seen[0],) * 3
        middle = statistics.fmean(seen) if capped else statistics.median(seen)
        results.append((middle, len(seen), q3 - q1))
    return results


def _warm_up(invoke: Callable[[], object], runs: int) -> None:
    """``runs`` calls, and more until ``WARMUP_MIN_S`` has passed (bounded by
    ``MAX_TIMING_S`` for a model whose one call takes long)."""
    start = time.monotonic()
    done = 0
    while done < runs or (time.monotonic() - start < WARMUP_MIN_S
                          and time.monotonic() - start < MAX_TIMING_S):
        invoke()
        done += 1


def _invocable(content: bytes, threads: int, name: str, seed: int
               ) -> tuple[Any, list[tuple[int, np.ndarray]]]:
    """An interpreter of ``content`` and random inputs by tensor index (zeros for integers)."""
    try:
        interpreter = open_interpreter(content=content, threads=threads)
    except (ValueError, RuntimeError) as failure:
        first_line = str(failure).strip().splitlines()[0] if str(failure).strip() else failure
        raise ProfileError(f"{name}: LiteRT cannot run the model: {first_line}") from None
    rng = np.random.default_rng(seed)
    feeds = []
    for detail in interpreter.get_input_details():
        dtype, shape = np.dtype(detail["dtype"]), tuple(int(d) for d in detail["shape"])
        feeds.append((detail["index"], rng.random(shape, dtype=np.float32).astype(dtype)
                      if dtype.kind == "f" else np.zeros(shape, dtype)))
    return interpreter, feeds


def time_stages_paired(stages: Sequence[bytes], threads: int = 1, warmup: int = DEFAULT_WARMUP,
                       runs: int = DEFAULT_RUNS, progress: Progress | None = None,
                       speeds: Sequence[float | None] | None = None,
                       gap_ms: float = 0.0) -> list[float]:
    """Median ms of each stage invoked whole while its partner stage (the next one, the last
    stage's partner being the one before it) loops on the other core(s): the contention a
    pipeline really has, which neither an idle chip nor a copy of the same code reproduces.
    A single stage is timed alone. With ``speeds`` (fractions of a core, None = uncapped) the
    timed stage and its partner each run under their board's CPU cap, as
    ``emulate --board-speed`` runs them, and the figure is a mean (see :func:`time_tflite`).

    With ``gap_ms`` both partners are paced together, as two stages of a pipeline fed one
    frame at a time: after the (back-to-back) warm-up, each timed invocation follows a
    ``gap_ms`` idle and starts together with one invocation of the partner (which no longer
    loops: :meth:`CoRunners.go`)."""
    report = progress or (lambda _m: None)
    gap_ms = check_gap_ms(gap_ms)
    keep_freed_memory()  # the interpreter's output copies reuse memory, as in a runner
    speeds = list(speeds) if speeds is not None else [None] * len(stages)
    if len(stages) == 1:
        with StageCaps(speeds[:1]) as caps:
            caps.attach([(0, os.getpid())])
            return [time_tflite(stages[0], threads, warmup, runs, name="stage 0",
                                capped=speeds[0] is not None, gap_ms=gap_ms)[0]]
    times = []
    with co_run_load(threads, len(stages), paced_s(len(stages), runs, gap_ms)) as load:
        for k, content in enumerate(stages):
            partner = k + 1 if k + 1 < len(stages) else k - 1
            report(f"timing stage {k} whole while stage {partner} runs beside it")
            load.load(stages[partner])
            with StageCaps([speeds[k], speeds[partner]]) as caps:
                caps.attach([(0, os.getpid()), *((1, c.pid) for c in load.children)])
                times.append(time_tflite(content, threads, warmup, runs, name=f"stage {k}",
                                         capped=speeds[k] is not None, gap_ms=gap_ms,
                                         on_start=load.go if gap_ms else None)[0])
    return times


def time_stages_beside(stages: Sequence[bytes], partners: Sequence[int | None],
                       threads: int = 1, warmup: int = DEFAULT_WARMUP,
                       runs: int = DEFAULT_RUNS, progress: Progress | None = None,
                       gap_ms: float = 0.0) -> list[float]:
    """Median ms of each stage invoked whole, stage k while stage ``partners[k]`` runs on the
    other core(s) (None: alone, pinned as a stage is): a stage graph's branches that compute
    at the same time, as :func:`time_stages_paired` times a chain's neighbours. With
    ``gap_ms`` both are paced together, started at once (:meth:`CoRunners.go`)."""
    report = progress or silent
    gap_ms = check_gap_ms(gap_ms)
    if len(partners) != len(stages) or any(
            p is not None and not 0 <= p < len(stages) for p in partners):
        raise ProfileError(f"partners {list(partners)} do not name stages 0..{len(stages) - 1}")
    keep_freed_memory()
    times: list[float] = [math.nan] * len(stages)
    cpus = sorted(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, cpus[:threads])
        for k in (k for k, p in enumerate(partners) if p is None):
            report(f"timing stage {k} whole, alone")
            times[k] = time_tflite(stages[k], threads, warmup, runs, name=f"stage {k}",
                                   gap_ms=gap_ms)[0]
    finally:
        os.sched_setaffinity(0, cpus)
    beside = [k for k, p in enumerate(partners) if p is not None]
    if beside:
        with co_run_load(threads, len(beside), paced_s(len(beside), runs, gap_ms)) as load:
            for k in beside:
                report(f"timing stage {k} whole while stage {partners[k]} runs beside it")
                load.load(stages[partners[k]])
                times[k] = time_tflite(stages[k], threads, warmup, runs, name=f"stage {k}",
                                       gap_ms=gap_ms, on_start=load.go if gap_ms else None)[0]
    return times
