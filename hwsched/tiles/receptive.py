"""Receptive-field algebra: which input rows and columns a tile of a fused run needs.

A *fused run* is a slice ``start..end`` (inclusive) of the topological order whose layers are
all *spatial* — conv, depthwise/separable conv, pooling, zero padding, batch norm, activation,
elementwise (residual adds included) and channel concatenation, on NHWC tensors — and whose
only tensor used after the run is the last layer's output. A tile of that output (rows ×
columns) can then be computed from a region of the run's input tensors alone: walking back
through the run, each layer's output region maps to an input region through kernel, stride,
dilation and padding (per axis, independently). Layers whose output depends on the whole map
(global pooling, dense, reshape/flatten, softmax, attention, …) end a run.

``same`` padding is applied only at the true borders of a feature map: the unclipped input span
of a layer may reach outside ``[0, size)`` only where the full computation pads too, and that
part becomes the layer's explicit :class:`BorderPad`; at a strip's inner edge the neighbouring
rows are real rows (the halo), so a tile runs every layer with ``valid`` padding on its region
plus the explicit border pad. The pad value is the one the full computation uses: zeros for
convolutions and zero padding, ``-inf`` for max pooling, and *excluded from the mean* for
average pooling (TensorFlow divides a border window by its valid elements only).

>>> w = AxisWindow(kernel=3, stride=2, dilation=1, pad_before=1)   # 3x3/2 'same' on 8 rows
>>> w.input_span(Span(0, 2)), w.input_span(Span(2, 4))
(Span(start=-1, stop=4), Span(start=3, stop=8))
>>> Span(-1, 4).clip(8)
(Span(start=0, stop=4), (1, 0))

Everything here is pure and TensorFlow-free; regions are half-open ``[start, stop)`` like the
placement's regions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from hwsched.errors import TilingError
from hwsched.flops import op_work
from hwsched.ir import DTYPE_BYTES, Layer, LayerGraph, OpKind

#: Ops computed position by position: an output region needs the same region of each input.
POINTWISE_OPS = frozenset(
    {OpKind.BATCH_NORM, OpKind.ACTIVATION, OpKind.ELEMENTWISE, OpKind.IDENTITY,
     OpKind.QUANTIZE, OpKind.CONCAT}
)
#: Ops with a sliding window (kernel, stride, dilation, padding).
WINDOW_OPS = frozenset(
    {OpKind.CONV2D, OpKind.DEPTHWISE_CONV2D, OpKind.SEPARABLE_CONV2D, OpKind.MAX_POOL,
     OpKind.AVG_POOL}
)
#: Keras classes whose parameters differ per position (a crop would need sliced weights).
_POSITIONAL_WEIGHTS = frozenset({"PReLU", "LocallyConnected2D"})
_CHANNEL_AXES = (-1, 3)


class PadMode(str, Enum):
    """What the full computation puts in the border padding of a layer."""

    ZERO = "zero"
    MIN = "min"  # max pooling ignores padding: pad with -inf
    EXCLUDE = "exclude"  # average pooling divides by the valid elements of each window


@dataclass(frozen=True, order=True)
class Span:
    """Half-open ``[start, stop)`` on one axis; ``start`` may be negative before clipping."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def hull(self, other: Span | None) -> Span:
        """The smallest span covering both (``other`` None: this span)."""
        if other is None:
            return self
        return Span(min(self.start, other.start), max(self.stop, other.stop))

    def clip(self, size: int) -> tuple[Span, tuple[int, int]]:
        """The part inside ``[0, size)`` and how far the span overhangs each border."""
        inside = Span(max(self.start, 0), min(self.stop, size))
        return inside, (inside.start - self.start, self.stop - inside.stop)

    def shift(self, offset: int) -> Span:
        return Span(self.start + offset, self.stop + offset)


