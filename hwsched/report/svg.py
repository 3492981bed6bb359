"""Small, dependency-free SVG building blocks for the HTML report.

Every function returns markup as a string; every piece of text passes through :func:`esc`, so
a layer name such as ``<script>`` is shown, never run. Coordinates are rounded to 0.01 so the same
input always gives byte-identical output.

>>> s = Scale(0, 10, 0, 100)
>>> s(5), s.ticks(3)
(50.0, [0.0, 5.0, 10.0])
>>> rect(0, 0, 10, 5, fill="#fff", title="<b>")
'<rect x="0" y="0" width="10" height="5" fill="#fff"><title>&lt;b&gt;</title></rect>'
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

#: Tick steps tried for a linear axis, per power of ten ("nice" numbers).
_NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
#: Platform colours in pipeline order (colour-blind friendly, Okabe-Ito based).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7f7f7f")
LINK_COLOUR = "#8c95a3"
BAD_COLOUR = "#c62828"
ACCENT_COLOUR = "#6f42c1"
MUTED_COLOUR = "#9aa3b2"


def esc(value: object) -> str:
    """Text and attribute-safe escaping of anything shown in the page."""
    return html.escape(str(value), quote=True)


def num(value: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros, never ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def sig(value: float | None, digits: int = 3) -> str:
    """A human number with ``digits`` significant digits (``1.23k`` style above 10 000)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞"
    if value == 0:
        return "0"
    magnitude = abs(value)
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if magnitude >= threshold:
            return f"{_round_sig(value / (threshold if suffix != 'k' else 1e3), digits)}{suffix}"
    return _round_sig(value, digits)


def _round_sig(value: float, digits: int) -> str:
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:.{decimals}f}"


@dataclass(frozen=True)
class Scale:
    """Maps a data interval ``[lo, hi]`` onto a pixel interval ``[start, stop]``."""

    lo: float
    hi: float
    start: float
    stop: float
    log: bool = False
    #: Ticks only at whole numbers (layer positions, counts).
    integer: bool = False

    def __call__(self, value: float) -> float:
        lo, hi, v = self.lo, self.hi, value
        if self.log:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(max(value, self.lo))
        span = (hi - lo) or 1.0
        return self.start + (v - lo) / span * (self.stop - self.start)

    def ticks(self, count: int = 5) -> list[float]:
        if self.log:
            first, last = math.ceil(math.log10(self.lo)), math.floor(math.log10(self.hi))
            step = max(1, math.ceil((last - first + 1) / max(count, 1)))
            return [10.0**e for e in range(first, last + 1, step)]
        step = nice_step((self.hi - self.lo) / max(count - 1, 1))
        if self.integer:
            step = float(max(1, math.ceil(step)))
        first = math.ceil(self.lo / step - 1e-9)
        last = math.floor(self.hi / step + 1e-9)
        return [round(i * step, 10) for i in range(first, last + 1)]


def nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(s * power for s in _NICE_STEPS if s * power >= raw - 1e-12)


def linear_domain(values: list[float], include_zero: bool = True) -> tuple[float, float]:
    """``[lo, hi]`` covering ``values``, padded to a nice upper bound."""
    finite = [v for v in values if math.isfinite(v)] or [1.0]
    lo = min([*finite, 0.0]) if include_zero else min(finite)
    hi = max(finite)
    if hi <= lo:
        hi = lo + 1.0
    step = nice_step((hi - lo) / 4)
    return lo if include_zero else math.floor(lo / step) * step, math.ceil(hi / step) * step


def log_domain(values: list[float]) -> tuple[float, float]:
    """Powers of ten enclosing the positive ``values``."""
    positive = [v for v in values if v > 0 and math.isfinite(v)] or [1.0]
    lo = 10.0 ** math.floor(math.log10(min(positive)))
    hi = 10.0 ** math.ceil(math.log10(max(positive)))
    return lo, hi if hi > lo else lo * 10


