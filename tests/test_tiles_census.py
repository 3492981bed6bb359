"""A tile's .tflite computes like the unsplit run's: the same fused ops, all on XNNPACK.

``bench/bench_tile_efficiency.py`` found why ResNet-50's tiles took longer per MAC than the
unsplit model, and it was not their graphs: the batch norms fold into the cloned convolutions
as into the originals, XNNPACK takes every op, and a ``PAD`` at a strip's true border adds no
other op (timed by hand, a padded ``valid`` conv took as long as the ``same`` one). This test
keeps the graphs so: the oracle is the unsplit run converted by the same converter from the original
layers, and the stitched tiles equal its output.
"""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest

from hwsched.export.convert import convert_stage
from hwsched.export.graph import GraphStageSlice
from hwsched.export.keras_stages import build_keras_stage
from hwsched.export.stages import signature_names
from hwsched.export.tiles import build_tile_model
from hwsched.litert import open_interpreter, ops_left_on_cpu
from hwsched.load.keras_reader import read_keras_model
from hwsched.tiles.layout import layout_for, parse_tiles_option

L = keras.layers


def _residual_block() -> keras.Model:
    """A ResNet bottleneck-like block: 3×3 ``same`` convs with batch norms, a 1×1 shortcut,
    the add and its ReLU; random BN statistics, so an unfolded or misplaced BN shows."""
    keras.utils.set_random_seed(0)
    image = keras.Input(batch_shape=(1, 16, 12, 8), name="image")
    y = L.Conv2D(8, 3, padding="same", name="c1")(image)
    y = L.ReLU(name="r1")(L.BatchNormalization(name="b1")(y))
    y = L.BatchNormalization(name="b2")(L.Conv2D(16, 3, padding="same", name="c2")(y))
    shortcut = L.BatchNormalization(name="b0")(L.Conv2D(16, 1, name="c0")(image))
    out = L.ReLU(name="out")(L.Add(name="add")([y, shortcut]))
    model = keras.Model(image, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(out)))
    rng = np.random.default_rng(1)
    for name in ("b0", "b1", "b2"):
        bn = model.get_layer(name)
        shapes = [w.shape for w in bn.get_weights()]
        bn.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(size=shapes[1]),
                        rng.normal(size=shapes[2]), rng.uniform(0.5, 2.0, shapes[3])])
    return model


def _ops(data: bytes) -> collections.Counter:
    ops = open_interpreter(content=data, delegates=False)._get_ops_details()
    return collections.Counter(op["op_name"] for op in ops)


@pytest.fixture(scope="module")
def converted():
    model = _residual_block()
    graph, binding = read_keras_model(model)
    names = signature_names(list(graph.tensors))
    first = min(graph.position("c1"), graph.position("c0"))
    layout = layout_for(graph, [parse_tiles_option(f"{graph.layers[first].name}..out:2")])
    run = layout.run
    whole = build_keras_stage(binding, graph, GraphStageSlice(
        -1, tuple(run.positions), run.inputs, (run.output,)), names)
    tiles = [convert_stage(build_tile_model(binding, graph, layout.stages[k], names), "fp32")
             for k in layout.runs[0].tiles]
    return convert_stage(whole, "fp32"), tiles, layout, names


def test_tiles_have_the_unsplit_runs_fused_ops_plus_border_pads_and_crops(converted):
    unsplit, tiles, _, _ = converted
    want = _ops(unsplit)
    assert want["CONV_2D"] == 3 and "MUL" not in want  # the batch norms are folded
    for data in tiles:
        got = _ops(data)
        extra = got - want
        assert not (want - got), "a tile lost an op of the run"
        assert set(extra) <= {"PAD", "STRIDED_SLICE"}, extra
        # a strip meets the map's true border on one side of the rows only: one PAD per 3x3
        # conv (a pad on all four sides would fold into a SAME conv), none anywhere else
        assert extra["PAD"] == 2


def test_xnnpack_takes_every_op_of_every_tile(converted):
    unsplit, tiles, _, _ = converted
    for data in (unsplit, *tiles):
        assert ops_left_on_cpu(open_interpreter(content=data)._get_ops_details()) == []


def test_the_stitched_tiles_equal_the_unsplit_run(converted):
    unsplit, tiles, layout, names = converted
    run = layout.run
    (source,) = run.inputs
    x = np.random.default_rng(2).normal(size=(1, 16, 12, 8)).astype(np.float32)
    whole = open_interpreter(content=unsplit).get_signature_runner()
    want = next(iter(whole(**{names[source]: x}).values()))
    got = np.zeros_like(want)
    for data, plan in zip(tiles, layout.tiles, strict=True):
        (region,) = (r for n, r in plan.inputs if n == source)
        piece = x[:, region.rows.start:region.rows.stop, region.cols.start:region.cols.stop]
        runner = open_interpreter(content=data).get_signature_runner()
        out = plan.output
        got[:, out.rows.start:out.rows.stop, out.cols.start:out.cols.stop] = next(
            iter(runner(**{names[source]: piece}).values()))
    np.testing.assert_allclose(got, want, atol=1e-5 * float(np.max(np.abs(want))))
