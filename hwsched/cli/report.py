"""``hwsched report ANALYSIS.json``: re-render the HTML report from a saved analysis, optionally
beside measured results (``hwsched emulate --json``, ``hwsched power energy --json``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hwsched.cli.common import stderr_console
from hwsched.errors import ReportError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="render the HTML report of a saved analysis (with measurements if given)",
        description="Render the self-contained HTML report of ANALYSIS.json (written by "
        "'hwsched analyze MODEL --json FILE'). Measured results given with --emulation and "
        "--power-json are shown beside the predictions.",
    )
    parser.add_argument("analysis", type=Path, metavar="ANALYSIS.json",
                        help="analysis document from 'hwsched analyze --json'")
    parser.add_argument("--emulation", type=Path, metavar="FILE",
                        help="JSON from 'hwsched emulate DIR --json FILE'")
    parser.add_argument("--power-json", type=Path, metavar="FILE",
                        help="JSON from 'hwsched power energy LOG --events F --json FILE'")
    parser.add_argument("--plan", type=Path, metavar="DIR",
                        help="also draw this exported stage-graph plan (a directory written by "
                        "'hwsched export')")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="where to write the page (default: reports/<model>.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hwsched.documents import load_document
    from hwsched.documents.analysis import AnalysisDocument
    from hwsched.fileio import atomic_write_text
    from hwsched.report.facts import with_hardware
    from hwsched.report.html import default_report_path, render_html

    analysis = load_document(AnalysisDocument, args.analysis)
    emulation, power = read_measured(args.emulation, args.power_json)
    plan = _read_plan(args.plan) if args.plan else None
    out = args.out or default_report_path(analysis.model)
    document = with_hardware(analysis.to_dict())
    try:
        html = render_html(document, emulation, power, plan)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        # every field the report reads was checked above; this is a bug, said in one line
        raise ReportError(
            f"{args.analysis}: cannot render this analysis ({type(error).__name__}: {error}); "
            "re-create it with 'hwsched analyze … --json FILE'"
        ) from None
    written = atomic_write_text(out, html)
    stderr_console().print(f"report: {written}")
    return 0


def _read_plan(directory: Path) -> Any:
    """An exported plan to draw; it must be of a stage graph (a chain is in the ranking)."""
    from hwsched.deployment import load_plan

    plan = load_plan(directory)
    if not plan.is_graph:
        raise ReportError(f"{directory}: --plan draws a stage-graph plan (with 'edges'); this "
                          "one is a chain, shown by the ranking already")
    return plan


def read_measured(emulation: Path | str | None, power: Path | str | None) -> tuple[Any, Any]:
    """The emulation result and energy report to show beside an analysis, each read and
    checked by its record (a file of another kind is refused in one line)."""
    from hwsched.documents import load_document
    from hwsched.power.energy import PipelineEnergy
    from hwsched.runtime.emulate import EmulationResult

    return (
        None if emulation is None else load_document(EmulationResult, emulation),
        None if power is None else load_document(PipelineEnergy, power),
    )

