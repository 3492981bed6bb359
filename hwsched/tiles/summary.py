"""The tiled plan of ``analyze --tiles`` as JSON and as terminal lines.

The analysis document keeps it under ``tiles`` (fields a reader does not declare are kept, so
older readers are unaffected). Only tiled and channel-split segments are listed; every other
layer runs on board 0, the root.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hwsched.costs.profile import Profile
from hwsched.hardware import Link, Platform
from hwsched.ir import LayerGraph
from hwsched.tiles.layout import halo, tiles_argument
from hwsched.tiles.planning import (
    Segment,
    TileBoard,
    TileCoster,
    TilingPlan,
    boards_from_platforms,
    link_from_descriptor,
    plan_tiles,
)
from hwsched.tiles.receptive import Span, tile_plan

#: The latency model of a tiled plan priced without profiles (the descriptors' roofline).
TILES_LATENCY_MODEL = "roofline"
#: Whether each tile is charged its layers' weight streaming whole (JSON ``weights_charged``;
#: an analysis or plan made before says nothing: priced by output positions alone).
WEIGHTS_CHARGED = True


def tiles_latency_model(boards: Sequence[TileBoard]) -> str:
    """JSON ``latency_model`` of a tiled plan over ``boards`` (those it uses): ``roofline``,
    ``measured`` when every board is priced from a profile (segments spread over their
    layers by roofline shares, the wake charged per stage), ``measured+roofline`` when some
    are (a board without a profile keeps its descriptor's figures).

    >>> tiles_latency_model([TileBoard("0:a", (1.0,)), TileBoard("1:b", (1.0,))])
    'roofline'
    """
    measured = [b.latency_source == "profile" for b in boards]
    if measured and all(measured):
        return "measured"
    return "measured+roofline" if any(measured) else TILES_LATENCY_MODEL


def plan_for_platforms(
    graph: LayerGraph, platforms: Sequence[Platform], link: Link, precision: str | None = None,
    profiles: Sequence[Profile | None] | None = None,
) -> tuple[TileCoster, TilingPlan]:
    """The least-latency tiled plan of ``graph`` over ``platforms``, trying each board as the
    root (the others keep their order); ties go to the earlier root. ``profiles``: one per
    platform or None (:func:`~hwsched.tiles.planning.boards_from_platforms`)."""
    boards = boards_from_platforms(graph, platforms, precision, profiles=profiles)
    tile_link = link_from_descriptor(link)
    best: tuple[TileCoster, TilingPlan] | None = None
    for root in range(len(boards)):
        order = (boards[root], *boards[:root], *boards[root + 1:])
        coster = TileCoster(graph, order, tile_link)
        plan = plan_tiles(coster)
        if best is None or plan.latency_ms < best[1].latency_ms:
            best = (coster, plan)
    assert best is not None
    return best


def _span(span: Span) -> list[int]:
    return [span.start, span.stop]


def segment_to_dict(coster: TileCoster, segment: Segment,
                    labels: Sequence[str] | None = None) -> dict[str, Any]:
    """A split segment as JSON: its layers, kind, and each tile's (or part's) board (named by
    ``labels`` in the coster's board order when given), region, ``halo`` (input rows/columns
    shared with its neighbours) and cost."""
    graph = coster.graph
    names = list(labels) if labels is not None else [b.name for b in coster.boards]
    out: dict[str, Any] = {
        "first_layer": graph.layers[segment.start].name,
        "last_layer": graph.layers[segment.end].name,
        "latency_ms": segment.latency_ms,
    }
    if segment.channels is not None:
        out["kind"] = "channels"
        out["parts"] = [
            {"board": names[k], "channels": _span(part.channels),
             "macs": part.macs, "input_bytes": part.input_bytes,
             "output_bytes": part.output_bytes, "latency_ms": ms}
            for k, (part, ms) in enumerate(zip(segment.channels.parts, segment.channels.part_ms,
                                               strict=True))
        ]
        return out
    assert segment.tiled is not None
    run = segment.tiled.run
    out.update(kind="rows", run_output=run.output, halo_macs=segment.tiled.halo_macs,
               run_macs=segment.tiled.run_macs, tiles=[])
    plans = [tile_plan(graph, run, tile.region) for tile in segment.tiled.tiles]
    for k, (tile, plan) in enumerate(zip(segment.tiled.tiles, plans, strict=True)):
        out["tiles"].append({
            "board": names[k], "rows": _span(tile.region.rows), "cols": _span(tile.region.cols),
            "halo": halo(plans, k),
            "inputs": [{"tensor": name, "rows": _span(r.rows), "cols": _span(r.cols)}
                       for name, r in plan.inputs],
            "macs": tile.macs, "scatter_bytes": tile.scatter_bytes,
            "gather_bytes": tile.gather_bytes, "latency_ms": tile.latency_ms,
        })
    return out


def tiling_to_dict(coster: TileCoster, plan: TilingPlan, io_ms: float = 0.0) -> dict[str, Any]:
    """JSON-ready: the plan's latency beside the root alone and the best single board
    (``speedup`` is against the latter), and its split segments. ``io_ms``: the runner's
    cost of the model's input and output hops when it is charged
    (:func:`hwsched.schedule.tiles.runner_io_ms`), which the plan and a single board both pay,
    so that ``latency_ms`` is the tiled candidate's."""
    alone = {b.name: b.overhead_ms + sum(b.layer_ms) + io_ms for b in coster.boards}
    single = min(alone, key=lambda name: (alone[name], name))
    latency_ms = plan.latency_ms + io_ms
    return {
        "objective": "latency",
        "latency_model": tiles_latency_model(coster.boards),
        "weights_charged": WEIGHTS_CHARGED,
        "boards": [board.name for board in coster.boards],
        "latency_ms": latency_ms,
        "root_alone_ms": alone[coster.boards[0].name],
        "best_single_board": single,
        "best_single_ms": alone[single],
        "speedup": alone[single] / latency_ms if latency_ms > 0 else None,
        "segments": [segment_to_dict(coster, s) for s in plan.segments
                     if s.tiled is not None or s.channels is not None],
        **export_hint(coster, plan),
    }


