"""Benchmark: the acceleration region, predicted and measured over an emulated link.

This host as two boards (``benchlib``); stage-to-stage traffic goes through a veth pair shaped
with ``tc`` (``hwsched emulate --link-emulation``) to each bandwidth of a log grid spanning
the predicted edge. Two predictions are printed:

* ``profile``: :func:`~hwsched.schedule.sweep.sweep_bandwidth` with the segment profile and the
  runner's per-frame cost — what ``hwsched analyze --sweep-bandwidth`` computes;
* ``calibrated``: the ``--refine K`` splits' stage times (timed whole beside their partner)
  plus per-frame cost, and the whole model timed alone, with the link at each bandwidth.

At each bandwidth the calibrated best split is emulated (below the edge: the split that first
pays), interleaved with the whole model on one core over ``--rounds`` rounds. Printed: per
bandwidth predicted and measured throughput and gain (median, spread), and the predicted and
measured edges (measured: where the split's measured throughput crosses the whole model's,
interpolated in log bandwidth). Targets (issue 17): each point within 10%, edge within 15%.

    python bench/bench_region.py [--quick] [--model efficientnet_b0] [--points 7] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
from benchlib import say, summary

LINK = "veth_tbf"
#: What ``tc tbf`` counts per TCP segment on a veth: 1448 B payload (MSS with timestamps),
#: 52 B TCP/IP headers with options + 14 B Ethernet header.
SEGMENT_PAYLOAD_BYTES = 1448
SEGMENT_OVERHEAD_BYTES = 66
#: Per-message latency the sending runner adds (``--link-delay-ms``); small: a LAN switch.
MESSAGE_LATENCY_MS = 0.05
SPAN = 8.0  # the grid spans edge / SPAN .. edge * SPAN


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--segments", type=int, default=24)
    parser.add_argument("--refine", type=int, default=5)
    parser.add_argument("--points", type=int, default=7, help="bandwidths (>= 6)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help="mobilenet_v3_small, 8 segments, refine 3, 6 points, 60 frames")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.model, args.segments, args.refine, args.points, args.frames = (
            "mobilenet_v3_small", 8, 3, 6, 60)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-region-"))
    out.mkdir(parents=True, exist_ok=True)
    runtime = benchlib.host_setup(out)
    link_path = _write_link(out / "hardware" / "links" / f"{LINK}.yaml", 1000.0)

    from hwsched.load import load_model
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.schedule.sweep import sweep_bandwidth

    loaded = load_model(args.model, progress=say)
    profiles = benchlib.profile_here(loaded, args.segments, out)
    ranking, refinement = benchlib.calibrated(loaded, profiles, runtime, args.refine, LINK)
    whole = benchlib.whole_prediction(loaded, ranking, runtime)
    model = _Calibrated(loaded.graph, profiles, refinement, whole)
    edge, edge_cuts = model.edge()
    say(f"calibrated edge {edge:.4g} Mbit/s (split {edge_cuts})")
    grid = [edge / SPAN * (SPAN * SPAN) ** (i / (args.points - 1)) for i in range(args.points)]
    profile_sweep = sweep_bandwidth(loaded.graph, list(benchlib.NAMES), LINK, grid[0], grid[-1],
                                    args.points, runtime=runtime, profile=profiles)
    whole_dir = benchlib.export_split(loaded, whole, out / "whole", LINK)
    plans, runs_by_name = {}, {"whole": lambda: emulate(whole_dir, EmulationConfig(
        frames=args.frames))}
    for b in grid:
        split = model.best_split(b) or model.at(edge_cuts, b)
        directory = out / ("cut_" + "_".join(map(str, split.cut_positions)))
        plans[b] = (split, benchlib.export_split(loaded, split, directory, LINK))
        link_b = _write_link(out / f"link_{b:.6g}.yaml", b)
        config = EmulationConfig(frames=args.frames, link_emulation=True, link=str(link_b))
        runs_by_name[f"{b:.6g}"] = lambda d=directory, c=config: emulate(d, c)
    runs = benchlib.interleave(runs_by_name, args.rounds)
    print(json.dumps(_result(args, model, profile_sweep, grid, plans, runs, edge, edge_cuts,
                             link_path), indent=2))
    return 0


def _write_link(path: Path, bandwidth_mbps: float) -> Path:
    import yaml

    from hwsched.hardware import load_link

    how = "bench_region: a veth pair shaped with tc tbf (IP bytes + Ethernet header counted)"
    data = {
        "schema": "hwsched-hardware/1", "kind": "link", "name": LINK,
        "description": f"veth pair shaped with tc tbf to {bandwidth_mbps:.6g} Mbit/s",
        "bandwidth_bps": {"value": bandwidth_mbps * 1e6, "source": how},
        "bits_per_byte": {"value": 8, "source": "tbf counts bytes"},
        "frame": {"payload_bytes": {"value": SEGMENT_PAYLOAD_BYTES, "source": how},
                  "overhead_bytes": {"value": SEGMENT_OVERHEAD_BYTES, "source": how}},
        "message_latency_ms": {"value": MESSAGE_LATENCY_MS,
                               "source": "added by the sending runner (--link-delay-ms)"},
        "power": {"active_w": {"value": 0.001, "estimate": "emulated link: energy not "
                                         "measured"}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_link(path)
    return path


@dataclasses.dataclass
class _Calibrated:
    """Refined splits' measured stage times (+ runtime), the link at any bandwidth."""

    graph: object
    profiles: list
    refinement: object
    whole: object

    def at(self, cuts, bandwidth_mbps: float):
        from hwsched.hardware import load_link
        from hwsched.schedule import evaluate
        from hwsched.schedule.refine import restage
        from hwsched.schedule.sweep import with_bandwidth

        link = with_bandwidth(load_link(LINK), bandwidth_mbps)
        fresh = evaluate(self.graph, list(benchlib.NAMES), link, cuts, profile=self.profiles)
        measured = next(c for c in self.refinement.candidates if c.cut_positions == cuts)
        return restage(fresh, [s.cost.latency_ms for s in measured.stages])

    def best_split(self, bandwidth_mbps: float):
        """The fastest refined split at this bandwidth if it beats the whole model."""
        splits = [self.at(c.cut_positions, bandwidth_mbps) for c in self.refinement.candidates]
        best = min(splits, key=lambda c: (c.period_ms, c.cut_positions))
        return best if best.period_ms < self.whole.period_ms else None

    def edge(self, lo: float = 1e-3, hi: float = 1e6) -> tuple[float, tuple[int, ...]]:
        """Lowest bandwidth at which a refined split beats the whole model (log bisection)."""
        if self.best_split(hi) is None:
            raise SystemExit("no refined split beats the whole model at any bandwidth")
        while hi / lo > 1.0001:
            mid = math.sqrt(lo * hi)
            lo, hi = (lo, mid) if self.best_split(mid) is not None else (mid, hi)
        return hi, self.best_split(hi).cut_positions


