"""``hwsched analyze MODEL``: read a model, enumerate every cut point, and rank the splits of
it over the given platforms and link by predicted throughput, latency or energy."""

from __future__ import annotations

import argparse
from typing import Any

from hwsched.cli.common import (
    check_hardware,
    positive_int,
    progress_status,
    stages_option,
    stderr_console,
    stdout_console,
)
from hwsched.cli.graphs import add_placement_options, placement_section, read_mapping_option
from hwsched.cli.report import read_measured
from hwsched.costs import DEFAULT_MODELS, REGISTRIES
from hwsched.costs.profile import load_profile
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

DEFAULT_MODEL = "efficientnet_b0"


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
    parser.add_argument("--link", default=DEFAULT_LINK, metavar="LINK",
                        help=f"link name or descriptor file (default: {DEFAULT_LINK})")
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
                             "one frame; latency of one frame) and add them as 'tiles'")
    parser.add_argument("--json", metavar="FILE", help="write the full analysis as JSON")
    parser.add_argument("--report", metavar="FILE",
                        help="write the HTML report here (default: reports/<model>.html)")
    parser.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    parser.add_argument("--emulation", metavar="FILE",
                        help="show this 'hwsched emulate --json' result in the report")
    parser.add_argument("--power-json", metavar="FILE",
                        help="show this 'hwsched power energy --json' result in the report")
    add_placement_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.platforms = list(parse_board_list(args.platforms))  # cheap checks before the model
    check_stage_count(args.stages, len(args.platforms))
    err = stderr_console()
    measured = _read_measured(args)  # fail on a bad file before the slow part, not after
    check_hardware(args.platforms, args.link)
    profiles = [load_profile(path) for path in args.profile]
    platforms = _platforms_with_measured_power(args.platforms, args.power_calibration)
    mapping = read_mapping_option(args)
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        progress("enumerating cut points")
        graph = loaded.graph
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
        )
    out = stdout_console()
    render_model_summary(out, graph, cuts)
    if args.show_cuts:
        render_cut_table(out, graph, ranked, args.top, PROXY_RANKING)
    render_candidates(schedule, out, rows=args.top)
    document = analysis_to_dict(graph, cuts, ranked, PROXY_RANKING, args.max_crossing)
    document.update({k: v for k, v in schedule.to_dict().items() if k != "model"})
    document["hardware"] = hardware_section(platforms, args.link)
    document.update(
        placement_section(args, mapping, graph, platforms, schedule, profiles, out, err)
    )
    if args.accuracy:
        results = _measure_accuracy(loaded, schedule, args, err)
        for result in results:
            render_accuracy(out, result)
        attach_accuracy(document, results)
    if args.tiles:
        document["tiles"] = _tiles(out, graph, platforms, args)
    document = AnalysisDocument.from_dict(document).to_dict()  # written through its record
    if args.json:
        err.print(f"wrote {write_json(args.json, document)}")
    if not args.no_report:
        path = args.report or default_report_path(document["model"])
        err.print(f"report: {write_report(path, document, *measured)}")
    return 0


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


def _tiles(out: Any, graph: Any, platforms: list[Platform], args: argparse.Namespace) -> dict:
    from hwsched.hardware import load_link
    from hwsched.tiles.summary import plan_for_platforms, tiling_lines, tiling_to_dict

    coster, plan = plan_for_platforms(graph, platforms, load_link(args.link), args.precision)
    document = tiling_to_dict(coster, plan)
    for line in tiling_lines(document):
        out.print(line, markup=False, highlight=False)
    return document
