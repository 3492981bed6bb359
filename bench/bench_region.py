"""Benchmark: the acceleration region, predicted and measured over an emulated link.

This host as two boards (``benchlib``); stage-to-stage traffic goes through a veth pair shaped
with ``tc`` (``hwsched emulate --link-emulation``) to each bandwidth of a log grid spanning
the predicted edge. Two predictions are printed:

* ``profile``: :func:`~hwsched.schedule.sweep.sweep_bandwidth` with the segment profile and the
  runner's per-frame cost — what ``hwsched analyze --sweep-bandwidth`` computes;
* ``calibrated``: measured splits' stage times (timed whole beside their partner) plus
  per-frame cost, and the whole model timed alone, with the link at each bandwidth. The
  measured splits are the ``--refine K`` splits (chosen at 1000 Mbit/s) *and* the profile
  sweep's winners at the grid's bandwidths (:func:`~hwsched.schedule.sweep.sweep_winners`),
  whose stages are exported and timed the same way: a low bandwidth wants a cut with few
  bytes crossing, which the refinement at 1000 Mbit/s never looks at.

At each bandwidth the calibrated best split is emulated (below the edge: the split that first
pays) right after a run of the whole model on one core (whole, b1, whole, b2, … every round,
``--rounds`` rounds), so each split is paired with a whole run close in time. Each point's
resend timeout follows its predicted link time (a frame several times the model's period on
the wire would otherwise be resent, and the duplicates cross the shaped link too), and each
run records its frames delivered, resent and duplicated. Printed: per bandwidth predicted and
measured throughput and gain (median, spread), ``split_error`` (split vs its link-limited
prediction) and ``split_gain`` (split over its paired whole run); the predicted edges
(calibrated and profile) and the measured one (where log(gain) crosses 0, interpolated
against log(bandwidth)), from the median gains and per round. Targets (issue 17): each point
within 10%, edge within 15%.

Every run's record is written to ``--out``/runs as soon as it ends, and the whole result to
``--out``/region.json after every round; a run that fails is recorded as its error and the
others go on.

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
MIN_POINTS = 6
#: A frame is resent only after this many windows' worth of its predicted link time.
RESEND_WINDOWS = 3.0
#: Times the grid is centred again on an edge that measuring the sweep's winners moved.
MAX_GRID_PASSES = 4


def main() -> int:
    args = _arguments()
    if args.points < MIN_POINTS:
        print(f"bench_region: --points {args.points}: the region needs >= {MIN_POINTS} "
              "bandwidths (both sides of the edge)", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.frames < 1 or args.refine < 1:
        print("bench_region: --rounds, --frames and --refine must be >= 1", file=sys.stderr)
        return 2
    if (problem := benchlib.unknown_model(args.model)) is not None:
        print(f"bench_region: --model: {problem}", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-region-"))
    out.mkdir(parents=True, exist_ok=True)
    runtime = benchlib.host_setup(out, runners=args.runner_cost)
    _write_link(out / "hardware" / "links" / f"{LINK}.yaml", 1000.0)

    from hwsched.load import load_model
    from hwsched.schedule.sweep import sweep_bandwidth

    loaded = load_model(args.model, progress=say)
    profiles = benchlib.profile_here(loaded, args.segments, out)
    ranking, refinement = benchlib.calibrated(loaded, profiles, runtime, args.refine, LINK)
    whole = benchlib.whole_prediction(loaded, ranking, runtime)
    model = _Calibrated(loaded.graph, profiles, whole, {
        c.cut_positions: _Measured([s.cost.latency_ms for s in c.stages], "refine")
        for c in refinement.candidates})
    first_edge, _ = model.edge()
    edge, edge_cuts, grid, unmeasured = _centred_grid(loaded, model, profiles, runtime,
                                                      args.points, out)
    say(f"calibrated edge {edge:.4g} Mbit/s (split {edge_cuts}; {first_edge:.4g} from the "
        "refined splits alone)")
    profile_sweep = sweep_bandwidth(loaded.graph, list(benchlib.NAMES), LINK, grid[0], grid[-1],
                                    args.points, runtime=runtime, profile=profiles)
    points = [_Point.at(b, model, edge_cuts, loaded, out) for b in grid]
    whole_dir = benchlib.export_split(loaded, whole, out / "whole", LINK)
    runs_by_name = {}
    for point in points:
        runs_by_name[f"whole@{point.key}"] = _guarded(whole_dir, point.whole_config(args.frames))
        runs_by_name[point.key] = _guarded(point.directory, point.split_config(args.frames))
    context = (args, model, profile_sweep, points, edge, edge_cuts, unmeasured)
    runs = benchlib.interleave(runs_by_name, args.rounds,
                               done=_saver(out, context, last=list(runs_by_name)[-1]))
    result = {**_result(*context, runs), "runner_frame_ms": benchlib.runner_frame_ms(runtime)}
    benchlib.write_json(out / "region.json", result)
    print(json.dumps(result, indent=2))
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--segments", type=int, default=24)
    parser.add_argument("--refine", type=int, default=5)
    parser.add_argument("--points", type=int, default=7, help=f"bandwidths (>= {MIN_POINTS})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help="mobilenet_v3_small, 8 segments, refine 2, 6 points, 2 rounds, "
                        "40 frames")
    benchlib.add_runner_cost_option(parser)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.model, args.segments, args.refine, args.points, args.rounds, args.frames = (
            "mobilenet_v3_small", 8, 2, 6, 2, 40)
    return args


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


@dataclasses.dataclass(frozen=True)
class _Measured:
    """A split's stage times measured here (runner's cost included), and who chose it."""

    stage_ms: list[float]
    source: str  # "refine" (the --refine K splits) or "sweep_winner"


@dataclasses.dataclass
class _Calibrated:
    """Measured splits' stage times (+ runtime), the link at any bandwidth."""

    graph: object
    profiles: list
    whole: object
    measured: dict  # cut positions -> _Measured

    def at(self, cuts, bandwidth_mbps: float):
        from hwsched.hardware import load_link
        from hwsched.schedule import evaluate
        from hwsched.schedule.refine import restage
        from hwsched.schedule.sweep import with_bandwidth

        link = with_bandwidth(load_link(LINK), bandwidth_mbps)
        fresh = evaluate(self.graph, list(benchlib.NAMES), link, cuts, profile=self.profiles)
        return restage(fresh, self.measured[tuple(cuts)].stage_ms)

    def best_split(self, bandwidth_mbps: float):
        """The fastest measured split at this bandwidth if it beats the whole model."""
        splits = [self.at(c, bandwidth_mbps) for c in self.measured]
        best = min(splits, key=lambda c: (c.period_ms, c.cut_positions))
        return best if best.period_ms < self.whole.period_ms else None

    def edge(self, lo: float = 1e-3, hi: float = 1e6) -> tuple[float, tuple[int, ...]]:
        """Lowest bandwidth at which a measured split beats the whole model (log bisection)."""
        if self.best_split(hi) is None:
            raise SystemExit("no measured split beats the whole model at any bandwidth")
        while hi / lo > 1.0001:
            mid = math.sqrt(lo * hi)
            lo, hi = (lo, mid) if self.best_split(mid) is not None else (mid, hi)
        return hi, self.best_split(hi).cut_positions