def export_hint(coster: TileCoster, plan: TilingPlan) -> dict[str, Any]:
    """How ``hwsched export`` writes the plan: ``export_tiles`` (the ``--tiles`` value: its
    row-tiled runs and output-channel splits in layer order) and ``export_platforms`` (board
    order, the root first)."""
    runs = []
    for segment in plan.segments:
        if segment.tiled is not None:
            sizes = [t.region.rows.size for t in segment.tiled.tiles]
            runs.append((segment.start, segment.end, sizes, "r"))
        elif segment.channels is not None:
            sizes = [p.channels.size for p in segment.channels.parts]
            runs.append((segment.start, segment.end, sizes, "c"))
    if not runs:
        return {}
    most = max(len(sizes) for _, _, sizes, _ in runs)
    return {
        "export_tiles": tiles_argument(coster.graph, runs),
        "export_platforms": [b.name.split(":", 1)[1] for b in coster.boards[:most]],
    }


def tiling_lines(document: dict[str, Any]) -> list[str]:
    """Terminal lines for :func:`tiling_to_dict`'s document."""
    lines = [
        f"Tiled plan (single-frame latency, {document['latency_model']}, root "
        f"{document['boards'][0]}): {document['latency_ms']:.2f} ms vs "
        f"{document['best_single_ms']:.2f} ms on the best single board "
        f"({document['best_single_board']})"
        + (f": {document['speedup']:.2f}x" if document["speedup"] else "")
    ]
    for seg in document["segments"]:
        span = f"{seg['first_layer']}..{seg['last_layer']}"
        if seg["kind"] == "channels":
            sizes = "/".join(str(p["channels"][1] - p["channels"][0]) for p in seg["parts"])
            lines.append(f"  channels {span}: {sizes} output channels, {seg['latency_ms']:.2f} ms")
            continue
        sizes = "/".join(str(t["rows"][1] - t["rows"][0]) for t in seg["tiles"])
        halo = seg["halo_macs"] / seg["run_macs"] * 100 if seg["run_macs"] else 0.0
        moved = sum(t["scatter_bytes"] + t["gather_bytes"] for t in seg["tiles"])
        lines.append(f"  rows {span}: strips of {sizes} rows, halo {halo:+.1f}% MACs, "
                     f"{moved:,} B scattered+gathered, {seg['latency_ms']:.2f} ms")
    if document.get("export_tiles"):
        lines.append(f"  export: --tiles {document['export_tiles']} --platforms "
                     f"{','.join(document['export_platforms'])}")
    return lines


__all__ = [
    "export_hint",
    "plan_for_platforms",
    "segment_to_dict",
    "tiles_latency_model",
    "tiling_lines",
    "tiling_to_dict",
]
