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
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="where to write the page (default: reports/<model>.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hwsched.fileio import atomic_write_text
    from hwsched.report.facts import with_hardware
    from hwsched.report.html import default_report_path, render_html

    document = read_json_object(args.analysis, "analysis")
    emulation = read_json_object(args.emulation, "emulation") if args.emulation else None
    power = read_json_object(args.power_json, "power") if args.power_json else None
    out = args.out or default_report_path(str(document.get("model", args.analysis.stem)))
    try:
        html = render_html(with_hardware(document), emulation, power)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        # the documents are user files here (possibly hand-edited or from an older version)
        raise ReportError(
            f"{args.analysis}: cannot render this analysis ({type(error).__name__}: {error}); "
            "re-create it with 'hwsched analyze … --json FILE'"
        ) from None
    written = atomic_write_text(out, html)
    stderr_console().print(f"report: {written}")
    return 0


def read_json_object(path: Path, kind: str) -> dict[str, Any]:
    """A JSON object from ``path``; every failure is one :class:`ReportError` naming the file."""
    from hwsched.fileio import read_json

    data = read_json(path, ReportError, kind)
    if not isinstance(data, dict):
        raise ReportError(f"{path}: {kind} file must hold a JSON object, not {type(data).__name__}")
    missing = [name for name in REQUIRED_FIELDS.get(kind, ()) if name not in data]
    if missing:
        raise ReportError(f"{path}: not a {kind} result (no field {missing[0]!r}); give the "
                          f"file that '{WRITTEN_BY[kind]}' writes")
    return data


#: Fields a measured document must have (the README's JSON contracts), by kind: an analysis
#: file given as --power-json would otherwise render as a page of blanks.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "power": ("energy_per_inference_mj", "dynamic_energy_per_inference_mj", "idle_power_mw",
              "average_power_mw", "inferences"),
    "emulation": ("throughput_ips", "stages", "latency_ms"),
}
WRITTEN_BY = {"power": "hwsched power energy … --json FILE",
              "emulation": "hwsched emulate DIR --json FILE"}