def log_grid_around(edge_mbps: float, points: int) -> list[float]:
    """``points`` bandwidths from ``edge / SPAN`` to ``edge * SPAN``, evenly in log.

    >>> [round(b, 6) for b in log_grid_around(10.0, 3)]
    [1.25, 10.0, 80.0]
    """
    return [edge_mbps / SPAN * (SPAN * SPAN) ** (i / (points - 1)) for i in range(points)]


def _centred_grid(loaded, model: _Calibrated, profiles, runtime, points: int, out: Path):
    """The grid around the calibrated edge, with the profile sweep's winners on it measured.

    Measuring a winner can move the edge (a cut with few bytes crossing pays far below where
    the refined splits do: about 260 -> 6.4 Mbit/s on mobilenet_v3_small in a quick run), and
    the grid must span the edge it ends at, so: grid, winners, edge again, until no new
    winner or ``MAX_GRID_PASSES``. Returns the edge, its split, the grid and any winner of the final
    grid left unmeasured (only when the passes ran out)."""
    edge, edge_cuts = model.edge()
    for _ in range(MAX_GRID_PASSES):
        grid = log_grid_around(edge, points)
        if not _measure_sweep_winners(loaded, model, profiles, runtime, grid, out):
            return edge, edge_cuts, grid, []
        edge, edge_cuts = model.edge()
    grid = log_grid_around(edge, points)
    return edge, edge_cuts, grid, _sweep_winners_left(loaded, model, profiles, runtime, grid)


def _sweep_winners_left(loaded, model: _Calibrated, profiles, runtime, grid) -> list:
    from hwsched.schedule.sweep import sweep_winners

    winners = sweep_winners(loaded.graph, list(benchlib.NAMES), LINK, grid, profile=profiles,
                            runtime=runtime)
    return [cuts for cuts, _points in winners if cuts not in model.measured]


