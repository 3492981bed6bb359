"""The run over time: link bandwidth, throughput and the active split of an adaptive emulation.

An emulation that adapts (``hwsched emulate`` of a plan with ``alternatives``) records a
``timeline`` of buckets (``t_s``, the bandwidth measured per hop as ``hop_bandwidth_mbps`` or
``bandwidth_mbps``, ``throughput_ips`` delivered, ``alternative`` running) and its
``switches`` (``at_s``, ``at_frame``, ``from_cut_positions``, ``to_cut_positions``,
``measured_bandwidth_mbps``, and ``from_alternative``/``to_alternative``); a run with
``--bandwidth-schedule`` records the link rates it set (``bandwidth_schedule``: ``at_s``,
``applied_at_s``, ``bandwidth_mbps``, ``hop``). :func:`section` draws them as one inline SVG
(hand-written, like :mod:`hwsched.report.charts`) and lists the switches; a document without a
timeline gives the empty string, so the report renders as before. Times are seconds on the
emulation's own clock, from the start of streaming.

It is a pure function of the JSON document: the same document gives the same bytes.

>>> section({"throughput_ips": 10.0})
''
>>> bands([{"t_s": 0, "alternative": 0}, {"t_s": 1, "alternative": 0},
...        {"t_s": 2, "alternative": 1}], end_s=3.0)
[Band(alternative=0, start_s=0.0, stop_s=2.0), Band(alternative=1, start_s=2.0, stop_s=3.0)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hwsched.report.svg import (
    ACCENT_COLOUR,
    BAD_COLOUR,
    PALETTE,
    Scale,
    circle,
    esc,
    line,
    linear_domain,
    log_domain,
    polyline,
    rect,
    sig,
    svg,
    text,
    wants_log,
    x_axis,
    y_axis,
)

Doc = Mapping[str, Any]
WIDTH, LEFT, RIGHT = 1100, 80, 1080
#: Vertical extent of the two panels (bandwidth above, throughput below) and the band labels.
BANDWIDTH_TOP, BANDWIDTH_BOTTOM = 40, 185
THROUGHPUT_TOP, THROUGHPUT_BOTTOM = 225, 330
HEIGHT = 392
#: Band fill opacity: the split behind the lines, never over them.
BAND_OPACITY = 0.13
SCHEDULE_COLOUR = "#1d2330"
#: Width of one character of a chart note, for laying labels out (as the charts' legends do).
LABEL_CHAR_PX = 6.2


@dataclass(frozen=True)
class Band:
    """A stretch of the run on one alternative (split)."""

    alternative: int
    start_s: float
    stop_s: float


# -- reading the document (defensive: a bucket field may be missing or null) --------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _hop_key(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def hop_bandwidths(bucket: Doc) -> dict[str, float | None]:
    """A bucket's measured bandwidth per hop, by hop name (``"1"`` = stage 0 → stage 1).

    >>> hop_bandwidths({"hop_bandwidth_mbps": {"2": 5.0, "1": None}})
    {'1': None, '2': 5.0}
    >>> hop_bandwidths({"bandwidth_mbps": 19.5})
    {'link': 19.5}
    """
    value = bucket.get("hop_bandwidth_mbps", bucket.get("bandwidth_mbps"))
    if isinstance(value, Mapping):
        named = {str(k): _number(v) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        named = {str(k): _number(v) for k, v in enumerate(value)}
    else:
        named = {} if _number(value) is None else {"link": _number(value)}
    return dict(sorted(named.items(), key=lambda item: _hop_key(item[0])))


def bands(timeline: Sequence[Doc], end_s: float) -> list[Band]:
    """Contiguous runs of buckets on the same alternative; each ends where the next begins."""
    runs: list[Band] = []
    for bucket in timeline:
        t, alternative = _number(bucket.get("t_s")), bucket.get("alternative")
        if t is None or not isinstance(alternative, int) or isinstance(alternative, bool):
            continue
        if runs and runs[-1].alternative == alternative:
            continue
        if runs:
            runs[-1] = Band(runs[-1].alternative, runs[-1].start_s, t)
        runs.append(Band(alternative, t, end_s))
    return runs


def switch_aligned(runs: Sequence[Band], switches: Sequence[Doc]) -> list[Band]:
    """Bands whose boundaries sit at the switches' own times, when the switches match the band
    changes one to one: a bucket only knows the split of its last frame, so a boundary read
    from the buckets alone is off by up to a bucket.

    >>> switch_aligned([Band(0, 0.0, 1.0), Band(1, 1.0, 3.0)], [{"at_s": 1.1, "to_alternative": 1}])
    [Band(alternative=0, start_s=0.0, stop_s=1.1), Band(alternative=1, start_s=1.1, stop_s=3.0)]
    """
    if len(runs) != len(switches) + 1:
        return list(runs)
    aligned = [runs[0]]
    for band, switch in zip(runs[1:], switches, strict=True):
        at, to = _number(switch.get("at_s")), switch.get("to_alternative", band.alternative)
        if at is None or to != band.alternative or not aligned[-1].start_s <= at <= band.stop_s:
            return list(runs)
        aligned[-1] = Band(aligned[-1].alternative, aligned[-1].start_s, at)
        aligned.append(Band(band.alternative, at, band.stop_s))
    return aligned


def link_hops(document: Doc, names: Sequence[str]) -> list[str]:
    """The hops worth drawing: with a known stage count, the links between stages (hop 1 …
    stages-1), not the source's and sink's local hand-offs; else every hop named."""
    count = document.get("stages_count")
    ordered = sorted(set(names), key=_hop_key)
    if isinstance(count, int) and all(name.isdigit() for name in ordered):
        return [name for name in ordered if 0 < int(name) < count]
    return ordered


def _end_s(document: Doc) -> float:
    """The time axis' end: the last bucket, switch or rate change, whichever is latest."""
    times = [_number(b.get("t_s")) for b in document.get("timeline") or []]
    times += [_number(s.get("at_s")) for s in document.get("switches") or []]
    times += [_number(s.get("applied_at_s")) for s in document.get("bandwidth_schedule") or []]
    finite = [t for t in times if t is not None]
    return max(finite, default=0.0) or 1.0


