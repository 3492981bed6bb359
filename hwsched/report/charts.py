"""The report's pictures, each a pure function from :class:`~hwsched.report.facts.Facts` to an
inline ``<svg>`` string (hand-written SVG: no charting library, nothing fetched at view time).

* :func:`layer_strip` — the layer graph as a strip, skip connections as arcs, chosen cuts drawn;
* :func:`cost_profile` — compute per layer and crossing bytes at every cut position;
* :func:`stage_times` — stacked stage and link times of the top candidates, bottleneck outlined;
* :func:`memory_chart` — memory of every stage against its board's limit;
* :func:`pareto_chart` — throughput against energy or latency, Pareto front drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hwsched.report.analysis import format_bytes
from hwsched.report.facts import Doc, Facts, bottleneck, cut_label
from hwsched.report.svg import (
    ACCENT_COLOUR,
    BAD_COLOUR,
    LINK_COLOUR,
    MUTED_COLOUR,
    Scale,
    circle,
    line,
    linear_domain,
    log_domain,
    path,
    polyline,
    rect,
    sig,
    svg,
    text,
    wants_log,
    x_axis,
    y_axis,
)

WIDTH = 1100
#: Candidates drawn in the stage-time chart.
TOP_TIMES = 8
#: Op kinds grouped into the few colours a reader can tell apart in a thin strip.
OP_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("conv", "#3b6fb6", ("conv2d", "separable_conv2d", "conv2d_transpose")),
    ("depthwise", "#7aa6dc", ("depthwise_conv2d",)),
    ("dense / matmul", "#8e44ad", ("dense", "matmul")),
    ("pool / reduce", "#16a085", ("max_pool", "avg_pool", "global_pool", "reduce")),
    ("norm / activation", "#c9ced8", ("batch_norm", "activation", "softmax", "quantize")),
    ("add / mul / concat", "#e67e22", ("elementwise", "concat")),
    ("reshape / pad / resize", "#b3b8c2", ("reshape", "pad", "resize", "identity")),
    ("input", "#1d2330", ("input",)),
)
OTHER_GROUP = ("other (unscored)", BAD_COLOUR)


def op_colour(op: str) -> str:
    for _, colour, ops in OP_GROUPS:
        if op in ops:
            return colour
    return OTHER_GROUP[1]


def _bytes_tick(value: float) -> str:
    """Decimal units on log axes, whose ticks are powers of ten (``10 kB``, not ``9.8 KiB``)."""
    for factor, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if value >= factor:
            return f"{value / factor:g} {unit}"
    return f"{value:g} B"


def _stage_bounds(candidate: Doc | None) -> list[tuple[int, int, str]]:
    """``(first, stop, platform)`` layer ranges of a candidate's stages."""
    if candidate is None:
        return []
    bounds, first = [], 0
    for stage in candidate["stages"]:
        stop = first + int(stage["layers"])
        bounds.append((first, stop, stage["platform"]))
        first = stop
    return bounds


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, step: float = 0) -> str:
    """Swatches in a row starting at ``(x, y)``; widths follow the label lengths."""
    parts, cursor = [], x
    for label, colour in items:
        outline = {"stroke": "#1d2330", "stroke_width": 0.8} if colour == "#fff" else {}
        parts.append(rect(cursor, y - 8, 10, 10, fill=colour, rx=2, **outline))
        parts.append(text(cursor + 14, y + 1, label, class_="note"))
        cursor += 24 + 6.2 * len(label) + step
    return "".join(parts)


# -- the layer graph strip -----------------------------------------------------------------------
def layer_strip(facts: Facts) -> str:
    """Layers left to right in topological order; arcs are edges that skip layers (residual,
    squeeze-excite), coloured bands are the stages of the recommended split."""
    layers = facts.document["layers"]
    n = len(layers)
    x = Scale(0, max(n, 1), 20, WIDTH - 20)
    band = max(x(1) - x(0), 0.5)
    row_y, row_h, arc_base = 92, 22, 88
    parts = [_strip_arcs(layers, facts.layer_index, x, band, arc_base)]
    for i, layer in enumerate(layers):
        parts.append(
            rect(
                x(i),
                row_y,
                max(band - 0.6, 0.4),
                row_h,
                fill=op_colour(layer["op"]),
                title=f"#{i} {layer['name']} ({layer['op']}, {layer['source_op']}) · "
                f"{sig(layer['macs'])} MACs · {sig(layer['params'])} params",
            )
        )
    parts.append(_strip_stages(facts, x, row_y + row_h + 4))
    parts.append(_strip_cuts(facts, x, 18, row_y + row_h + 22))
    groups = [(label, colour) for label, colour, _ in OP_GROUPS]
    parts.append(_legend([*groups, OTHER_GROUP], 20, 168))
    label = f"Layer graph of {facts.document['model']} with the recommended cuts"
    return svg(WIDTH, 180, "".join(parts), label, "chart-strip")