def _measure_sweep_winners(loaded, model: _Calibrated, profiles, runtime, grid,
                           out: Path) -> int:
    """Export and time (beside each other) the stages of every split the profile sweep finds
    best at a grid bandwidth that is not measured yet; returns how many were new."""
    from hwsched.schedule import evaluate

    new = _sweep_winners_left(loaded, model, profiles, runtime, grid)
    for cuts in new:
        say(f"timing the stages of sweep winner {list(cuts)}")
        candidate = evaluate(loaded.graph, list(benchlib.NAMES), LINK, cuts, profile=profiles)
        directory = benchlib.export_split(loaded, candidate, _split_dir(out, cuts), LINK)
        timed = benchlib.retimed_candidate(loaded, candidate, directory, runtime,
                                           timings=benchlib.WHOLE_TIMINGS)
        model.measured[cuts] = _Measured([s.cost.latency_ms for s in timed.stages],
                                         "sweep_winner")
    return len(new)


def _split_dir(out: Path, cuts) -> Path:
    return out / ("cut_" + "_".join(map(str, cuts)))


def resend_after_s(link_ms: float, window: int) -> float:
    """A resend timeout that a healthy frame over this link never reaches: ``window`` frames
    may queue ahead of it on the wire, each taking ``link_ms``; three times that, at least the
    runtime's default of one second.

    >>> resend_after_s(10.0, 8), resend_after_s(200.0, 8)
    (1.0, 4.8)
    """
    from hwsched.runtime.defaults import DEFAULT_RESEND_AFTER_S

    return max(DEFAULT_RESEND_AFTER_S, RESEND_WINDOWS * window * link_ms / 1000.0)


@dataclasses.dataclass(frozen=True)
class _Point:
    """One bandwidth of the grid: the split emulated there and how its runs are configured."""

    bandwidth_mbps: float
    split: object  # the calibrated prediction of the split at this bandwidth
    source: str
    directory: Path
    link_file: Path
    resend_after_s: float

    @property
    def key(self) -> str:
        return f"{self.bandwidth_mbps:.6g}"

    @classmethod
    def at(cls, b: float, model: _Calibrated, edge_cuts, loaded, out: Path) -> _Point:
        from hwsched.runtime.defaults import DEFAULT_WINDOW

        split = model.best_split(b) or model.at(edge_cuts, b)
        directory = benchlib.export_split(loaded, split, _split_dir(out, split.cut_positions),
                                          LINK)
        link_ms = max((link.latency_ms for link in split.links), default=0.0)
        return cls(b, split, model.measured[split.cut_positions].source, directory,
                   _write_link(out / f"link_{b:.6g}.yaml", b),
                   resend_after_s(link_ms, DEFAULT_WINDOW))

    def split_config(self, frames: int):
        from hwsched.runtime.emulate import EmulationConfig

        # the children's time limit must allow frames at the predicted (link-limited) period
        return EmulationConfig(frames=frames, link_emulation=True, link=str(self.link_file),
                               resend_after_s=self.resend_after_s,
                               expected_period_s=self.split.period_ms / 1000.0)

    def whole_config(self, frames: int):
        from hwsched.runtime.emulate import EmulationConfig

        return EmulationConfig(frames=frames)


def _guarded(directory: Path, config):
    """A run that records its failure (None, and one line said) instead of ending the bench."""
    def run():
        from hwsched.runtime.emulate import emulate

        try:
            return emulate(directory, config)
        except Exception as error:  # one failed run must not lose the others
            say(f"run of {directory.name} failed: {benchlib.one_line(error)}")
            return benchlib.FailedRun(benchlib.one_line(error))
    return run


def _saver(out: Path, context, last: str):
    """Each run's record at once; the whole result after every round."""
    seen: dict[str, list] = {}

    def done(name: str, round_index: int, run) -> None:
        seen.setdefault(name, []).append(run)
        benchlib.write_json(out / "runs" / f"{name.replace('@', '_at_')}_round{round_index}"
                            ".json", benchlib.run_or_error_record(run))
        if name == last:
            benchlib.write_json(out / "region.json", _result(*context, seen))
            splits = [runs for key, runs in seen.items() if not key.startswith("whole@")]
            if round_index == 0 and all(isinstance(r[0], benchlib.FailedRun) for r in splits):
                raise SystemExit("bench_region: every split run of round 1 failed (first: "
                                 f"{splits[0][0].error}); see {out / 'runs'}")
    return done


