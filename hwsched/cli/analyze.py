"""``hwsched analyze MODEL``: read a model, enumerate every cut point, rank and report them."""

from __future__ import annotations

import argparse

from hwsched.cli.common import progress_status, stderr_console, stdout_console
from hwsched.cuts import PROXY_RANKING, enumerate_cuts, rank_by_proxy
from hwsched.fileio import write_json
from hwsched.load import load_model
from hwsched.report.analysis import (
    analysis_to_dict,
    render_cut_table,
    render_model_summary,
)

DEFAULT_MODEL = "efficientnet_b0"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="enumerate and rank the cut points of a model",
        description="Read MODEL (a zoo name, .keras/.h5 or .tflite file), enumerate every cut "
        "point and rank them.",
    )
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                        help=f"zoo name or model file (default: {DEFAULT_MODEL})")
    parser.add_argument("--weights", metavar="FILE", help="load trained weights into a zoo model")
    parser.add_argument("--top", type=_positive_int, default=10, metavar="N",
                        help="rows to show in the terminal table (default: 10)")
    parser.add_argument("--max-crossing", type=_positive_int, default=None, metavar="K",
                        help="only rank cuts with at most K crossing tensors")
    parser.add_argument("--json", metavar="FILE", help="write the full analysis as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    err = stderr_console()
    with progress_status(err, f"loading {args.model}") as progress:
        loaded = load_model(args.model, weights=args.weights, progress=progress)
        progress("enumerating cut points")
        graph = loaded.graph
        cuts = enumerate_cuts(graph)
        ranked = rank_by_proxy(cuts, args.max_crossing)
    out = stdout_console()
    render_model_summary(out, graph, cuts)
    render_cut_table(out, graph, ranked, args.top, PROXY_RANKING)
    if args.json:
        path = write_json(
            args.json, analysis_to_dict(graph, cuts, ranked, PROXY_RANKING, args.max_crossing)
        )
        err.print(f"wrote {path}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
