"""Benchmark: 4-way split of a 1,000-layer synthetic graph; prints JSON.

    python bench/bench_schedule.py [--layers 1000] [--repeat 3]

Times (best of ``repeat``) the whole ``rank_splits()`` call per objective, for the optimum alone
(``top=1``) and for the 10 best splits, plus the raw DP on precomputed matrices.
"""

from __future__ import annotations

import argparse
import json
import time

from hwsched.hardware import load_platform
from hwsched.schedule import k_best, rank_splits
from hwsched.schedule.context import CostOptions, build_context
from hwsched.schedule.synthetic import synthetic_graph

PLATFORMS = ("rpi4", "jetson_nano", "rpi5", "jetson_orin_nano")
LINK = "gige"


def best_of(repeat: int, call) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    graph = synthetic_graph(args.layers, seed=0)
    report: dict[str, object] = {"layers": len(graph), "platforms": list(PLATFORMS), "link": LINK}
    for objective in ("throughput", "latency", "energy"):
        for top in (1, 10):
            seconds, result = best_of(
                args.repeat,
                lambda o=objective, t=top: rank_splits(graph, PLATFORMS, LINK, o, top=t),
            )
            report[f"plan_{objective}_top{top}_s"] = round(seconds, 4)
            report[f"plan_{objective}_top{top}_cuts"] = list(result.best.cut_positions)
    ctx, _ = build_context(graph, [load_platform(p) for p in PLATFORMS], LINK, CostOptions())
    stages, links = ctx.matrices(PLATFORMS, relaxed=False)
    report["dp_max_k1_s"] = round(
        best_of(args.repeat, lambda: k_best(stages, links, "max", 1))[0], 4
    )
    report["dp_sum_k10_s"] = round(
        best_of(args.repeat, lambda: k_best(stages, links, "sum", 10))[0], 4
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