def _strip_arcs(layers: list[Doc], index: dict, x: Scale, band: float, base: float) -> str:
    arcs = []
    for i, layer in enumerate(layers):
        for source in layer.get("inputs", []):
            j = index.get(source)
            if j is None or i - j <= 1:
                continue
            x1, x2 = x(j) + band / 2, x(i) + band / 2
            lift = min(8 + 2.2 * math.sqrt(i - j) * 6, 62)
            arcs.append(
                path(
                    f"M{x1:.2f},{base} C{x1:.2f},{base - lift:.2f} {x2:.2f},{base - lift:.2f} "
                    f"{x2:.2f},{base}",
                    fill="none",
                    stroke="#9aa3b2",
                    stroke_width=0.8,
                    opacity=0.7,
                )
            )
    return f'<g class="arcs">{"".join(arcs)}</g>'


def _strip_stages(facts: Facts, x: Scale, y: float) -> str:
    parts = []
    for k, (first, stop, platform) in enumerate(_stage_bounds(facts.best)):
        parts.append(
            rect(
                x(first),
                y,
                x(stop) - x(first),
                10,
                fill=facts.colour(platform),
                title=f"stage {k + 1}: {platform}, {stop - first} layers",
            )
        )
        label = f"{k + 1}: {platform}"
        if x(stop) - x(first) > 6.5 * len(label):
            parts.append(text((x(first) + x(stop)) / 2, y + 24, label, text_anchor="middle"))
    return "".join(parts)


def _strip_cuts(facts: Facts, x: Scale, top: float, bottom: float) -> str:
    if facts.best is None:
        return ""
    parts = []
    for k, position in enumerate(facts.best["cut_positions"]):
        cx = x(position)
        link = facts.best["links"][k] if k < len(facts.best.get("links", [])) else None
        size = f" · {format_bytes(link['transfer_bytes'])} {link['dtype']}" if link else ""
        label = f"cut {k + 1} after {cut_label(facts.document, position)}{size}"
        parts.append(
            line(cx, top + 4, cx, bottom, stroke=BAD_COLOUR, stroke_width=2, stroke_dasharray="5 3")
        )
        anchor = "end" if cx > WIDTH * 0.6 else "start"
        dx = -4 if anchor == "end" else 4
        parts.append(
            text(
                cx + dx,
                top + 10 + 13 * (k % 2),
                label,
                text_anchor=anchor,
                class_="cutlabel",
                font_weight="600",
            )
        )
    return "".join(parts)


# -- compute and crossing bytes along depth ------------------------------------------------------
def cost_profile(facts: Facts) -> str:
    """Top: MACs per layer, coloured by the stage that runs it. Bottom: bytes crossing each cut
    position (log scale); filled dots are single-tensor cuts, hollow ones multi-tensor."""
    document = facts.document
    layers, cuts = document["layers"], document["cut_points"]
    n = len(layers)
    left, right = 70, WIDTH - 20
    x = Scale(0, max(n, 1), left, right, integer=True)
    band = x(1) - x(0)
    top_y = Scale(0, linear_domain([float(la["macs"] or 0) for la in layers])[1], 130, 20)
    owner = {
        i: platform
        for first, stop, platform in _stage_bounds(facts.best)
        for i in range(first, stop)
    }
    parts = [y_axis(top_y, left, sig, "MACs", 4, grid_to=right)]
    for i, layer in enumerate(layers):
        macs = layer["macs"]
        colour = facts.colour(owner[i]) if i in owner else MUTED_COLOUR
        tip = f"#{i} {layer['name']} ({layer['op']}): {sig(macs)} MACs"
        if macs is None:
            parts.append(
                rect(x(i), 124, max(band - 0.4, 0.5), 6, fill=BAD_COLOUR, title=f"{tip} — unscored")
            )
            continue
        parts.append(
            rect(
                x(i),
                top_y(macs),
                max(band - 0.4, 0.5),
                top_y(0) - top_y(macs),
                fill=colour,
                title=tip,
            )
        )
    parts.append(_crossing_panel(facts, cuts, x, left, right))
    parts.append(_profile_cut_lines(facts, x, 20, 290))
    parts.append(x_axis(x, 290, lambda v: f"{v:.0f}", "layer position (topological order)", 10))
    return svg(
        WIDTH, 330, "".join(parts), "Compute per layer and crossing bytes per cut", "chart-profile"
    )