def _measured_edge(grid, gains) -> float | None:
    """Where the measured gain first crosses 1, interpolated in log bandwidth."""
    for i in range(len(grid) - 1):
        (b0, g0), (b1, g1) = (grid[i], gains[i]), (grid[i + 1], gains[i + 1])
        if g0 <= 1.0 < g1:
            t = (1.0 - g0) / (g1 - g0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def _result(args, model, profile_sweep, grid, plans, runs, edge, edge_cuts, link_path) -> dict:
    whole_ips = [r.throughput_ips for r in runs["whole"]]
    points, gains = [], []
    for b, point in zip(grid, profile_sweep.points, strict=True):
        split, _ = plans[b]
        predicted_split = model.at(split.cut_positions, b)
        split_ips = [r.throughput_ips for r in runs[f"{b:.6g}"]]
        ratio = [s / w for s, w in zip(split_ips, whole_ips, strict=True)]
        gains.append(summary(ratio)["median"])
        predicted_best = max(predicted_split.throughput_ips, model.whole.throughput_ips)
        measured_best = [max(s, w) for s, w in zip(split_ips, whole_ips, strict=True)]
        points.append({
            "bandwidth_mbps": b,
            "split_cut_positions": list(split.cut_positions),
            "predicted_split_ips": predicted_split.throughput_ips,
            "measured_split_ips": summary(split_ips),
            "predicted_best_ips": predicted_best,
            "measured_best_ips": summary(measured_best),
            "best_error": summary([m / predicted_best - 1 for m in measured_best]),
            "predicted_gain": predicted_best / model.whole.throughput_ips,
            "measured_gain": summary([m / w for m, w in zip(measured_best, whole_ips,
                                                            strict=True)]),
            "profile_prediction": point.to_dict(),
        })
    measured_edge = _measured_edge(grid, gains)
    return {
        "model": args.model,
        "link": str(link_path),
        "predicted_edge_mbps": edge,
        "edge_cut_positions": list(edge_cuts),
        "profile_predicted_edge_mbps": profile_sweep.edge_mbps,
        "measured_edge_mbps": measured_edge,
        "edge_error": None if measured_edge is None else measured_edge / edge - 1,
        "predicted_whole_ips": model.whole.throughput_ips,
        "measured_whole_ips": summary(whole_ips),
        "points": points,
        "rounds": args.rounds,
        "frames": args.frames,
    }


if __name__ == "__main__":
    sys.exit(main())
