"""The HTML report: one self-contained page that says where to cut, on which boards, and why.

:func:`render_html` is a pure function of the analysis document (``hwsched analyze --json``) and,
when given, the emulation and power documents; :func:`write_report` writes it atomically. The page
inlines its CSS, script and SVG, so it opens offline and requests nothing at view time. The same
input always gives the same bytes (no clock, stable ordering), and every name or descriptor string
is escaped.

Above the fold: the model, boards, link and objective; the recommended split and its gain over
the best single board; the split drawn on the layer graph; warnings. Below: the sortable ranking
table, the charts, measured against predicted, and the assumptions behind every number.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from hwsched.fileio import atomic_write_text
from hwsched.report import charts, graph_svg, measured
from hwsched.report.analysis import format_bytes, format_count
from hwsched.report.facts import (
    Doc,
    Facts,
    bottleneck,
    cut_label,
    derive,
    estimates,
    gain,
    memory_share,
    transfer_bytes,
    warnings,
)
from hwsched.report.svg import esc, sig
from hwsched.report.tiles import tiles_figure
from hwsched.schedule.sweep import region_sentence

#: Where ``hwsched analyze`` writes its report unless told otherwise (relative to the cwd).
REPORTS_DIR = "reports"
#: Per objective: the gain in words when splitting wins, when it loses, and the metric.
_GAIN_WORDS = {
    "throughput": ("higher throughput", "lower throughput", "throughput_ips"),
    "latency": ("lower latency", "higher latency", "latency_ms"),
    "energy": ("less energy per inference", "more energy per inference", "energy_mj"),
}


def default_report_path(model: str) -> Path:
    """``reports/<model>.html``, with a model file's path reduced to a safe file stem."""
    stem = Path(model).stem if os.sep in model or "." in model else model
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "model"
    return Path(REPORTS_DIR) / f"{safe}.html"