def _crossing_panel(facts: Facts, cuts: list[Doc], x: Scale, left: float, right: float) -> str:
    sizes = [float(c["transfer_bytes"]) for c in cuts]
    lo, hi = log_domain(sizes)
    y = Scale(lo, hi, 280, 160, log=True)
    parts = [y_axis(y, left, _bytes_tick, "crossing bytes", 4, grid_to=right, label_offset=58)]
    points = [(x(c["head_layers"]), y(max(float(c["transfer_bytes"]), lo))) for c in cuts]
    if points:
        parts.append(polyline(points, stroke="#8c95a3", stroke_width=1))
    for cut, (px, py) in zip(cuts, points, strict=True):
        single = cut.get("single_tensor", len(cut["crossing"]) == 1)
        tip = (
            f"cut at {cut['head_layers']} after {cut['after']}: "
            f"{format_bytes(cut['transfer_bytes'])} in {len(cut['crossing'])} tensor(s)"
        )
        parts.append(
            circle(
                px,
                py,
                2.6 if single else 2.2,
                title=tip,
                fill="#1d2330" if single else "#fff",
                stroke="#1d2330",
                stroke_width=1,
                class_="single" if single else "multi",
            )
        )
    parts.append(
        _legend(
            [("single-tensor cut", "#1d2330"), ("multi-tensor cut (hollow)", "#fff")],
            right - 330,
            10,
        )
    )
    return "".join(parts)


def _profile_cut_lines(facts: Facts, x: Scale, top: float, bottom: float) -> str:
    if facts.best is None:
        return ""
    return "".join(
        line(x(p), top, x(p), bottom, stroke=BAD_COLOUR, stroke_width=1.5, stroke_dasharray="5 3")
        + text(x(p) + 3, top + 8, f"cut {k + 1}", fill=BAD_COLOUR, class_="note")
        for k, p in enumerate(facts.best["cut_positions"])
    )


# -- stacked stage and link times ----------------------------------------------------------------
def stage_times(facts: Facts) -> str:
    """One bar per candidate: stages and links end to end (the latency); the bottleneck, which
    sets the period and so the throughput, is outlined in red."""
    rows = [(f"#{c['rank']}", c) for c in facts.candidates[:TOP_TIMES]]
    rows += [(f"{b['platform']} alone", b) for b in facts.baselines]
    row_h, top, left, right = 24, 24, 130, WIDTH - 190
    height = top + row_h * len(rows) + 44
    # Scaled to the candidates and the best board alone: a slow board would squash the rest,
    # so its bar is cut at the edge (its full time is written beside it).
    shown = [c["latency_ms"] for c in facts.candidates[:TOP_TIMES]]
    shown += [facts.best_baseline["latency_ms"]] if facts.best_baseline else []
    shown = shown or [r["latency_ms"] for _, r in rows]
    x = Scale(0, linear_domain(shown)[1], left, right)
    parts = [x_axis(x, top + row_h * len(rows) + 4, sig, "ms per inference", 8, grid_to=top - 4)]
    for k, (label, run) in enumerate(rows):
        parts.append(_time_row(facts, run, label, x, top + k * row_h, row_h - 7, right))
    platforms = [(p, facts.colour(p)) for p in facts.colours]
    parts.append(_legend([*platforms, ("link", LINK_COLOUR), ("bottleneck", "#fff")], left, 14))
    parts.append(
        rect(
            left + _legend_width([*platforms, ("link", "")]),
            6,
            10,
            10,
            fill="none",
            stroke=BAD_COLOUR,
            stroke_width=2,
        )
    )
    return svg(
        WIDTH, height, "".join(parts), "Stage and link times of the top candidates", "chart-times"
    )


def _legend_width(items: Sequence[tuple[str, str]]) -> float:
    return sum(24 + 6.2 * len(label) for label, _ in items)


