"""What the pipeline benchmarks share: this host as two boards, calibration, interleaved runs.

* :func:`host_setup` — two platform descriptors for this machine's cores (``host_core0``,
  ``host_core1``) and a link descriptor measured through the runtime's own transport on
  loopback (``host_loopback``), on the hardware search path; plus the runner's per-frame cost
  (:mod:`hwsched.costs.runtime`) measured on the same loopback. A prediction is only checked
  against a measurement of the same set-up, so the benchmarks plan for this link.
* :func:`profile_here` — segments timed here *chained* (every frame all segments in turn, as
  a stage runs them; timed one by one, late segments keep their weights in cache and look
  several times too fast), beside a copy of the whole model on the other core;
* :func:`calibrated` — rank with the profile, then refine K splits (rank 1 and K-1 spread
  over the band the profile cannot tell from it) on stages timed whole beside their partner,
  or on the splits run by the runners (``--refine-by pipeline``; :func:`refine_by_measurement`).
* :func:`retimed_prediction` — a split's exported stages timed again just before a run, so
  the error against it is the cost model's own, not the host's drift since the refinement;
* :func:`interleave` — run A, B, A, B, … so that drift on a shared machine hits all alike;
  :func:`summary` gives the median, the spread (max - min) and the values;
  :func:`per_round_ratio` pairs runs of the same round;
* :func:`run_record` — what one emulation says about its own health (complete, frames
  delivered, resent, duplicated), and :func:`write_json`, so a late failure loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

NAMES = ("host_core0", "host_core1")
LOOPBACK = "host_loopback"
WHOLE_TIMINGS = 3


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def host_setup(out: Path, runners: bool = True) -> Any:
    """Descriptors of this host on the search path; returns the measured runtime cost, with
    ``runners`` each runner's own loop per frame beside a stand-in model that sweeps twice the
    last-level cache (:mod:`hwsched.runtime.runnercost`: on the EPYC VM of 2026-11-30 this
    is what each pipeline core's runtime cost above the bare hop ends)."""
    hardware_dir = out / "hardware"
    os.environ["HWSCHED_HARDWARE_PATH"] = str(hardware_dir)
    from hwsched.runtime.hopcost import measure_runtime_cost, write_loopback_link
    from hwsched.runtime.profile import write_host_descriptor

    for name in NAMES:
        write_host_descriptor(name, hardware_dir / "platforms" / f"{name}.yaml")
    say("measuring the hand-off cost (each hop end on its own core) and the loopback"
        + (", then the runners' own loops" if runners else ""))
    runtime = measure_runtime_cost(runners=runners)
    write_loopback_link(hardware_dir / "links" / f"{LOOPBACK}.yaml", cost=runtime)
    (out / "runtime_cost.json").write_text(json.dumps(runtime.to_dict(), indent=2))
    return runtime


def add_runner_cost_option(parser: Any) -> None:
    """``--no-runner-cost``: charge the bare hop ends only (the pricing before 2026-11-30
    17:00), not the runners' own loops beside a model that evicts the last-level cache."""
    parser.add_argument("--no-runner-cost", dest="runner_cost", action="store_false",
                        help="charge the bare hop ends only, not the runners' own loops beside "
                             "a model that evicts the last-level cache (the pricing before "
                             "2026-11-30 17:00)")


def runner_frame_ms(runtime: Any) -> list[float | None]:
    """The JSON ``runner_frame_ms`` every benchmark prints: the runners' own loops charged per
    sending and receiving end (None, None: not charged)."""
    return [runtime.runner_sender_frame_ms, runtime.runner_receiver_frame_ms]


def profile_here(loaded: Any, segments: int, out: Path, co_run: bool = True,
                 speeds: tuple[float, ...] | None = None) -> list[Any]:
    """The model's segments timed here, as one profile per host core; with ``speeds`` each
    board slower than a whole core is profiled under its CPU cap."""
    from hwsched.costs.profile import parse_profile
    from hwsched.export.profiling import profile_model
    from hwsched.runtime.profile import write_host_descriptor

    speeds = speeds or (1.0,) * len(NAMES)
    profiles, measured = [], {}
    for name, speed in zip(NAMES, speeds, strict=True):
        if speed not in measured:
            say(f"profiling {segments} segments (co-run: {co_run}, board speed {speed:g})")
            measured[speed] = profile_model(
                loaded, threads=1, segments=segments, co_run=co_run, progress=say,
                board_speed=None if speed >= 1.0 else speed, chained=True)
        path = out / f"profile_{name}.json"
        path.write_text(json.dumps(measured[speed], indent=2))
        # chained, the extra cost of a segment invocation over the whole model is the same
        # everywhere, so the planner may subtract it per segment and add it once per stage
        write_host_descriptor(name, out / "hardware" / "platforms" / f"{name}.yaml",
                              invoke_overhead_ms=measured[speed].get("invoke_overhead_ms"))
        profiles.append(parse_profile({**measured[speed], "platform": name}, str(path)))
    return profiles


def add_refine_by_option(parser: Any) -> None:
    parser.add_argument("--refine-by", choices=("paired", "pipeline"), default="paired",
                        help="how refine measures a split (analyze --refine-by): its stages "
                        "timed whole beside each other, or the split run by the runners "
                        "(default: paired)")
    parser.add_argument("--refine-passes", type=_passes, default=1,
                        help="measure each refined split this many times (1 or even), each "
                        "pass in the reverse order of the one before, and rank on the means "
                        "(default: 1)")
    parser.add_argument("--refine-confirm", type=int, default=None,
                        help="then measure rank 1 this many times more and predict from that "
                        "alone (analyze --refine-confirm; default: as --refine-passes; 0: off)")


def _passes(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1 or (value > 1 and value % 2):
        raise argparse.ArgumentTypeError(f"{value}: 1 or an even number")
    return value


def calibrated(loaded: Any, profiles: list[Any], runtime: Any, refine_k: int,
               link: str = LOOPBACK, speeds: tuple[float, ...] | None = None,
               by: str = "paired", passes: int = 1, confirm: int | None = None
               ) -> tuple[Any, Any]:
    """The profile ranking and ``refine_k`` splits (rank 1 and ``refine_k - 1`` spread over the
    band :func:`~hwsched.schedule.refine.distinct_splits` takes), followed by the loop,
    re-ranked on measured stages (``by``:
    timed whole beside each other, or run as a pipeline; ``analyze --refine-by``); rank 1 then
    measured ``confirm`` times more (default: ``passes``; ``analyze --refine-confirm``)."""
    from hwsched.cli.analyze import refine_by_measurement
    from hwsched.schedule import rank_splits

    ranking = rank_splits(loaded.graph, list(NAMES), link, objective="throughput",
                          profile=profiles)
    say(f"refining {refine_k} splits near rank 1, and the loop's follow-ups, on stages "
        f"measured {by}")
    refinement = refine_by_measurement(loaded, ranking.candidates, "throughput", refine_k,
                                       runtime=runtime, progress=say, speeds=speeds, by=by,
                                       link=link, passes=passes,
                                       confirm=passes if confirm is None else confirm)
    return ranking, refinement


def whole_prediction(loaded: Any, ranking: Any, runtime: Any) -> Any:
    """The whole model on one core: timed whole here, plus the runner's per-frame cost."""
    from hwsched.export.profiling import fp32_segments
    from hwsched.runtime.profile import time_stages_paired
    from hwsched.schedule.refine import restage, with_runtime_cost

    content = fp32_segments(loaded, ())[0].tflite
    # three timings, median: one timing at a bad moment of a shared machine skewed the whole
    # model's prediction (and with it the region's edge) by 2x in a quick run
    busy = [statistics.median(time_stages_paired([content])[0] for _ in range(WHOLE_TIMINGS))]
    return with_runtime_cost(loaded.graph, restage(ranking.baselines[0], busy), runtime)


def export_split(loaded: Any, candidate: Any, directory: Path, link: str = LOOPBACK) -> Path:
    from hwsched.export import export

    if not (directory / "plan.json").is_file():
        export(loaded, list(NAMES[: len(candidate.stages)]), directory,
               cut_positions=candidate.cut_positions, precisions="fp32", link=link,
               prediction=candidate.to_dict(), progress=say)
    return directory


def retimed_candidate(loaded: Any, candidate: Any, split_dir: Path, runtime: Any,
                      speeds: tuple[float, ...] | None = None, timings: int = 1) -> Any:
    """``candidate`` with the stage times of its exported stages timed now, each beside its
    partner, plus the runner's hand-off cost: what refine measures, measured again. With
    ``timings`` > 1 each stage's time is the median of that many timings (one timing at a bad
    moment of a shared machine can be several times too slow)."""
    from hwsched.deployment import load_plan
    from hwsched.runtime.profile import time_stages_paired
    from hwsched.schedule.refine import restage, with_runtime_cost

    plan = load_plan(split_dir)
    stages = [(split_dir / stage.file).read_bytes() for stage in plan.stages]
    timed = [time_stages_paired(stages, speeds=speeds) for _ in range(timings)]
    busy = [statistics.median(stage) for stage in zip(*timed, strict=True)]
    return with_runtime_cost(loaded.graph, restage(candidate, busy), runtime)


def unknown_model(name: str) -> str | None:
    """One line saying why ``name`` is neither a zoo model nor a model file, else None: checked
    before a long run starts, not when its turn comes an hour later."""
    from hwsched.load.zoo import zoo_names

    if name in zoo_names() or Path(name).is_file():
        return None
    return f"unknown model {name!r}: not a file, and the zoo has {', '.join(zoo_names())}"


def retimed_prediction(loaded: Any, candidate: Any, split_dir: Path, runtime: Any,
                       speeds: tuple[float, ...] | None = None) -> float:
    """Throughput predicted from the exported stages timed now (:func:`retimed_candidate`)."""
    return retimed_candidate(loaded, candidate, split_dir, runtime, speeds).throughput_ips


def interleave(runs: Mapping[str, Callable[[], Any]], rounds: int,
               done: Callable[[str, int, Any], None] | None = None) -> dict[str, list[Any]]:
    """Each run once per round, in the same order every round (A, B, A, B, …); ``done`` is
    told each result as soon as it exists (name, round, result), so it can be saved."""
    results: dict[str, list[Any]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            say(f"round {r + 1}/{rounds}: {name}")
            results[name].append(run())
            if done is not None:
                done(name, r, results[name][-1])
    return results


@dataclasses.dataclass(frozen=True)
class FailedRun:
    """A run that failed, kept by its one-line reason so the others' results survive."""

    error: str


def run_ips(run: Any) -> float | None:
    """A run's throughput, None for a :class:`FailedRun`."""
    return None if isinstance(run, FailedRun) else run.throughput_ips


def run_or_error_record(run: Any) -> dict[str, Any]:
    """:func:`run_record`, or ``{"error": ...}`` for a :class:`FailedRun`."""
    return {"error": run.error} if isinstance(run, FailedRun) else run_record(run)


def run_record(result: Any) -> dict[str, Any]:
    """One emulation's own health: a throughput from a run that resent most frames, or did not
    deliver them all, measures the retransmissions, not the split."""
    return {"complete": result.complete, "frames": result.frames,
            "frames_delivered": result.frames_delivered,
            "frames_duplicated": result.frames_duplicated,
            "resent": sum(h.resent for h in result.hops),
            "duplicates": sum(h.duplicates for h in result.hops),
            "throughput_ips": result.throughput_ips, "wall_s": result.wall_s}


def write_json(path: Path, data: Any) -> None:
    """Written to a temporary name and renamed, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and its first line of text."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def summary(values: list[float]) -> dict[str, Any]:
    """Median, spread (max - min) and the values themselves."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "spread": None, "values": values}
    return {"median": statistics.median(clean), "spread": max(clean) - min(clean),
            "values": clean}


def ratio_summary(numerators: list[float], denominators: list[float]) -> dict[str, Any]:
    """Per-round ratios (rounds paired, so drift cancels) and their summary."""
    return summary([a / b for a, b in zip(numerators, denominators, strict=True) if b])


def per_round_ratio(numerators: list[float | None],
                    denominators: list[float | None]) -> list[float | None]:
    """``numerators[r] / denominators[r]`` for each round; None where either is missing.

    >>> per_round_ratio([2.0, None, 3.0], [4.0, 1.0, 0.0])
    [0.5, None, None]
    """
    return [a / b if a is not None and b else None
            for a, b in zip(numerators, denominators, strict=True)]


def per_round_best_ratio(ips_by_run: Mapping[Any, list[float | None]], chosen: Any
                         ) -> list[float | None]:
    """For each round, ``chosen``'s throughput over the best throughput among all runs of that
    round (1.0: it was the best). Regret per round is one minus it: drift between rounds
    cancels, where the ratio of medians mixes rounds.

    >>> per_round_best_ratio({"a": [10.0, 8.0], "b": [12.0, 6.0]}, "a")
    [0.8333333333333334, 1.0]
    """
    rounds = len(ips_by_run[chosen])
    best = [max((v[r] for v in ips_by_run.values() if v[r] is not None), default=None)
            for r in range(rounds)]
    return per_round_ratio(list(ips_by_run[chosen]), best)