def band_cuts(document: Doc, runs: Sequence[Band]) -> dict[int, list[int]]:
    """Alternative id → the cut positions it ran, read from the switches (which name the
    alternatives they join, or else are matched to the band changes in order) and the
    emulation's own split."""
    switches = list(document.get("switches") or [])
    named: dict[int, list[int]] = {}
    for switch in switches:
        for side in ("from", "to"):
            alternative, cuts = switch.get(f"{side}_alternative"), switch.get(
                f"{side}_cut_positions")
            if isinstance(alternative, int) and isinstance(cuts, list | tuple):
                named[alternative] = list(cuts)
    if named or not runs or len(runs) != len(switches) + 1:
        return named
        return {}
    first = (switches[0].get("from_cut_positions") if switches
             else document.get("cut_positions"))
    cuts = [first, *(s.get("to_cut_positions") for s in switches)]
    return {band.alternative: list(c) for band, c in zip(runs, cuts, strict=True)
            if isinstance(c, list | tuple)}


# -- drawing ---------------------------------------------------------------------------------------
def _tick(value: float) -> str:
    """An axis label: ``10``, ``2.5``, ``1000`` (no padded zeros)."""
    return f"{value:g}"


def _band_colour(alternative: int) -> str:
    return PALETTE[alternative % len(PALETTE)]


def _cuts_text(cuts: Sequence[int] | None) -> str:
    return "cuts " + (",".join(map(str, cuts)) or "none") if cuts is not None else ""


def _bands(document: Doc, x: Scale, end_s: float) -> str:
    runs = bands(document.get("timeline") or [], end_s)
    cuts = band_cuts(document, runs)
    runs = switch_aligned(runs, document.get("switches") or [])
    parts = []
    for band in runs:
        label = f"alternative {band.alternative}"
        known = cuts.get(band.alternative)
        tip = f"{label} ({_cuts_text(known)})" if known is not None else label
        tip += f", {sig(band.start_s)}–{sig(band.stop_s)} s"
        colour = _band_colour(band.alternative)
        parts.append(rect(x(band.start_s), BANDWIDTH_TOP, x(band.stop_s) - x(band.start_s),
                          THROUGHPUT_BOTTOM - BANDWIDTH_TOP, fill=colour,
                          fill_opacity=BAND_OPACITY, title=tip, class_="band"))
        short = f"alt {band.alternative}" + (f" · {_cuts_text(known)}" if known else "")
        # labelled inside its own band, so labels never overlap; a band too narrow for its
        # label keeps its tooltip
        if x(band.stop_s) - x(band.start_s) >= LABEL_CHAR_PX * len(short) + 8:
            parts.append(text(x(band.start_s) + 4, BANDWIDTH_TOP - 6, short, fill=colour,
                              class_="note"))
    return "".join(parts)


