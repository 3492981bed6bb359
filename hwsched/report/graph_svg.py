"""The stage graph drawn as one self-contained SVG: a box per stage, an arrow per edge.

A stage box says its board (and core set), its layer range and its time; an arrow says which
tensors the edge carries and how many bytes; the **critical path** — the chain of stages and
edges whose times add up to the frame's latency — is drawn in the accent colour. Two sources
give a :class:`StageGraph`: a stage-graph candidate of an analysis (:func:`from_candidate`, as
``analyze --placement graph`` or ``--mapping`` writes it) and an exported plan with ``edges``
(:func:`from_plan`). A chain is not drawn here: the report's layer strip draws it as before.

Boxes are placed in columns by their depth (the longest run of edges from a stage without
inputs), in stage order within a column, so the same graph always gives the same bytes.

>>> g = StageGraph("fork", (
...     StageBox(0, "pi", None, "x", "x", 1, 1.0),
...     StageBox(1, "pi", (0,), "a0", "a1", 2, 5.0),
...     StageBox(2, "nano", None, "b0", "b1", 2, 3.0),
...     StageBox(3, "pi", None, "add", "add", 1, 1.0),
... ), (EdgeArrow(0, 1, ("x",), 10, 0.0), EdgeArrow(0, 2, ("x",), 10, 2.5),
...     EdgeArrow(1, 3, ("a1",), 10, 0.0), EdgeArrow(2, 3, ("b1",), 10, 2.5)))
>>> critical_path(g)
((0, 2, 3), ((0, 2), (2, 3)))
>>> svg_text = render_stage_graph(g, "demo")
>>> svg_text.count('class="sg-stage'), svg_text.count('class="sg-edge')
(4, 4)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hwsched.report.analysis import format_bytes
from hwsched.report.svg import ACCENT_COLOUR, LINK_COLOUR, esc, num, sig, text

BOX_WIDTH, BOX_HEIGHT = 180, 58
COLUMN_GAP, ROW_GAP, MARGIN = 150, 30, 16
#: Tensor names shown on an arrow before "+N more".
SHOWN_TENSORS = 2


@dataclass(frozen=True)
class StageBox:
    index: int
    board: str
    cores: tuple[int, ...] | None
    first_layer: str
    last_layer: str
    layer_count: int
    #: Compute time of the stage (None: not known, e.g. a plan without a prediction).
    latency_ms: float | None


@dataclass(frozen=True)
class EdgeArrow:
    source: int
    target: int
    tensors: tuple[str, ...]
    transfer_bytes: int | None
    latency_ms: float | None
    #: Both stages on one board: the tensors move in memory, no link is used.
    same_board: bool = False


@dataclass(frozen=True)
class StageGraph:
    title: str
    stages: tuple[StageBox, ...]
    edges: tuple[EdgeArrow, ...]


# -- sources -----------------------------------------------------------------------------------
def from_candidate(record: Mapping[str, Any], title: str) -> StageGraph:
    """A graph candidate of an analysis document (stages with ``layers`` and ``board``, edges
    ``{from, to, tensors}`` with their ``transfer_bytes`` and ``latency_ms``)."""
    stages = tuple(
        StageBox(int(s["index"]), str(s["board"]), _cores(s.get("cores")), s["layers"][0],
                 s["layers"][-1], len(s["layers"]), _number(s.get("latency_ms")))
        for s in record["stages"]
    )
    edges = tuple(
        EdgeArrow(int(e["from"]), int(e["to"]), tuple(e["tensors"]),
                  e.get("transfer_bytes"), _number(e.get("latency_ms")),
                  "link" in e and e["link"] is None)
        for e in record["edges"]
    )
    return StageGraph(title, stages, edges)


def from_plan(plan: Any, title: str) -> StageGraph:
    """An exported stage-graph plan (:class:`hwsched.deployment.Plan` with ``edges``): bytes
    from its ``links``, stage times from its ``prediction`` when it has them."""
    predicted = plan.prediction.get("stages") or []
    times = [_number(s.get("latency_ms")) if isinstance(s, Mapping) else None for s in predicted]
    stages = tuple(
        StageBox(s.index, s.board or s.platform, s.cores, s.first_layer, s.last_layer, 0,
                 times[k] if k < len(times) else None)
        for k, s in enumerate(plan.stages)
    )
    sizes = {(link.from_stage, link.to_stage): link.transfer_bytes for link in plan.links}
    board = {s.index: s.board or s.platform for s in plan.stages}
    edges = tuple(
        EdgeArrow(e.from_stage, e.to_stage, tuple(e.tensors),
                  sizes.get((e.from_stage, e.to_stage)), None,
                  board[e.from_stage] == board[e.to_stage])
        for e in plan.edges
    )
    return StageGraph(title, stages, edges)


def _cores(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(c) for c in value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


# -- the critical path -------------------------------------------------------------------------
def critical_path(graph: StageGraph) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """The stages and edges of the longest path through stage and edge times (unknown times
    count 0; ties keep the earlier stage). Stages are in a topological order by index."""
    stage_ms = {s.index: s.latency_ms or 0.0 for s in graph.stages}
    finish: dict[int, float] = {}
    via: dict[int, int | None] = {}
    for stage in sorted(graph.stages, key=lambda s: s.index):
        best, parent = 0.0, None
        for edge in graph.edges:
            if edge.target == stage.index and edge.source in finish:
                reach = finish[edge.source] + (edge.latency_ms or 0.0)
                if parent is None or reach > best:
                    best, parent = reach, edge.source
        finish[stage.index], via[stage.index] = best + stage_ms[stage.index], parent
    if not finish:
        return (), ()
    end = max(finish, key=lambda i: (finish[i], -i))
    path = [end]
    while via[path[-1]] is not None:
        path.append(via[path[-1]])  # type: ignore[arg-type]
    path.reverse()
    return tuple(path), tuple(itertools.pairwise(path))


# -- layout and drawing ------------------------------------------------------------------------
def _columns(graph: StageGraph) -> dict[int, int]:
    depth: dict[int, int] = {}
    for stage in sorted(graph.stages, key=lambda s: s.index):
        ins = [depth[e.source] + 1 for e in graph.edges
               if e.target == stage.index and e.source in depth]
        depth[stage.index] = max(ins, default=0)
    return depth


def _positions(graph: StageGraph) -> tuple[dict[int, tuple[float, float]], int, int]:
    column = _columns(graph)
    rows: dict[int, int] = {}
    placed: dict[int, tuple[float, float]] = {}
    for stage in sorted(graph.stages, key=lambda s: s.index):
        c = column[stage.index]
        r = rows.get(c, 0)
        rows[c] = r + 1
        placed[stage.index] = (MARGIN + c * (BOX_WIDTH + COLUMN_GAP),
                               MARGIN + 18 + r * (BOX_HEIGHT + ROW_GAP))
    width = MARGIN * 2 + (max(column.values(), default=0) + 1) * (BOX_WIDTH + COLUMN_GAP) \
        - COLUMN_GAP
    height = MARGIN * 2 + 18 + max(rows.values(), default=1) * (BOX_HEIGHT + ROW_GAP) - ROW_GAP
    return placed, width, height


def _box(stage: StageBox, x: float, y: float, critical: bool) -> str:
    cores = f" cores {','.join(map(str, stage.cores))}" if stage.cores else ""
    layers = stage.first_layer if stage.first_layer == stage.last_layer else \
        f"{stage.first_layer} … {stage.last_layer}"
    count = f" ({stage.layer_count} layers)" if stage.layer_count else ""
    time = f"{sig(stage.latency_ms)} ms" if stage.latency_ms is not None else ""
    stroke = ACCENT_COLOUR if critical else LINK_COLOUR
    tooltip = f"stage {stage.index} on {stage.board}{cores}: {layers}{count} {time}".strip()
    return (
        f'<g class="sg-stage{" critical" if critical else ""}" data-stage="{stage.index}">'
        f"<title>{esc(tooltip)}</title>"
        f'<rect x="{num(x)}" y="{num(y)}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" '
        f'fill="#fff" stroke="{stroke}" stroke-width="{3 if critical else 1.5}"/>'
        + text(x + 8, y + 17, f"{stage.index}: {stage.board}{cores}", font_weight="bold")
        + text(x + 8, y + 33, _clip(layers, 28))
        + text(x + 8, y + 49, f"{time}{count}".strip(), class_="muted")
        + "</g>"
    )


def _arrow(edge: EdgeArrow, placed: Mapping[int, tuple[float, float]], critical: bool,
           marker: str) -> str:
    (x1, y1), (x2, y2) = placed[edge.source], placed[edge.target]
    x1, y1, y2 = x1 + BOX_WIDTH, y1 + BOX_HEIGHT / 2, y2 + BOX_HEIGHT / 2
    bend = max((x2 - x1) / 2, 30)
    d = f"M{num(x1)},{num(y1)} C{num(x1 + bend)},{num(y1)} {num(x2 - bend)},{num(y2)} " \
        f"{num(x2)},{num(y2)}"
    shown = ", ".join(edge.tensors[:SHOWN_TENSORS])
    if len(edge.tensors) > SHOWN_TENSORS:
        shown += f" +{len(edge.tensors) - SHOWN_TENSORS} more"
    size = format_bytes(edge.transfer_bytes) if edge.transfer_bytes is not None else ""
    if edge.same_board:
        size = f"{size} on board".strip()
    time = f", {sig(edge.latency_ms)} ms" if edge.latency_ms else ""
    colour = ACCENT_COLOUR if critical else LINK_COLOUR
    mid_x, mid_y = (x1 + x2) / 2, (y1 + y2) / 2
    return (
        f'<g class="sg-edge{" critical" if critical else ""}" data-from="{edge.source}" '
        f'data-to="{edge.target}"><title>{esc(f"{edge.source}→{edge.target}: ")}'
        f"{esc(', '.join(edge.tensors))} {esc(size)}{esc(time)}</title>"
        f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="{3 if critical else 1.5}" '
        f'marker-end="url(#{marker}{"-c" if critical else ""})"/>'
        + text(mid_x, mid_y - 4, _clip(shown, 24), text_anchor="middle", class_="small",
               **_HALO)
        + text(mid_x, mid_y + 9, f"{size}{time}", text_anchor="middle", class_="muted small",
               **_HALO)
        + "</g>"
    )


#: A white outline behind an arrow's label, so the curve under it does not strike it through.
_HALO = {"stroke": "#fff", "stroke_width": "3", "paint_order": "stroke"}


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def render_stage_graph(graph: StageGraph, chart_id: str) -> str:
    """The SVG (``chart_id`` keeps its arrow markers apart from another drawing's)."""
    placed, width, height = _positions(graph)
    on_path, path_edges = critical_path(graph)
    marker = f"{chart_id}-arrow"
    defs = "".join(
        f'<marker id="{esc(marker + suffix)}" viewBox="0 0 10 10" refX="10" refY="5" '
        f'markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for suffix, colour in (("", LINK_COLOUR), ("-c", ACCENT_COLOUR))
    )
    arrows = "".join(_arrow(e, placed, (e.source, e.target) in path_edges, esc(marker))
                     for e in graph.edges)
    boxes = "".join(_box(s, *placed[s.index], s.index in on_path) for s in graph.stages)
    return (
        f'<svg class="chart stage-graph" id="{esc(chart_id)}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(graph.title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<defs>{defs}</defs>" + text(MARGIN, MARGIN + 4, graph.title, font_weight="bold")
        + arrows + boxes + "</svg>"
    )


# -- report sections ---------------------------------------------------------------------------
def candidate_section(document: Mapping[str, Any]) -> str:
    """The best-ranked graph candidate and the evaluated mapping, drawn; "" for a chain-only
    analysis (whose page stays as it was)."""
    graphs = [c for c in document.get("candidates", []) if c.get("placement") == "graph"]
    figures = []
    if graphs:
        best = graphs[0]
        figures.append(_figure(
            render_stage_graph(from_candidate(best, f"graph candidate #{best['rank']}"),
                               "stage-graph-best"),
            f"The best-ranked stage-graph candidate (rank {best['rank']} among chain and graph "
            f"candidates; latency {sig(best['latency_ms'])} ms, {sig(best['throughput_ips'])} "
            "inf/s): a box per stage, an arrow per edge with its tensors and bytes; the "
            "critical path (what one frame waits for) in purple."))
    mapping = document.get("mapping")
    if isinstance(mapping, Mapping) and mapping.get("stages"):
        figures.append(_figure(
            render_stage_graph(from_candidate(mapping, f"mapping {mapping.get('source', '')}"),
                               "stage-graph-mapping"),
            f"The mapping file's stage graph (latency {sig(mapping['latency_ms'])} ms); the "
            "critical path in purple."))
    if not figures:
        return ""
    return '<h2 id="stage-graph">Stage graph</h2>' + "".join(figures)


def plan_section(plan: Any) -> str:
    """An exported stage-graph plan, drawn; "" for a chain plan."""
    if not getattr(plan, "edges", ()):
        return ""
    return '<h2 id="plan-graph">Exported stage graph</h2>' + _figure(
        render_stage_graph(from_plan(plan, f"plan of {plan.model}"), "stage-graph-plan"),
        "The exported plan's stages and edges (bytes per frame from its links); the critical "
        "path by its predicted stage times in purple.")


def _figure(markup: str, caption: str) -> str:
    return f'<figure class="card">{markup}<figcaption>{esc(caption)}</figcaption></figure>'

