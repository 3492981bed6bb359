"""How much does analysis add to loading a model?

For each zoo model: the time to build it (TensorFlow already imported), then the time to read
its graph into the IR and enumerate every cut point (plus the dominator check). Prints JSON.
Target (issue 2): analysis adds under 10% to model loading.

    python bench/bench_analyze.py [--models efficientnet_b0,resnet50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from hwsched.cuts import dominating_layers, enumerate_cuts
from hwsched.load import _zoo_model, import_keras
from hwsched.load.keras_reader import read_keras_model
from hwsched.load.zoo import ZOO
from hwsched.progress import silent


def measure(name: str, repeat: int) -> dict[str, object]:
    build_s, analyze_s = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        model = _zoo_model(name, silent)
        built = time.perf_counter()
        graph, _ = read_keras_model(model, name)
        cuts = enumerate_cuts(graph)
        dominating_layers(graph)
        done = time.perf_counter()
        build_s.append(built - start)
        analyze_s.append(done - built)
    build, analyze = statistics.median(build_s), statistics.median(analyze_s)
    return {
        "model": name,
        "layers": len(graph),
        "cut_points": len(cuts),
        "build_s": round(build, 4),
        "analyze_s": round(analyze, 4),
        "analysis_over_build": round(analyze / build, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(n for n in ZOO if n != "digits_cnn"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import_keras()
    rows = [measure(name, args.repeat) for name in args.models.split(",")]
    worst = max(row["analysis_over_build"] for row in rows)
    print(json.dumps({"bench": "analyze", "repeat": args.repeat, "models": rows,
                      "worst_analysis_over_build": worst, "target": 0.10,
                      "meets_target": worst < 0.10}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