def _series(points: Sequence[tuple[float, float | None]], x: Scale, y: Scale,
            **attrs: object) -> str:
    """A line through the points, broken where a value is missing."""
    pieces, current = [], []
    for t, value in points:
        if value is None:
            pieces.append(current)
            current = []
        else:
            current.append((x(t), y(value)))
    pieces.append(current)
    lines = "".join(polyline(p, **attrs) for p in pieces if len(p) >= 2)
    return lines + "".join(circle(*p[0], 2, fill=attrs.get("stroke")) for p in pieces
                           if len(p) == 1)


def _schedule_steps(document: Doc, end_s: float) -> dict[str, list[tuple[float, float]]]:
    """The link rate ``--bandwidth-schedule`` set, as steps per hop (``"all"`` for every
    hop), from the moment each change took effect."""
    steps: dict[str, list[tuple[float, float]]] = {}
    for step in document.get("bandwidth_schedule") or []:
        at, rate = _number(step.get("applied_at_s")), _number(step.get("bandwidth_mbps"))
        if at is None or rate is None:
            continue
        hop = step.get("hop")
        steps.setdefault("all" if hop is None else str(hop), []).append((at, rate))
    return {hop: [*s, (end_s, s[-1][1])] for hop, s in steps.items()}


def _bandwidth_panel(document: Doc, x: Scale) -> str:
    timeline = document.get("timeline") or []
    hops = link_hops(document, [h for b in timeline for h in hop_bandwidths(b)])
    per_hop: dict[str, list[tuple[float, float | None]]] = {hop: [] for hop in hops}
    for bucket in timeline:
        t, measured = _number(bucket.get("t_s")), hop_bandwidths(bucket)
        if t is None:
            continue
        for hop in hops:
            per_hop[hop].append((t, measured.get(hop)))
    schedule = _schedule_steps(document, x.hi)
    values = [v for series in per_hop.values() for _, v in series if v is not None]
    values += [v for s in schedule.values() for _, v in s]
    if wants_log(values):
        lo, hi = log_domain(values)
        y = Scale(lo, hi, BANDWIDTH_BOTTOM, BANDWIDTH_TOP, log=True)
    else:
        y = Scale(0.0, linear_domain(values or [1.0])[1], BANDWIDTH_BOTTOM, BANDWIDTH_TOP)
    parts = [y_axis(y, LEFT, _tick, "Mbit/s" + (" (log)" if y.log else ""), 4, grid_to=RIGHT)]
    for hop, series in schedule.items():
        stepped = [pt for (t0, v), (t1, _) in pairwise(series)
                   for pt in ((x(t0), y(v)), (x(t1), y(v)))]
        parts.append(polyline(stepped, stroke=SCHEDULE_COLOUR, stroke_width=1.2,
                              stroke_dasharray="5 3", class_=f"schedule hop-{esc(hop)}"))
    for k, (hop, series) in enumerate(per_hop.items()):
        parts.append(_series(series, x, y, stroke=PALETTE[k % len(PALETTE)], stroke_width=2,
                             class_=f"bandwidth hop-{esc(hop)}"))
    return "".join(parts)


def _throughput_panel(document: Doc, x: Scale) -> str:
    points = [(t, _number(b.get("throughput_ips"))) for b in document.get("timeline") or []
              if (t := _number(b.get("t_s"))) is not None]
    values = [v for _, v in points if v is not None]
    y = Scale(0.0, linear_domain(values or [1.0])[1], THROUGHPUT_BOTTOM, THROUGHPUT_TOP)
    return (y_axis(y, LEFT, _tick, "inf/s", 3, grid_to=RIGHT)
            + _series(points, x, y, stroke=ACCENT_COLOUR, stroke_width=2, class_="throughput"))


