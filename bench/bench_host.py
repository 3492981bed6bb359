"""How steady this host's cores are: the yardstick for every other benchmark's spread.

A fixed compute kernel (single-threaded float32 matrix products, a few ms) runs back to back
pinned to one CPU, for ``--seconds`` on each CPU alone and then on all of them at once. Its
time is what a stage's busy time would be if nothing but the host changed. Printed as JSON:

* per CPU and phase, the kernel's time (``p5``/``median``/``p95`` in ms), the share of the
  run's time spent in runs more than ``--slow-factor`` times the CPU's fast runs
  (``slow_share``; fast: the runs' 10th percentile), and over windows of ``--window-s`` the
  slowest window's median against the fast windows' (their 10th percentile:
  ``worst_window_ratio``);
* ``co_run_factor``: the kernel's median on a CPU while every CPU runs it, against alone
  (about 1 where the CPUs are real cores; up to 2 where they are two threads of one core).

On a dedicated machine ``slow_share`` is ~0 and ``worst_window_ratio`` ~1. On the shared
development VM of 2026-11-30 the same kernel, timed in ~0.3 s windows before this script
existed, ran 5.3 ms and 14.6 ms on one vCPU within seconds (each vCPU losing up to 60% of its
speed for a few hundred ms, several times in 15 s): a benchmark's rounds of a few seconds each
then differ by more than the 5% its bars allow, whatever the cost model says.

    python bench/bench_host.py [--seconds 10] [--window-s 0.25] [--cpus 0,1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from typing import Any

# one thread a kernel: a larger value of the user's would run several on one pinned CPU
os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"

#: Side of the kernel's matrices and products per timing: ~5 ms on a 2020s server core.
SIDE, PRODUCTS = 256, 20
MS_PER_S = 1e3
#: The fastest windows: a CPU's reference speed is this percentile of its window medians.
FAST_PERCENTILE = 10


def kernel_times_ms(cpu: int, seconds: float) -> list[tuple[float, float]]:
    """(start s, duration ms) of each kernel run pinned to ``cpu`` for ``seconds``."""
    import numpy as np

    os.sched_setaffinity(0, {cpu})
    a = np.random.default_rng(cpu).standard_normal((SIDE, SIDE)).astype(np.float32)
    b = a.copy()
    times = []
    end_s = time.monotonic() + seconds
    while (start_s := time.monotonic()) < end_s:
        t0 = time.perf_counter()
        for _ in range(PRODUCTS):
            b = a @ b
            b /= np.abs(b).max()
        times.append((start_s, (time.perf_counter() - t0) * MS_PER_S))
    return times


def _worker(cpu: int, seconds: float, out: Any) -> None:
    out.put((cpu, kernel_times_ms(cpu, seconds)))


def steadiness(times: list[tuple[float, float]], window_s: float,
               slow_factor: float) -> dict[str, Any]:
    """The kernel's spread; the share of the time spent in runs slower than ``slow_factor``
    times the fast runs (their :data:`FAST_PERCENTILE`-th percentile; by time, so a long
    stall counts for all it lasts); and the slowest ``window_s`` window's median against
    the fast windows'.

    >>> steady = [(i * 0.005, 5.0) for i in range(100)]
    >>> steadiness(steady, 0.1, 1.2)["slow_share"]
    0.0
    >>> spiky = [(i * 0.005, 15.0 if 50 <= i < 75 else 5.0) for i in range(100)]
    >>> r = steadiness(spiky, 0.1, 1.2)
    >>> r["slow_share"], round(r["worst_window_ratio"], 1)
    (0.5, 3.0)
    """
    import numpy as np

    durations = np.array([ms for _, ms in times])
    start = times[0][0]
    windows: dict[int, list[float]] = {}
    for at_s, ms in times:
        windows.setdefault(int((at_s - start) / window_s), []).append(ms)
    medians = np.array([float(np.median(v)) for _, v in sorted(windows.items())])
    fast = float(np.percentile(medians, FAST_PERCENTILE))
    fast_run = float(np.percentile(durations, FAST_PERCENTILE))
    slow_ms = float(durations[durations > fast_run * slow_factor].sum())
    p5, p50, p95 = (float(v) for v in np.percentile(durations, [5, 50, 95]))
    return {"runs": len(durations), "p5_ms": p5, "median_ms": p50, "p95_ms": p95,
            "windows": len(medians), "fast_window_ms": fast,
            "slow_share": round(slow_ms / float(durations.sum()), 3),
            "worst_window_ratio": float(medians.max() / fast)}


def run_phase(cpus: list[int], seconds: float) -> dict[int, list[tuple[float, float]]]:
    """The kernel on every CPU of ``cpus`` at once, each in its own process."""
    out: Any = mp.get_context("spawn").Queue()
    procs = [mp.get_context("spawn").Process(target=_worker, args=(c, seconds, out))
             for c in cpus]
    for p in procs:
        p.start()
    got = dict(out.get() for _ in procs)
    for p in procs:
        p.join()
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument("--window-s", type=float, default=0.25)
    parser.add_argument("--slow-factor", type=float, default=1.2)
    parser.add_argument("--cpus", default=None, help="CPUs to probe (default: all allowed)")
    args = parser.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    try:
        cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else allowed
    except ValueError:
        print(f"bench_host: error: --cpus {args.cpus!r}: not a list of CPU numbers",
              file=sys.stderr)
        return 2
    if not set(cpus) <= set(allowed) or args.seconds <= 0 or args.window_s <= 0:
        print(f"bench_host: error: --cpus must be among {allowed}, --seconds and --window-s "
              "positive", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"kernel": f"{PRODUCTS} float32 {SIDE}x{SIDE} matrix products",
                              "seconds_per_phase": args.seconds, "window_s": args.window_s,
                              "slow_factor": args.slow_factor, "alone": {}, "together": {}}
    for cpu in cpus:
        times = run_phase([cpu], args.seconds)[cpu]
        report["alone"][str(cpu)] = steadiness(times, args.window_s, args.slow_factor)
    together = run_phase(cpus, args.seconds)
    for cpu, times in together.items():
        report["together"][str(cpu)] = steadiness(times, args.window_s, args.slow_factor)
    report["co_run_factor"] = {
        str(c): report["together"][str(c)]["median_ms"] / report["alone"][str(c)]["median_ms"]
        for c in cpus}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