def render_html(document: Doc, emulation: Doc | None = None, power: Doc | None = None,
                plan: Any = None) -> str:
    """The report page for an analysis ``document`` (see the module doc); ``plan``, an exported
    stage-graph plan (:class:`hwsched.deployment.Plan`), is drawn too."""
    facts = derive(document)
    title = f"hwsched · {document['model']}"
    body = "".join(
        (
            _header(facts),
            _verdict(facts),
            _region_sentence(document),
            _pipeline(facts),
            _kpis(facts),
            _figure(
                charts.layer_strip(facts),
                "Where the cuts fall: every layer left to right in "
                "execution order (arcs: skip connections such as residual and squeeze-excite "
                "branches), the recommended cuts in red, and the board that runs each stage.",
            ),
            tiles_figure(document),
            _warnings(facts),
            _toc(),
            _ranking(facts),
            graph_svg.candidate_section(document),
            graph_svg.plan_section(plan) if plan is not None else "",
            _refinement(document),
            _charts(facts),
            measured.section(facts, emulation, power),
            _assumptions(facts),
            _footer(facts),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Forbid every fetch at view time: the page must stand alone.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head>\n"
        f"<body><main>{body}</main><script>{_asset('report.js')}</script></body></html>\n"
    )


def write_report(
    path: str | os.PathLike[str],
    document: Doc,
    emulation: Doc | None = None,
    power: Doc | None = None,
) -> Path:
    """Render and write the report atomically; returns the path written."""
    return atomic_write_text(path, render_html(document, emulation, power))


def _asset(name: str) -> str:
    text = resources.files("hwsched.report").joinpath("assets", name).read_text("utf-8")
    return text.replace("</", "<\\/") if name.endswith(".js") else text


# -- above the fold ------------------------------------------------------------------------------
def _header(facts: Facts) -> str:
    d = facts.document
    cuts = d["cut_points"]
    single = sum(1 for c in cuts if c.get("single_tensor"))
    facts_line = (
        f"{len(d['layers'])} layers · {format_count(d.get('total_params', 0))} params · "
        f"{format_count(d.get('total_macs', 0))} MACs · {len(cuts)} cut points "
        f"({single} single-tensor)"
    )
    precisions = d.get("precisions", {})
    chips = [
        f'<span class="chip"><span class="swatch" style="background:{facts.colour(p)}"></span>'
        f"<b>{esc(p)}</b> {esc(precisions.get(p, ''))}</span>"
        for p in d["platforms"]
    ]
    chips.append(f'<span class="chip">link <b>{esc(d["link"])}</b>{_link_speed(facts)}</span>')
    chips.append(f'<span class="chip">objective <b>{esc(d["objective"])}</b></span>')
    if d.get("assign"):
        chips.append(f'<span class="chip">assignment <b>{esc(d["assign"])}</b></span>')
    source = d.get("source")
    source_html = f' <span class="muted small">from {esc(source)}</span>' if source else ""
    return (
        f'<div class="header"><h1>{esc(d["model"])}</h1>{source_html}'
        f'<span class="muted">{esc(facts_line)}</span></div>'
        f'<div class="chips">{"".join(chips)}</div>'
    )


def _link_speed(facts: Facts) -> str:
    link = facts.document.get("hardware", {}).get("link")
    if not link or not link.get("bandwidth_bps"):
        return ""
    return f" ({esc(sig(link['bandwidth_bps'] / 1e6))} Mbit/s)"


def _verdict(facts: Facts) -> str:
    d, best = facts.document, facts.best
    if best is None or not best.get("feasible", True):
        return (
            '<div class="verdict bad" id="verdict"><div class="headline">No feasible split'
            "</div>Every listed candidate breaks a memory, op or precision limit; the "
            "reasons are in the table below.</div>"
        )
    metric = _GAIN_WORDS[d["objective"]][2]
    headline = f'<div class="headline">Recommended: {_cut_sentence(facts, best)}</div>'
    speedup, base = d.get("speedup"), facts.best_baseline
    if speedup is None or base is None:
        return (
            f'<div class="verdict" id="verdict">{headline}No single board can run the '
            "whole model: splitting is the only option.</div>"
        )
    better = speedup > 1
    shown = speedup if better else (1 / speedup if speedup > 0 else math.inf)
    words = _GAIN_WORDS[d["objective"]][0 if better else 1]
    gain_html = f'<span class="gain" id="gain">{esc(f"{shown:.2f}×")}</span>'
    base_name = esc(base["platform"])
    text = (
        f"{esc(words)} than the best single board, <b>{base_name}</b> alone "
        f"({_metric_text(base, metric)} alone vs {_metric_text(best, metric)} split)"
    )
    if better:
        return f'<div class="verdict" id="verdict">{headline}{gain_html}{text}</div>'
    headline = f'<div class="headline">Best split: {_cut_sentence(facts, best)}</div>'
    advice = (
        f'<div class="small">Splitting does not pay for this objective: run the whole '
        f"model on {base_name}, or look at the table for other trade-offs.</div>"
    )
    return f'<div class="verdict neutral" id="verdict">{headline}{gain_html}{text}{advice}</div>'


def _cut_sentence(facts: Facts, candidate: Doc) -> str:
    boards = " → ".join(esc(s.get("board", s["platform"])) for s in candidate["stages"])
    positions = candidate["cut_positions"]
    if not positions:
        return f"the whole model on {boards}"
    cuts = " and ".join(
        f"after <code>{esc(cut_label(facts.document, p))}</code> (position {p})" for p in positions
    )
    return f"cut {cuts}, run on {boards}"


def _metric_text(run: Doc, metric: str) -> str:
    unit = {"throughput_ips": "inf/s", "latency_ms": "ms", "energy_mj": "mJ"}[metric]
    return esc(f"{sig(run[metric])} {unit}")


def _pipeline(facts: Facts) -> str:
    """Stages as boxes and links as arrows; the bottleneck outlined."""
    best = facts.best
    if best is None:
        return ""
    kind, which = bottleneck(best)
    parts = []
    links = best.get("links", [])
    for i, stage in enumerate(best["stages"]):
        neck = " bottleneck" if (kind, which) == ("stage", i) else ""
        parts.append(_stage_box(facts, stage, i, neck))
        if i < len(links):
            link_neck = " bottleneck" if (kind, which) == ("link", i) else ""
            parts.append(_hop(links[i], link_neck))
    return f'<div class="pipeline" id="pipeline">{"".join(parts)}</div>'


def _stage_box(facts: Facts, stage: Doc, index: int, neck: str) -> str:
    share = memory_share(stage, facts.limits.get(stage["platform"]))
    memory = format_bytes(stage["memory_bytes"])
    if share is not None:
        memory += f" ({sig(100 * share, 2)}% of limit)"
    tags = '<span class="tag">bottleneck</span>' if neck else ""
    if not stage.get("fits_memory", True):
        tags += ' <span class="tag">does not fit</span>'
    return (
        f'<div class="stage{neck}" style="border-top-color:{facts.colour(stage["platform"])}">'
        f'<div><span class="p">{index + 1}. {esc(stage.get("board", stage["platform"]))}</span> '
        f'<span class="muted small">{esc(stage["precision"])}</span> {tags}</div>'
        f'<div class="small mono">{esc(stage["first_layer"])} … {esc(stage["last_layer"])}</div>'
        f'<div class="small">{esc(stage["layers"])} layers · '
        f'{esc(format_count(stage["macs"]))} MACs'
        f"</div><div><b>{esc(sig(stage['latency_ms']))} ms</b> · {esc(memory)} · "
        f"{esc(sig(stage['energy_mj']))} mJ</div></div>"
    )


def _hop(link: Doc, neck: str) -> str:
    tag = '<span class="tag">bottleneck</span>' if neck else ""
    return (
        f'<div class="hop{neck}"><span>{esc(format_bytes(link["transfer_bytes"]))} '
        f'{esc(link["dtype"])}</span><span class="arrow">⟶</span>'
        f"<span>{esc(sig(link['latency_ms']))} ms · {esc(link['link'])}</span>{tag}</div>"
    )


def _kpis(facts: Facts) -> str:
    best, base = facts.best, facts.best_baseline
    if best is None:
        return ""
    tiles = [
        _kpi("throughput", f"{sig(best['throughput_ips'])} inf/s", best, base, "throughput_ips"),
        _kpi("latency", f"{sig(best['latency_ms'])} ms", best, base, "latency_ms"),
        _kpi("energy / inference", f"{sig(best['energy_mj'])} mJ", best, base, "energy_mj"),
        _kpi("sent over the link", format_bytes(transfer_bytes(best)), None, None, ""),
    ]
    kind, which = bottleneck(best)
    neck = (
        best["stages"][which]["platform"]
        if kind == "stage"
        else f"link {which + 1} ({best['links'][which]['link']})"
    )
    tiles.append(
        _kpi("bottleneck (sets the period)", f"{neck}: {sig(best['period_ms'])} ms", None, None, "")
    )
    return f'<div class="kpis" id="kpis">{"".join(tiles)}</div>'


def _kpi(label: str, value: str, best: Doc | None, base: Doc | None, metric: str) -> str:
    delta = ""
    if best is not None and base is not None:
        times = gain(best, base, metric)
        if times is not None and math.isfinite(times) and times > 0:
            better = times >= 1
            # Always a factor above 1: "2× worse" reads better than "0.5× better".
            factor = times if better else 1 / times
            delta = (
                f'<div class="d {"up" if better else "down"}">{esc(f"{factor:.2f}×")} '
                f"{'better' if better else 'worse'} than "
                f"{esc(base['platform'])} alone</div>"
            )
    return (
        f'<div class="kpi"><div class="l">{esc(label)}</div><div class="v">{esc(value)}</div>'
        f"{delta}</div>"
    )


def _figure(svg_markup: str, caption: str) -> str:
    return f'<figure class="card">{svg_markup}<figcaption>{esc(caption)}</figcaption></figure>'


def _warnings(facts: Facts) -> str:
    found = warnings(facts)
    if not found:
        return '<p class="small muted" id="warnings">No warnings.</p>'
    items = "".join(f'<li class="{w.level}">{esc(w.text)}</li>' for w in found)
    return f'<ul class="warnings" id="warnings">{items}</ul>'


def _toc() -> str:
    links = (
        ("ranking", "Ranking"),
        ("times", "Stage times"),
        ("profile", "Cost profile"),
        ("memory", "Memory"),
        ("pareto", "Pareto front"),
        ("measured", "Measured"),
        ("assumptions", "Assumptions"),
    )
    return '<nav class="toc">' + "".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


# -- the ranking table ---------------------------------------------------------------------------
def _ranking(facts: Facts) -> str:
    runs = facts.candidates + facts.baselines
    stages = max((len(r["stages"]) for r in runs), default=1)
    accuracy = any("accuracy" in r for r in runs)
    head = _table_head(stages, accuracy)
    rows = [_table_row(facts, run, i, stages, accuracy) for i, run in enumerate(runs)]
    controls = (
        '<div class="controls"><input type="search" id="filter-text" '
        'placeholder="filter: board, layer, reason…" aria-label="filter rows">'
        '<label><input type="checkbox" id="filter-feasible"> feasible only</label>'
        '<label><input type="checkbox" id="filter-pareto"> Pareto only</label>'
        '<label><input type="checkbox" id="filter-baselines" checked> single boards</label>'
        '<span class="muted small" id="filter-count"></span></div>'
    )
    note = (
        "Click a column to sort. Memory columns show the share of the board's limit. "
        "★ = Pareto-optimal over throughput, latency and energy."
    )
    return (
        f'<h2 id="ranking">Ranking of candidates</h2><p class="small muted">{esc(note)}</p>'
        f'{controls}<div class="tablewrap"><table id="ranking-table">'
        f"{head}<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _table_head(stages: int, accuracy: bool) -> str:
    # Totals first (what a reader compares), then the per-stage detail that explains them.
    columns: list[tuple[str, str]] = [
        ("rank", "num"),
        ("cuts after", "text"),
        ("throughput/s", "num"),
        ("latency ms", "num"),
        ("energy mJ", "num"),
        ("transfer", "num"),
    ]
    if accuracy:
        columns.append(("accuracy", "num"))
    columns.append(("feasible", "text"))
    for k in range(1, stages + 1):
        columns += [(f"stage {k} ms", "num"), (f"mem {k} / limit", "num")]
        if k < stages:
            columns.append((f"link {k} ms", "num"))
    cells = "".join(
        f'<th class="sortable{" n" if kind == "num" else ""}" data-type="{kind}" '
        f'scope="col">{esc(name)}</th>'
        for name, kind in columns
    )
    return f"<thead><tr>{cells}</tr></thead>"


def _num_cell(value: float | None, shown: str) -> str:
    data = "" if value is None or not math.isfinite(value) else f"{value:.6g}"
    return f'<td class="n" data-v="{data}">{esc(shown)}</td>'


def _table_row(facts: Facts, run: Doc, order: int, stages: int, accuracy: bool) -> str:
    baseline = not run.get("cut_positions") and "platform" in run
    cells = [_num_cell(None if baseline else run["rank"], "—" if baseline else str(run["rank"]))]
    cells.append(_cuts_cell(facts, run, baseline))
    cells += [
        _num_cell(run["throughput_ips"], sig(run["throughput_ips"])),
        _num_cell(run["latency_ms"], sig(run["latency_ms"])),
        _num_cell(run["energy_mj"], sig(run["energy_mj"])),
        _num_cell(transfer_bytes(run), format_bytes(transfer_bytes(run))),
    ]
    if accuracy:
        value = run.get("accuracy")
        cells.append(_num_cell(value, "—" if value is None else f"{100 * value:.1f}%"))
    cells.append(_status_cell(run))
    for k in range(stages):
        cells += _stage_cells(facts, run, k, stages)
    klass = " ".join(
        k
        for k, on in (
            ("baseline", baseline),
            ("infeasible", not run.get("feasible", True)),
            ("best", run.get("rank") == 1 and not baseline),
        )
        if on
    )
    return (
        f'<tr class="{klass}" data-order="{order}" data-feasible="{int(run.get("feasible", True))}"'
        f' data-pareto="{int(bool(run.get("pareto")))}">{"".join(cells)}</tr>'
    )


def _cuts_cell(facts: Facts, run: Doc, baseline: bool) -> str:
    if baseline:
        return f'<td data-v="">{esc(run["platform"])} alone</td>'
    names = [f"{p}: {cut_label(facts.document, p)}" for p in run["cut_positions"]]
    shown = "<br>".join(f'<span class="mono">{esc(n)}</span>' for n in names)
    return f'<td data-v="{esc(" ".join(f"{p:06d}" for p in run["cut_positions"]))}">{shown}</td>'


def _stage_cells(facts: Facts, run: Doc, k: int, stages: int) -> list[str]:
    if k >= len(run["stages"]):
        blanks = 3 if k < stages - 1 else 2
        return ['<td class="n" data-v=""></td>'] * blanks
    stage = run["stages"][k]
    swatch = f'<span class="swatch" style="background:{facts.colour(stage["platform"])}"></span>'
    source = stage.get("latency_source")
    tag = (f' <span class="tag">{esc(source)}</span>'
           if source in ("profile", "measured", "compiler") else "")
    latency = (
        f'<td class="n" data-v="{stage["latency_ms"]:.6g}">{swatch}'
        f"{esc(stage['platform'])} {esc(sig(stage['latency_ms']))}{tag}</td>"
    )
    cells = [latency, _memory_cell(facts, stage)]
    if k < stages - 1:
        links = run.get("links", [])
        link = links[k] if k < len(links) else None
        cells.append(
            _num_cell(None, "")
            if link is None
            else _num_cell(
                link["latency_ms"],
                f"{sig(link['latency_ms'])} "
                f"({format_bytes(link['transfer_bytes'])} {link['dtype']})",
            )
        )
    return cells


def _memory_cell(facts: Facts, stage: Doc) -> str:
    share = memory_share(stage, facts.limits.get(stage["platform"]))
    used = format_bytes(stage["memory_bytes"])
    if share is None:
        return _num_cell(stage["memory_bytes"], used)
    width = max(2, min(40, round(40 * share)))
    over = " over" if share > 1 else ""
    return (
        f'<td class="n" data-v="{share:.6g}" title="{esc(used)}">'
        f'<span class="bar{over}" style="width:{width}px"></span> '
        f"{esc(sig(100 * share, 2))}%</td>"
    )


def _status_cell(run: Doc) -> str:
    star = ' <span class="tag star">★ Pareto</span>' if run.get("pareto") else ""
    if run.get("feasible", True):
        return f'<td data-v="yes"><span class="tag ok">yes</span>{star}</td>'
    reasons = "; ".join(run.get("reasons", [])) or "infeasible"
    return (
        f'<td data-v="no"><span class="tag">no</span> '
        f'<span class="reason">{esc(reasons)}</span></td>'
    )


# -- charts ---------------------------------------------------------------------------------------
def _charts(facts: Facts) -> str:
    objective = facts.document["objective"]
    pareto = "".join(
        _figure(charts.pareto_chart(facts, metric, label), f"Throughput against {label}.")
        for metric, label in charts.PARETO_PANELS
    )
    return "".join(
        (
            '<h2 id="times">Stage and link times</h2>',
            _figure(
                charts.stage_times(facts),
                f"Top candidates by {objective}, then each board alone. A bar is one inference "
                "end to end (its length is the latency); the red-outlined piece is the "
                "bottleneck, whose time is the pipeline period (throughput = 1 / period).",
            ),
            '<h2 id="profile">Cost profile along the model</h2>',
            _figure(
                charts.cost_profile(facts),
                "Top: multiply-accumulates per layer, coloured by the board of the recommended "
                "split. Bottom: bytes that must cross the link if the model is cut at that "
                "position (log scale); filled dots are cuts where a single tensor crosses.",
            ),
            '<h2 id="memory">Memory against each board\'s limit</h2>',
            _figure(
                charts.memory_chart(facts),
                "Weights plus peak activations of each stage of the recommended split, then of "
                "the whole model on each board. Red tick: the board's limit; dashed tick: an "
                "on-chip parameter cache (weights beyond it are streamed every inference).",
            ),
            '<h2 id="pareto">Pareto front</h2>',
            f'<div class="grid2">{pareto}</div>',
            _region(facts.document),
        )
    )


def _confirmed(run: Doc) -> str:
    """A confirmed split's mark, and the figure it was ranked first on."""
    if not run.get("confirmed"):
        return ""
    return f" ✓ <span class=\"small\">({esc(sig(run['selection_throughput_ips']))})</span>"


def _refinement(document: Doc) -> str:
    """``analyze --refine``: the re-ranked splits, each stage predicted beside measured."""
    refined = document.get("refinement")
    if not refined or not refined.get("candidates"):
        return ""
    rows = []
    for run in refined["candidates"]:
        stages = "<br>".join(
            f"{esc(s['platform'])}: {esc(sig(s['predicted_latency_ms']))} → "
            f"<b>{esc(sig(s['latency_ms']))}</b> ms <span class=\"tag\">"
            f"{esc(s.get('latency_source', ''))}</span>"
            for s in run["stages"])
        rows.append(
            f"<tr><td>{run['rank']}</td><td>{run['predicted_rank']}</td>"
            f"<td>{esc(str(run.get('refine_round', '')))}</td>"
            f"<td>{esc(', '.join(cut_label(document, p) for p in run['cut_positions']))}</td>"
            f"<td>{stages}</td><td class=\"n\">{esc(sig(run['predicted_throughput_ips']))} → "
            f"<b>{esc(sig(run['throughput_ips']))}</b>{_confirmed(run)}</td></tr>")
    if refined.get("measured_by") == "pipeline":
        how = ("Each of these splits was exported and run by the runners on this machine "
               f"({esc(str(refined.get('frames', '')))} frames, stage k on core k modulo the "
               "CPUs, as <code>hwsched emulate</code> runs it); each stage's time is the CPU per "
               "frame of everything on its core (the stage, the runner's own work, the source "
               "or sink beside it), the busiest stage's the period the run sustained; they are "
               "re-ranked on those times (predicted → measured).")
    else:
        how = ("Each stage of these splits was exported and timed whole on this machine while "
               "its partner stage ran on the other core, plus the runner's per-frame cost; "
               "they are re-ranked on those times (predicted → measured).")
    if refined.get("passes", 1) > 1:
        how += (f" Each split was measured {esc(str(refined['passes']))} times, every other "
                "pass in the reverse order, and ranked on the means.")
    if refined.get("confirm_passes"):
        how += (f" The split ranked first was then measured {refined['confirm_passes']:d} more "
                "time(s) and given that figure (✓; in brackets the figure it was chosen on): "
                "the best of several noisy measurements is, on average, a lucky one.")
    return (
        '<h2 id="refinement">Refined on measured stage times</h2><p class="small">' + how
        + " Round 0 are the profile's rank 1 and splits spread over those it "
        "predicted nearly as good; each later "
        "round measured the split the profile, corrected at the splits measured so far, ranked "
        "first, until that split was one already measured.</p><table><thead><tr><th>rank</th>"
        "<th>predicted rank</th><th>round</th><th>cut after</th><th>stage times</th>"
        "<th>inf/s</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )


def _region_sentence(document: Doc) -> str:
    """One line above the fold when a bandwidth sweep ran: where splitting starts to pay."""
    edge = document.get("bandwidth_sweep_edge")
    if not document.get("bandwidth_sweep") or edge is None:
        return ""
    return (f'<p class="small" id="region-sentence">On {esc(edge.get("link", "this link"))}: '
            f"<b>{esc(region_sentence(edge.get('edge_mbps')))}</b> (see the acceleration "
            "region below).</p>")


def _region(document: Doc) -> str:
    sweep = document.get("bandwidth_sweep")
    if not sweep:
        return ""
    return '<h2 id="region">Acceleration region</h2>' + _figure(
        charts.region_chart(sweep, document.get("bandwidth_sweep_edge")),
        "Gain of the best split over the best single board at each link bandwidth (the same "
        "boards and costs, only the link's bandwidth changed). Splitting pays right of the "
        "dashed line, the lowest bandwidth at which any split is faster than one board.",
    )


# -- assumptions ---------------------------------------------------------------------------------
def _assumptions(facts: Facts) -> str:
    d = facts.document
    models = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in d.get("cost_models", {}).items()
    )
    hardware = d.get("hardware", {})
    described = hardware.get("platforms", {})
    boards = "".join(_descriptor_block(described[p]) for p in facts.colours if p in described)
    link = _descriptor_block(hardware["link"]) if "link" in hardware else ""
    missing = (
        ""
        if hardware
        else (
            '<p class="muted">Board descriptors were not found; memory '
            "limits and sources are unknown.</p>"
        )
    )
    return (
        f'<h2 id="assumptions">Assumptions</h2>{missing}<div class="cards">'
        f'<div class="card"><h3>Cost models</h3><table class="kv">{models}</table></div>'
        f"{boards}{link}</div>"
    )


def _descriptor_block(descriptor: Mapping[str, Any]) -> str:
    rows = [
        (label, _describe(key, descriptor[key]))
        for key, label in _DESCRIPTOR_FIELDS
        if descriptor.get(key) is not None
    ]
    table = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    guessed = estimates(descriptor)
    guesses = "".join(f"<li><code>{esc(k)}</code>: {esc(v)}</li>" for k, v in guessed.items())
    guess_html = (
        (
            f"<details><summary>{len(guessed)} estimated number(s)</summary>"
            f'<ul class="small">{guesses}</ul></details>'
        )
        if guessed
        else ""
    )
    return (
        f'<div class="card"><h3>{esc(descriptor.get("kind", ""))} '
        f'{esc(descriptor.get("name", ""))}</h3><p class="small muted">'
        f'{esc(descriptor.get("description", ""))}</p><table class="kv">{table}</table>'
        f"{guess_html}</div>"
    )


#: Descriptor fields worth showing, and how to print each.
_DESCRIPTOR_FIELDS: tuple[tuple[str, str], ...] = (
    ("default_precision", "default precision"),
    ("compute_gops", "compute (GOP/s)"),
    ("ram_bytes", "RAM"),
    ("flash_bytes", "flash"),
    ("param_cache_bytes", "parameter cache"),
    ("memory_bandwidth_gbps", "memory bandwidth (GB/s)"),
    ("active_power_w", "active power (W)"),
    ("idle_power_w", "idle power (W)"),
    ("bandwidth_bps", "bandwidth (Mbit/s)"),
    ("encoding", "tensor encoding"),
    ("message_latency_ms", "latency per message (ms)"),
)


def _describe(key: str, value: Any) -> str:
    if key.endswith("_bytes"):
        return format_bytes(value)
    if key == "bandwidth_bps":
        return sig(value / 1e6)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {sig(v)}" for k, v in value.items())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return sig(value)


def _footer(facts: Facts) -> str:
    version = facts.document.get("hwsched_version", "")
    return (
        f"<footer>Generated by hwsched {esc(version)} from the analysis of "
        f"{esc(facts.document['model'])}. Every number is a prediction unless the "
        "Measured section says otherwise.</footer>"
    )