def _switch_marks(document: Doc, x: Scale) -> str:
    parts = []
    for switch in document.get("switches") or []:
        at = _number(switch.get("at_s"))
        if at is None:
            continue
        tip = (f"switch at {sig(at)} s, frame {switch.get('at_frame')}: "
               f"{_cuts_text(switch.get('from_cut_positions'))} → "
               f"{_cuts_text(switch.get('to_cut_positions'))}, measured "
               f"{sig(_number(switch.get('measured_bandwidth_mbps')))} Mbit/s")
        parts.append(line(x(at), BANDWIDTH_TOP, x(at), THROUGHPUT_BOTTOM, stroke=BAD_COLOUR,
                          stroke_width=1.5, stroke_dasharray="4 3", class_="switch",
                          title=tip))
    return "".join(parts)


def _legend(document: Doc) -> str:
    hops = link_hops(document, [h for b in document.get("timeline") or []
                                for h in hop_bandwidths(b)])
    items = [(f"hop {h} measured" if h.isdigit() else f"{h} measured", PALETTE[k % len(PALETTE)])
             for k, h in enumerate(hops)]
    items.append(("throughput", ACCENT_COLOUR))
    parts, cursor = [], float(LEFT)
    for label, colour in items:
        parts.append(rect(cursor, HEIGHT - 14, 14, 3, fill=colour))
        parts.append(text(cursor + 18, HEIGHT - 10, label, class_="note"))
        cursor += 30 + LABEL_CHAR_PX * len(label)
    for label, colour, dash in (("link rate set (tc)", SCHEDULE_COLOUR, "5 3"),
                                ("switch", BAD_COLOUR, "4 3")):
        if label.startswith("link") and not document.get("bandwidth_schedule"):
            continue
        parts.append(line(cursor, HEIGHT - 12, cursor + 14, HEIGHT - 12, stroke=colour,
                          stroke_dasharray=dash, stroke_width=1.5))
        parts.append(text(cursor + 18, HEIGHT - 10, label, class_="note"))
        cursor += 30 + LABEL_CHAR_PX * len(label)
    return "".join(parts)


def timeline_chart(document: Doc) -> str:
    """Bandwidth per hop (top) and delivered throughput (bottom) against time, the active
    split as bands behind them, switches as red dashed lines."""
    end_s = _end_s(document)
    x = Scale(0.0, end_s, LEFT, RIGHT)
    parts = [
        _bands(document, x, end_s),
        _bandwidth_panel(document, x),
        _throughput_panel(document, x),
        _switch_marks(document, x),
        x_axis(x, THROUGHPUT_BOTTOM, _tick, "", 8),
        text((LEFT + RIGHT) / 2, THROUGHPUT_BOTTOM + 28,
             "seconds from the start of streaming", text_anchor="middle", class_="tick"),
        _legend(document),
    ]
    return svg(WIDTH, HEIGHT, "".join(parts), "Bandwidth, throughput and split over time",
               "chart-timeline")


def _switch_table(document: Doc) -> str:
    rows = "".join(
        f'<tr><td class="n">{esc(sig(_number(s.get("at_s")), 4))}</td>'
        f'<td class="n">{esc(s.get("at_frame"))}</td>'
        f"<td>{esc(_cuts_text(s.get('from_cut_positions')))} → "
        f"{esc(_cuts_text(s.get('to_cut_positions')))}</td>"
        f'<td class="n">{esc(sig(_number(s.get("measured_bandwidth_mbps"))))}</td></tr>'
        for s in document.get("switches") or []
    )
    if not rows:
        return '<p class="small muted" id="no-switches">No switch during this run.</p>'
    return ('<div class="tablewrap"><table id="switch-table"><thead><tr>'
            '<th class="n">at (s)</th><th class="n">first frame</th><th>split</th>'
            '<th class="n">measured Mbit/s</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def section(document: Doc) -> str:
    """The timeline figure and the switches of an emulation document ('' without a timeline)."""
    if not document.get("timeline"):
        return ""
    caption = ("The run over time: bandwidth measured on each hop (top), frames delivered per "
               "second (bottom), the split that ran as coloured bands, switches as red dashed "
               "lines (a switch takes effect from its first frame on).")
    if document.get("bandwidth_schedule"):
        caption += " Dashed black: the link rate --bandwidth-schedule set, from when tc applied it."
    return (f'<h3 id="timeline">Over time</h3><figure class="card">{timeline_chart(document)}'
            f"<figcaption>{esc(caption)}</figcaption></figure>{_switch_table(document)}")

