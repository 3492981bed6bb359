"""What a runner's own loop costs per frame beyond the hop ends :mod:`hopcost` measures.

:mod:`hwsched.runtime.hopcost` times a hop's two ends alone: a sender that encodes, sends
and waits for the acknowledgement, a receiver that decodes and acknowledges. A pipeline's
runners do more per frame — the source makes each frame, the stage loop passes over its
queue, acknowledgements, reports and events, the sink keeps each output and its latency —
and in ``bench/bench_pipeline.py`` each core's measured runtime CPU per frame was 0.3-0.9 ms
above what the hop ends priced (EfficientNet-B0 in 2 stages, 2026-11-30: 1.24-1.79 against
0.90 on the first core, 0.85-1.14 against 0.51 on the second), while the period equalled the
busiest core's CPU per frame to 1% in every round: the runtime was the part mispriced.

:func:`measure_runner_frames` runs the real runners — :func:`~hwsched.runtime.source.
run_source`, a stage loop (:class:`~hwsched.runtime.stage._StageLoop`) whose model hands its
input on unchanged after sweeping a cache-sized buffer (as a model's pass evicts the
runtime's code and data), and :func:`~hwsched.runtime.sink.run_sink` — as three pinned
processes over loopback (source and sink on one core, the stage on the other, as hopcost's
ends), streaming frames of each payload size, and reads each runner's CPU per frame from its
own stats (:func:`~hwsched.runtime.process.cpu_record`). :func:`runner_terms` sets them
beside the hop ends the cost already charges — source ≈ a sender end, stage ≈ a receiver
and a sender end, sink ≈ a receiver end — and fits the per-frame excess of a sending end and
of a receiving end (least squares over the three, never below 0, medians over the sizes);
:func:`with_runner_terms` adds them to the cost's per-frame terms, so every price built on
``sender_ms``/``receiver_ms`` (chains, stage graphs, tiles) charges them.

What it found (2026-11-30, this 2-core VM, each core also sweeping its cache at the lowest
priority): the real loops cost what the hop ends price, within 0.1 ms a frame at 4 KB-1 MB
(source 0.20-0.67 ms against 0.19-0.59, stage 0.23-0.96 against 0.34-0.95), except the
sink keeping each 1 MB output (1.0-1.4 ms against 0.36: fresh pages; a model's outputs are
KBs); the fitted terms were 0 for a sending end and 0.09-0.18 ms for a receiving one. So the
pipeline's 0.2-0.35 ms a core above the hop ends is not the loops' bookkeeping: it comes with
a real model beside them (its weights evicting what the runners touch), which this stand-in
does not reproduce.

What the stand-in missed (2026-11-30, a 2-core AMD EPYC VM whose cores share a 32 MiB L3, 512
KiB L2 each): its 4 MiB sweep evicted the L2 but not the shared L3, which a real model's
weights and activations stream through every frame. Swept at 48 MiB instead, every runner cost
0.4-0.6 ms more a frame at every size (4 KB: source 0.75 against 0.23 ms, stage 1.12 against
0.44, sink 0.79 against 0.23), even the source and sink on the other core (the L3 is shared),
and the fit gave a sending end 0.26 ms and a receiving end 0.51 ms (0.01 / 0.17 at 4 MiB; at
the default, 64 MiB there, see the README): about 1.0 ms on the first core of a 2-stage
pipeline (source send, stage receive and send) and 1.3 ms on the second, where
``bench/bench_pipeline.py`` measured each core's runtime 1.1-1.5 ms above its charge the same
hour. So the stand-in now sweeps :data:`LLC_SWEEPS` times the last-level cache by default
(:func:`default_evict_bytes`), and the benchmarks charge these terms (``benchlib.host_setup``);
``analyze`` charges them when its ``--runtime-cost`` file was measured with ``python -m
hwsched.runtime.hopcost --runners`` (opt-in). Limits: by default it prices every model as one
that evicts the last-level cache; a model whose pass fits in it pays less: pass
:func:`model_evict_bytes` of the model as ``evict_bytes`` (``bench/bench_placement.py`` does,
per model; on the command line ``--runner-evict-mib`` takes a size); and the terms, fitted
per pass of a runner's loop with one message in and one out, ride on every message's ends, so a
scatter or gather stage with several messages a frame pays them once per message where its
loop's cold start may come once per pass.

No TensorFlow: the stage's model is numpy; the plan is made here, in memory, with no model
file.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import TransportError
from hwsched.ir import LayerGraph

#: Frames streamed per payload size. A runner's CPU per frame is its loop's total over them,
#: the first frames and the end of the stream included (biased up by about their cost / 200;
#: hopcost's ends drop their warm-up frames and take medians).
DEFAULT_FRAMES = 200
#: The stand-in model's sweep per frame where the last-level cache's size is unknown: twice
#: a 2 MiB L2, as hopcost's cache sweeping.
EVICT_BYTES = 4 << 20
#: The stand-in sweeps this many times the last-level cache (:func:`default_evict_bytes`).
LLC_SWEEPS = 2
#: The stand-in sweeps at most this much (a server's L3 of hundreds of MiB would make each
#: frame's sweep take longer than the measurement is worth).
MAX_EVICT_BYTES = 256 << 20
CACHE_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")


def last_level_cache_bytes(root: Path = CACHE_SYSFS) -> int | None:
    """The size of this host's last-level data or unified cache (Linux sysfs), or None.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for i, (level, kind, size) in enumerate([(1, "Data", "32K"), (3, "Unified", "32768K"),
    ...                                              (2, "Unified", "512K")]):
    ...         _ = (Path(d) / f"index{i}").mkdir()
    ...         for name, text in (("level", level), ("type", kind), ("size", size)):
    ...             _ = (Path(d) / f"index{i}" / name).write_text(str(text))
    ...     last_level_cache_bytes(Path(d)) == 32 << 20
    True
    """
    best: tuple[int, int] | None = None
    for index in sorted(root.glob("index[0-9]*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        number, unit = (size[:-1], units[size[-1]]) if size[-1:] in units else (size, 1)
        if kind == "Instruction" or not number.isdigit():
            continue
        if best is None or level > best[0]:
            best = (level, int(number) * unit)
    return best[1] if best else None


def default_evict_bytes() -> int:
    """What the stand-in model sweeps a frame: :data:`LLC_SWEEPS` times the last-level cache
    (a model's weights and activations stream through it every frame, and the runners' code
    and data are then cold), at least :data:`EVICT_BYTES`, at most :data:`MAX_EVICT_BYTES`."""
    llc = last_level_cache_bytes()
    return min(max(EVICT_BYTES, LLC_SWEEPS * llc), MAX_EVICT_BYTES) if llc else EVICT_BYTES


def model_evict_bytes(graph: LayerGraph, precision: str = "fp32") -> int:
    """What the stand-in should sweep a frame to stand for ``graph``: the bytes one pass of it
    streams — its weights and every tensor its layers write (an upper bound of what it leaves
    in the cache: TFLite's arena reuses buffers) — at most :func:`default_evict_bytes`. A model
    whose pass fits in the last-level cache (with room for its partner's) leaves the runners'
    code and data there, warm: bench_placement's two-branch model (48x48x96: 2.7 MB of weights,
    8.9 MB written a pass, against this VM's 32 MiB L3), priced with the terms of a 64 MiB
    sweep, was predicted +12.7% and +9.2% slow in two runs (2026-11-30; +19% and +14% from its
    measured compute: the hand-offs).

    >>> from hwsched.ir import Layer, OpKind, Tensor
    >>> t = Tensor("x", "x", (1, 256, 256, 4), "float32")      # 1 MiB
    >>> g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (t,)),
    ...     Layer("c", OpKind.CONV2D, ("x",), (Tensor("c", "c", (1, 256, 256, 4), "float32"),),
    ...           params=1024),), outputs=("c",))
    >>> model_evict_bytes(g) == 2 * (1 << 20) + 4 * 1024
    True
    """
    from hwsched.costs.memory import weight_bytes
    from hwsched.costs.transfer import tensor_bytes_as
    from hwsched.hardware import PRECISION_DTYPES

    dtype = PRECISION_DTYPES[precision]
    written = sum(tensor_bytes_as(tensor, dtype) for layer in graph for tensor in layer.outputs)
    return min(int(weight_bytes(graph, precision).sum()) + written, default_evict_bytes())


#: Longest one size's three runners may take (start, stream, end) before they are ended.
RUN_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 30.0
TENSOR = "x"
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class RunnerSample:
    """CPU ms per frame of each runner at one payload size (each process, every thread)."""

    payload_bytes: int
    source_ms: float
    stage_runtime_ms: float
    sink_ms: float


# -- the plan the runners read ---------------------------------------------------------------
def identity_plan(payload_bytes: int) -> Any:
    """One stage that takes a float32 tensor of ``payload_bytes`` and gives it back: the model
    input and the output have that size, so the source's, the stage's and the sink's hops
    carry the same payload."""
    from hwsched.deployment import Plan, StagePlan, TensorSource, TensorSpec

    shape = (1, max(payload_bytes // FLOAT32_BYTES, 1))
    spec = TensorSpec(TENSOR, shape, "float32", source=TensorSource(TENSOR), tflite_name=TENSOR)
    stage = StagePlan(0, "host", "identity.tflite", "", "fp32", (spec,),
                      (TensorSpec(TENSOR, shape, "float32", tflite_name=TENSOR),),
                      first_layer=TENSOR, last_layer=TENSOR)
    return Plan("identity", (stage,), ())


class _PassOn:
    """The stage's model: sweeps ``evict_bytes`` (a model's pass over memory) and hands its
    input on."""

    threads = 1

    def __init__(self, specs: Mapping[str, Any], evict_bytes: int) -> None:
        import numpy as np

        self.in_specs = self.out_specs = dict(specs)
        self.buffer = np.zeros(evict_bytes, dtype=np.uint8)

    def run(self, arrived: Mapping[str, Any]) -> dict[str, Any]:
        self.buffer += 1
        return {name: arrived[name] for name in self.out_specs}


# -- one runner, in its own process -----------------------------------------------------------
def _role_main(role: str, payload_bytes: int, cpu: int, workdir: Path, frames: int,
               next_hop: str | None, evict_bytes: int) -> None:
    from hwsched.runtime.process import (
        RunOptions,
        StopFlag,
        keep_freed_memory,
        mark_ready,
        pin_to_cpus,
        write_stats,
    )

    pin_to_cpus([cpu])
    keep_freed_memory()  # as every runner does
    plan = identity_plan(payload_bytes)
    options = RunOptions(stats=workdir / f"{role}.json", ready=workdir / f"{role}.ready",
                         max_runtime_s=RUN_TIMEOUT_S)
    if role == "sink":
        from hwsched.runtime.sink import run_sink

        run_sink(plan, "tcp://127.0.0.1:0", options)
    elif role == "source":
        from hwsched.runtime.source import run_source

        run_source(plan, str(next_hop), options, frames=frames)
    else:
        from hwsched.runtime.controller import sizing_specs
        from hwsched.runtime.routing import hop_specs
        from hwsched.runtime.stage import _StageLoop
        from hwsched.runtime.transport import open_channel

        with ExitStack() as opened:  # a socket left open keeps the process from exiting
            upstream = open_channel("tcp://127.0.0.1:0", listen=True,
                                    specs=sizing_specs(plan, 0))
            opened.callback(upstream.close)
            downstream = open_channel(str(next_hop), listen=False, specs=sizing_specs(plan, 1))
            opened.callback(downstream.close)
            loop = _StageLoop(_PassOn(hop_specs(plan, 0), evict_bytes), upstream, downstream,
                              options, 0)
            mark_ready(options.ready, upstream.bound_url)
            loop.serve(StopFlag())
        write_stats(options.stats, loop.stats())


def _start(role: str, payload_bytes: int, cpu: int, workdir: Path, frames: int,
           next_hop: str | None = None, evict_bytes: int = EVICT_BYTES) -> subprocess.Popen:
    argv = [sys.executable, "-m", "hwsched.runtime.runnercost", "--role", role, "--size",
            str(payload_bytes), "--cpu", str(cpu), "--workdir", str(workdir), "--frames",
            str(frames), "--evict-bytes", str(evict_bytes),
            *(["--next", next_hop] if next_hop else [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _address(workdir: Path, role: str, process: subprocess.Popen) -> str:
    """The address ``role`` listens on, from its ready file (pid, then the address)."""
    ready = workdir / f"{role}.ready"
    limit = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < limit:
        lines = ready.read_text().splitlines() if ready.is_file() else []
        if len(lines) >= 2 and lines[1]:
            return lines[1]
        if process.poll() is not None:
            break
        time.sleep(0.02)  # a file appearing, not a timing: nothing else wakes this wait
    raise TransportError(f"runner cost: the {role} did not start: {_last_line(process)}")


def _last_line(process: subprocess.Popen) -> str:
    if process.poll() is None:
        return "still starting"
    text = process.stderr.read() if process.stderr else ""
    return (text.strip().splitlines() or [f"exit code {process.returncode}"])[-1]


def _one_size(payload_bytes: int, frames: int, cpus: tuple[int, int],
              evict_bytes: int) -> RunnerSample:
    from hwsched.runtime.hopcost import sweeping_caches

    near, far = cpus
    # each core also sweeps its cache, as hopcost's busy cores do
    with tempfile.TemporaryDirectory(prefix="hwsched-runnercost-") as name, \
            sweeping_caches(cpus):
        workdir = Path(name)
        started: list[subprocess.Popen] = []
        try:
            sink = _start("sink", payload_bytes, near, workdir, frames)
            started.append(sink)
            stage = _start("stage", payload_bytes, far, workdir, frames,
                           _address(workdir, "sink", sink), evict_bytes)
            started.append(stage)
            source = _start("source", payload_bytes, near, workdir, frames,
                            _address(workdir, "stage", stage))
            started.append(source)
            # the source first: it ends the stream, and its failure is the one to report
            for role, process in reversed(list(zip(("sink", "stage", "source"), started,
                                                   strict=True))):
                try:
                    process.wait(timeout=RUN_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    raise TransportError(f"runner cost: the {role} did not end within "
                                         f"{RUN_TIMEOUT_S:g} s") from None
                if process.returncode != 0:
                    raise TransportError(f"runner cost: the {role} failed: "
                                         f"{_last_line(process)}")
            stats = {role: json.loads((workdir / f"{role}.json").read_text())
                     for role in ("source", "stage", "sink")}
        finally:
            for process in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return RunnerSample(payload_bytes, _per_frame(stats["source"], "cpu_ms_per_frame"),
                        _per_frame(stats["stage"], "runtime_cpu_ms_per_frame"),
                        _per_frame(stats["sink"], "cpu_ms_per_frame"))


def _per_frame(stats: Mapping[str, Any], key: str) -> float:
    value = stats.get(key)
    if not isinstance(value, int | float):
        raise TransportError(f"runner cost: the {stats.get('role', 'runner')} reported no {key}")
    return float(value)


def measure_runner_frames(sizes: Sequence[int], frames: int = DEFAULT_FRAMES,
                          cpus: tuple[int, int] | None = None,
                          evict_bytes: int | None = None) -> list[RunnerSample]:
    """Per payload size, the three runners' CPU per frame streaming ``frames`` frames
    (source and sink on ``cpus[0]``, the stage on ``cpus[1]``; default: the first two CPUs
    this process may use); the stage's stand-in model sweeps ``evict_bytes`` a frame
    (default :func:`default_evict_bytes`: beyond the last-level cache, which a model's pass
    evicts, the runners' code and data too)."""
    from hwsched.runtime.hopcost import hop_cpus

    evict = default_evict_bytes() if evict_bytes is None else evict_bytes
    return [_one_size(size, frames, cpus or hop_cpus(), evict) for size in sizes]


# -- the fit -----------------------------------------------------------------------------------
def runner_terms(samples: Sequence[RunnerSample], cost: RuntimeCost) -> tuple[float, float]:
    """The per-frame excess of a runner's sending end and of its receiving end over the hop
    ends ``cost`` charges: the source is a sending end, the stage a receiving and a sending
    one, the sink a receiving one; least squares over the three excesses (each the median
    over ``samples``' sizes), never below 0.

    >>> cost = RuntimeCost.asymmetric(sender=(0.2, 0.0), receiver=(0.1, 0.0))
    >>> s = RunnerSample(4096, source_ms=0.5, stage_runtime_ms=0.9, sink_ms=0.4)
    >>> [round(x, 6) for x in runner_terms([s], cost)]   # excesses 0.3, 0.6, 0.3
    [0.3, 0.3]
    """
    source = statistics.median(s.source_ms - cost.sender_ms(s.payload_bytes) for s in samples)
    stage = statistics.median(s.stage_runtime_ms - cost.receiver_ms(s.payload_bytes)
                              - cost.sender_ms(s.payload_bytes) for s in samples)
    sink = statistics.median(s.sink_ms - cost.receiver_ms(s.payload_bytes) for s in samples)
    return nonnegative_fit(source, stage, sink)


def nonnegative_fit(source: float, stage: float, sink: float) -> tuple[float, float]:
    """``(s, r) >= 0`` minimising ``(s - source)² + (s + r - stage)² + (r - sink)²``: the
    unconstrained optimum, or, where one term would be negative, that term 0 and the other
    fitted again alone (its two equations: the mean of their targets), never below 0.

    >>> nonnegative_fit(0.3, 0.6, 0.3)
    (0.3, 0.3)
    >>> [round(x, 6) for x in nonnegative_fit(-0.1, 0.1, 0.2)]   # s < 0: r from stage, sink
    [0.0, 0.15]
    """
    sender = (2 * source + stage - sink) / 3
    receiver = (2 * sink + stage - source) / 3
    if sender >= 0 and receiver >= 0:
        return sender, receiver
    candidates = [(0.0, max((stage + sink) / 2, 0.0)), (max((source + stage) / 2, 0.0), 0.0)]
    return min(candidates, key=lambda c: (c[0] - source) ** 2 + (sum(c) - stage) ** 2
               + (c[1] - sink) ** 2)


def with_runner_terms(cost: RuntimeCost, samples: Sequence[RunnerSample]) -> RuntimeCost:
    """``cost`` with :func:`runner_terms` added to its sending and receiving ends' per-frame
    terms (recorded apart as ``runner_sender_frame_ms``/``runner_receiver_frame_ms``)."""
    sender, receiver = runner_terms(samples, cost)
    described = ", ".join(f"{s.payload_bytes} B: source {s.source_ms:.4f} / stage "
                          f"{s.stage_runtime_ms:.4f} / sink {s.sink_ms:.4f} CPU ms"
                          for s in samples)
    return replace(
        cost, sender_frame_ms=cost.sender_ms(0) + sender,
        receiver_frame_ms=cost.receiver_ms(0) + receiver,
        frame_ms=cost.frame_ms + (sender + receiver) / 2,
        runner_sender_frame_ms=sender, runner_receiver_frame_ms=receiver,
        source=f"{cost.source}; plus each runner's own loop per frame, measured streaming the "
               f"real source, stage loop and sink (hwsched.runtime.runnercost): {described}")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hwsched.runtime.runnercost")
    parser.add_argument("--role", choices=("source", "stage", "sink"), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--next")
    parser.add_argument("--evict-bytes", type=int, default=EVICT_BYTES)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _role_main(args.role, args.size, args.cpu, args.workdir, args.frames, args.next,
               args.evict_bytes)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
