"""A/B: why one invocation is slower paced (idle between frames) than back to back.

One branch of ``bench_placement``'s two-branch model (``--depth`` 3x3 convolutions on
48x48x96, float32 TFLite, 1 LiteRT thread, pinned to ``--cpu``) is invoked in blocks of
``--invocations``, one block per variant, the variants interleaved over ``--rounds`` rounds
(order rotated and reversed every other round); each block is preceded by 0.3 s back to back
(warm). Per variant: the median over rounds of each block's median wall and CPU
(``thread_time``) ms per invocation, and the share of invocations during which the thread was
preempted (an involuntary context switch). The variants, each a thing done before every
timed invocation:

* ``b2b`` nothing; ``spin50`` 50 ms busy (the core never idles); ``sleep20/50/100`` idle;
* ``sweep`` / ``sleep50_sweep``: read 16 MB first (evicts the caches), without / after idling;
* ``sleep50_touch``: idle, then read the model's 1.3 MB of weights (a cache warm-up);
* ``sleep45_spin5``: idle, then 5 ms busy (wake the core, ramp its clock);
* ``sleep50_fifo``: idle, the thread under ``SCHED_FIFO`` (needs root; skipped otherwise).

    python bench/bench_paced_compute.py [--rounds 6] [--invocations 15] [--cpu 1]

What it found on the development VM is in :mod:`hwsched.runtime.profile`'s docstring.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SWEEP = np.ones(16 * 2**20 // 8)  # 16 MB: 8x a core's L2 on the development VM


def branch_tflite(depth: int) -> bytes:
    """``depth`` 3x3 convolutions with 96 channels on a 48x48x96 input, as float32 TFLite."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import keras
    from kerasmodels import to_tflite

    x = inputs = keras.Input(batch_shape=(1, 48, 48, 96))
    for _ in range(depth):
        x = keras.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    return to_tflite(keras.Model(inputs, x))


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def variants(weights: np.ndarray) -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {
        "b2b": lambda: None,
        "spin50": lambda: spin(0.050),
        "sleep20": lambda: time.sleep(0.020),
        "sleep50": lambda: time.sleep(0.050),
        "sleep100": lambda: time.sleep(0.100),
        "sweep": SWEEP.sum,
        "sleep50_sweep": lambda: (time.sleep(0.050), SWEEP.sum()),
        "sleep50_touch": lambda: (time.sleep(0.050), weights.sum()),
        "sleep45_spin5": lambda: (time.sleep(0.045), spin(0.005)),
    }
    if os.geteuid() == 0:
        out["sleep50_fifo"] = lambda: time.sleep(0.050)
    return out


def block(interpreter, feed, before: Callable[[], object], count: int
          ) -> tuple[float, float, float]:
    """Median wall and CPU ms of ``count`` invocations, each after ``before``, and the share
    preempted; 0.3 s back to back first."""
    index, value = feed
    start = time.monotonic()
    while time.monotonic() - start < 0.3:
        interpreter.set_tensor(index, value)
        interpreter.invoke()
    wall, cpu, preempted = [], [], 0
    for _ in range(count):
        interpreter.set_tensor(index, value)
        before()
        switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        cpu_start, wall_start = time.thread_time(), time.perf_counter()
        interpreter.invoke()
        wall.append((time.perf_counter() - wall_start) * 1000)
        cpu.append((time.thread_time() - cpu_start) * 1000)
        preempted += resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw > switches
    return statistics.median(wall), statistics.median(cpu), preempted / count


def set_fifo(on: bool) -> None:
    policy, priority = (os.SCHED_FIFO, 1) if on else (os.SCHED_OTHER, 0)
    os.sched_setscheduler(0, policy, os.sched_param(priority))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--invocations", type=int, default=15)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--cpu", type=int, default=1)
    args = parser.parse_args()
    content = branch_tflite(args.depth)
    from hwsched.litert import open_interpreter

    os.sched_setaffinity(0, [args.cpu])
    interpreter = open_interpreter(content=content, threads=1)
    detail = interpreter.get_input_details()[0]
    feed = (detail["index"], np.random.default_rng(0).random(detail["shape"], dtype=np.float32))
    chosen = variants(np.frombuffer(content, np.uint8))
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in chosen}
    names = list(chosen)
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in reversed(order) if round_ % 2 else order:
            set_fifo(name.endswith("_fifo"))
            try:
                results[name].append(block(interpreter, feed, chosen[name], args.invocations))
            finally:
                set_fifo(False)
        print(f"round {round_ + 1}: " + ", ".join(
            f"{name} {results[name][-1][0]:.2f}/{results[name][-1][1]:.2f}" for name in names),
            file=sys.stderr, flush=True)
    print(json.dumps({name: {
        "wall_ms": statistics.median(r[0] for r in rows),
        "cpu_ms": statistics.median(r[1] for r in rows),
        "preempted_share": statistics.median(r[2] for r in rows),
        "wall_ms_per_round": [round(r[0], 2) for r in rows]} for name, rows in results.items()},
        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
