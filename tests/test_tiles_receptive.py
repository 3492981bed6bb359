"""Receptive-field regions against brute force on small random Keras conv stacks.

Oracle 1 (sufficiency and exactness): a tile computed layer by layer on the cropped regions
alone — each window layer cloned with ``valid`` padding, the plan's explicit pad added at true
borders only — equals the same rows/cols of the whole model's output (fp32, 1e-5).
Oracle 2 (minimality): in a stack with positive weights (every op strictly monotone), a large
change to the first or last row/column of the computed input region changes the tile, and the
same change one row/column outside it does not.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kerasmodels import residual_se_model, to_tflite

from hwsched.errors import TilingError
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
from hwsched.load.keras_reader import read_keras_model
from hwsched.load.tflite_reader import read_tflite_bytes
from hwsched.tiles.receptive import (
    PadMode,
    Region,
    Span,
    channel_split,
    fused_run,
    is_spatial,
    not_spatial_reason,
    spatial_runs,
    tile_plan,
)

L = keras.layers
CHANNELS = 3


# -- random stacks --------------------------------------------------------------------------------
@st.composite
def layer_specs(draw):
    kind = draw(st.sampled_from(
        ["conv", "dw", "sep", "pool", "zpad", "bn", "relu", "res", "cat"]))
    k = draw(st.integers(1, 3))
    pad = draw(st.sampled_from(["same", "valid"]))
    dilation = draw(st.sampled_from([1, 1, 2]))
    stride = 1 if dilation > 1 else draw(st.integers(1, 2))
    if kind in ("conv", "dw", "sep"):
        return (kind, k, stride, dilation, pad)
    if kind == "pool":
        return ("pool", draw(st.sampled_from(["max", "avg"])), k, draw(st.integers(1, 2)), pad)
    if kind == "zpad":
        return ("zpad", tuple(draw(st.integers(0, 2)) for _ in range(4)))
    if kind in ("res", "cat"):
        return (kind, k, dilation)
    return (kind,)


def _out(size: int, k: int, s: int, d: int, pad: str) -> int:
    extent = (k - 1) * d + 1
    return -(-size // s) if pad == "same" else (size - extent) // s + 1


def _apply(spec, x, index: int):
    """Add one spec to the stack; None when it would shrink the map below 1."""
    h, w = x.shape[1], x.shape[2]
    name = f"l{index}"
    kind = spec[0]
    if kind in ("conv", "dw", "sep"):
        _, k, s, d, pad = spec
        if min(_out(h, k, s, d, pad), _out(w, k, s, d, pad)) < 1:
            return None
        if kind == "conv":
            return L.Conv2D(CHANNELS, k, strides=s, dilation_rate=d, padding=pad, name=name)(x)
        if kind == "sep":
            return L.SeparableConv2D(CHANNELS, k, strides=s, dilation_rate=d, padding=pad,
                                     name=name)(x)
        return L.DepthwiseConv2D(k, strides=s, dilation_rate=d, padding=pad, name=name)(x)
    if kind == "pool":
        _, flavour, k, s, pad = spec
        if min(_out(h, k, s, 1, pad), _out(w, k, s, 1, pad)) < 1:
            return None
        cls = L.MaxPooling2D if flavour == "max" else L.AveragePooling2D
        return cls(k, strides=s, padding=pad, name=name)(x)
    if kind == "zpad":
        t, b, le, r = spec[1]
        return L.ZeroPadding2D(((t, b), (le, r)), name=name)(x)
    if kind == "bn":
        return L.BatchNormalization(name=name)(x)
    if kind == "relu":
        return L.ReLU(name=name)(x)
    _, k, d = spec
    y = L.Conv2D(CHANNELS, k, dilation_rate=d, padding="same", name=f"{name}_conv")(x)
    if kind == "res":
        return L.Add(name=name)([x, y])
    return L.Conv2D(CHANNELS, 1, name=f"{name}_mix")(L.Concatenate(name=name)([x, y]))


def build_stack(specs, rows: int, cols: int, positive: bool, seed: int) -> keras.Model:
    inputs = keras.Input(batch_shape=(1, rows, cols, CHANNELS), name="x")
    x = inputs
    for index, spec in enumerate(specs):
        y = _apply(spec, x, index)
        x = x if y is None else y
    if x is inputs:
        x = L.ReLU(name="only")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = weights
            new = [rng.uniform(0.5, 1.5, gamma.shape), rng.normal(size=beta.shape),
                   rng.normal(size=mean.shape), rng.uniform(0.5, 2.0, var.shape)]
        elif positive:
            new = [rng.uniform(0.5, 1.5, w.shape) for w in weights]
        else:
            new = [rng.normal(size=w.shape) for w in weights]
        layer.set_weights([n.astype("float32") for n in new])
    return model


# -- the tile executor (an independent re-computation on crops) -----------------------------------
def _crop(held, region: Region) -> np.ndarray:
    array, where = held
    r0, c0 = region.rows.start - where.rows.start, region.cols.start - where.cols.start
    assert r0 >= 0 and c0 >= 0, "a layer reads outside what its producer computed"
    out = array[:, r0:r0 + region.rows.size, c0:c0 + region.cols.size, :]
    assert out.shape[1:3] == (region.rows.size, region.cols.size)
    return out


def _valid_clone(operation, x: np.ndarray) -> np.ndarray:
    clone = type(operation).from_config({**operation.get_config(), "padding": "valid",
                                         "name": operation.name + "_tile"})
    clone(x)
    clone.set_weights(operation.get_weights())
    return np.asarray(clone(x))


def _run_layer(graph, binding, tile, args) -> np.ndarray:
    layer = graph.layer(tile.layer)
    operation = binding.calls[tile.layer].operation
    p = tile.pad
    widths = ((0, 0), (p.top, p.bottom), (p.left, p.right), (0, 0))
    if layer.op is OpKind.PAD:
        return np.pad(args[0], widths)
    if layer.op in (OpKind.CONV2D, OpKind.DEPTHWISE_CONV2D, OpKind.SEPARABLE_CONV2D,
                    OpKind.MAX_POOL, OpKind.AVG_POOL):
        fill = -np.inf if tile.pad_mode is PadMode.MIN else 0.0
        x = np.pad(args[0], widths, constant_values=fill)
        y = _valid_clone(operation, x)
        if tile.pad_mode is PadMode.EXCLUDE and p.any:
            y = y / _valid_clone(operation, np.pad(np.ones_like(args[0]), widths))
        return y
    return np.asarray(operation(args if len(args) > 1 else args[0]))


def compute_tile(graph, binding, plan, inputs: dict[str, np.ndarray]) -> np.ndarray:
    values = {}
    for name, region in plan.inputs:
        values[name] = (_crop((inputs[name], _whole(inputs[name])), region), region)
    for tile in plan.layers:
        layer = graph.layer(tile.layer)
        args = [_crop(values[n], r) for n, r in zip(layer.inputs, tile.inputs, strict=True)]
        y = _run_layer(graph, binding, tile, args)
        assert y.shape[1:3] == (tile.output.rows.size, tile.output.cols.size), tile.layer
        values[tile.tensor] = (y, tile.output)
    return values[plan.run.output][0]


def _whole(array: np.ndarray) -> Region:
    return Region(Span(0, array.shape[1]), Span(0, array.shape[2]))


def _slice(array: np.ndarray, region: Region) -> np.ndarray:
    return array[:, region.rows.start:region.rows.stop, region.cols.start:region.cols.stop, :]


@st.composite
def stacks(draw):
    specs = draw(st.lists(layer_specs(), min_size=1, max_size=5))
    return specs, draw(st.integers(4, 11)), draw(st.integers(4, 11)), draw(st.integers(0, 99))


def _region_of(data, shape) -> Region:
    r0 = data.draw(st.integers(0, shape[1] - 1))
    r1 = data.draw(st.integers(r0 + 1, shape[1]))
    c0 = data.draw(st.integers(0, shape[2] - 1))
    c1 = data.draw(st.integers(c0 + 1, shape[2]))
    return Region(Span(r0, r1), Span(c0, c1))


SLOW = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SLOW
@given(stack=stacks(), data=st.data())
def test_tile_from_its_region_equals_the_whole_model(stack, data):
    specs, rows, cols, seed = stack
    model = build_stack(specs, rows, cols, positive=False, seed=seed)
    graph, binding = read_keras_model(model)
    run = fused_run(graph, 1, len(graph) - 1)
    out_shape = graph.tensor(run.output).shape
    region = _region_of(data, out_shape)
    plan = _plan_or_reject(graph, run, region)
    x = np.random.default_rng(seed).normal(size=(1, rows, cols, CHANNELS)).astype("float32")
    full = np.asarray(model(x))
    tile = compute_tile(graph, binding, plan, {"x": x})
    np.testing.assert_allclose(tile, _slice(full, region), rtol=1e-5, atol=1e-5)


def _plan_or_reject(graph, run, region):
    try:
        return tile_plan(graph, run, region)
    except TilingError as error:  # a tile made only of zero padding reads nothing
        assert "lies entirely in its padding" in str(error)
        assume(False)


def _changes(model, x, region: Region, axis: int, index: int) -> float:
    bumped = x.copy()
    if axis == 1:
        bumped[:, index, :, :] += 1000.0
    else:
        bumped[:, :, index, :] += 1000.0
    before, after = np.asarray(model(x)), np.asarray(model(bumped))
    return float(np.max(np.abs(_slice(after, region) - _slice(before, region))))


@SLOW
@given(stack=stacks(), data=st.data())
def test_input_region_is_minimal_and_sufficient(stack, data):
    specs, rows, cols, seed = stack
    model = build_stack(specs, rows, cols, positive=True, seed=seed)
    graph, _ = read_keras_model(model)
    run = fused_run(graph, 1, len(graph) - 1)
    region = _region_of(data, graph.tensor(run.output).shape)
    (_, needed), = _plan_or_reject(graph, run, region).inputs
    x = np.random.default_rng(seed).uniform(0, 1, (1, rows, cols, CHANNELS)).astype("float32")
    for axis, span, size in ((1, needed.rows, rows), (2, needed.cols, cols)):
        for inside in (span.start, span.stop - 1):
            assert _changes(model, x, region, axis, inside) > 1e-2, (axis, inside)
        for outside in (span.start - 1, span.stop):
            if 0 <= outside < size:
                assert _changes(model, x, region, axis, outside) < 1e-3, (axis, outside)


# -- runs -----------------------------------------------------------------------------------------
def test_global_pool_and_dense_end_spatial_runs():
    graph, _ = read_keras_model(residual_se_model())
    names = [[graph.layers[p].name for p in range(a, b + 1)] for a, b in spatial_runs(graph)]
    assert names[0] == ["pad", "stem", "stem_bn", "stem_relu", "res_conv", "res_bn", "res_add"]
    assert all("se_pool" not in run and "logits" not in run for run in names)
    fused_run(graph, 1, graph.position("res_add"))  # only res_add leaves: tileable


def test_a_tensor_leaving_the_run_is_named():
    graph, _ = read_keras_model(residual_se_model())
    # stem_relu feeds res_add; a run that stops at res_bn lets stem_relu's tensor escape
    with pytest.raises(TilingError, match="'stem_relu' is used after the run"):
        fused_run(graph, 1, graph.position("res_bn"))
    with pytest.raises(TilingError, match="'se_pool' cannot be in a fused run: global_pool"):
        fused_run(graph, 1, graph.position("se_pool"))


def test_tile_outside_the_output_is_refused():
    graph, _ = read_keras_model(residual_se_model())
    run = fused_run(graph, 1, graph.position("res_add"))
    with pytest.raises(TilingError, match="tensor 'res_add'"):
        tile_plan(graph, run, Region(Span(0, 9), Span(0, 8)))


def test_inner_strip_edges_get_no_padding():
    """Two strips of a 'same' stack: padding only on the top strip's top and the bottom
    strip's bottom, never where the strips meet."""
    graph, _ = read_keras_model(residual_se_model())
    run = fused_run(graph, graph.position("res_conv"), graph.position("res_add"))
    top = tile_plan(graph, run, Region(Span(0, 4), Span(0, 8))).layer_tile("res_conv")
    bottom = tile_plan(graph, run, Region(Span(4, 8), Span(0, 8))).layer_tile("res_conv")
    assert (top.pad.top, top.pad.bottom, bottom.pad.top, bottom.pad.bottom) == (1, 0, 0, 1)
    assert top.inputs[0].rows == Span(0, 5) and bottom.inputs[0].rows == Span(3, 8)