def _time_row(
    facts: Facts, run: Doc, label: str, x: Scale, y: float, h: float, right: float
) -> str:
    kind, which = bottleneck(run)
    parts = [
        text(
            x.start - 8,
            y + h - 4,
            label,
            text_anchor="end",
            fill=BAD_COLOUR if not run.get("feasible", True) else None,
        )
    ]
    cursor = 0.0
    segments = _segments(facts, run)
    for seg_kind, index, ms, name, colour in segments:
        is_neck = (seg_kind, index) == (kind, which)
        if cursor >= x.hi:
            break
        ms = min(ms, x.hi - cursor)
        parts.append(
            rect(
                x(cursor),
                y,
                x(cursor + ms) - x(cursor),
                h,
                fill=colour,
                stroke=BAD_COLOUR if is_neck else "#fff",
                stroke_width=2.5 if is_neck else 0.5,
                class_="bottleneck" if is_neck else None,
                title=f"{name}: {ms:.3f} ms" + (" — bottleneck" if is_neck else ""),
            )
        )
        cursor += ms
    summary = f"{sig(run['throughput_ips'])}/s · {sig(run['latency_ms'])} ms"
    if run["latency_ms"] > x.hi:
        summary = "» " + summary
    if not run.get("feasible", True):
        summary += " · infeasible"
    parts.append(text(right + 8, y + h - 4, summary))
    return "".join(parts)


def _segments(facts: Facts, run: Doc) -> list[tuple[str, int, float, str, str]]:
    """``(kind, index, ms, name, colour)`` of stages and links, interleaved in pipeline order."""
    out = []
    links = run.get("links", [])
    for i, stage in enumerate(run["stages"]):
        out.append(
            (
                "stage",
                i,
                stage["latency_ms"],
                f"stage {i + 1} {stage['platform']}",
                facts.colour(stage["platform"]),
            )
        )
        if i < len(links):
            link = links[i]
            out.append(
                (
                    "link",
                    i,
                    link["latency_ms"],
                    f"link {i + 1} {link['link']}, {format_bytes(link['transfer_bytes'])}",
                    LINK_COLOUR,
                )
            )
    return out


# -- memory against limits -----------------------------------------------------------------------
def memory_rows(facts: Facts) -> list[tuple[str, str, float, float | None, str, float | None]]:
    """``(label, platform, bytes, limit bytes, limit name, param cache)`` per chart row: the
    recommended split's stages, then each board running the whole model alone."""
    runs = [(f"#1 stage {i + 1}", s) for i, s in enumerate((facts.best or {}).get("stages", []))]
    runs += [("alone", b["stages"][0]) for b in facts.baselines]
    rows = []
    for label, stage in runs:
        platform = stage["platform"]
        limits = facts.limits.get(platform)
        cache = limits.param_cache_bytes if limits else None
        if limits and limits.flash_bytes:
            rows.append(
                (
                    f"{label} weights",
                    platform,
                    stage["weights_bytes"],
                    limits.flash_bytes,
                    "flash",
                    None,
                )
            )
            rows.append(
                (
                    f"{label} activations",
                    platform,
                    stage["peak_activation_bytes"],
                    limits.ram_bytes,
                    "RAM",
                    None,
                )
            )
            continue
        ram = limits.ram_bytes if limits else None
        rows.append((label, platform, stage["memory_bytes"], ram, "RAM", cache))
    return rows


def memory_chart(facts: Facts) -> str:
    """Weights + peak activations of every stage on a log axis, each board's limit as a red
    tick on its row (an Edge TPU's parameter cache as a dashed one)."""
    rows = memory_rows(facts)
    row_h, top, left, right = 24, 12, 250, WIDTH - 250
    values = [r[2] for r in rows] + [r[3] for r in rows if r[3]] + [r[5] for r in rows if r[5]]
    lo, hi = log_domain([max(v, 1.0) for v in values])
    x = Scale(lo, hi, left, right, log=True)
    bottom = top + row_h * len(rows) + 4
    parts = [x_axis(x, bottom, _bytes_tick, "bytes (log scale)", 8, grid_to=top)]
    for k, row in enumerate(rows):
        parts.append(_memory_row(facts, row, x, top + k * row_h, row_h - 8, right))
    return svg(
        WIDTH,
        bottom + 40,
        "".join(parts),
        "Memory per stage against each board's limit",
        "chart-memory",
    )


