"""``hwsched export MODEL …`` writes verified stages; ``hwsched verify DIR`` re-runs the proof."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hwsched.cli.common import (
    check_hardware,
    int_list,
    name_list,
    positive_int,
    progress_status,
    stages_option,
    stderr_console,
    stdout_console,
)
from hwsched.deployment import PRECISIONS, Plan, Verification
from hwsched.ir import LayerGraph
from hwsched.progress import Progress

DEFAULT_OBJECTIVE = "throughput"


def register(subparsers: argparse._SubParsersAction) -> None:
    from hwsched.export.api import DEFAULT_CALIBRATION_SAMPLES, DEFAULT_VERIFY_SAMPLES

    export = subparsers.add_parser(
        "export",
        help="write one verified .tflite per stage and a plan.json",
        description="Split MODEL (zoo name, .keras/.h5 or .tflite) at the given cuts, write one "
        ".tflite per stage in the precision its platform runs, a plan.json, and the proof "
        "that the chained stages compute what the whole model computes.",
    )
    export.add_argument("model", help="zoo name or model file")
    # required, unless --adaptive ranks the splits itself (checked in run_export)
    where = export.add_mutually_exclusive_group()
    where.add_argument("--cuts", type=name_list, metavar="LAYER[,LAYER…]",
                       help="cut after these layers (see 'hwsched analyze')")
    where.add_argument("--cut-positions", type=int_list, metavar="K[,K…]",
                       help="cut positions as head_layers counts")
    where.add_argument("--candidate", type=positive_int, metavar="RANK",
                       help="export the ranked candidate RANK of --analysis FILE (or, without "
                       "it, of a fresh default analysis of --platforms)")
    where.add_argument("--mapping", metavar="FILE",
                       help="export the stage graph of a mapping file (boards, stages of "
                       "layers, link); its boards replace --platforms")
    where.add_argument("--tiles", metavar="FIRST..LAST:K[:ROWSxCOLS|:rA/B/…|:cA/B/…][,…]",
                       help="tile the fused run of layers FIRST..LAST into K strips (even, or "
                       "of A, B, … rows: rA/B/…) or a ROWSxCOLS grid, tile k on the k-th "
                       "--platforms board: a scatter stage, K tile stages and a gather stage "
                       "(every layer outside the runs on the first board); or split one dense "
                       "layer or convolution L..L by output channels into parts of A, B, … "
                       "channels (cA/B/…); several, comma-separated, in layer order")
    export.add_argument("--adaptive", type=int, metavar="K",
                        help="also export the K best splits (K >= 2) over a sweep of the link's "
                        "bandwidth, each verified, as the plan's 'alternatives' with the "
                        "bandwidth range where each wins; --candidate/--cuts add a split of "
                        "your own")
    export.add_argument("--sweep-bandwidth", metavar="LO:HI[:N]",
                        help="with --adaptive: the bandwidths swept (Mbit/s, log grid; default: "
                        "two decades either side of the link's own, 13 points)")
    export.add_argument("--force", action="store_true",
                        help="with --mapping, --tiles (or a stage-graph or tiled --candidate): "
                        "export even if a board's memory is exceeded; with --compress LEVEL: "
                        "even if its accuracy drop is beyond the limit")
    export.add_argument("--compress", metavar="fp16|int8|auto", default=None,
                        help="send the tensors crossing each link as fp16 or int8 (calibrated "
                        "like int8 stages); auto: the strongest level within "
                        "--max-accuracy-drop. The top-1 accuracy of each level is measured "
                        "on --dataset (digits for digits models) and recorded in the plan")
    export.add_argument("--max-accuracy-drop", type=float, default=None, metavar="PP",
                        help="largest top-1 accuracy drop a --compress level (or the level "
                        "an --analysis candidate was ranked with) may cost, in percentage "
                        "points (default: 0.5)")
    export.add_argument("--analysis", type=Path, metavar="ANALYSIS.json",
                        help="with --candidate RANK: export exactly that candidate of this "
                        "'hwsched analyze --json' document (its cuts, boards in order, "
                        "precisions and link), without ranking again")
    export.add_argument("--platforms", metavar="A,B[,C…]",
                        help="one platform per stage, in pipeline order; rpi4*3 = rpi4,rpi4,rpi4 "
                        "(required unless --analysis gives them; with --candidate: the boards "
                        "the analysis ranks over)")
    export.add_argument("--stages", type=stages_option, default=None, metavar="auto|K",
                        help="with --candidate: how many of the boards the ranking uses (default: "
                        "auto, as in 'hwsched analyze', so RANK is the row analyze printed)")
    export.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output directory (replaced only when it holds an earlier export)")
    export.add_argument("--precision", metavar="P[,P…]",
                        help=f"one of {', '.join(PRECISIONS)} for all stages, or one per stage "
                        "(default: each platform's own)")
    export.add_argument("--calibration", metavar="digits|DIR|random:N",
                        help="model inputs for int8 calibration and verification (default: "
                        "digits for 8×8×1 models, random otherwise)")
    export.add_argument("--calibration-samples", type=positive_int,
                        default=DEFAULT_CALIBRATION_SAMPLES, metavar="N",
                        help="calibration samples for int8 stages (default: "
                        f"{DEFAULT_CALIBRATION_SAMPLES})")
    export.add_argument("--samples", type=positive_int, default=DEFAULT_VERIFY_SAMPLES,
                        metavar="N", help="samples in the chain-vs-reference verification "
                        f"(default: {DEFAULT_VERIFY_SAMPLES})")
    export.add_argument("--accuracy", action="store_true",
                        help="measure top-1 accuracy of the split and the unsplit model")
    export.add_argument("--dataset", metavar="DIR",
                        help="labeled data for --accuracy: digits, a class-per-folder image "
                        "directory or an .npz with images and labels")
    export.add_argument("--micro", action="store_true",
                        help="also write each stage as C source for TensorFlow Lite Micro")
    export.add_argument("--weights", metavar="FILE", help="load trained weights into a zoo model")
    export.add_argument("--link", default=None, metavar="LINK",
                        help="link between boards (recorded in the plan; ranks --candidate)")
    export.add_argument("--objective", default=DEFAULT_OBJECTIVE, metavar="O",
                        help=f"objective that ranks --candidate (default: {DEFAULT_OBJECTIVE})")
    export.add_argument("--no-cache", action="store_true",
                        help="convert every stage again instead of reusing cached conversions")
    export.set_defaults(func=run_export)

    verify = subparsers.add_parser(
        "verify",
        help="re-run the proof of an exported directory",
        description="Chain the stages of DIR on the stored samples and compare them with the "
        "reference model named by the plan's source.",
    )
    verify.add_argument("dir", type=Path, help="directory written by 'hwsched export'")
    verify.add_argument("--weights", metavar="FILE",
                        help="weights the reference zoo model was exported with")
    verify.set_defaults(func=run_verify)


def run_export(args: argparse.Namespace) -> int:
    from hwsched.export.api import export
    from hwsched.hardware import parse_board_list
    from hwsched.load import load_model
    from hwsched.schedule.assign import check_stage_count

    if args.platforms is not None:  # cheap checks before the model
        args.platforms = list(parse_board_list(args.platforms))
        check_stage_count(args.stages, len(args.platforms))
    sweep_range = _check_adaptive(args)
    if args.stages is not None and args.candidate is None and args.adaptive is None:
        from hwsched.errors import ExportError

        raise ExportError(f"--stages {args.stages} chooses among ranked candidates: give it "
                          "with --candidate (with --cuts or --cut-positions the cuts decide)")
    check_hardware(args.platforms or (), args.link)  # before the slow part
    compress = _compress_request(args)
    err = stderr_console()
    if args.mapping:
        return run_mapping_export(args, err)
    if args.tiles:
        return run_tiles_export(args, err)
    if args.adaptive is not None:
        return run_adaptive_export(args, err, sweep_range)
    analysed = _analysed_candidate(args)  # a bad file fails before the model is loaded
    if analysed is not None and getattr(analysed[1], "placement", None) == "tiles":
        _refuse_unbounded_drop(args, f"candidate {analysed[1].rank} of {args.analysis} is a "
                               "tiled plan, whose exports send tensors uncompressed")
        return run_tiled_candidate_export(args, analysed[0], analysed[1], err)
    if analysed is not None and analysed[2] is None:  # a stage-graph candidate
        _refuse_unbounded_drop(args, f"candidate {analysed[1].rank} of {args.analysis} is a "
                               "stage graph, whose exports send tensors uncompressed")
        if compress is not None:
            from hwsched.errors import ExportError

            raise ExportError(f"--compress: candidate {analysed[1].rank} of {args.analysis} "
                              "is a stage graph, whose exports send tensors uncompressed")
        return run_graph_candidate_export(args, analysed[0], analysed[1], err)
    if analysed is not None and compress is None:
        compress = _analysed_compression(args, analysed[1], err,
                                         args.link or analysed[0].link)
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        if analysed is None:
            positions, platforms, prediction = _where(args, loaded.graph, progress)
        else:
            positions, platforms, prediction = _from_analysis(args, analysed, loaded.graph)
        plan = export(
            loaded,
            platforms=platforms,
            out_dir=args.out,
            cut_positions=positions,
            precisions=args.precision,
            calibration=args.calibration,
            calibration_samples=args.calibration_samples,
            samples=args.samples,
            accuracy=args.accuracy,
            dataset=args.dataset,
            micro=args.micro,
            link=args.link or "",
            cache=not args.no_cache,
            prediction=prediction,
            progress=progress,
            compress=compress,
        )
    out = stdout_console()
    render_plan(out, plan, args.out)
    return 0


def _check_adaptive(args: argparse.Namespace) -> tuple[float, float, int] | None:
    """The cheap checks of ``--adaptive`` (before the model loads); the swept range if given.

    Also says which split to export when no option names one (the group is not required
    because ``--adaptive`` alone ranks the splits itself)."""
    from hwsched.errors import ExportError

    named = args.cuts or args.cut_positions or args.candidate or args.mapping or args.tiles
    if args.adaptive is None:
        if args.sweep_bandwidth:
            raise ExportError("--sweep-bandwidth on export sets the range of --adaptive K; "
                              "give --adaptive K (or use 'hwsched analyze --sweep-bandwidth')")
        if not named:
            raise ExportError("give one of --cuts, --cut-positions, --candidate, --mapping or "
                              "--tiles (or --adaptive K to export the best splits over a "
                              "bandwidth range)")
        return None
    from hwsched.export.adaptive import ADAPTIVE_OBJECTIVE, check_adaptive_count
    from hwsched.schedule.sweep import parse_range

    check_adaptive_count(args.adaptive)
    refused = {"--mapping": args.mapping, "--tiles": args.tiles, "--analysis": args.analysis,
               "--compress": args.compress}
    for option, value in refused.items():
        if value:
            raise ExportError(f"--adaptive exports chain splits ranked afresh over a bandwidth "
                              f"sweep; it cannot take {option}")
    _refuse_unbounded_drop(args, "--adaptive exports its splits uncompressed")
    if args.platforms is None:
        raise ExportError("--adaptive needs --platforms: the boards every split runs on")
    if args.stages == "auto":
        raise ExportError("--adaptive needs a fixed stage count: give --stages K (K >= 2) or "
                          "leave it out to use every board of --platforms")
    if (args.stages or len(args.platforms)) < 2:
        raise ExportError(f"--adaptive with {args.stages or len(args.platforms)} stage: a "
                          "single board has no split to switch; give two or more boards")
    if args.objective != ADAPTIVE_OBJECTIVE:
        raise ExportError(f"--adaptive ranks by {ADAPTIVE_OBJECTIVE} (the bandwidth changes "
                          f"the links' time); drop --objective {args.objective}")
    return parse_range(args.sweep_bandwidth) if args.sweep_bandwidth else None


def run_adaptive_export(args: argparse.Namespace, err: Console,
                        sweep_range: tuple[float, float, int] | None) -> int:
    """``export --adaptive K``: choose the splits (cheap, before any conversion), export each
    verified, and write one plan with ``alternatives``."""
    from hwsched.export.adaptive import choose_adaptive, export_adaptive
    from hwsched.export.stages import resolve_cut_positions
    from hwsched.hardware import load_platform
    from hwsched.load import load_model
    from hwsched.schedule import DEFAULT_LINK
    from hwsched.schedule.sweep import default_adaptive_range

    link = args.link or DEFAULT_LINK
    sweep = sweep_range or default_adaptive_range(link)
    names = [load_platform(p).name for p in args.platforms]
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        user_cuts = None
        if args.cuts or args.cut_positions:
            user_cuts = resolve_cut_positions(loaded.graph, args.cuts or (),
                                              args.cut_positions or ())
        choice = choose_adaptive(
            loaded.graph, args.platforms, link, args.adaptive, sweep,
            stages=args.stages or len(args.platforms), candidate=args.candidate,
            user_cuts=user_cuts, precision=_precision_option(args.precision, names),
            progress=progress,
        )
        found = len({split.cut_positions for split in choice.splits})
        if found < args.adaptive:
            err.print(f"note: the sweep found {found} splits worth switching between, not "
                      f"{args.adaptive}; exporting those", highlight=False)
        precisions = args.precision
        if precisions:  # per stage, as ranked (a per-board list named every board given)
            precisions = ",".join(s["precision"] for s in choice.splits[0].prediction["stages"])
        plan = export_adaptive(
            loaded, choice, args.out, progress=progress, precisions=precisions,
            calibration=args.calibration, calibration_samples=args.calibration_samples,
            samples=args.samples, accuracy=args.accuracy, dataset=args.dataset,
            micro=args.micro, cache=not args.no_cache,
        )
    out = stdout_console()
    render_plan(out, plan, args.out)
    render_alternatives(out, plan)
    return 0


def render_alternatives(console: Console, plan: Plan) -> None:
    """One row per alternative: its cuts, where it wins, its files and its proof."""
    table = Table(title=f"{len(plan.alternatives)} alternatives (switch by link bandwidth)",
                  title_justify="left")
    for column in ("id", "cut positions", "Mbit/s from", "to", "files", "verified"):
        table.add_column(column)
    for alt in plan.alternatives:
        high = alt.bandwidth_mbps_high
        v = alt.plan.verification
        table.add_row(
            str(alt.id), ",".join(map(str, alt.cut_positions)), f"{alt.bandwidth_mbps_low:.4g}",
            "∞" if high == float("inf") else f"{high:.4g}",
            ", ".join(s.file for s in alt.plan.stages),
            "no" if v is None else f"{'passed' if v.passed else 'FAILED'} "
            f"(max abs diff {v.max_abs_diff:.3g})",
        )
    console.print(table)


def _analysed_compression(args: argparse.Namespace, candidate, err: Console, link: str):
    """The compression the analysed candidate's links were priced with (``analyze
    --compress``), as one level for every link: the strongest (export compresses uniformly).
    None over a link that forces an encoding: the link sends that level, unmeasured
    (:func:`hwsched.export.api.link_level_request`)."""
    from hwsched.compression import strongest
    from hwsched.export.api import link_encoding_request
    from hwsched.export.compress import DEFAULT_MAX_ACCURACY_DROP_PP, CompressRequest

    level = strongest(link.compression for link in candidate.links)
    if level == "fp32" or link_encoding_request(link) is not None:
        _refuse_unbounded_drop(args, f"candidate {candidate.rank} of {args.analysis} sends "
                               "its links " + ("uncompressed (fp32)" if level == "fp32" else
                                               f"in the encoding {link} forces, unmeasured"))
        return None
    err.print(f"candidate {candidate.rank} of {args.analysis} sends its links as {level}: "
              f"exporting with --compress {level}")
    drop = DEFAULT_MAX_ACCURACY_DROP_PP if args.max_accuracy_drop is None \
        else args.max_accuracy_drop
    return CompressRequest(level, drop, args.force, args.dataset)


def _refuse_unbounded_drop(args: argparse.Namespace, why: str) -> None:
    """``--max-accuracy-drop`` where no measured level is chosen is refused, saying why."""
    if args.max_accuracy_drop is not None:
        from hwsched.errors import ExportError

        raise ExportError(f"--max-accuracy-drop: {why}, so there is no level for it to bound")


def _compress_request(args: argparse.Namespace):
    """``--compress``/``--max-accuracy-drop`` checked before any model loads."""
    from hwsched.errors import ExportError
    from hwsched.export.compress import (
        AUTO,
        DEFAULT_MAX_ACCURACY_DROP_PP,
        CompressRequest,
        check_request,
    )

    if args.mapping or args.tiles:
        given = "--compress" if args.compress else "--max-accuracy-drop"
        if args.compress or args.max_accuracy_drop is not None:
            raise ExportError(f"{given}: stage-graph exports (--mapping, --tiles) send tensors "
                              "uncompressed; compress a chain split instead")
    if args.compress is None:
        if args.max_accuracy_drop is not None and not args.analysis:  # bounds its level there
            raise ExportError("--max-accuracy-drop bounds --compress: give --compress too")
        if args.max_accuracy_drop is not None:  # the analysed level's bound: checked now too
            check_request(CompressRequest(AUTO, args.max_accuracy_drop, args.force,
                                          args.dataset))
        return None
    drop = DEFAULT_MAX_ACCURACY_DROP_PP if args.max_accuracy_drop is None \
        else args.max_accuracy_drop
    request = check_request(CompressRequest(args.compress, drop, args.force, args.dataset))
    if args.link:  # a level the link's descriptor cannot send fails before the model loads
        from hwsched.export.api import link_level_request

        link_level_request(request, args.link)
    return request


def check_as_made_link(link: str, what: str) -> None:
    """:func:`hwsched.export.api.check_as_made_link`, imported only when a graph is exported."""
    from hwsched.export.api import check_as_made_link as check

    check(link, what)


def run_mapping_export(args: argparse.Namespace, err: Console) -> int:
    """``export --mapping FILE``: the mapping is checked before the model is read."""
    from hwsched.export.graph import export_placement
    from hwsched.load import load_model
    from hwsched.mapping import read_mapping, resolve_mapping
    from hwsched.schedule import DEFAULT_LINK

    spec = read_mapping(args.mapping)
    link = args.link or spec.link or DEFAULT_LINK
    check_as_made_link(link, "--mapping")
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        plan = export_placement(
            loaded, resolve_mapping(spec, loaded.graph), args.out, link=link,
            precisions=args.precision, calibration=args.calibration,
            calibration_samples=args.calibration_samples, samples=args.samples,
            cache=not args.no_cache, force=args.force, progress=progress,
        )
    render_plan(stdout_console(), plan, args.out)
    return 0


def run_graph_candidate_export(args: argparse.Namespace, analysis, candidate, err: Console
                               ) -> int:
    """``export --analysis FILE --candidate RANK`` of a stage-graph candidate: its stages,
    boards, core sets, precisions and the analysis's link, exported as a stage-graph plan."""
    from hwsched.cli.graphs import candidate_placement, one_cpu_hop
    from hwsched.deployment import file_sha256
    from hwsched.export.graph import export_placement
    from hwsched.load import load_model

    link = args.link or analysis.link  # --link: the descriptor file the analysis named
    check_as_made_link(link, f"candidate {candidate.rank} of {args.analysis}")
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        _check_same_model(args.analysis, analysis, loaded.graph)
        placement, precisions = candidate_placement(candidate, loaded.graph, str(args.analysis))
        origin = {"file": str(args.analysis), "sha256": file_sha256(args.analysis),
                  "rank": candidate.rank}
        plan = export_placement(
            loaded, placement, args.out, link=link, precisions=precisions,
            calibration=args.calibration, calibration_samples=args.calibration_samples,
            samples=args.samples, cache=not args.no_cache, force=args.force,
            progress=progress, analysis=origin,
            prediction=analysed_prediction(
                analysis, candidate, one_cpu_hop=one_cpu_hop(loaded.graph, placement)),
        )
    render_plan(stdout_console(), plan, args.out)
    return 0


