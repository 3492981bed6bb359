"""``hwsched analyze MODEL``: read a model, enumerate every cut point, and rank the splits of
it over the given platforms and link by predicted throughput, latency or energy."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.table import Table

from hwsched.cli.common import (
    check_hardware,
    non_negative_int,
    positive_int,
    progress_status,
    stages_option,
    stderr_console,
    stdout_console,
)
from hwsched.cli.graphs import (
    GivenLink,
    add_placement_options,
    mapping_link,
    placement_section,
    read_mapping_option,
    resolve_mapping_option,
    same_core_charged,
)
from hwsched.cli.report import read_measured
from hwsched.costs import DEFAULT_MODELS, REGISTRIES
from hwsched.costs.latency import latency_source
from hwsched.costs.profile import load_profile
from hwsched.costs.runtime import load_runtime_cost
from hwsched.cuts import PROXY_RANKING, enumerate_cuts, rank_by_proxy
from hwsched.deployment import PRECISIONS
from hwsched.documents.analysis import AnalysisDocument
from hwsched.errors import DescriptorError
from hwsched.fileio import write_json
from hwsched.hardware import Platform, load_platform, parse_board_list, with_measured_power
from hwsched.load import load_model
from hwsched.power.calibrate import read_calibration
from hwsched.report.analysis import (
    analysis_to_dict,
    attach_accuracy,
    render_accuracy,
    render_cut_table,
    render_model_summary,
)
from hwsched.report.candidates import render_candidates
from hwsched.report.facts import hardware_section
from hwsched.report.html import default_report_path, write_report
from hwsched.schedule import (
    ASSIGN_MODES,
    AUTO_STAGES,
    DEFAULT_LINK,
    DEFAULT_PLATFORMS,
    OBJECTIVES,
    rank_splits,
)
from hwsched.schedule.assign import check_stage_count
from hwsched.schedule.refine import (
    REFINE_BAND,
    REFINE_POOL,
    boundary_bytes,
    pipeline_stage_ms,
    refine_iteratively,
    with_runtime_cost,
)
from hwsched.schedule.sweep import BandwidthSweep, parse_range, region_sentence, sweep_bandwidth
from hwsched.units import MS_PER_S

DEFAULT_MODEL = "efficientnet_b0"
#: Calibration samples for int8 stages built for --refine (timing only needs plausible ranges).
REFINE_CALIBRATION_SAMPLES = 16
#: How ``--refine`` measures a split: its stages timed whole, each beside its partner
#: (``paired``), or the split run as a pipeline by the runners (``pipeline``).
REFINE_BY = ("paired", "pipeline")
#: Frames a ``--refine-by pipeline`` run of one split delivers.
DEFAULT_REFINE_FRAMES = 200
#: Verification samples of a split exported to be run by ``--refine-by pipeline``.
REFINE_VERIFY_SAMPLES = 2
#: Fewest frames a ``--refine-by pipeline`` run may deliver: a steady state after the warm-up.
MIN_REFINE_FRAMES = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="rank where to cut a model over boards joined by a link",
        description="Read MODEL (a zoo name, .keras/.h5 or .tflite file), enumerate every cut "
        "point, and rank every split over the platforms by predicted cost. "
        f"Defaults: --platforms {','.join(DEFAULT_PLATFORMS)} --link {DEFAULT_LINK} "
        "--objective throughput.",
    )
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                        help=f"zoo name or model file (default: {DEFAULT_MODEL})")
    parser.add_argument("--weights", metavar="FILE", help="load trained weights into a zoo model")
    parser.add_argument("--platforms", default=",".join(DEFAULT_PLATFORMS),
                        metavar="A,B[,C…]",
                        help="the boards: platform names or descriptor files in pipeline "
                        "order, any name any number of times (rpi4*3 = rpi4,rpi4,rpi4) "
                        f"(default: {','.join(DEFAULT_PLATFORMS)}; see 'hwsched hardware "
                        "list')")
    parser.add_argument("--stages", type=stages_option, default=AUTO_STAGES, metavar="auto|K",
                        help="how many of the boards to use: auto picks the best number from 1 "
                        "to all of them (default); K uses exactly K (fixed: the first K)")
    parser.add_argument("--link", default=DEFAULT_LINK, metavar="LINK", action=GivenLink,
                        help=f"link name or descriptor file (default: {DEFAULT_LINK}; given, "
                        "it also wins over a --mapping file's link)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="throughput",
                        help="what rank 1 optimizes (default: throughput)")
    parser.add_argument("--assign", choices=ASSIGN_MODES, default="fixed",
                        help="fixed: stages follow --platforms order; auto: also choose which "
                        "platform takes which stage")
    parser.add_argument("--profile", action="append", default=[], metavar="FILE",
                        help="measured profile (from 'hwsched profile'); repeat per platform")
    parser.add_argument("--power-calibration", action="append", default=[], metavar="FILE",
                        help="measured power of a platform (from 'hwsched power calibrate'); "
                        "replaces its descriptor's active and idle power; repeatable")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="run every platform in this precision (fp32, fp16, int8) instead of "
                        "each platform's default")
    for kind, registry in REGISTRIES.items():
        parser.add_argument(f"--{kind}-model", choices=sorted(registry), metavar="NAME",
                            help=f"{kind} cost model: {', '.join(sorted(registry))} "
                            f"(default: {DEFAULT_MODELS[kind]})")
    parser.add_argument("--top", type=positive_int, default=10, metavar="N",
                        help="rows to show in the terminal tables (default: 10)")
    parser.add_argument("--max-crossing", type=positive_int, default=None, metavar="K",
                        help="only consider cuts with at most K crossing tensors")
    parser.add_argument("--compress", default="fp32", metavar="LEVEL[,LEVEL…]",
                        help="link compression levels each link may use: fp32 (as made), fp16, "
                        "int8 (default: fp32). fp16 is allowed as is; int8 only with a "
                        "measured accuracy drop (--compression-accuracy)")
    parser.add_argument("--max-accuracy-drop", type=float, default=0.5, metavar="PP",
                        help="with --compress: leave out levels whose measured top-1 drop is "
                        "larger, in percentage points (default: 0.5)")
    parser.add_argument("--compression-accuracy", metavar="PLAN",
                        help="plan.json (or its directory) of 'hwsched export --compress auto' "
                        "of this model: the measured drop of each level")
    parser.add_argument("--show-cuts", action="store_true",
                        help="also print the hardware-free ranking of single cut points")
    parser.add_argument("--accuracy", action="store_true",
                        help="export the best split's stages in every precision combination "
                        "and measure their real top-1 accuracy (digits models use the shipped "
                        "digits test split; others need --dataset)")
    parser.add_argument("--accuracy-top", type=positive_int, default=1, metavar="K",
                        help="with --accuracy: measure the K best distinct splits (default: 1)")
    parser.add_argument("--dataset", metavar="DIR",
                        help="labeled data for --accuracy: an image-folder dataset or .npz")
    parser.add_argument("--tiles", action="store_true",
                        help="also plan fused-tile splits (several boards share the layers of "
                             "one frame; latency of one frame), add the best as 'tiles' and "
                             "rank each root board's plan among the candidates (export one "
                             "with --analysis FILE --candidate RANK)")
    parser.add_argument("--json", metavar="FILE", help="write the full analysis as JSON")
    parser.add_argument("--report", metavar="FILE",
                        help="write the HTML report here (default: reports/<model>.html)")
    parser.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    parser.add_argument("--emulation", metavar="FILE",
                        help="show this 'hwsched emulate --json' result in the report")
    parser.add_argument("--power-json", metavar="FILE",
                        help="show this 'hwsched power energy --json' result in the report")
    add_placement_options(parser)
    parser.add_argument("--sweep-bandwidth", metavar="LO:HI[:N]",
                        help="also rank at N link bandwidths on a log grid from LO to HI Mbit/s "
                        "(default N: 13) and find the lowest bandwidth at which splitting "
                        "beats one board (the acceleration region's edge)")
    parser.add_argument("--refine", type=positive_int, metavar="K",
                        help="measure K splits here (as --refine-by says): rank 1 and K-1 "
                        "spread by cut position over the splits whose predicted period (or "
                        f"latency, energy) is at most {1 + REFINE_BAND:g}x rank 1's (at least "
                        f"the {REFINE_POOL}K best); re-rank on the measured times, following "
                        "the corrected ranking until its rank 1 is measured")
    parser.add_argument("--refine-by", choices=REFINE_BY, default=None,
                        help="how --refine measures a split: 'paired' (default) times each "
                        "stage whole beside its partner and adds the runner's modelled cost; "
                        "'pipeline' exports the split and runs it with the runners, as "
                        "'hwsched emulate' does, and takes each stage's core's CPU per frame, "
                        "the busiest stage's the period the run sustained (throughput only; "
                        "links as made)")
    parser.add_argument("--refine-frames", type=positive_int, metavar="N", default=None,
                        help="frames each split runs with --refine-by pipeline (default: "
                        f"{DEFAULT_REFINE_FRAMES}, at least {MIN_REFINE_FRAMES})")
    parser.add_argument("--refine-passes", type=positive_int, metavar="N", default=1,
                        help="measure every refined split N times (1 or even), each pass in the "
                        "reverse order of the one before (a drift of the machine's speed then "
                        "weighs on every split alike), and rank on the means (default: 1)")
    parser.add_argument("--refine-confirm", type=non_negative_int, metavar="N", default=None,
                        help="then measure the split ranked first N times more and give it "
                        "that figure: the best of several noisy measurements is on average a "
                        "lucky one, so the figure it was chosen on over-promises (it stays "
                        "first; default: as many as --refine-passes; 0: off)")
    parser.add_argument("--compiled", metavar="DIR", type=Path,
                        help="an export whose Edge TPU stages were compiled: price its split's "
                        "compiled stages from the compiler's reports (CPU ops, USB hand-offs, "
                        "streamed parameters) and rank it again among the candidates")
    parser.add_argument("--runtime-cost", metavar="FILE", type=Path,
                        help="charge every split the runner's hand-off cost measured by "
                        "'hwsched profile --hop-cost FILE' (each hop's sending and receiving "
                        "core) and re-rank; --refine and --sweep-bandwidth use it too; its "
                        "same_core section prices a stage-graph hop whose two ends share one "
                        "CPU (a mapping's cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.platforms = list(parse_board_list(args.platforms))  # cheap checks before the model
    check_stage_count(args.stages, len(args.platforms))
    _check_refine_options(args)
    err = stderr_console()
    measured = _read_measured(args)  # fail on a bad file before the slow part, not after
    check_hardware(args.platforms, args.link)
    profiles = [load_profile(path) for path in args.profile]
    _note_unpaced_profiles(args, profiles, err)
    runtime_cost = load_runtime_cost(args.runtime_cost) if args.runtime_cost else None
    platforms = _platforms_with_measured_power(args.platforms, args.power_calibration)
    mapping = read_mapping_option(args)
    sweep_range = parse_range(args.sweep_bandwidth) if args.sweep_bandwidth else None
    compression = _compression_levels(args)  # a bad level or plan fails before the model
    args.compress_levels = tuple(compression["levels"])  # the sweep ranks with them too
    compiled_plan, compiled = _read_compiled(args), None  # before the model too
    _check_graph_links(args, mapping)
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        progress("enumerating cut points")
        graph = loaded.graph
        mapped = resolve_mapping_option(mapping, graph)  # a bad layer name fails here, first
        cuts = enumerate_cuts(graph)
        ranked = rank_by_proxy(cuts, args.max_crossing)
        progress(f"scheduling over {', '.join(args.platforms)} via {args.link}")
        schedule = rank_splits(
            graph,
            platforms,
            args.link,
            objective=args.objective,
            assign=args.assign,
            profile=profiles or None,
            max_crossing=args.max_crossing,
            precision=args.precision,
            latency_model=args.latency_model,
            memory_model=args.memory_model,
            transfer_model=args.transfer_model,
            energy_model=args.energy_model,
            stages=args.stages,
            compression=compression["levels"],
            runtime=runtime_cost,
        )
        if compiled_plan is not None:
            schedule, compiled = _with_compiled(graph, schedule, compiled_plan, platforms, args,
                                                profiles, err, runtime_cost)
    _check_compression_model(args, compression, graph.name)
    out = stdout_console()
    render_model_summary(out, graph, cuts)
    if args.show_cuts:
        render_cut_table(out, graph, ranked, args.top, PROXY_RANKING)
    render_candidates(schedule, out, rows=args.top)
    document = analysis_to_dict(graph, cuts, ranked, PROXY_RANKING, args.max_crossing)
    document.update({k: v for k, v in schedule.to_dict().items() if k != "model"})
    document["hardware"] = hardware_section(platforms, args.link)
    document["compression"] = compression
    document["runtime_cost"] = runtime_cost_section(args.runtime_cost, runtime_cost)
    for level, reason in compression["excluded"].items():
        err.print(f"link compression {level} left out: {reason}")
    priced: list = []  # the stage-graph placements priced, for same_core_charged
    document.update(
        placement_section(args, mapped, graph, platforms, schedule, profiles, out, err, priced)
    )
    if runtime_cost is not None:
        document["runtime_cost"]["same_core_charged"] = same_core_charged(graph, priced,
                                                                          runtime_cost)
    if "graph_candidates" in document:
        _note_graph_wire(compression, out)
    if compiled is not None:
        from hwsched.export.edgetpu import mark_compiled

        mark_compiled(document, compiled)
    mark_latency_sources(document)
    if sweep_range is not None:
        _attach_sweep(document, graph, platforms, profiles, sweep_range, args, err, out,
                      runtime_cost)
    if args.refine:
        document["refinement"] = _refine(loaded, schedule, args, platforms, err,
                                         runtime_cost).to_dict()
        _render_refinement(out, document["refinement"])
    if args.accuracy:
        results = _measure_accuracy(loaded, schedule, args, err)
        for result in results:
            render_accuracy(out, result)
        attach_accuracy(document, results)
    if args.tiles:
        measuring = args.latency_model in (None, "measured")  # as the chain splits price
        document["tiles"] = _tiles(out, graph, platforms, args, document, runtime_cost,
                                   profiles if measuring else ())
        _mark_charged_tiles(document)
    document = AnalysisDocument.from_dict(document).to_dict()  # written through its record
    if args.json:
        err.print(f"wrote {write_json(args.json, document)}")
    if not args.no_report:
        path = args.report or default_report_path(document["model"])
        err.print(f"report: {write_report(path, document, *measured)}")
    return 0


def _compression_levels(args: argparse.Namespace) -> dict[str, Any]:
    """``--compress`` levels the search may use, after the accuracy gate
    (:func:`hwsched.compression.allowed_levels`): JSON ``compression`` = {requested, levels,
    excluded, max_accuracy_drop_pp, accuracy_from, measured_model}."""
    from hwsched.compression import allowed_levels
    from hwsched.errors import ScheduleError
    from hwsched.schedule.context import compression_levels

    requested = compression_levels([x.strip() for x in args.compress.split(",") if x.strip()])
    if not args.max_accuracy_drop >= 0:
        raise ScheduleError(f"--max-accuracy-drop {args.max_accuracy_drop}: must be >= 0")
    measured, model = None, None
    if args.compression_accuracy:
        from hwsched.deployment import load_plan

        plan = load_plan(args.compression_accuracy)
        if plan.verification is None or not plan.verification.compression:
            raise ScheduleError(f"{args.compression_accuracy}: the plan has no measured "
                                "compression accuracy (export it with --compress auto)")
        measured, model = plan.verification.compression, plan.model
    levels, excluded = allowed_levels(requested, measured, args.max_accuracy_drop)
    return {"requested": list(requested), "levels": list(levels) or ["fp32"],
            "excluded": excluded, "max_accuracy_drop_pp": args.max_accuracy_drop,
            "accuracy_from": args.compression_accuracy, "measured_model": model}


def runtime_cost_section(path: Path | None, cost) -> dict[str, Any]:
    """JSON ``runtime_cost``: whether every candidate's times hold the runner's hand-off cost
    (``--runtime-cost``), and which file and terms, so ``export --analysis`` predicts a
    candidate on the same basis as the ranking that listed it (``same_core_charged`` is added
    once the stage graphs are priced: :func:`hwsched.cli.graphs.same_core_charged`).

    >>> runtime_cost_section(None, None)
    {'charged': False}
    """
    if cost is None:
        return {"charged": False}
    from hwsched.deployment import file_sha256

    return {"charged": True, "file": str(path), "sha256": file_sha256(Path(path)),
            "cost": cost.to_dict()}


def _check_refine_options(args: argparse.Namespace) -> None:
    """``--refine-by``/``--refine-frames``/``--refine-passes`` need ``--refine``; passes are 1
    or even; frames only run a pipeline, at least ``MIN_REFINE_FRAMES`` of them, and
    ``--refine-by`` is ``paired`` or ``pipeline`` (:func:`check_refine_by`); a pipeline
    measures a throughput, links as made."""
    from hwsched.errors import ScheduleError

    if not args.refine and (args.refine_by or args.refine_frames or args.refine_passes > 1
                            or args.refine_confirm is not None):
        given = ("--refine-by" if args.refine_by else "--refine-frames" if args.refine_frames
                 else "--refine-passes" if args.refine_passes > 1 else "--refine-confirm")
        raise ScheduleError(f"{given} says how --refine measures: give --refine K too")
    if args.refine_passes > 1 and args.refine_passes % 2:
        raise ScheduleError(f"--refine-passes {args.refine_passes}: 1 or an even number, each "
                            f"pass paired with one in the reverse order (an odd number leaves "
                            f"a drift on the splits measured last)")
    if args.refine_frames and args.refine_by != "pipeline":
        raise ScheduleError("--refine-frames counts the frames of --refine-by pipeline runs: "
                            "give --refine-by pipeline too")
    if args.refine_by == "pipeline":
        check_refine_by("pipeline", args.objective, args.refine_frames or DEFAULT_REFINE_FRAMES)
        levels = [level for level in args.compress.split(",") if level.strip() != "fp32"]
        if levels:
            raise ScheduleError(f"--refine-by pipeline runs links as made (fp32); --compress "
                                f"{args.compress} would rank splits it cannot run so: use "
                                f"--refine-by paired")


def _check_graph_links(args: argparse.Namespace, mapping) -> None:
    """Stage graphs (``--placement graph``, ``--tiles``, a ``--mapping``) send tensors as made:
    over a link that forces an encoding they cannot run, so they are not priced there."""
    from hwsched.errors import ScheduleError
    from hwsched.export.api import check_as_made_link

    if args.placement == "graph" or args.tiles:
        check_as_made_link(args.link, "--placement graph" if args.placement == "graph"
                           else "--tiles", ScheduleError)
    if mapping is not None:
        check_as_made_link(mapping_link(mapping, args), f"--mapping {args.mapping}",
                           ScheduleError)


def _note_unpaced_profiles(args: argparse.Namespace, profiles, err) -> None:
    """One line per profile a latency ranking uses as it is although it was timed back to
    back: one frame at a time a stage computes slower (see :mod:`hwsched.runtime.profile`)."""
    if args.objective != "latency":
        return
    for path, profile in zip(args.profile, profiles, strict=True):
        if not profile.gap_ms:
            err.print(f"note: {path} was timed back to back (gap_ms "
                      f"{'not recorded' if profile.gap_ms is None else 0}); one frame at a "
                      "time computes slower: for a latency profile use 'hwsched profile "
                      "--gap-ms MS'", markup=False, highlight=False, soft_wrap=True)


def _note_graph_wire(compression: dict[str, Any], out) -> None:
    """``compression.graph_levels``: graph candidates are priced with their edges as made (a
    stage-graph plan cannot send them compressed), and one line says so when the chain
    candidates ranked beside them may be compressed."""
    from hwsched.report.placements import GRAPH_WIRE_LEVEL, graph_wire_note

    compression["graph_levels"] = [GRAPH_WIRE_LEVEL]
    note = graph_wire_note(compression["levels"])
    if note is not None:
        compression["graph_note"] = note
        out.print(note, markup=False, highlight=False)


def _mark_charged_tiles(document: dict[str, Any]) -> None:
    """``runtime_cost.tiles_charged``: with ``--runtime-cost`` the tiled candidates are
    charged the runner's hand-off cost as the chain and graph candidates are
    (:mod:`hwsched.schedule.tiles`), so their joint ranks compare like with like. (Analyses
    from before this was so say ``false``; ``export --analysis`` then predicts them
    uncharged.)"""
    section = document["runtime_cost"]
    if section["charged"]:
        section["tiles_charged"] = True


def _check_compression_model(args: argparse.Namespace, compression: dict, model: str) -> None:
    measured = compression["measured_model"]
    if measured is not None and measured != model:
        from hwsched.errors import ScheduleError

        raise ScheduleError(f"{args.compression_accuracy}: measured compression of model "
                            f"{measured!r}, not of {model!r}; export {model} --compress auto")


def mark_latency_sources(document: dict) -> None:
    """Name where each stage's time came from (``roofline`` or ``profile``), from the latency
    model each platform was costed with; a source already set (``measured``) is kept."""
    models = document.get("cost_models", {})
    for run in [*document.get("candidates", []), *document.get("baselines", [])]:
        for stage in run["stages"]:
            model = models.get(f"latency:{stage['platform']}", "roofline")
            stage.setdefault("latency_source", latency_source(model))


def _cost_options(args: argparse.Namespace, profiles) -> dict:
    return {
        "assign": args.assign,
        "profile": profiles or None,
        "max_crossing": args.max_crossing,
        "precision": args.precision,
        "latency_model": args.latency_model,
        "memory_model": args.memory_model,
        "transfer_model": args.transfer_model,
        "energy_model": args.energy_model,
        "compression": getattr(args, "compress_levels", ("fp32",)),
    }


def _attach_sweep(document, graph, platforms, profiles, sweep_range, args, err, out,
                  runtime_cost=None) -> None:
    """Rank at every bandwidth of the grid; add ``bandwidth_sweep`` and its edge."""
    lo, hi, points = sweep_range
    with progress_status(err, f"sweeping {args.link} from {lo:g} to {hi:g} Mbit/s"):
        sweep = sweep_bandwidth(graph, platforms, args.link, lo, hi, points,
                                runtime=runtime_cost, **_cost_options(args, profiles))
    document["bandwidth_sweep"] = [point.to_dict() for point in sweep.points]
    document["bandwidth_sweep_edge"] = sweep.edge_dict()
    render_sweep(out, sweep)


def render_sweep(out, sweep: BandwidthSweep) -> None:
    """The sweep as a terminal table and the one sentence the region comes down to."""
    table = Table(title=f"acceleration region over {sweep.link} (best single board: "
                  f"{sweep.best_baseline}, {sweep.baseline_throughput_ips:.1f} inf/s)",
                  title_justify="left")
    for column in ("Mbit/s", "best cut positions", "inf/s", "gain"):
        table.add_column(column, justify="right")
    for p in sweep.points:
        cuts = ",".join(map(str, p.best_cut_positions)) or "one board"
        table.add_row(f"{p.bandwidth_mbps:.4g}", cuts, f"{p.throughput_ips:.1f}",
                      f"{p.gain:.3f}×")
    out.print(table)
    out.print(region_sentence(sweep.edge_mbps))


def _refine(loaded, schedule, args, platforms, err, runtime_cost=None):
    with progress_status(err, "refining on measured stage times") as progress:
        # with a cost file the search charged every stage the runner's cost
        return refine_by_measurement(loaded, schedule.candidates, schedule.objective,
                                     args.refine, runtime=runtime_cost, progress=progress,
                                     charged=runtime_cost is not None,
                                     by=args.refine_by or "paired",
                                     frames=args.refine_frames or DEFAULT_REFINE_FRAMES,
                                     platforms=platforms, link=args.link,
                                     passes=args.refine_passes,
                                     confirm=(args.refine_passes if args.refine_confirm is None
                                              else args.refine_confirm))


def refine_by_measurement(loaded, candidates, objective: str, k: int, runtime=None,
                          progress=None, speeds=None, charged: bool = False,
                          by: str = "paired", frames: int = DEFAULT_REFINE_FRAMES,
                          platforms=(), link: str | None = None, passes: int = 1,
                          confirm: int = 0):
    """Measure splits on this machine and re-rank on the measured stage times: K distinct
    splits first (rank 1 and K-1 spread over those predicted within ``REFINE_BAND`` of it),
    then the splits the profile corrected at those measurements ranks best, until that rank 1
    is measured
    (:func:`~hwsched.schedule.refine.refine_iteratively`).

    ``by="paired"``: each stage timed whole while its partner stage runs on the other core,
    plus the runner's per-frame cost (``runtime``, measured on loopback when not given).
    ``by="pipeline"`` (throughput only): the split exported and run by the runners for
    ``frames`` frames, as ``hwsched emulate`` runs it; each stage's time is the CPU per frame
    of everything on its core — the stage, the runner's own work, the source or sink beside
    it —, the busiest stage's the run's measured period
    (:func:`~hwsched.schedule.refine.pipeline_stage_ms`), so a measured split's period is
    what it sustained. ``platforms`` and ``link``: the descriptors the candidates were
    ranked with (a descriptor file is not in the registry), for the export.

    ``charged``: the candidates' stage times already hold the runner's cost (``analyze
    --runtime-cost``). ``speeds`` caps stage k's board at that fraction of a core while it is
    measured (as ``emulate --board-speed`` runs them). ``passes``: measure every split that
    many times, each pass in the reverse order of the one before, and rank on the means (this
    machine's speed drifts by a fifth over minutes). ``confirm``: then measure rank 1 that
    many times more and give it that figure (the winner's curse;
    :func:`~hwsched.schedule.refine.refine_iteratively`)."""
    from hwsched.runtime.hopcost import measure_runtime_cost
    from hwsched.runtime.profile import time_stages_paired

    check_refine_by(by, objective, frames)
    report = progress or (lambda _m: None)
    if runtime is None:
        report("measuring the runner's per-frame cost on loopback")
        runtime = measure_runtime_cost()
    graph = loaded.graph
    descriptors = {p.name: p for p in platforms}

    def runtime_ms(candidate) -> list[float]:
        with_cost = with_runtime_cost(graph, candidate, runtime)
        return [b.cost.latency_ms - a.cost.latency_ms
                for a, b in zip(candidate.stages, with_cost.stages, strict=True)]

    def paired(candidate):
        report(f"exporting the stages of split {list(candidate.cut_positions)}")
        busy = time_stages_paired(split_stage_bytes(loaded, candidate, report), progress=report,
                                  speeds=speeds)
        extra = runtime_ms(candidate)
        extras = tuple({"busy_ms": b, "runtime_ms": e}
                       for b, e in zip(busy, extra, strict=True))
        # measured on the candidates' own basis: with the runner's cost when they carry it
        return ([b + e for b, e in zip(busy, extra, strict=True)] if charged else busy), extras

    def in_pipeline(candidate):
        caps = list(speeds)[:len(candidate.stages)] if speeds else None
        run = run_split(loaded, candidate, frames, caps, report, descriptors, link)
        extra = runtime_ms(candidate)
        busy = [stage.busy_ms for stage in run.stages]
        own = [stage.cpu_ms_per_frame for stage in run.stages]
        cores = run.core_cpu_ms_per_frame()
        with_cost = pipeline_stage_ms(own, cores, busy, extra, caps,
                                      MS_PER_S / run.throughput_ips
                                      if run.throughput_ips > 0 else None)
        extras = tuple({"busy_ms": b, "runtime_ms": e, "stage_cpu_ms_per_frame": o,
                        "core_cpu_ms_per_frame": c,
                        "measured_period_ms": MS_PER_S / run.throughput_ips,
                        "measured_throughput_ips": run.throughput_ips}
                       for b, e, o, c in zip(busy, extra, own, cores, strict=True))
        # on the candidates' basis: less the runner's modelled cost, which the charge adds
        # back when they do not carry it (never below 0: the charge then exceeds the load)
        return (with_cost if charged else [max(t - e, 0.0) for t, e in
                                           zip(with_cost, extra, strict=True)]), extras

    def charge(candidate):
        if not charged:
            return with_runtime_cost(graph, candidate, runtime)
        sizes = boundary_bytes(graph, candidate)  # stage times hold it; the latency the wire
        return replace(candidate, latency_ms=candidate.latency_ms + runtime.wire_ms(sizes[0])
                       + runtime.wire_ms(sizes[-1]))

    refinement = refine_iteratively(candidates, k, in_pipeline if by == "pipeline" else paired,
                                    objective, charge, repeats=passes, confirm=confirm)
    return replace(refinement, measured_by=by,
                   frames=frames if by == "pipeline" else None)


def check_refine_by(by: str, objective: str, frames: int) -> None:
    """``--refine-by pipeline`` streams frames back to back: it measures a throughput."""
    from hwsched.errors import ScheduleError

    if by not in REFINE_BY:
        raise ScheduleError(f"--refine-by {by}: one of {', '.join(REFINE_BY)}")
    if by == "pipeline" and objective != "throughput":
        raise ScheduleError(f"--refine-by pipeline measures splits streaming frames back to "
                            f"back, a throughput: use it with --objective throughput, not "
                            f"{objective} (or --refine-by paired)")
    if by == "pipeline" and frames < MIN_REFINE_FRAMES:
        raise ScheduleError(f"--refine-frames {frames}: at least {MIN_REFINE_FRAMES}, so a run "
                            f"has a steady state after its warm-up")


def run_split(loaded, candidate, frames: int, speeds=None, progress=None, descriptors=None,
              link: str | None = None):
    """The candidate exported (each stage in its precision, on its board, its links in their
    level) into a temporary directory and run there by the runners, as ``hwsched emulate``
    runs it (loopback; stage k on core k modulo the CPUs, capped at ``speeds[k]`` of a core
    when given): the :class:`~hwsched.runtime.emulate.EmulationResult`. ``descriptors``: the
    platforms by name (those not given are looked up by name); ``link``: the link's name or
    file (default: the candidate's link by name)."""
    import tempfile

    from hwsched.errors import HwschedError, ScheduleError
    from hwsched.export import export
    from hwsched.runtime.emulate import EmulationConfig, emulate

    report = progress or (lambda _m: None)
    cuts = list(candidate.cut_positions)
    boards = [(descriptors or {}).get(name, name) for name in candidate.assignment]
    try:
        # a directory that will not go away must not throw the measurement away
        with tempfile.TemporaryDirectory(prefix="hwsched-refine-",
                                         ignore_cleanup_errors=True) as tmp:
            plan_dir = Path(tmp) / "plan"
            report(f"exporting split {cuts} to run it")
            export(loaded, boards, plan_dir, cut_positions=cuts,
                   precisions=[stage.cost.precision for stage in candidate.stages],
                   samples=REFINE_VERIFY_SAMPLES,
                   calibration_samples=REFINE_CALIBRATION_SAMPLES,
                   link=link or (candidate.links[0].link if candidate.links else ""),
                   prediction=candidate.to_dict(), progress=report)
            report(f"running split {cuts} for {frames} frames")
            return emulate(plan_dir, EmulationConfig(
                frames=frames, board_speed=tuple(speeds) if speeds else ()))
    except (HwschedError, OSError) as error:  # a full disk or temp directory: one line too
        raise ScheduleError(f"--refine-by pipeline: split {cuts}: {error}") from error


def split_stage_bytes(loaded, candidate, progress) -> list[bytes]:
    """The candidate's stages as TFLite, built by the exporter (each in its precision)."""
    from hwsched.export.api import build_stages
    from hwsched.export.cache import StageCache
    from hwsched.export.data import default_source
    from hwsched.export.stages import signature_names, slice_stages

    graph = loaded.graph
    precisions = [stage.cost.precision for stage in candidate.stages]
    return build_stages(loaded, slice_stages(graph, candidate.cut_positions), precisions,
                        signature_names(list(graph.tensors)), default_source(graph),
                        REFINE_CALIBRATION_SAMPLES, StageCache(enabled=True), progress)


def _render_refinement(out, refinement: dict) -> None:
    title = ("refined: each split run by the runners here, each stage its core's CPU per "
             f"frame ({refinement.get('frames')} frames)"
             if refinement.get("measured_by") == "pipeline" else
             "refined: stages timed whole here, each beside its partner "
             "(+ runtime per-frame cost)")
    if refinement.get("passes", 1) > 1:
        title += f"; the mean of {refinement['passes']} passes, every other one reversed"
    if refinement.get("confirm_passes"):
        title += (f"; ✓: measured {refinement['confirm_passes']} more time(s) after it was "
                  "ranked first, that figure given (chosen on: the figure in brackets)")
    table = Table(title=title, title_justify="left")
    for column in ("rank", "was", "round", "cut positions", "stage ms (predicted → measured)",
                   "inf/s (predicted → measured)"):
        table.add_column(column, justify="right")
    for row in refinement["candidates"]:
        stages = " · ".join(  # the boards too: under --assign auto the same cuts recur
            f"{s['platform']} {s['predicted_latency_ms']:.2f} → {s['latency_ms']:.2f}"
            for s in row["stages"])
        figure = f"{row['predicted_throughput_ips']:.1f} → {row['throughput_ips']:.1f}"
        if row.get("confirmed"):
            figure += f" ✓ ({row['selection_throughput_ips']:.1f})"
        table.add_row(str(row["rank"]), str(row["predicted_rank"]),
                      str(row.get("refine_round", "")),
                      ",".join(map(str, row["cut_positions"])), stages, figure)
    out.print(table)


def _measure_accuracy(loaded, schedule, args, err) -> list[dict]:
    """Split accuracy of the top candidates' cuts, every precision combination each."""
    from hwsched.export.accuracy import split_accuracy

    positions: list[tuple[int, ...]] = []
    for candidate in schedule.candidates:
        if candidate.cut_positions not in positions:
            positions.append(candidate.cut_positions)
        if len(positions) == args.accuracy_top:
            break
    results = []
    with progress_status(err, "measuring split accuracy") as progress:
        for cut_positions in positions:
            results.append(
                split_accuracy(loaded, cut_positions, dataset=args.dataset, progress=progress)
            )
    return results


def _read_compiled(args: argparse.Namespace):
    """``--compiled DIR``'s plan (one line when it holds no compiled Edge TPU stage)."""
    if args.compiled is None:
        return None
    from hwsched.export.edgetpu import read_compiled

    return read_compiled(args.compiled)


def _with_compiled(graph, schedule, plan, platforms, args, profiles, err, runtime_cost=None):
    """The ranking with ``--compiled DIR``'s split priced from its compiler reports and ranked
    again (:mod:`hwsched.export.edgetpu`); says where it moved."""
    from hwsched.costs import get_model
    from hwsched.errors import ScheduleError
    from hwsched.export.edgetpu import compiled_split, find_split, with_compiled
    from hwsched.schedule import evaluate

    split = compiled_split(graph, plan, platforms, str(args.compiled))
    listed = find_split(schedule, split)
    given = {p.name: p for p in platforms}
    if not set(split.platforms) <= set(given):
        raise ScheduleError(f"--compiled {args.compiled}: its boards "
                            f"{', '.join(split.platforms)} are not all in --platforms")
    options = {k: v for k, v in _cost_options(args, profiles).items() if k != "assign"}
    boards = [given[n] for n in split.platforms]
    if listed is None:
        listed = evaluate(graph, boards, args.link, split.cut_positions, runtime=runtime_cost,
                          **options)
    if runtime_cost is not None:  # the compiler prices compute; the runner's share stays
        bare = evaluate(graph, boards, args.link, split.cut_positions, **options)
        shares = [a.cost.latency_ms - b.cost.latency_ms
                  for a, b in zip(listed.stages, bare.stages, strict=True)]
        split = dataclasses.replace(split, stage_ms={
            k: ms + shares[k] for k, ms in split.stage_ms.items()})
    energy_model = get_model("energy", args.energy_model)
    ranking = with_compiled(schedule, split, listed, [energy_model(b) for b in boards])
    chosen = find_split(ranking, split)
    changes = ", ".join(f"stage {k} {listed.stages[k].cost.latency_ms:.3f} → {ms:.3f} ms"
                        for k, ms in sorted(split.stage_ms.items()))
    err.print(f"--compiled {args.compiled}: split {list(split.cut_positions)} on "
              f"{', '.join(split.platforms)} priced from the Edge TPU compiler's report "
              f"({changes}): rank {chosen.rank} of {len(ranking.candidates)}, "
              f"{chosen.throughput_ips:.1f} inferences/s")
    return ranking, split


def _platforms_with_measured_power(names: list[str], calibrations: list[str]) -> list[Platform]:
    """Platform descriptors, with active/idle power replaced where a calibration measured it."""
    platforms = [load_platform(name) for name in names]
    for path in calibrations:
        measured = read_calibration(path)
        matches = [i for i, p in enumerate(platforms) if p.name == measured.platform]
        if not matches:
            raise DescriptorError(
                f"{path}: calibrates platform {measured.platform!r}, which is not among "
                f"--platforms {','.join(p.name for p in platforms)}"
            )
        for i in matches:
            platforms[i] = with_measured_power(
                platforms[i], measured.active_power_mw, measured.idle_power_mw, str(path)
            )
    return platforms


def _read_measured(args: argparse.Namespace) -> tuple[Any, Any]:
    return read_measured(args.emulation, args.power_json)


def _tiles(out: Any, graph: Any, platforms: list[Platform], args: argparse.Namespace,
           document: dict, runtime_cost=None, profiles=()) -> dict:
    """``tiles`` (the least-latency tiled plan) and the tiled candidates, merged into the
    document's ``candidates`` (:mod:`hwsched.schedule.tiles`), charged ``runtime_cost``
    (``--runtime-cost``) and priced from ``profiles`` (``--profile``) as the chain splits
    are."""
    from hwsched.hardware import load_link
    from hwsched.schedule.context import profile_for
    from hwsched.schedule.tiles import add_tiled_candidates, tiled_candidate_lines
    from hwsched.tiles.summary import plan_for_platforms, tiling_lines, tiling_to_dict

    link = load_link(args.link)
    found = add_tiled_candidates(document, graph, platforms, link, args.precision,
                                 args.objective, runtime_cost, profiles)
    io_ms = 0.0  # a charged candidate's input and output hops, as its latency holds them
    if found:
        best = min(found, key=lambda c: c.latency_ms)  # the first of equals: the earlier root
        coster, plan, io_ms = best.coster, best.plan, best.io_core_ms + best.io_wire_ms
    else:
        coster, plan = plan_for_platforms(graph, platforms, link, args.precision,
                                          [profile_for(p.name, profiles) for p in platforms])
    tiles = tiling_to_dict(coster, plan, io_ms)
    for line in [*tiling_lines(tiles), *tiled_candidate_lines(document)]:
        out.print(line, markup=False, highlight=False)
    return tiles
