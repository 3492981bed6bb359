"""The model-and-cuts part of an analysis: its JSON form and its terminal table.

The JSON is a contract that users' scripts read (``hwsched analyze --json``): ``model``,
``layers`` in topological order (``name``, ``op``, ``inputs`` = producing layers, ``params``,
``macs``, …) and ``cut_points``, one per position (``head_layers``, ``after``, ``crossing`` =
``[{producer, shape, dtype, bytes}]``, ``transfer_bytes``). Fields may be added, never renamed.
``hwsched analyze`` writes the whole document through its typed record,
:class:`hwsched.documents.analysis.AnalysisDocument`, which every reader uses too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwsched import __version__
from hwsched.cuts import CutPoint
from hwsched.ir import LayerGraph, layer_to_dict, tensor_to_dict


def cut_to_dict(cut: CutPoint) -> dict[str, Any]:
    return {
        "head_layers": cut.head_layers,
        "after": cut.after,
        "crossing": [tensor_to_dict(t) for t in cut.crossing],
        "transfer_bytes": cut.transfer_bytes,
        "single_tensor": cut.single_tensor,
        "head_macs": cut.head_macs,
        "tail_macs": cut.tail_macs,
    }


def analysis_to_dict(
    graph: LayerGraph,
    cuts: Sequence[CutPoint],
    ranked: Sequence[CutPoint],
    ranking_method: str,
    max_crossing: int | None,
) -> dict[str, Any]:
    """The JSON document of ``hwsched analyze`` (before hardware-aware candidates are added)."""
    return {
        "hwsched_version": __version__,
        "model": graph.name,
        "source": graph.source,
        "total_params": graph.total_params,
        "total_macs": graph.total_macs,
        "unscored_layers": [layer.name for layer in graph.unscored_layers],
        "layers": [layer_to_dict(graph, layer) for layer in graph.layers],
        "cut_points": [cut_to_dict(cut) for cut in cuts],
        "cut_ranking": {
            "method": ranking_method,
            "max_crossing": max_crossing,
            "head_layers": [cut.head_layers for cut in ranked],
        },
    }


def render_model_summary(console: Console, graph: LayerGraph, cuts: Sequence[CutPoint]) -> None:
    single = sum(1 for cut in cuts if cut.single_tensor)
    console.print(
        f"[bold]{graph.name}[/bold]  {len(graph)} layers · {format_count(graph.total_params)} "
        f"params · {format_count(graph.total_macs)} MACs · {len(cuts)} cut points "
        f"({single} single-tensor, {len(cuts) - single} multi-tensor)"
    )
    unscored = graph.unscored_layers
    if unscored:
        names = ", ".join(f"{layer.name} ({layer.source_op})" for layer in unscored[:8])
        more = f" and {len(unscored) - 8} more" if len(unscored) > 8 else ""
        console.print(
            f"[yellow]warning:[/yellow] {len(unscored)} layers have no compute rule and are "
            f"unscored: {names}{more}"
        )


def render_cut_table(
    console: Console,
    graph: LayerGraph,
    ranked: Sequence[CutPoint],
    top: int,
    ranking_method: str,
) -> None:
    total = graph.total_macs or 1
    table = Table(
        title=f"Cut points of {graph.name} — top {min(top, len(ranked))} of {len(ranked)}",
        caption=f"n = crossing tensors · proxy ranking: {ranking_method}",
        title_justify="left",
    )
    table.add_column("#", justify="right", min_width=2)
    table.add_column("pos", justify="right", min_width=3)
    table.add_column("cut after", overflow="ellipsis", max_width=28, no_wrap=True)
    table.add_column("n", justify="right", min_width=2)
    table.add_column("transfer", justify="right", no_wrap=True, min_width=9)
    table.add_column("head/tail MACs", justify="right", no_wrap=True, min_width=11)
    table.add_column("crossing from", overflow="ellipsis", max_width=30, no_wrap=True)
    short = _display_names(graph)
    for rank, cut in enumerate(ranked[:top], start=1):
        table.add_row(
            str(rank),
            str(cut.head_layers),
            _escape(short[cut.after]),
            str(len(cut.crossing)),
            format_bytes(cut.transfer_bytes),
            f"{100 * cut.head_macs / total:.1f}/{100 * cut.tail_macs / total:.1f}%",
            _escape(", ".join(short[t.producer] for t in cut.crossing)),
        )
    console.print(table)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_count(n: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= threshold:
            return f"{n / threshold:.2f} {suffix}"
    return f"{n:.0f}"


def _display_names(graph: LayerGraph) -> dict[str, str]:
    """Layer names without the scope most of them share (TFLite's ``ModelName_1/``)."""
    scopes = Counter(layer.name.split("/")[0] for layer in graph.layers if "/" in layer.name)
    scope, count = scopes.most_common(1)[0] if scopes else ("", 0)
    prefix = f"{scope}/" if count > len(graph.layers) // 2 else None
    return {
        layer.name: layer.name.removeprefix(prefix) if prefix else layer.name
        for layer in graph.layers
    }


def _escape(text: str) -> str:
    """Layer names are data, not rich markup."""
    return escape(text)


def attach_accuracy(document: dict[str, Any], results: Sequence[dict[str, Any]]) -> None:
    """Put measured split accuracy into an analysis document.

    ``results`` are :func:`hwsched.export.accuracy.split_accuracy` results; each candidate whose
    cut positions and stage precisions were measured gains ``accuracy`` (top-1 fraction), and
    the document gains ``accuracy`` with every measured combination.
    """
    measured: dict[tuple[tuple[int, ...], tuple[str, ...]], float] = {}
    for result in results:
        positions = tuple(result["cut_positions"])
        for row in result["combinations"]:
            measured[(positions, tuple(row["precisions"]))] = row["top1"]
    for candidate in document.get("candidates", []):
        if "cut_positions" not in candidate:  # a stage-graph candidate: not measured here
            continue
        key = (
            tuple(candidate["cut_positions"]),
            tuple(stage["precision"] for stage in candidate["stages"]),
        )
        if key in measured:
            candidate["accuracy"] = measured[key]
    document["accuracy"] = list(results)


def render_accuracy(console: Console, result: dict[str, Any]) -> None:
    """One split's top-1 accuracy per precision combination, next to the unsplit model."""
    reference = result["reference"]["top1"]
    table = Table(
        title=f"Top-1 accuracy on {result['dataset']} ({result['samples']} images), cuts at "
        f"{', '.join(map(str, result['cut_positions']))}; unsplit float model: {reference:.2%}",
        title_justify="left",
    )
    table.add_column("stage precisions")
    table.add_column("top-1", justify="right")
    table.add_column("vs unsplit", justify="right")
    table.add_column("agrees with unsplit", justify="right")
    for row in sorted(result["combinations"], key=lambda r: (-r["top1"], r["precisions"])):
        table.add_row(
            " → ".join(row["precisions"]),
            f"{row['top1']:.2%}",
            f"{100 * (row['top1'] - reference):+.2f} pt",
            f"{row['agreement']:.2%}",
        )
    console.print(table)