def run_tiles_export(args: argparse.Namespace, err: Console) -> int:
    """``export --tiles FIRST..LAST:K``: the option and the boards are checked before the model
    is read."""
    from hwsched.errors import ExportError
    from hwsched.export.tiles import check_board_count, export_tiles
    from hwsched.load import load_model
    from hwsched.schedule import DEFAULT_LINK
    from hwsched.tiles.layout import parse_tiles_options

    options = parse_tiles_options(args.tiles)
    if not args.platforms:
        raise ExportError("--tiles needs --platforms: one board per tile")
    check_board_count(options, args.platforms)
    check_as_made_link(args.link or DEFAULT_LINK, "--tiles")
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        plan = export_tiles(
            loaded, options, args.platforms, args.out, link=args.link or DEFAULT_LINK,
            precisions=args.precision, calibration=args.calibration,
            calibration_samples=args.calibration_samples, samples=args.samples,
            progress=progress, force=args.force,
        )
    render_plan(stdout_console(), plan, args.out)
    return 0


def run_tiled_candidate_export(args: argparse.Namespace, analysis, candidate, err: Console
                               ) -> int:
    """``export --analysis FILE --candidate RANK`` of a fused-tile candidate: its runs, strips
    and boards (``export_tiles``/``export_platforms``), precision and the analysis's link; the
    plan's prediction is the candidate's, with ``prediction.analysis``."""
    from hwsched.deployment import file_sha256
    from hwsched.export.tiles import check_board_count, export_tiles
    from hwsched.load import load_model
    from hwsched.tiles.layout import parse_tiles_options

    options = parse_tiles_options(candidate.export_tiles)
    platforms = list(candidate.export_platforms)
    check_board_count(options, platforms)
    link = args.link or analysis.link  # --link: the descriptor file the analysis named
    check_as_made_link(link, f"candidate {candidate.rank} of {args.analysis}")
    prediction = {
        "placement": "tiles", "link": analysis.link, "latency_ms": candidate.latency_ms,
        "period_ms": candidate.period_ms, "throughput_ips": candidate.throughput_ips,
        "energy_mj": candidate.energy_mj, "feasible": candidate.feasible,
        "analysis": {"file": str(args.analysis), "sha256": file_sha256(args.analysis),
                     "rank": candidate.rank},
        # how the analysis priced it (a profile's measured segments, or the roofline)
        **{k: candidate.extra[k] for k in ("latency_model", "weights_charged")
           if k in candidate.extra},
    }
    if analysis.runtime_cost is not None:  # as ranked: charged unless the analysis predates it
        prediction["runtime_cost"] = (candidate_runtime_cost(analysis.runtime_cost, False)
                                      if analysis.runtime_cost.get("tiles_charged")
                                      else {"charged": False})
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        _check_same_model(args.analysis, analysis, loaded.graph)
        plan = export_tiles(
            loaded, options, platforms, args.out, link=link,
            precisions=candidate.precision, calibration=args.calibration,
            calibration_samples=args.calibration_samples, samples=args.samples,
            prediction=prediction, progress=progress, force=args.force,
        )
    render_plan(stdout_console(), plan, args.out)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from hwsched.deployment import load_plan
    from hwsched.export.verify import require_passed, verify_plan_dir

    err = stderr_console()
    with progress_status(err, f"verifying {args.dir}") as progress:
        verification = verify_plan_dir(args.dir, progress=progress, weights=args.weights)
        plan = load_plan(args.dir)
        alternatives = _verify_alternatives(args.dir, plan, args.weights, progress)
    out = stdout_console()
    render_plan(out, plan, args.dir, verification)
    for alternative, checked in alternatives:
        out.print(f"alternative {alternative.id} (cut positions "
                  f"{','.join(map(str, alternative.cut_positions))}):", end=" ")
        _render_verification(out, checked)
    from hwsched.export.compress import links_level, require_compressed_passed

    if links_level(plan.links) != "fp32":
        require_compressed_passed(verification, links_level(plan.links))
    require_passed(verification)
    for _, checked in alternatives:
        require_passed(checked)
    return 0