@dataclass(frozen=True, order=True)
class Region:
    """Rows × columns of an NHWC tensor (batch and channels whole)."""

    rows: Span
    cols: Span

    @property
    def positions(self) -> int:
        return self.rows.size * self.cols.size

    def hull(self, other: Region | None) -> Region:
        if other is None:
            return self
        return Region(self.rows.hull(other.rows), self.cols.hull(other.cols))

    def within(self, other: Region) -> bool:
        return (other.rows.start <= self.rows.start and self.rows.stop <= other.rows.stop
                and other.cols.start <= self.cols.start and self.cols.stop <= other.cols.stop)

    def shape(self, tensor_shape: Sequence[int]) -> tuple[int, int, int, int]:
        """The NHWC shape of this region of a tensor of ``tensor_shape``."""
        return (tensor_shape[0], self.rows.size, self.cols.size, tensor_shape[3])


def whole(shape: Sequence[int]) -> Region:
    """The region covering a whole NHWC tensor."""
    return Region(Span(0, shape[1]), Span(0, shape[2]))


@dataclass(frozen=True)
class BorderPad:
    """Explicit padding a tile applies at true borders of the map (elements per side)."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    @property
    def any(self) -> bool:
        return any((self.top, self.bottom, self.left, self.right))


@dataclass(frozen=True)
class AxisWindow:
    """A sliding window along one axis: output ``o`` reads padded positions
    ``o*stride + t*dilation`` for ``t < kernel``, i.e. input ``… - pad_before``."""

    kernel: int
    stride: int
    dilation: int
    pad_before: int

    @property
    def extent(self) -> int:
        """Input positions one output spans (the dilated kernel)."""
        return (self.kernel - 1) * self.dilation + 1

    def input_span(self, out: Span) -> Span:
        """Input positions (unclipped) that the outputs ``out`` read."""
        first = out.start * self.stride - self.pad_before
        return Span(first, (out.stop - 1) * self.stride + self.extent - self.pad_before)


IDENTITY_WINDOW = AxisWindow(kernel=1, stride=1, dilation=1, pad_before=0)


@dataclass(frozen=True)
class FusedRun:
    """A tileable run: layers at positions ``start..end`` (inclusive), the tensor it delivers,
    and the tensors it reads from before the run (its scatter inputs)."""

    start: int
    end: int
    output: str
    inputs: tuple[str, ...]

    @property
    def positions(self) -> range:
        return range(self.start, self.end + 1)


@dataclass(frozen=True)
class LayerTile:
    """What one layer of a run computes for one tile.

    ``output`` is the region of the layer's output it computes (the hull of what its consumers
    in the run need); ``inputs`` the region it reads of each input tensor (in ``layer.inputs``
    order, before padding); ``pad`` the positions to add around ``inputs[0]`` so that the
    layer with ``valid`` padding yields exactly ``output``, filled with ``pad_mode``'s value.
    Outside a dilated layer, ``pad`` is the layer's own padding at true borders of the map and
    zero at a strip's inner edge; a dilated layer may also pad over real positions that no
    needed output reads (their value never reaches the tile's output, nor do the outputs in the
    holes of a dilated consumer).
    """

    layer: str
    position: int
    tensor: str
    output: Region
    inputs: tuple[Region, ...]
    pad: BorderPad
    pad_mode: PadMode


@dataclass(frozen=True)
class TilePlan:
    """One tile of a fused run: the region of the run's output, each layer's work, and the
    region of each external input (what the scatter sends)."""

    run: FusedRun
    output: Region
    layers: tuple[LayerTile, ...]
    inputs: tuple[tuple[str, Region], ...]

    def layer_tile(self, name: str) -> LayerTile:
        for tile in self.layers:
            if tile.layer == name:
                return tile
        raise TilingError(f"layer {name!r} is not in the run ending at position {self.run.end}")


# -- which layers are spatial ---------------------------------------------------------------------
def not_spatial_reason(graph: LayerGraph, layer: Layer) -> str | None:
    """Why ``layer`` cannot be inside a fused run, or None when it can.

    >>> from hwsched.ir import Tensor
    >>> t = Tensor("x", "x", (1, 4, 4, 2), "float32")
    >>> g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (t,)),
    ...     Layer("gap", OpKind.GLOBAL_POOL, ("x",), (Tensor("gap", "gap", (1, 2), "float32"),))),
    ...     outputs=("gap",))
    >>> not_spatial_reason(g, g.layer("gap"))
    'global_pool depends on the whole feature map'
    """
    if layer.op not in WINDOW_OPS | POINTWISE_OPS | {OpKind.PAD}:
        return f"{layer.op.value} depends on the whole feature map"
    if len(layer.outputs) != 1 or len(layer.outputs[0].shape) != 4:
        return f"{layer.op.value} does not output one NHWC tensor"
    if any(len(graph.tensor(name).shape) != 4 for name in layer.inputs):
        return "an input is not an NHWC tensor"
    if layer.attrs.get("data_format", "channels_last") != "channels_last":
        return "channels_first layout"
    if layer.source_op in _POSITIONAL_WEIGHTS:
        return f"{layer.source_op} has weights per position"
    if layer.op in (OpKind.CONCAT, OpKind.BATCH_NORM) and layer.attrs.get("axis", -1) not in (
        *_CHANNEL_AXES, (-1,), (3,)
    ):
        return f"{layer.op.value} along axis {layer.attrs.get('axis')} mixes positions"
    if layer.op is OpKind.CONCAT and "axis" not in layer.attrs:
        return "its axis is not recorded"
    if layer.op is OpKind.ELEMENTWISE and layer.params:
        return "it has constant operands, which may differ per position"
    convolution = layer.op in (OpKind.CONV2D, OpKind.DEPTHWISE_CONV2D, OpKind.SEPARABLE_CONV2D)
    if convolution and "dilation_rate" not in layer.attrs:
        return "its dilation is not recorded"  # a guess could silently misplace every row
    if layer.op is OpKind.PAD and _zero_padding(layer) is None:
        return "pad amounts are not recorded"
    return None


def is_spatial(graph: LayerGraph, layer: Layer) -> bool:
    return not_spatial_reason(graph, layer) is None


def spatial_runs(graph: LayerGraph) -> tuple[tuple[int, int], ...]:
    """Maximal slices ``(start, end)`` (inclusive) of consecutive spatial layers.

    Every tileable run lies inside one of them; :func:`fused_run` says which sub-slices are
    tileable (no tensor but the last one escapes).
    """
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for position, layer in enumerate(graph.layers):
        if is_spatial(graph, layer):
            start = position if start is None else start
            continue
        if start is not None:
            runs.append((start, position - 1))
            start = None
    if start is not None:
        runs.append((start, len(graph.layers) - 1))
    return tuple(runs)


def last_uses(graph: LayerGraph) -> tuple[int, ...]:
    """For each position, the last position that uses one of its outputs (a graph output counts
    as used after every layer: ``len(graph)``)."""
    outputs = set(graph.outputs)
    result = []
    for position, layer in enumerate(graph.layers):
        last = position
        for tensor in layer.outputs:
            if tensor.name in outputs:
                last = len(graph.layers)
            users = graph.consumers(tensor.name)
            if users:
                last = max(last, graph.position(users[-1]))
        result.append(last)
    return tuple(result)


def fused_run(graph: LayerGraph, start: int, end: int) -> FusedRun:
    """Check that positions ``start..end`` form a tileable run and describe it.

    Raises :class:`~hwsched.errors.TilingError` naming the layer or tensor that prevents it.
    """
    if not 0 <= start <= end < len(graph.layers):
        raise TilingError(
            f"graph {graph.name!r}: run {start}..{end} is outside positions 0..{len(graph) - 1}"
        )
    for position in range(start, end + 1):
        layer = graph.layers[position]
        reason = not_spatial_reason(graph, layer)
        if reason is not None:
            raise TilingError(f"layer {layer.name!r} cannot be in a fused run: {reason}")
    uses = last_uses(graph)
    for position in range(start, end):
        layer = graph.layers[position]
        if uses[position] > end:
            raise TilingError(
                f"tensor {layer.outputs[0].name!r} of layer {layer.name!r} is used after the "
                f"run {start}..{end}; only the run's last tensor may leave it"
            )
    return describe_run(graph, start, end)


def describe_run(graph: LayerGraph, start: int, end: int) -> FusedRun:
    """The :class:`FusedRun` of positions ``start..end`` without checking it (callers that
    enumerate runs check tileability their own, cheaper way)."""
    inputs: dict[str, None] = {}
    for position in range(start, end + 1):
        for name in graph.layers[position].inputs:
            if graph.position(graph.tensor(name).producer) < start:
                inputs.setdefault(name, None)
    return FusedRun(start, end, graph.layers[end].outputs[0].name, tuple(inputs))


# -- window geometry ------------------------------------------------------------------------------
def _pair(value: Any, default: int) -> tuple[int, int]:
    if value is None:
        return default, default
    if isinstance(value, int):
        return value, value
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _zero_padding(layer: Layer) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((top, bottom), (left, right))`` of a zero-padding layer, None when unknown."""
    value = layer.attrs.get("padding")
    if isinstance(value, int):
        return (value, value), (value, value)
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    rows, cols = (_pair(v, 0) for v in value)
    return rows, cols