def test_channel_split_of_a_dense_layer_concatenates_to_the_whole():
    inputs = keras.Input(batch_shape=(1, 6), name="x")
    model = keras.Model(inputs, L.Dense(7, name="fc")(inputs))
    graph, _ = read_keras_model(model)
    kernel, bias = model.get_layer("fc").get_weights()
    x = np.random.default_rng(1).normal(size=(1, 6)).astype("float32")
    parts = channel_split(graph, "fc", [3, 2, 2])
    stitched = np.concatenate(
        [x @ kernel[:, p.channels.start:p.channels.stop] + bias[p.channels.start:p.channels.stop]
         for p in parts], axis=-1)
    np.testing.assert_allclose(stitched, np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert sum(p.macs for p in parts) == graph.layer("fc").macs
    with pytest.raises(TilingError, match="do not add up to its 7 output channels"):
        channel_split(graph, "fc", [3, 3])


def test_a_tflite_graph_gets_the_regions_of_its_keras_model():
    """The TFLite reader records padding and dilation, so the same stack read from a
    .tflite file needs the same input rows (a dilated 'same' conv at a border included)."""
    inputs = keras.Input(batch_shape=(1, 12, 9, 3), name="x")
    x = L.Conv2D(4, 3, dilation_rate=2, padding="same", name="dil")(inputs)
    x = L.Conv2D(4, 3, strides=2, padding="same", name="down")(x)
    x = L.MaxPooling2D(3, strides=1, padding="same", name="pool")(x)
    model = keras.Model(inputs, x)
    from_keras, _ = read_keras_model(model)
    from_tflite = read_tflite_bytes(to_tflite(model), "stack")
    for graph in (from_keras, from_tflite):
        assert all(is_spatial(graph, layer) for layer in graph.layers[1:]), graph.name
    regions = []
    for graph in (from_keras, from_tflite):
        run = fused_run(graph, 1, len(graph) - 1)
        (_, region), = tile_plan(graph, run, Region(Span(0, 2), Span(3, 5))).inputs
        regions.append(region)
    # rows: pool [0,2) <- down [0,3) <- dil [0,7) <- x [-2,9) = [0,9) at the top border;
    # cols: pool [3,5) <- down [2,5) <- dil [3,10)∩[0,9) <- x [1,9)
    assert regions[0] == regions[1] == Region(Span(0, 9), Span(1, 9))


@pytest.mark.parametrize(("op", "attrs", "params", "reason"), [
    (OpKind.CONV2D, {"kernel_size": (3, 3), "padding": "same"}, 0, "dilation is not recorded"),
    (OpKind.CONCAT, {}, 0, "axis is not recorded"),
    (OpKind.CONCAT, {"axis": 1}, 0, "concat along axis 1 mixes positions"),
    (OpKind.ELEMENTWISE, {}, 8 * 8 * 2, "constant operands"),
    (OpKind.ACTIVATION, {"data_format": "channels_first"}, 0, "channels_first"),
])
def test_what_the_ir_does_not_record_is_refused_not_guessed(op, attrs, params, reason):
    """A TFLite graph records no dilation or concat axis, and folds constants out of the
    edges: a layer that might depend on them ends the run instead of being tiled wrongly."""
    x = Tensor("x", "x", (1, 8, 8, 2), "float32")
    y = Tensor("y", "y", (1, 8, 8, 2), "float32")
    graph = LayerGraph("g", (Layer("x", OpKind.INPUT, (), (x,)),
                             Layer("y", op, ("x",), (y,), params=params, attrs=attrs)),
                       outputs=("y",))
    assert reason in not_spatial_reason(graph, graph.layer("y"))
    with pytest.raises(TilingError, match=f"layer 'y' cannot be in a fused run: .*{reason}"):
        fused_run(graph, 1, 1)