def _verify_alternatives(directory: Path, plan: Plan, weights: str | None,
                         progress: Progress) -> list[tuple[Any, Verification]]:
    """Each alternative of an adaptive plan whose stages differ from the plan's own, re-proven
    like the plan: its nested plan, with its files beside it in a temporary directory, is a
    plan directory of its own, and the stored samples' reference is the same whole model."""
    import shutil
    import tempfile

    from hwsched.deployment import check_alternatives, save_plan
    from hwsched.export.verify import SAMPLES_FILE, verify_plan_dir

    check_alternatives(plan, directory)  # a missing or stale file is named here, not below
    results = []
    for alternative in plan.alternatives:
        if alternative.plan.stages == plan.stages:
            continue
        with tempfile.TemporaryDirectory(prefix="hwsched-verify-") as scratch:
            own = Path(scratch)
            for stage in alternative.plan.stages:
                shutil.copyfile(Path(directory) / stage.file, own / stage.file)
            shutil.copyfile(Path(directory) / SAMPLES_FILE, own / SAMPLES_FILE)
            save_plan(alternative.plan, own)
            progress(f"verifying alternative {alternative.id}")
            results.append((alternative, verify_plan_dir(own, progress, weights)))
    return results


def _where(
    args: argparse.Namespace, graph: LayerGraph, progress: Progress
) -> tuple[tuple[int, ...], tuple[str, ...], dict[str, Any]]:
    """Cut positions, platforms and the analysis' prediction for the chosen split."""
    from hwsched.export.stages import resolve_cut_positions
    from hwsched.hardware import load_platform
    from hwsched.schedule import AUTO_STAGES, DEFAULT_LINK, evaluate, rank_splits

    link = args.link or DEFAULT_LINK
    if args.candidate is None:
        # the exporter's own resolution: names or integers, checked and sorted
        positions = resolve_cut_positions(graph, args.cuts or (), args.cut_positions or ())
        progress(f"predicting the split on {', '.join(args.platforms)}")
        names = [load_platform(p).name for p in args.platforms]  # the planner's keys
        chosen = evaluate(graph, args.platforms, link, positions,
                          precision=_precision_option(args.precision, names),
                          compression=_priced_levels(args))
        prediction = {"rank": None, "objective": None, "link": link, **chosen.to_dict()}
        args.link = link
        return positions, tuple(args.platforms), prediction
    from hwsched.errors import ExportError

    progress(f"ranking candidates on {', '.join(args.platforms)}")
    names = [load_platform(p).name for p in args.platforms]
    ranked = rank_splits(graph, args.platforms, link, objective=args.objective, top=args.candidate,
                         stages=args.stages or AUTO_STAGES,
                         precision=_precision_option(args.precision, names),
                         compression=_priced_levels(args))
    if len(ranked.candidates) < args.candidate:
        raise ExportError(
            f"--candidate {args.candidate}: the analysis has only {len(ranked.candidates)} "
            "candidates"
        )
    chosen = ranked.candidates[args.candidate - 1]
    prediction = {"objective": args.objective, "link": ranked.link, **chosen.to_dict()}
    args.link = ranked.link
    if args.precision:  # per stage, as ranked (a per-board list named every board given)
        args.precision = ",".join(stage.cost.precision for stage in chosen.stages)
    # the ranking names boards by descriptor name; export the descriptors given (files too)
    given = {load_platform(p).name: p for p in args.platforms}
    return tuple(chosen.cut_positions), tuple(given[n] for n in chosen.assignment), prediction


