"""The tiled plan of ``analyze --tiles`` drawn on the layer strip.

Layers left to right in execution order, as on the cut strip; each tiled run is a band over
its layers cut into one horizontal slice per board, as tall as the share of the run's output
rows that board computes (an output-channel split: its share of the channels). Layers outside
every band run on the root board. Nothing is drawn when the analysis has no ``tiles``.
"""

from __future__ import annotations

from typing import Any

from hwsched.report.svg import PALETTE, Scale, esc, rect, sig, svg, text

WIDTH = 1100
_BAND_TOP, _BAND_HEIGHT = 30, 90

Doc = dict[str, Any]


def tiles_figure(document: Doc) -> str:
    """The figure (with caption) of the document's tiled plan, or "" without one."""
    tiles = document.get("tiles")
    if not tiles or not tiles.get("segments"):
        return ""
    return (f'<figure class="card">{tiles_strip(document)}<figcaption>'
            f"{esc(_caption(tiles))}</figcaption></figure>")


def _caption(tiles: Doc) -> str:
    speedup = tiles.get("speedup")
    gain = f", {speedup:.2f}× the best single board" if speedup else ""
    return (f"Fused tiles: each band is a tiled run (or a layer split by output channels), cut "
            f"into one slice per board in proportion to its rows (channels); every other layer "
            f"runs on the root {tiles['boards'][0]}. Predicted {tiles['latency_ms']:.1f} ms per "
            f"frame{gain} ({tiles.get('latency_model', 'roofline')}).")


def tiles_strip(document: Doc) -> str:
    layers = document["layers"]
    tiles = document["tiles"]
    index = {layer["name"]: i for i, layer in enumerate(layers)}
    x = Scale(0, max(len(layers), 1), 20, WIDTH - 20)
    colours = {board: PALETTE[k % (len(PALETTE) - 1)] for k, board in enumerate(tiles["boards"])}
    parts = [rect(x(0), _BAND_TOP, x(len(layers)) - x(0), _BAND_HEIGHT, fill="#eef0f4",
                  title=f"root {tiles['boards'][0]}: every layer outside the bands")]
    for segment in tiles["segments"]:
        first, last = index.get(segment["first_layer"]), index.get(segment["last_layer"])
        if first is None or last is None:
            continue
        parts.append(_band(segment, x(first), x(last + 1), colours))
        label = segment["first_layer"] if first == last else (
            f"{segment['first_layer']}..{segment['last_layer']}")
        parts.append(text(x(first), _BAND_TOP - 6, label, font_size=10))
    parts += [text(x(0) + 28 + 150 * k, 150, board, font_size=11) +
              rect(x(0) + 150 * k, 140, 22, 12, fill=colour)
              for k, (board, colour) in enumerate(colours.items())]
    return svg(WIDTH, 160, "".join(parts), f"Tiled plan of {document['model']}", "chart-tiles")


def _band(segment: Doc, left: float, right: float, colours: dict[str, str]) -> str:
    slices = segment.get("tiles") or segment.get("parts") or []
    key = "rows" if segment.get("kind") == "rows" else "channels"
    total = sum(item[key][1] - item[key][0] for item in slices) or 1
    y, parts = float(_BAND_TOP), []
    for item in slices:
        share = (item[key][1] - item[key][0]) / total
        height = _BAND_HEIGHT * share
        parts.append(rect(left, y, max(right - left - 0.6, 0.6), height,
                          fill=colours.get(item["board"], PALETTE[-1]),
                          title=f"{segment['first_layer']}..{segment['last_layer']}: "
                          f"{item['board']} computes {key} {item[key][0]}..{item[key][1]}, "
                          f"{sig(item['latency_ms'])} ms"))
        y += height
    return "".join(parts)
