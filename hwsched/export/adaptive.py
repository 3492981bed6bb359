"""``export --adaptive K``: several splits of the same boards in one plan, each a verified chain,
with the link bandwidths at which each is predicted best (issue 11, the adaptive export).

The steps, each a function below: rank at the plan's own link (its rank-1 split becomes the
plan's top-level split and alternative 0); sweep the link's bandwidth over a log grid with the
boards of that split fixed and collect the distinct winners (:func:`sweep_winners`); keep the
K that win most of the swept range (in log bandwidth, :func:`range_shares`), plus any split the
user names (``--candidate``, ``--cuts``);
compute where each kept split beats the others (:func:`split_ranges`, contiguous from 0 to
infinity); export each split with the ordinary chain export (:func:`~hwsched.export.api.export`,
which proves it against the whole model); then gather the stage files into one directory where
identical files (equal sha256) are written once and shared, each named after the first split
that has it, and write one ``plan.json`` whose ``alternatives`` hold every split's own plan.
The directory is built beside ``out_dir`` and swapped into place like any export.

Why fixed boards: a runner switches a stream between splits by loading other stage files on the
same boards, so every alternative has the rank-1 split's boards in its order and stage count.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwsched.deployment import Alternative, Plan, StagePlan, save_plan
from hwsched.errors import ExportError
from hwsched.hardware import Platform, load_platform
from hwsched.ir import LayerGraph
from hwsched.progress import Progress, silent

#: Why the sweep ranks by throughput: a split's link time is what bandwidth changes.
ADAPTIVE_OBJECTIVE = "throughput"
MIN_ALTERNATIVES = 2


@dataclass(frozen=True)
class AdaptiveSplit:
    """One split to export and the bandwidth range ``[low, high)`` (Mbit/s) where it wins."""

    cut_positions: tuple[int, ...]
    bandwidth_mbps_low: float
    bandwidth_mbps_high: float
    #: What the cost models predict for it at the plan's own link (the plan's ``prediction``).
    prediction: Mapping[str, Any]


@dataclass(frozen=True)
class AdaptiveChoice:
    """The splits to export (alternative 0 first: the rank-1 split at the plan's own link)."""

    #: The descriptors (as given) of the boards every split runs on, in pipeline order.
    platforms: tuple[str | Platform, ...]
    splits: tuple[AdaptiveSplit, ...]
    link: str
    sweep_mbps: tuple[float, float, int]
    #: Distinct winners the sweep found: cut positions, grid points won (most first) and the
    #: fraction of the swept range (log bandwidth) where it is the best of them all.
    winners: tuple[tuple[tuple[int, ...], int, float], ...]

    def summary(self) -> dict[str, Any]:
        """What the top-level ``prediction.adaptive`` records about the choice."""
        lo, hi, points = self.sweep_mbps
        return {
            "link": self.link,
            "objective": ADAPTIVE_OBJECTIVE,
            "sweep_bandwidth_mbps": {"low": lo, "high": hi, "points": points},
            "sweep_winners": [{"cut_positions": list(c), "grid_points": n, "range_share": f}
                              for c, n, f in self.winners],
        }


def check_adaptive_count(count: int) -> int:
    """``--adaptive K`` asks for at least two splits to switch between.

    >>> check_adaptive_count(2)
    2
    """
    if count < MIN_ALTERNATIVES:
        raise ExportError(f"--adaptive {count}: an adaptive plan switches between at least "
                          f"{MIN_ALTERNATIVES} splits; give --adaptive K with K >= 2")
    return count


def choose_adaptive(
    graph: LayerGraph,
    platforms: Sequence[str | Platform],
    link: str,
    count: int,
    sweep_mbps: tuple[float, float, int],
    stages: int,
    candidate: int | None = None,
    user_cuts: Sequence[int] | None = None,
    precision: str | Mapping[str, str] | None = None,
    progress: Progress = silent,
) -> AdaptiveChoice:
    """Which splits to export and where each wins; pure (no TensorFlow), cheap next to export.

    ``candidate`` (a rank at ``link``) and ``user_cuts`` (cut positions on the rank-1 split's
    boards) are kept besides the ``count`` best; either is refused when it is not a split of
    those boards into ``stages`` stages.
    """
    if graph.stateful:
        # each split keeps the model's resource variables in its own stages: a switch would
        # start the new split from the initial state, and outputs would leave the model's
        raise ExportError(f"--adaptive: {graph.name} is stateful (resource variables "
                          f"{', '.join(v.name for v in graph.variables)}); switching splits "
                          "mid-stream would lose its state: export one split")
    from hwsched.schedule.sweep import choose_splits, split_ranges, sweep_winners

    check_adaptive_count(count)
    first, extra = _rank_at_link(graph, platforms, link, stages, candidate, user_cuts,
                                 precision, progress)
    boards = _boards_of(platforms, first.assignment)
    grid = _grid_with_link(sweep_mbps, link)
    progress(f"sweeping {link} over {len(grid)} bandwidths from {grid[0]:g} to "
             f"{grid[-1]:g} Mbit/s")
    winners = sweep_winners(graph, boards, link, grid, precision=precision)
    shares = _winner_shares(graph, boards, link, first.cut_positions, winners, grid,
                            sweep_mbps, precision)
    by_share = sorted(shares, key=lambda split: (-shares[split], split))
    kept = choose_splits(first.cut_positions, by_share, count, extra)
    if len(kept) < MIN_ALTERNATIVES:
        raise ExportError(
            f"over {sweep_mbps[0]:g}–{sweep_mbps[1]:g} Mbit/s one split wins everywhere (cut "
            f"positions {','.join(map(str, first.cut_positions))}): nothing to switch to; widen "
            "--sweep-bandwidth or name a second split with --candidate or --cut-positions"
        )
    ranges = split_ranges(graph, boards, link, kept, grid, precision=precision)
    return AdaptiveChoice(tuple(boards), _with_predictions(graph, boards, link, kept, ranges,
                                                           precision),
                          _link_name(link), sweep_mbps,
                          tuple((w, n, shares.get(w, 0.0)) for w, n in winners))


def _rank_at_link(graph, platforms, link, stages, candidate, user_cuts, precision, progress):
    """The rank-1 split at the link's own bandwidth, and the user's splits (checked to be
    splits of its boards)."""
    from hwsched.schedule import rank_splits

    progress(f"ranking {stages}-stage splits on {link}")
    ranked = rank_splits(graph, platforms, link, objective=ADAPTIVE_OBJECTIVE,
                         top=max(candidate or 1, 1), stages=stages, precision=precision)
    if not ranked.candidates:
        raise ExportError(f"no {stages}-stage split of {graph.name!r} over the given boards")
    first = ranked.candidates[0]
    return first, [*_candidate_split(ranked, candidate, first), *_user_split(user_cuts, first)]


def _grid_with_link(sweep_mbps: tuple[float, float, int], link: str) -> tuple[float, ...]:
    """The sweep's log grid plus the link's own bandwidth, where the rank-1 split must hold
    its range even when the sweep lies elsewhere."""
    from hwsched.schedule.sweep import log_grid

    return tuple(sorted({*log_grid(*sweep_mbps), _nominal_mbps(link)}))


def _winner_shares(graph, boards, link, first, winners, grid, sweep_mbps, precision):
    """How much of the swept range each winner holds, between grid points too (finer than
    grid counts); the rank-1 split goes first, so that a winner merely tying with it holds
    nothing."""
    from hwsched.schedule.sweep import range_shares, split_ranges

    contenders = list(dict.fromkeys([first, *(w for w, _ in winners)]))
    ranges = split_ranges(graph, boards, link, contenders, grid, precision=precision)
    return range_shares(ranges, sweep_mbps[0], sweep_mbps[1])


def _link_name(link: str) -> str:
    from hwsched.hardware import load_link

    return load_link(link).name


def _nominal_mbps(link: str) -> float:
    from hwsched.hardware import load_link
    from hwsched.schedule.sweep import BPS_PER_MBPS

    return load_link(link).bandwidth_bps / BPS_PER_MBPS


def _boards_of(platforms: Sequence[str | Platform], assignment: Sequence[str]):
    """The given descriptors (names or files) of the rank-1 split's boards, in its order."""
    given = {load_platform(p).name: p for p in platforms}
    return [given[name] for name in assignment]


def _candidate_split(ranked, candidate: int | None, first) -> list[tuple[int, ...]]:
    if candidate is None:
        return []
    if len(ranked.candidates) < candidate:
        raise ExportError(f"--candidate {candidate}: the ranking has only "
                          f"{len(ranked.candidates)} candidates")
    chosen = ranked.candidates[candidate - 1]
    if chosen.assignment != first.assignment:
        raise ExportError(
            f"--candidate {candidate} runs on {','.join(chosen.assignment)}, but every split "
            f"of an adaptive plan runs on the rank-1 split's boards "
            f"{','.join(first.assignment)}; choose a candidate on those boards"
        )
    return [chosen.cut_positions]


def _user_split(user_cuts: Sequence[int] | None, first) -> list[tuple[int, ...]]:
    if user_cuts is None:
        return []
    if len(user_cuts) != len(first.cut_positions):
        raise ExportError(
            f"cut positions {','.join(map(str, user_cuts))} make {len(user_cuts) + 1} stages, "
            f"but the adaptive plan's splits have {len(first.stages)} (on "
            f"{','.join(first.assignment)})"
        )
    return [tuple(user_cuts)]


def _with_predictions(graph, boards, link, kept, ranges, precision) -> tuple[AdaptiveSplit, ...]:
    """One :class:`AdaptiveSplit` per range, the rank-1 split's range first (the one holding
    the link's own bandwidth), then by bandwidth; a kept split that never wins gets an empty
    range at the link's bandwidth, so the runtime never picks it by bandwidth alone."""
    from hwsched.schedule import evaluate
    from hwsched.schedule.sweep import SplitRange

    nominal = _nominal_mbps(link)
    listed = list(ranges)
    listed += [SplitRange(s, nominal, nominal) for s in kept
               if all(r.cut_positions != s for r in ranges)]
    own = next((r for r in listed if r.cut_positions == kept[0] and r.contains(nominal)),
               next(r for r in listed if r.cut_positions == kept[0]))
    ordered = [own, *sorted((r for r in listed if r is not own),
                            key=lambda r: (r.bandwidth_mbps_low, r.bandwidth_mbps_high))]

    def predicted(cuts: tuple[int, ...]) -> dict[str, Any]:
        chosen = evaluate(graph, boards, link, cuts, precision=precision)
        return {"objective": ADAPTIVE_OBJECTIVE, "link": link, **chosen.to_dict()}

    return tuple(AdaptiveSplit(r.cut_positions, r.bandwidth_mbps_low, r.bandwidth_mbps_high,
                               predicted(r.cut_positions)) for r in ordered)


# -- export ------------------------------------------------------------------------------------
def export_adaptive(
    loaded: Any,
    choice: AdaptiveChoice,
    out_dir: Path,
    progress: Progress | None = None,
    **options: Any,
) -> Plan:
    """Export every split of ``choice`` as a verified chain and write one adaptive plan.

    ``options`` are :func:`~hwsched.export.api.export`'s (precisions, calibration, samples,
    accuracy, micro, cache, …); each split is exported with the same ones, so a stage that two
    splits share converts to the same bytes and is written once."""
    from hwsched.export.api import _check_target

    report = progress or silent
    out_dir = Path(out_dir)
    _check_target(out_dir)  # before anything is converted
    staging = _make_dir(out_dir, "adaptive")
    try:
        exported = _export_splits(loaded, choice, staging, report, options)
        report(f"writing {out_dir}")
        return _assemble(choice, exported, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_dir(out_dir: Path, what: str) -> Path:
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{what}-", dir=out_dir.parent))
    except OSError as error:
        raise ExportError(f"{out_dir}: cannot create the export ({error.strerror})") from None


def _export_splits(loaded, choice: AdaptiveChoice, staging: Path, report: Progress,
                   options: Mapping[str, Any]) -> dict[tuple[int, ...], tuple[Plan, Path]]:
    """Each distinct split exported (and verified) by the chain export into its own folder."""
    from hwsched.export.api import export

    exported: dict[tuple[int, ...], tuple[Plan, Path]] = {}
    distinct = list(dict.fromkeys(s.cut_positions for s in choice.splits))
    for number, split in enumerate(choice.splits):
        if split.cut_positions in exported:
            continue
        report(f"split {len(exported) + 1} of {len(distinct)}: cut positions "
               f"{','.join(map(str, split.cut_positions))}")
        folder = staging / f"split{number}"
        plan = export(loaded, platforms=choice.platforms, out_dir=folder,
                      cut_positions=split.cut_positions, link=choice.link,
                      prediction=split.prediction, progress=report, **options)
        exported[split.cut_positions] = (plan, folder)
    return exported


def split_label(cut_positions: Sequence[int]) -> str:
    """The prefix of a split's stage files.

    >>> split_label((3, 17))
    'cut3-17'
    """
    return "cut" + "-".join(map(str, cut_positions))


class _SharedFiles:
    """Stage files placed into the new directory once per sha256: a later split whose stage
    has the same bytes points at the file already written."""

    def __init__(self, work: Path, out_dir: Path) -> None:
        self.work, self.out_dir = work, out_dir
        self.placed: dict[str, tuple[str, tuple[str, ...]]] = {}

    def place(self, stage: StagePlan, folder: Path, cut_positions: Sequence[int]) -> StagePlan:
        from hwsched.export.api import _inside

        if stage.sha256 not in self.placed:
            prefix = split_label(cut_positions)
            names = tuple(f"{prefix}_{name}" for name in (stage.file, *stage.extra_files))
            for old, new in zip((stage.file, *stage.extra_files), names, strict=True):
                shutil.copyfile(folder / old, _inside(self.work, new, self.out_dir))
            self.placed[stage.sha256] = (names[0], names[1:])
        file, extra = self.placed[stage.sha256]
        return replace(stage, file=file, extra_files=extra)


def _assemble(choice: AdaptiveChoice, exported: Mapping[tuple[int, ...], tuple[Plan, Path]],
              out_dir: Path) -> Plan:
    from hwsched.export.api import _make_readable, _swap_into_place
    from hwsched.export.verify import SAMPLES_FILE

    work = _make_dir(out_dir, "tmp")
    try:
        files = _SharedFiles(work, out_dir)
        alternatives = []
        for number, split in enumerate(choice.splits):
            plan, folder = exported[split.cut_positions]
            stages = tuple(files.place(s, folder, split.cut_positions) for s in plan.stages)
            alternatives.append(Alternative(
                id=number, cut_positions=split.cut_positions,
                bandwidth_mbps_low=split.bandwidth_mbps_low,
                bandwidth_mbps_high=split.bandwidth_mbps_high,
                plan=replace(plan, stages=stages),
            ))
        own = alternatives[0].plan
        top = replace(own, alternatives=tuple(alternatives),
                      prediction={**own.prediction, "rank": 1, "adaptive": choice.summary()})
        # ``hwsched verify DIR`` re-runs the top-level chain on the samples it was proven on
        shutil.copyfile(exported[choice.splits[0].cut_positions][1] / SAMPLES_FILE,
                        work / SAMPLES_FILE)
        save_plan(top, work)
        _make_readable(work)
        _swap_into_place(work, out_dir)
    except OSError as error:
        shutil.rmtree(work, ignore_errors=True)
        raise ExportError(f"{out_dir}: cannot write the export ({error})") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return top