def _priced_levels(args: argparse.Namespace) -> tuple[str, ...]:
    """The link level the prediction prices: the one ``--compress`` fixes (``auto`` is only
    known once measured, so it is priced as made)."""
    level = getattr(args, "compress", None)
    return (level,) if level in ("fp16", "int8") else ("fp32",)


def _analysed_candidate(args: argparse.Namespace):
    """The analysis and candidate ``--analysis``/``--candidate`` name, or None without them.

    Options that would contradict the analysis (other boards, precisions or link) are errors
    rather than silently winning or losing."""
    from hwsched.errors import ExportError

    if args.analysis is None:
        if args.platforms is None:
            raise ExportError("--platforms is required (or take a candidate's with --analysis)")
        return None
    if args.candidate is None:
        raise ExportError(f"--analysis {args.analysis}: say which candidate with --candidate RANK")
    from hwsched.documents import load_document
    from hwsched.documents.analysis import AnalysisDocument, GraphCandidateEntry
    from hwsched.load.zoo import ZOO

    analysis = load_document(AnalysisDocument, args.analysis)
    candidate = analysis.candidate(args.candidate, str(args.analysis))
    if args.model in ZOO and args.model != analysis.model:  # a zoo model's graph has its name
        raise ExportError(f"{args.analysis}: is an analysis of model {analysis.model!r}, not of "
                          f"{args.model!r}; analyze {args.model} first")
    if getattr(candidate, "placement", None) == "tiles":
        _check_tiled_candidate_options(args, analysis, candidate)
        return analysis, candidate, None
    stages = len(candidate.stages)
    precisions = args.precision.split(",") if args.precision else None
    platforms = (_graph_candidate_boards(args, analysis, candidate)
                 if isinstance(candidate, GraphCandidateEntry)
                 else _analysed_platforms(args, analysis, candidate))
    if isinstance(args.stages, int) and args.stages != stages:
        raise ExportError(
            f"--stages {args.stages} contradicts candidate {candidate.rank} of {args.analysis}, "
            f"which has {stages} stage(s); drop --stages to export the candidate as analysed"
        )
    given = {
        "--precision": (precisions and precisions * (stages // len(precisions) or 1),
                        list(candidate.precisions)),
        "--link": (link_name(args.link, analysis.link), analysis.link),
    }
    if not isinstance(candidate, GraphCandidateEntry):  # its plan predicts these levels
        from hwsched.compression import strongest

        given["--compress"] = (args.compress,
                               strongest(link.compression for link in candidate.links))
    for option, (value, analysed) in given.items():
        if value and value != analysed:
            shown = analysed if isinstance(analysed, str) else ",".join(analysed)
            raise ExportError(
                f"{option} contradicts candidate {candidate.rank} of {args.analysis}, which "
                f"uses {shown}; drop {option} to export the candidate as analysed"
            )
    return analysis, candidate, platforms


def link_name(given: str | None, analysed: str) -> str | None:
    """The name of the link ``--link`` gives: an analysis records a link by its name, so a
    descriptor file (in no registry) is given again by its path, and is the same link when its
    descriptor bears that name.

    >>> link_name("gige", "gige"), link_name(None, "gige")
    ('gige', None)
    """
    if not given or given == analysed:
        return given
    from hwsched.hardware import load_link

    return load_link(given).name


def _check_tiled_candidate_options(args: argparse.Namespace, analysis, candidate) -> None:
    """A tiled candidate names its boards, precision and link; options may only repeat them."""
    from hwsched.errors import ExportError
    from hwsched.hardware import load_platform

    names = [load_platform(p).name for p in args.platforms or ()]
    given = {
        "--platforms": (names, [list(analysis.platforms), list(candidate.export_platforms)]),
        "--precision": (args.precision, [candidate.precision]),
        "--link": (link_name(args.link, analysis.link), [analysis.link]),
        "--stages": (args.stages, [None]),
        "--compress": (args.compress, [None]),
    }
    for option, (value, allowed) in given.items():
        if value and value not in allowed:
            raise ExportError(
                f"{option} contradicts candidate {candidate.rank} of {args.analysis}, a fused-"
                f"tile plan ({candidate.export_tiles} on {','.join(candidate.export_platforms)}"
                f"); drop {option} to export it as analysed"
            )


def _graph_candidate_boards(args: argparse.Namespace, analysis, candidate) -> None:
    """A stage-graph candidate names its own boards; ``--platforms`` may only repeat the
    boards the analysis ranked over. None: the caller exports the candidate as a graph."""
    from hwsched.errors import ExportError
    from hwsched.hardware import load_platform

    names = [load_platform(p).name for p in args.platforms or ()]
    if names and names != list(analysis.platforms):
        raise ExportError(
            f"--platforms contradicts candidate {candidate.rank} of {args.analysis}, a stage "
            f"graph over {','.join(analysis.platforms)}; drop --platforms to export it as "
            "analysed"
        )
    return None


def _analysed_platforms(args: argparse.Namespace, analysis, candidate) -> tuple[Any, ...]:
    """The descriptor of each of the candidate's stages, by the name the analysis records.

    ``--platforms`` (the boards analyze was given, or the candidate's own) names them by file
    or name; else the registry's of that name; else the analysis's own copy in its
    ``hardware`` section, so an analysis of a descriptor file exports without that file."""
    from hwsched.errors import ExportError
    from hwsched.hardware import load_platform, platform_names

    given = [load_platform(p) for p in args.platforms or ()]
    names = [p.name for p in given]
    if given and names not in (list(analysis.platforms), list(candidate.platforms)):
        raise ExportError(
            f"--platforms contradicts candidate {candidate.rank} of {args.analysis}, which "
            f"ranks {','.join(analysis.platforms)} and uses {','.join(candidate.platforms)}; "
            "drop --platforms to export the candidate as analysed"
        )
    by_name = {p.name: p for p in given}
    described = (analysis.hardware or {}).get("platforms", {})
    chosen = []
    for name in candidate.platforms:
        if name in by_name or name in platform_names():
            chosen.append(by_name.get(name, name))
        elif name in described:
            chosen.append(_described_platform(args.analysis, name, described[name]))
        else:
            raise ExportError(
                f"{args.analysis}: candidate {candidate.rank} runs on platform {name!r}, which "
                "is neither a known platform nor described in the analysis; give its "
                "descriptor file with --platforms"
            )
    return tuple(chosen)


def _described_platform(path: Path, name: str, fields: Any):
    """A platform rebuilt from an analysis's ``hardware.platforms`` entry (the loaded
    descriptor's own fields, :func:`hwsched.hardware.descriptor_to_dict`)."""
    from hwsched.errors import ExportError
    from hwsched.hardware import Platform, RuntimeSpec
    from hwsched.ir import OpKind

    try:
        values = {k: v for k, v in fields.items() if k not in ("kind", "path")}
        ops = values.get("supported_ops")
        values["supported_ops"] = None if ops is None else frozenset(OpKind(o) for o in ops)
        if isinstance(values.get("runtime"), dict):  # the engine section, written as a mapping
            section = values["runtime"]  # written with its derived ``runnable`` too
            values["runtime"] = RuntimeSpec(
                **{k: v for k, v in section.items() if k in RuntimeSpec.__dataclass_fields__}
            )
        return Platform(path=f"{path} (hardware.platforms.{name})", **values)
    except (AttributeError, TypeError, ValueError) as problem:
        raise ExportError(
            f"{path}: field 'hardware.platforms.{name}' is not a platform descriptor ({problem})"
        ) from None


def _from_analysis(
    args: argparse.Namespace, analysed, graph: LayerGraph
) -> tuple[tuple[int, ...], tuple[str, ...], dict[str, Any]]:
    """The analysed candidate's split, after checking the analysis is of this model."""
    from hwsched.deployment import file_sha256

    analysis, candidate, platforms = analysed
    _check_same_model(args.analysis, analysis, graph)
    args.link = args.link or analysis.link  # a given --link is the analysis's (its file)
    args.precision = ",".join(candidate.precisions)
    prediction = {
        **analysed_prediction(analysis, candidate, one_cpu_hop=False),
        "analysis": {"file": str(args.analysis), "sha256": file_sha256(args.analysis),
                     "rank": candidate.rank},
    }
    return candidate.cut_positions, platforms, prediction


def analysed_prediction(analysis, candidate, *, one_cpu_hop: bool) -> dict[str, Any]:
    """The plan's prediction for an analysed candidate: the analysis's own figures, not priced
    again — the analysis may have charged the runner's hand-off (``--runtime-cost``) or used
    profiles the export does not have; ``runtime_cost`` says which charge they hold.
    ``one_cpu_hop``: the candidate has a hop priced on one CPU
    (:func:`hwsched.cli.graphs.one_cpu_hop`; never a chain's)."""
    prediction = {"objective": analysis.objective, "link": analysis.link, **candidate.to_dict()}
    if analysis.runtime_cost is not None:  # unknown in an analysis from before it was recorded
        prediction["runtime_cost"] = candidate_runtime_cost(analysis.runtime_cost, one_cpu_hop)
    return prediction


def candidate_runtime_cost(record, one_cpu_hop: bool) -> dict[str, Any]:
    """The analysis's ``runtime_cost`` for one candidate: ``same_core_charged`` is the
    analysis's (some placement it priced had a hop on one CPU) only if this candidate has one.

    >>> candidate_runtime_cost({"charged": True, "same_core_charged": True}, False)
    {'charged': True, 'same_core_charged': False}
    """
    copied = dict(record)
    if "same_core_charged" in copied:
        copied["same_core_charged"] = bool(copied["same_core_charged"]) and one_cpu_hop
    return copied


def _check_same_model(path: Path, analysis, graph: LayerGraph) -> None:
    """The analysis must be of ``graph``: same name, same layers in the same order."""
    from hwsched.errors import ExportError

    if analysis.model != graph.name:
        raise ExportError(
            f"{path}: is an analysis of model {analysis.model!r}, not of {graph.name!r}; "
            f"analyze {graph.name} first"
        )
    ours = [layer.name for layer in graph.layers]
    theirs = [layer.name for layer in analysis.layers]
    if ours != theirs:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
        where = (f"layer {at} is {theirs[at]!r} there, {ours[at]!r} here" if at is not None
                 else f"{len(theirs)} layers there, {len(ours)} here")
        raise ExportError(
            f"{path}: analysed another version of model {graph.name!r} ({where}); "
            "analyze this model again"
        )


def _precision_option(text: str | None, platforms: Sequence[str]) -> str | dict[str, str] | None:
    """``--precision`` as the planner takes it: one for all, or per platform name."""
    if not text or "," not in text:
        return text
    values = text.split(",")
    if len(values) != len(platforms):
        return None  # export itself reports the mismatch
    chosen: dict[str, str] = {}
    for name, value in zip(platforms, values, strict=True):
        if chosen.setdefault(name, value) != value:
            return None  # identical boards in two precisions: the planner keys them by name
    return chosen


def render_plan(
    console: Console, plan: Plan, directory: Path, verification: Verification | None = None
) -> None:
    """Stages table, links and the verification verdict."""
    table = Table(title=f"{plan.model}: {len(plan.stages)} stages in {directory}",
                  title_justify="left")
    for column in ("stage", "platform", "precision", "layers", "inputs", "outputs", "file",
                   "size"):
        table.add_column(column, justify="right" if column in ("stage", "size") else "left")
    for stage in plan.stages:
        path = directory / stage.file
        size = f"{path.stat().st_size / 1024:.1f} KiB" if path.is_file() else "missing"
        table.add_row(
            str(stage.index), stage.platform, stage.precision,
            f"{stage.first_layer} … {stage.last_layer}",
            ", ".join(t.name for t in stage.inputs), ", ".join(t.name for t in stage.outputs),
            ", ".join((stage.file, *stage.extra_files)), size,
        )
    console.print(table)
    for link in plan.links:
        actions = ", ".join(f"{r.tensor}: {r.action}" for r in link.requantize)
        packed = "" if link.compression == "fp32" else f", sent as {link.compression}"
        console.print(f"link {link.from_stage}→{link.to_stage} {link.link or ''}: "
                      f"{link.transfer_bytes} bytes ({actions}{packed})")
    _render_edgetpu(console, plan)
    _render_verification(console, verification or plan.verification)


def _render_edgetpu(console: Console, plan: Plan) -> None:
    """Each Edge TPU stage: not compiled and why, or its price from the compiler's report
    beside what the analysis estimated before compiling."""
    rows = plan.prediction.get("stages") or []
    for stage in plan.stages:
        record = stage.edgetpu or {}
        where = f"stage {stage.index} {stage.platform}"
        if record and not record.get("compiled"):
            console.print(f"{where}: not compiled ({record.get('reason')})")
        if record.get("unpriced"):
            console.print(f"{where}: compiled, not priced from its report ({record['unpriced']})")
        priced = record.get("priced")
        if not priced:
            continue
        before = rows[stage.index].get("analysis_latency_ms") if len(rows) > stage.index else None
        estimate = "" if before is None else f"; the analysis estimated {before:.3f} ms"
        console.print(
            f"{where}: {priced['latency_ms']:.3f} ms priced from the Edge TPU compiler's report "
            f"(TPU {priced['tpu_ms']:.3f} ms in {priced['tpu_segments']} segment(s), CPU "
            f"{priced['cpu_ms']:.3f} ms for {len(priced['cpu_layers'])} layer(s) on "
            f"{priced['host']}, hand-off {priced['handoff_ms']:.3f} ms, parameter streaming "
            f"{priced['param_stream_ms']:.3f} ms){estimate}")


def _render_verification(console: Console, v: Verification | None) -> None:
    if v is None:
        console.print("no verification recorded")
        return
    verdict = "[green]passed[/]" if v.passed else "[red]FAILED[/]"
    rel = f"{v.max_rel_diff:.3g}" if v.max_rel_diff is not None else "n/a"
    console.print(
        f"verification vs {v.reference} on {v.samples} samples: {verdict}; max abs diff "
        f"{v.max_abs_diff:.3g}, max rel diff {rel}, top-1 agreement {v.top1_agreement:.1%}"
    )
    if v.compression and v.compression.get("levels"):
        c = v.compression
        measured = ", ".join(f"{level} {m['top1']:.2%} (−{m['drop_pp']:.2f} pp)"
                             for level, m in c["levels"].items())
        console.print(f"link compression {c['chosen']} (asked {c['requested']}, at most "
                      f"−{c['max_accuracy_drop_pp']:g} pp) on {c['dataset']}: {measured}")
    if v.accuracy:
        a = v.accuracy
        console.print(
            f"accuracy on {a.get('dataset')} ({a.get('samples')} images): split "
            f"{'→'.join(a.get('precisions', []))} {a['split']:.2%}, unsplit float "
            f"{a['reference']:.2%}, agreement {a.get('agreement', 0):.2%}"
        )
    for engine, record in (v.sequence or {}).items():
        if "skipped" in record:
            console.print(f"stateful sequence on {engine}: not run ({record['skipped']})")
        else:
            console.print(f"stateful sequence on {engine}: chain equals the whole model at every "
                          f"one of {record['frames']} frames, state carried (max abs diff "
                          f"{record['max_abs_diff']:.3g})")