def _memory_row(facts: Facts, row: tuple, x: Scale, y: float, h: float, right: float) -> str:
    label, platform, used, limit, limit_name, cache = row
    over = limit is not None and used > limit
    parts = [
        text(x.start - 8, y + h - 3, f"{label} · {platform}", text_anchor="end"),
        rect(
            x.start,
            y,
            x(max(used, x.lo)) - x.start,
            h,
            fill=BAD_COLOUR if over else facts.colour(platform),
            title=f"{platform}: {format_bytes(used)}",
        ),
    ]
    if cache:
        parts.append(
            line(
                x(cache),
                y - 3,
                x(cache),
                y + h + 3,
                stroke="#1d2330",
                stroke_dasharray="3 2",
                stroke_width=1.5,
            )
        )
    if limit is None:
        parts.append(text(right + 8, y + h - 3, f"{format_bytes(used)} · limit unknown"))
        return "".join(parts)
    parts.append(
        line(
            x(limit),
            y - 4,
            x(limit),
            y + h + 4,
            stroke=BAD_COLOUR,
            stroke_width=2.5,
            class_="limit",
        )
    )
    share = 100 * used / limit if limit else math.inf
    verdict = "exceeds " if over else ""
    parts.append(
        text(
            right + 8,
            y + h - 3,
            f"{format_bytes(used)} {verdict}of {format_bytes(limit)} {limit_name} "
            f"({sig(share, 2)}%)",
            fill=BAD_COLOUR if over else None,
        )
    )
    return "".join(parts)


# -- Pareto front --------------------------------------------------------------------------------
PARETO_PANELS = (
    ("energy_mj", "energy per inference (mJ)"),
    ("latency_ms", "latency (ms)"),
)


def pareto_chart(facts: Facts, metric: str, label: str) -> str:
    """Throughput (up is better) against ``metric`` (left is better) for every listed
    candidate and single board; the 2-D non-dominated feasible points are joined."""
    runs = [*facts.candidates, *facts.baselines]
    width, height, left, right, top, bottom = 540, 300, 62, 525, 14, 250
    xs = [r[metric] for r in runs]
    ys = [r["throughput_ips"] for r in runs]
    x = _auto_scale(xs, left, right)
    y = _auto_scale(ys, bottom, top)
    parts = [
        x_axis(x, bottom, sig, label, 6, grid_to=top),
        y_axis(y, left, sig, "throughput (inf/s)", 5, grid_to=right),
        _front(runs, metric, x, y),
    ]
    parts += [_pareto_point(facts, r, x(r[metric]), y(r["throughput_ips"]), metric) for r in runs]
    parts.append(
        _legend(
            [
                ("Pareto (3 objectives)", ACCENT_COLOUR),
                ("other feasible", MUTED_COLOUR),
                ("infeasible", BAD_COLOUR),
            ],
            left,
            height - 8,
        )
    )
    chart_id = f"chart-pareto-{metric.split('_')[0]}"
    return svg(width, height, "".join(parts), f"Throughput against {label}", chart_id)


def _auto_scale(values: list[float], start: float, stop: float) -> Scale:
    finite = [v for v in values if math.isfinite(v)]
    if wants_log(finite, ratio=10.0):
        lo, hi = log_domain(finite)
        return Scale(lo, hi, start, stop, log=True)
    lo, hi = linear_domain(finite)
    return Scale(lo, hi, start, stop)


def _front(runs: list[Doc], metric: str, x: Scale, y: Scale) -> str:
    feasible = sorted(
        ((r[metric], r["throughput_ips"]) for r in runs if r.get("feasible", True)),
        key=lambda p: (p[0], -p[1]),
    )
    front, best_y = [], -math.inf
    for px, py in feasible:
        if py > best_y:
            front.append((px, py))
            best_y = py
    steps: list[tuple[float, float]] = []
    for i, (px, py) in enumerate(front):
        if i:
            steps.append((x(px), y(front[i - 1][1])))
        steps.append((x(px), y(py)))
    if len(steps) < 2:
        return ""
    return polyline(
        steps, stroke=ACCENT_COLOUR, stroke_width=1.5, stroke_dasharray="4 3", class_="front"
    )