def measured_edge(grid: list[float], gains: list[float | None]) -> float | None:
    """Where the measured gain first crosses 1 going up the grid, interpolating log(gain)
    linearly in log(bandwidth) (a link-limited split's throughput is proportional to the
    bandwidth, so its gain is a power law there, a straight line in log-log); None when it
    never crosses or a point is missing at the crossing.

    >>> measured_edge([1.0, 4.0], [0.5, 2.0])
    2.0
    """
    for i in range(len(grid) - 1):
        (b0, g0), (b1, g1) = (grid[i], gains[i]), (grid[i + 1], gains[i + 1])
        if g0 is None or g1 is None or g0 <= 0:
            continue
        if g0 <= 1.0 < g1:
            t = -math.log(g0) / (math.log(g1) - math.log(g0))
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def _result(args, model, profile_sweep, points, edge, edge_cuts, unmeasured,
            runs) -> dict:
    gains_by_round, rows = [], []
    for point, sweep_point in zip(points, profile_sweep.points, strict=True):
        row, gains = _point_result(point, sweep_point, model, runs)
        rows.append(row)
        gains_by_round.append(gains)
    grid = [p.bandwidth_mbps for p in points]
    median_gains = [summary(g)["median"] for g in gains_by_round]
    edge_median = measured_edge(grid, median_gains)
    rounds = len(gains_by_round[0]) if gains_by_round else 0
    edges = [measured_edge(grid, [g[r] for g in gains_by_round]) for r in range(rounds)]
    profile_edge = profile_sweep.edge_mbps
    return {
        "model": args.model,
        "link": (str(points[0].link_file.parent / "hardware" / "links" / f"{LINK}.yaml")
                 if points else None),
        "link_description": f"{LINK}: a veth pair shaped with tc tbf to each point's "
                            "bandwidth_mbps (link_file); the whole model runs on one core "
                            "without it",
        "predicted_edge_mbps": edge,
        "edge_cut_positions": list(edge_cuts),
        "profile_predicted_edge_mbps": profile_edge,
        "measured_edge_mbps": edge_median,
        "measured_edge_per_round_mbps": summary(edges),
        "edge_error": None if edge_median is None else edge_median / edge - 1,
        "profile_edge_error": (None if edge_median is None or not profile_edge
                               else edge_median / profile_edge - 1),
        "edge_error_per_round": summary([None if e is None else e / edge - 1 for e in edges]),
        "predicted_whole_ips": model.whole.throughput_ips,
        "measured_whole_ips": summary([benchlib.run_ips(r) for key, rs in runs.items()
                                       if key.startswith("whole@") for r in rs]),
        "measured_splits": [{"cut_positions": list(c), "source": m.source,
                             "stage_ms_with_runtime": m.stage_ms}
                            for c, m in model.measured.items()],
        "sweep_winners_unmeasured": [list(c) for c in unmeasured],
        "points": rows,
        "rounds": args.rounds,
        "rounds_done": rounds,
        "frames": args.frames,
        "complete": all(not isinstance(r, benchlib.FailedRun) and r.complete
                        for rs in runs.values() for r in rs),
    }


def _point_result(point: _Point, sweep_point, model: _Calibrated, runs) -> tuple[dict, list]:
    """One bandwidth: its split against its own prediction and against the whole model run
    just before it (same round), and the per-round gains the edge is found from."""
    split_runs = runs.get(point.key, [])
    whole_runs = runs.get(f"whole@{point.key}", [])[:len(split_runs)]
    split_ips = [benchlib.run_ips(r) for r in split_runs]
    whole_ips = [benchlib.run_ips(r) for r in whole_runs]
    predicted = point.split.throughput_ips
    gains = benchlib.per_round_ratio(split_ips, whole_ips)
    best_ips = [None if s is None or w is None else max(s, w)
                for s, w in zip(split_ips, whole_ips, strict=True)]
    predicted_best = max(predicted, model.whole.throughput_ips)
    row = {
        "bandwidth_mbps": point.bandwidth_mbps,
        "link_file": str(point.link_file),
        "split_cut_positions": list(point.split.cut_positions),
        "split_source": point.source,
        "predicted_link_ms": [link.latency_ms for link in point.split.links],
        "resend_after_s": point.resend_after_s,
        "predicted_split_ips": predicted,
        "measured_split_ips": summary(split_ips),
        "split_error": summary([None if s is None else s / predicted - 1 for s in split_ips]),
        "predicted_split_gain": predicted / model.whole.throughput_ips,
        "split_gain": summary(gains),
        "measured_whole_ips": summary(whole_ips),
        "predicted_best_ips": predicted_best,
        "measured_best_ips": summary(best_ips),
        "best_error": summary([None if m is None else m / predicted_best - 1 for m in best_ips]),
        "predicted_gain": predicted_best / model.whole.throughput_ips,
        "measured_gain": summary(benchlib.per_round_ratio(best_ips, whole_ips)),
        "profile_prediction": sweep_point.to_dict(),
        "split_runs": [benchlib.run_or_error_record(r) for r in split_runs],
        "whole_runs": [benchlib.run_or_error_record(r) for r in whole_runs],
    }
    return row, gains


if __name__ == "__main__":
    sys.exit(main())