def wants_log(values: list[float], ratio: float = 50.0) -> bool:
    """A log axis when the positive values span more than ``ratio``."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) > ratio


def _attrs(attributes: dict[str, object]) -> str:
    parts = []
    for key, value in attributes.items():
        if value is None:
            continue
        text = num(value) if isinstance(value, float) else str(value)
        parts.append(f' {key.rstrip("_").replace("_", "-")}="{esc(text)}"')
    return "".join(parts)


def element(tag: str, title: str | None = None, body: str = "", **attributes: object) -> str:
    """One SVG element; ``title`` becomes the hover tooltip."""
    inner = (f"<title>{esc(title)}</title>" if title else "") + body
    return (
        f"<{tag}{_attrs(attributes)}>{inner}</{tag}>" if inner else f"<{tag}{_attrs(attributes)}/>"
    )


def rect(x: float, y: float, w: float, h: float, title: str | None = None, **attrs: object) -> str:
    return element(
        "rect",
        title,
        x=float(x),
        y=float(y),
        width=float(max(w, 0)),
        height=float(max(h, 0)),
        **attrs,
    )


def line(x1: float, y1: float, x2: float, y2: float, **attrs: object) -> str:
    return element("line", x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2), **attrs)


def text(x: float, y: float, content: object, **attrs: object) -> str:
    return f"<text{_attrs({'x': float(x), 'y': float(y), **attrs})}>{esc(content)}</text>"


def circle(x: float, y: float, r: float, title: str | None = None, **attrs: object) -> str:
    return element("circle", title, cx=float(x), cy=float(y), r=float(r), **attrs)


def polyline(points: list[tuple[float, float]], **attrs: object) -> str:
    coords = " ".join(f"{num(x)},{num(y)}" for x, y in points)
    return element("polyline", points=coords, fill="none", **attrs)


def path(d: str, title: str | None = None, **attrs: object) -> str:
    return element("path", title, d=d, **attrs)


def svg(width: int, height: int, body: str, label: str, chart_id: str) -> str:
    """A responsive chart: scales with its container, keeps its aspect ratio."""
    return (
        f'<svg class="chart" id="{esc(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def x_axis(
    scale: Scale, y: float, fmt, label: str = "", count: int = 6, grid_to: float | None = None
) -> str:
    """Ticks below ``y``; optional grid lines up to ``grid_to``."""
    parts = [line(scale.start, y, scale.stop, y)]
    grid = []
    for tick in scale.ticks(count):
        x = scale(tick)
        parts.append(line(x, y, x, y + 4))
        parts.append(text(x, y + 15, fmt(tick), text_anchor="middle"))
        if grid_to is not None:
            grid.append(line(x, grid_to, x, y))
    if label:
        parts.append(text((scale.start + scale.stop) / 2, y + 30, label, text_anchor="middle"))
    return (
        f'<g class="grid">{"".join(grid)}</g>' if grid else ""
    ) + f'<g class="axis tick">{"".join(parts)}</g>'


def y_axis(
    scale: Scale,
    x: float,
    fmt,
    label: str = "",
    count: int = 5,
    grid_to: float | None = None,
    label_offset: float = 44,
) -> str:
    """Ticks left of ``x``; optional grid lines across to ``grid_to``."""
    parts = [line(x, scale.start, x, scale.stop)]
    grid = []
    for tick in scale.ticks(count):
        y = scale(tick)
        parts.append(line(x - 4, y, x, y))
        parts.append(text(x - 6, y + 3.5, fmt(tick), text_anchor="end"))
        if grid_to is not None:
            grid.append(line(x, y, grid_to, y))
    if label:
        mid = (scale.start + scale.stop) / 2
        parts.append(
            text(
                x - label_offset,
                mid,
                label,
                text_anchor="middle",
                transform=f"rotate(-90 {num(x - label_offset)} {num(mid)})",
            )
        )
    return (
        f'<g class="grid">{"".join(grid)}</g>' if grid else ""
    ) + f'<g class="axis tick">{"".join(parts)}</g>'