def _pareto_point(facts: Facts, run: Doc, px: float, py: float, metric: str) -> str:
    tip = (
        f"{_run_name(run)}: {sig(run['throughput_ips'])}/s, {sig(run['latency_ms'])} ms, "
        f"{sig(run['energy_mj'])} mJ" + ("" if run.get("feasible", True) else " — infeasible")
    )
    if "platform" in run and not run.get("cut_positions"):
        colour = facts.colour(run["platform"])
        return rect(
            px - 5,
            py - 5,
            10,
            10,
            fill=colour,
            stroke="#1d2330",
            title=tip,
            class_="point baseline",
        ) + _point_label(px, py, f"{run['platform']} alone")
    if not run.get("feasible", True):
        d = (
            f"M{px - 4:.2f},{py - 4:.2f}L{px + 4:.2f},{py + 4:.2f}M{px - 4:.2f},{py + 4:.2f}"
            f"L{px + 4:.2f},{py - 4:.2f}"
        )
        return path(d, title=tip, stroke=BAD_COLOUR, stroke_width=1.8, class_="point")
    colour = ACCENT_COLOUR if run.get("pareto") else MUTED_COLOUR
    dot = circle(px, py, 4.5, title=tip, fill=colour, stroke="#fff", class_="point")
    if run.get("rank") == 1:
        dot += circle(px, py, 8, fill="none", stroke="#1d2330", stroke_width=1.5)
        dot += text(px + 10, py - 6, "#1 recommended", font_weight="600")
    return dot


def _point_label(px: float, py: float, label: str, right_edge: float = 400) -> str:
    """A label right of its point, or left of it near the plot's right edge."""
    if px > right_edge:
        return text(px - 8, py + 4, label, class_="note", text_anchor="end")
    return text(px + 8, py + 4, label, class_="note")


def _run_name(run: Doc) -> str:
    if "platform" in run and not run.get("cut_positions"):
        return f"{run['platform']} alone"
    return f"#{run['rank']} cuts {','.join(map(str, run['cut_positions']))}"


def chart_ids() -> tuple[str, ...]:
    """Every chart's element id, in page order (the browser test checks each one)."""
    return (
        "chart-strip",
        "chart-times",
        "chart-profile",
        "chart-memory",
        *(f"chart-pareto-{m.split('_')[0]}" for m, _ in PARETO_PANELS),
    )


# -- acceleration region -------------------------------------------------------------------------
def region_chart(sweep: Sequence[Doc], edge: Doc | None) -> str:
    """Gain of the best split over the best single board against link bandwidth (log axis),
    from ``analyze --sweep-bandwidth``; the region's edge is the dashed vertical line."""
    width, height, left, right, top, bottom = WIDTH, 300, 70, WIDTH - 20, 16, 250
    bandwidths = [p["bandwidth_mbps"] for p in sweep]
    gains = [max(p["gain"], 1.0) for p in sweep]
    edge_mbps = (edge or {}).get("edge_mbps")
    lo, hi = log_domain([*bandwidths, *([edge_mbps] if edge_mbps else [])])
    x = Scale(lo, hi, left, right, log=True)
    y_lo, y_hi = linear_domain([*gains, 1.0], include_zero=False)
    y = Scale(min(y_lo, 0.95), max(y_hi, 1.05), bottom, top)
    parts = [
        x_axis(x, bottom, sig, "link bandwidth (Mbit/s, log)", 6, grid_to=top),
        y_axis(y, left, sig, "gain over one board (×)", 5, grid_to=right),
        line(left, y(1.0), right, y(1.0), stroke=MUTED_COLOUR, stroke_dasharray="2 3"),
        polyline([(x(b), y(g)) for b, g in zip(bandwidths, gains, strict=True)],
                 stroke=ACCENT_COLOUR, stroke_width=2, class_="region"),
    ]
    for b, g, p in zip(bandwidths, gains, sweep, strict=True):
        cuts = ",".join(map(str, p["best_cut_positions"])) or "one board"
        parts.append(circle(x(b), y(g), 4, fill=ACCENT_COLOUR, stroke="#fff",
                            title=f"{sig(b)} Mbit/s: {cuts}, {sig(p['throughput_ips'])} inf/s, "
                            f"{g:.3f}×", class_="point"))
    if edge_mbps:
        parts.append(line(x(edge_mbps), top, x(edge_mbps), bottom, stroke=BAD_COLOUR,
                          stroke_dasharray="5 3", class_="edge"))
        parts.append(text(x(edge_mbps) + 6, top + 12, f"edge {sig(edge_mbps)} Mbit/s",
                          class_="note"))
    return svg(width, height, "".join(parts), "Gain over one board against link bandwidth",
               "chart-region")