def _axis_window(
    layer: Layer, axis: int, kernel: int, stride: int, dilation: int, sizes: tuple[int, int]
) -> AxisWindow:
    """One axis of a window layer, its ``same`` padding found as TensorFlow does and checked
    against the recorded shapes (a missing ``padding`` attribute is inferred from them: where
    ``valid`` and ``same`` give the same output size they also give zero padding)."""
    size_in, size_out = sizes
    extent = (kernel - 1) * dilation + 1
    valid_out = (size_in - extent) // stride + 1
    padding = str(layer.attrs.get("padding", "")).lower()
    pad_total = max((size_out - 1) * stride + extent - size_in, 0)
    expected = {"valid": valid_out, "same": -(-size_in // stride)}.get(padding)
    if expected is None:
        expected = size_out if size_out in (valid_out, -(-size_in // stride)) else -1
    if expected != size_out:
        raise TilingError(
            f"layer {layer.name!r}: axis {axis} maps {size_in} to {size_out} positions, which "
            f"kernel {kernel}, stride {stride}, dilation {dilation} and padding "
            f"{padding or 'unknown'!r} do not give"
        )
    return AxisWindow(kernel, stride, dilation, pad_total // 2)  # 0 whenever valid fits


def layer_windows(graph: LayerGraph, layer: Layer) -> tuple[AxisWindow, AxisWindow, PadMode]:
    """Row and column windows of a spatial layer and the value its border padding holds."""
    out_shape = layer.outputs[0].shape
    if layer.op in POINTWISE_OPS:
        return IDENTITY_WINDOW, IDENTITY_WINDOW, PadMode.ZERO
    in_shape = graph.tensor(layer.inputs[0]).shape
    if layer.op is OpKind.PAD:
        pads = _zero_padding(layer)
        assert pads is not None  # not_spatial_reason refused it otherwise
        for axis, (before, after) in zip((1, 2), pads, strict=True):
            if in_shape[axis] + before + after != out_shape[axis]:
                raise TilingError(
                    f"layer {layer.name!r}: padding {pads} does not map shape "
                    f"{list(in_shape)} to {list(out_shape)}"
                )
        return (AxisWindow(1, 1, 1, pads[0][0]), AxisWindow(1, 1, 1, pads[1][0]), PadMode.ZERO)
    pooling = layer.op in (OpKind.MAX_POOL, OpKind.AVG_POOL)
    kernel = _pair(layer.attrs.get("pool_size" if pooling else "kernel_size"), 1)
    stride = _pair(layer.attrs.get("strides"), 0)
    stride = kernel if pooling and stride == (0, 0) else (max(stride[0], 1), max(stride[1], 1))
    dilation = _pair(layer.attrs.get("dilation_rate"), 1)
    windows = tuple(
        _axis_window(layer, axis, kernel[i], stride[i], dilation[i],
                     (in_shape[axis], out_shape[axis]))
        for i, axis in enumerate((1, 2))
    )
    mode = {OpKind.MAX_POOL: PadMode.MIN, OpKind.AVG_POOL: PadMode.EXCLUDE}.get(
        layer.op, PadMode.ZERO
    )
    return windows[0], windows[1], mode


# -- the backward walk ----------------------------------------------------------------------------
#: Which positions of one axis of a tensor a tile needs (a boolean mask over the axis).
_Mask = np.ndarray


def _reads(window: AxisWindow, needed: _Mask, size_in: int) -> _Mask:
    """Input positions inside ``[0, size_in)`` that the needed outputs read (dilation leaves
    holes; positions outside are border padding)."""
    taps = np.arange(window.kernel) * window.dilation - window.pad_before
    positions = (np.flatnonzero(needed)[:, None] * window.stride + taps[None, :]).ravel()
    mask = np.zeros(size_in, dtype=bool)
    mask[positions[(positions >= 0) & (positions < size_in)]] = True
    return mask


def _span(mask: _Mask) -> Span:
    """The hull of a non-empty mask (argmax finds the first True without listing them all)."""
    return Span(int(mask.argmax()), mask.size - int(mask[::-1].argmax()))


def _filler(window: AxisWindow, out: Span, read: Span) -> tuple[int, int]:
    """Positions to add before/after ``read`` so a valid window computes exactly ``out``."""
    first = out.start * window.stride - window.pad_before
    last = (out.stop - 1) * window.stride + window.extent - window.pad_before
    return read.start - first, last - read.stop


def _input_masks(
    graph: LayerGraph, layer: Layer, rows: _Mask, cols: _Mask
) -> tuple[tuple[tuple[_Mask, _Mask], ...], AxisWindow, AxisWindow, PadMode]:
    rows_w, cols_w, mode = layer_windows(graph, layer)
    if layer.op in POINTWISE_OPS:
        masks = []
        for name in layer.inputs:  # a size-1 axis broadcasts: it needs its one position
            shape = graph.tensor(name).shape
            one = np.ones(1, dtype=bool)
            masks.append((rows if shape[1] == rows.size else one,
                          cols if shape[2] == cols.size else one))
        return tuple(masks), rows_w, cols_w, mode
    shape = graph.tensor(layer.inputs[0]).shape
    masks = ((_reads(rows_w, rows, shape[1]), _reads(cols_w, cols, shape[2])),)
    if not (masks[0][0].any() and masks[0][1].any()):
        raise TilingError(
            f"layer {layer.name!r}: the tile lies entirely in its padding and reads no input; "
            "choose a larger tile"
        )
    return masks, rows_w, cols_w, mode


def check_region(graph: LayerGraph, tensor_name: str, region: Region) -> None:
    """Raise unless ``region`` is a non-empty region inside the tensor."""
    shape = graph.tensor(tensor_name).shape
    fits = (0 <= region.rows.start < region.rows.stop <= shape[1]
            and 0 <= region.cols.start < region.cols.stop <= shape[2])
    if not fits:
        raise TilingError(
            f"tile rows {region.rows.start}..{region.rows.stop}, cols {region.cols.start}.."
            f"{region.cols.stop} is not a non-empty region of tensor {tensor_name!r} "
            f"({shape[1]}x{shape[2]})"
        )


def _mask(size: int, span: Span) -> _Mask:
    mask = np.zeros(size, dtype=bool)
    mask[span.start:span.stop] = True
    return mask


def walk_back(
    graph: LayerGraph, end: int, output: Region, stop: int
) -> Iterator[tuple[LayerTile, Mapping[str, tuple[np.ndarray, np.ndarray]]]]:
    """The backward walk from layer ``end`` (tile ``output`` of its output) down to ``stop``:
    each layer's :class:`LayerTile` and, after it, the needed positions (row and column masks)
    of every tensor reached so far. A layer whose output nothing reached is skipped; it cannot
    be in a tileable run that ends at ``end`` (its output would leave the run).

    Keeps, per tensor and axis, the exact set of positions some needed output reads; a layer
    computes the hull of its needed positions (a tensor read by both sides of a residual add:
    the hull of both) and each reader crops its part.
    """
    last = graph.layers[end].outputs[0]
    check_region(graph, last.name, output)
    needs: dict[str, tuple[_Mask, _Mask]] = {
        last.name: (_mask(last.shape[1], output.rows), _mask(last.shape[2], output.cols))
    }
    for position in range(end, stop - 1, -1):
        layer = graph.layers[position]
        tensor = layer.outputs[0].name
        if tensor not in needs:
            continue
        rows, cols = needs[tensor]
        masks, rows_w, cols_w, mode = _input_masks(graph, layer, rows, cols)
        for name, (in_rows, in_cols) in zip(layer.inputs, masks, strict=True):
            held = needs.get(name)
            needs[name] = (in_rows, in_cols) if held is None else (held[0] | in_rows,
                                                                    held[1] | in_cols)
        out = Region(_span(rows), _span(cols))
        regions = tuple(Region(_span(r), _span(c)) for r, c in masks)
        pad = BorderPad()
        if layer.op not in POINTWISE_OPS:
            pad = BorderPad(*_filler(rows_w, out.rows, regions[0].rows),
                            *_filler(cols_w, out.cols, regions[0].cols))
        yield LayerTile(layer.name, position, tensor, out, regions, pad, mode), needs


def needed_region(needs: Mapping[str, tuple[np.ndarray, np.ndarray]], tensor: str) -> Region:
    """The region (hull) of a tensor's needed positions in a :func:`walk_back` state."""
    rows, cols = needs[tensor]
    return Region(_span(rows), _span(cols))


def tile_plan(graph: LayerGraph, run: FusedRun, output: Region) -> TilePlan:
    """What every layer of ``run`` computes and reads for one tile ``output`` of its output
    (:func:`walk_back` over the run).

    Regions are minimal: the first and last row (column) of every region is read by an output
    the tile needs, so changing it can change the tile.

    Two 3×3 ``same`` convs on 8 rows, the bottom half of the output: the first conv computes a
    halo row above the strip, the input needs two; padding only at the map's bottom border.

    >>> from hwsched.ir import Tensor
    >>> def t(name): return Tensor(name, name, (1, 8, 8, 2), "float32")
    >>> conv = {"kernel_size": (3, 3), "strides": (1, 1), "padding": "same",
    ...         "dilation_rate": (1, 1)}
    >>> g = LayerGraph("two", (Layer("x", OpKind.INPUT, (), (t("x"),)),
    ...     Layer("a", OpKind.CONV2D, ("x",), (t("a"),), attrs=conv),
    ...     Layer("b", OpKind.CONV2D, ("a",), (t("b"),), attrs=conv)), outputs=("b",))
    >>> plan = tile_plan(g, fused_run(g, 1, 2), Region(Span(4, 8), Span(0, 8)))
    >>> [(tile.layer, tile.output.rows, tile.pad.top, tile.pad.bottom) for tile in plan.layers]
    [('a', Span(start=3, stop=8), 0, 1), ('b', Span(start=4, stop=8), 0, 1)]
    >>> plan.inputs[0][0], plan.inputs[0][1].rows
    ('x', Span(start=2, stop=8))
    """
    tiles: list[LayerTile] = []
    needs: Mapping[str, tuple[np.ndarray, np.ndarray]] = {}
    for tile, state in walk_back(graph, run.end, output, run.start):
        tiles.append(tile)
        needs = state
    inputs = tuple((name, needed_region(needs, name)) for name in run.inputs)
    return TilePlan(run, output, tuple(reversed(tiles)), inputs)


# -- work and bytes of a tile ---------------------------------------------------------------------
def tile_macs(graph: LayerGraph, plan: TilePlan) -> int:
    """Multiply-accumulates of one tile, each layer costed by :func:`hwsched.flops.op_work` on
    the tile's own shapes (padded input region, computed output region)."""
    return sum(layer_tile_macs(graph, tile) for tile in plan.layers)


def layer_tile_macs(graph: LayerGraph, tile: LayerTile) -> int:
    """Multiply-accumulates of one layer of a tile (see :func:`tile_macs`)."""
    layer = graph.layers[tile.position]
    in_shapes = [
        _padded_shape(graph.tensor(name).shape, region, tile.pad)
        for name, region in zip(layer.inputs, tile.inputs, strict=True)
    ]
    work = op_work(layer.op, in_shapes, [tile.output.shape(layer.outputs[0].shape)],
                   layer.attrs)
    return work.macs or 0


def _padded_shape(shape: Sequence[int], region: Region, pad: BorderPad) -> tuple[int, ...]:
    rows = region.rows.size + pad.top + pad.bottom
    cols = region.cols.size + pad.left + pad.right
    return (shape[0], rows, cols, shape[3])


def region_bytes(graph: LayerGraph, tensor_name: str, region: Region,
                 dtype: str | None = None) -> int:
    """Bytes of a region of a tensor (in ``dtype`` if given, e.g. int8 on a link)."""
    tensor = graph.tensor(tensor_name)
    elements = math.prod(region.shape(tensor.shape))
    return elements * DTYPE_BYTES[dtype or tensor.dtype]


def strips(rows: int, cols: int, boundaries: Iterable[int]) -> tuple[Region, ...]:
    """Full-width strips of a ``rows × cols`` map cut at the given row boundaries.

    >>> [(r.rows.start, r.rows.stop) for r in strips(10, 4, [3, 7])]
    [(0, 3), (3, 7), (7, 10)]
    """
    cuts = [0, *boundaries, rows]
    if any(b <= a for a, b in itertools.pairwise(cuts)):
        raise TilingError(f"strip boundaries {cuts[1:-1]} do not cut rows 0..{rows} into "
                          "non-empty strips")
    return tuple(Region(Span(a, b), Span(0, cols)) for a, b in itertools.pairwise(cuts))


def grid(rows: int, cols: int, row_parts: int, col_parts: int) -> tuple[Region, ...]:
    """An ``row_parts × col_parts`` grid of near-equal tiles, row-major (DeepThings' FTP).

    >>> [(r.rows.start, r.cols.start) for r in grid(5, 4, 2, 2)]
    [(0, 0), (0, 2), (3, 0), (3, 2)]
    """
    if not (1 <= row_parts <= rows and 1 <= col_parts <= cols):
        raise TilingError(f"a {row_parts}x{col_parts} grid does not fit a {rows}x{cols} map")
    row_spans = _even_spans(rows, row_parts)
    col_spans = _even_spans(cols, col_parts)
    return tuple(Region(r, c) for r in row_spans for c in col_spans)


def _even_spans(size: int, parts: int) -> tuple[Span, ...]:
    cuts = [-(-size * i // parts) for i in range(parts + 1)]
    return tuple(Span(a, b) for a, b in itertools.pairwise(cuts))


# -- output-channel split of a dense or convolution layer -----------------------------------------
@dataclass(frozen=True)
class ChannelSlice:
    """One part of an output-channel split: neurons ``channels`` computed from the whole input."""

    layer: str
    channels: Span
    macs: int
    input_bytes: int
    output_bytes: int


#: Fused activations computed channel by channel (softmax mixes the channels: not here).
CHANNELWISE_ACTIVATIONS = frozenset(
    {None, "linear", "relu", "relu6", "sigmoid", "tanh", "elu", "selu", "swish", "silu", "gelu",
     "hard_sigmoid", "hard_silu", "hard_swish", "softplus", "softsign", "exponential",
     "leaky_relu", "mish"}
)


def can_split_channels(layer: Layer) -> bool:
    """Whether each output channel of ``layer`` is computed from the whole input alone, by its
    own slice of the weights: a dense layer or an ungrouped convolution (any kernel, stride,
    dilation and padding: a part is the same convolution with fewer filters, on the whole
    input) whose fused activation works channel by channel (a softmax classifier does not),
    its channels on the last axis.
    A part reads only its share of the weights, where each row tile reads all of them, and
    parts balance to one channel in hundreds where rows balance to one row in 7 or 14; but
    every part reads the whole input, and a run of convolutions split so gathers after each
    one. The planner prices both and takes the faster."""
    ungrouped_conv = layer.op is OpKind.CONV2D and int(layer.attrs.get("groups", 1)) == 1
    channelwise = layer.attrs.get("activation") in CHANNELWISE_ACTIVATIONS
    last_axis = layer.attrs.get("data_format", "channels_last") == "channels_last"
    return (layer.op is OpKind.DENSE or ungrouped_conv) and channelwise and last_axis


def channel_split(graph: LayerGraph, layer_name: str, sizes: Sequence[int]) -> tuple[
    ChannelSlice, ...
]:
    """Split a dense or convolution layer by output channels into parts of ``sizes``
    (AutoDiCE's output-channel split): each part reads the whole input, the gather concatenates.

    >>> from hwsched.ir import Tensor
    >>> x, y = Tensor("x", "x", (1, 6), "float32"), Tensor("fc", "fc", (1, 4), "float32")
    >>> g = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (x,)),
    ...     Layer("fc", OpKind.DENSE, ("x",), (y,), macs=24, flops=52)), outputs=("fc",))
    >>> [(s.channels.start, s.channels.stop, s.macs, s.output_bytes)
    ...  for s in channel_split(g, "fc", [3, 1])]
    [(0, 3, 18, 12), (3, 4, 6, 4)]
    """
    layer = graph.layer(layer_name)
    if not can_split_channels(layer):
        raise TilingError(
            f"layer {layer_name!r} ({layer.op.value}) cannot be split by output channels; only "
            "dense layers and ungrouped convolutions with a channel-wise activation can"
        )
    out = layer.outputs[0]
    channels = out.shape[-1]
    if any(s < 1 for s in sizes) or sum(sizes) != channels:
        raise TilingError(
            f"layer {layer_name!r}: channel parts {list(sizes)} do not add up to its "
            f"{channels} output channels"
        )
    in_bytes = sum(graph.tensor(n).bytes for n in dict.fromkeys(layer.inputs))
    per_channel_bytes = out.bytes // channels
    parts, start = [], 0
    for size in sizes:
        macs = (layer.macs or 0) * size // channels
        parts.append(ChannelSlice(layer_name, Span(start, start + size), macs, in_bytes,
                                  per_channel_bytes * size))
        start += size
    return tuple(parts)


def tensor_regions(plan: TilePlan) -> Mapping[str, Region]:
    """Region of every tensor a tile holds: each scattered input and each layer's output."""
    regions = dict(plan.inputs)
    for tile in plan.layers:
        regions[tile.tensor] = tile.output
    return regions
