"""Exporting a fused-tile run: scatter, tile and gather stages, and the proof.

The oracle is the test's own: it runs the stage files with LiteRT, slices each tile's input and
stitches the tiles' outputs with plain numpy indexing from the plan's edges, and compares the
stitched tensor with the unsplit Keras model's tensor at the run's end (fp32, 1e-5 relative to
its largest value), and the model outputs with the whole Keras model.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from hwsched.cli import main
from hwsched.deployment import load_plan, plan_from_dict, plan_to_dict
from hwsched.errors import PlanError, TilingError
from hwsched.export.verify import verify_plan_dir
from hwsched.tiles.layout import parse_tiles_option

L = keras.layers


def tile_model() -> keras.Model:
    """Same-padded, strided, residual, max- and average-pooled, dilated: every kind of border
    the tiles must get right; random BN statistics so a wrong crop shows."""
    keras.utils.set_random_seed(0)
    image = keras.Input(batch_shape=(1, 40, 36, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(image)
    x = L.Conv2D(8, 3, strides=2, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn")(x)
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="r1")(x)
    x = L.Add(name="add")([x, y])
    x = L.MaxPooling2D(3, strides=2, padding="same", name="mp")(x)
    x = L.AveragePooling2D(3, strides=1, padding="same", name="ap")(x)
    x = L.DepthwiseConv2D(3, padding="same", dilation_rate=2, name="dw")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, L.Dense(5, name="logits")(x), name="tilenet")
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    shapes = [w.shape for w in bn.get_weights()]
    bn.set_weights([rng.uniform(0.5, 1.5, shapes[0]), rng.normal(size=shapes[1]),
                    rng.normal(size=shapes[2]), rng.uniform(0.5, 2.0, shapes[3])])
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    model = tile_model()
    model.save(root / "m.keras")
    return root, model


def _export(root, tiles: str, platforms: str, out: str, *extra: str) -> None:
    argv = ["export", str(root / "m.keras"), "--tiles", tiles, "--platforms", platforms,
            "--out", str(root / out), "--samples", "4", "--calibration", "random:16", *extra]
    assert main(argv) == 0


def _run_by_hand(plan_dir, plan, image):
    """LiteRT on each stage file in index order; a region edge is sliced by the sender when it
    holds the whole tensor, pieces into one input are placed by their region (numpy only)."""
    from ai_edge_litert.interpreter import Interpreter

    made: dict[tuple[int, str], np.ndarray] = {}
    received: dict[int, dict[str, np.ndarray]] = {}
    for stage in plan.stages:
        feeds = {}
        for spec in stage.inputs:
            if spec.source.stage is None:
                feeds[spec.name] = image
                continue
            value = np.full(spec.shape, np.nan, dtype=np.float32)
            for edge in plan.edges:
                if edge.to_stage != stage.index or spec.name not in edge.tensors:
                    continue
                piece = made[(edge.from_stage, spec.name)]
                bounds = edge.region(spec.name)
                if bounds is None:
                    value = piece
                    continue
                index = tuple(slice(a, b) for a, b in bounds)
                if piece.shape != value.shape or tuple(spec.shape) != piece.shape:
                    if tuple(spec.shape) == tuple(b - a for a, b in bounds):
                        value = piece[index]  # the sender's slice
                    else:
                        value[index] = piece  # a stitched piece
                else:
                    value = piece
            assert not np.isnan(value).any(), f"stage {stage.index}: {spec.name} has a hole"
            feeds[spec.name] = value
        received[stage.index] = feeds
        runner = Interpreter(model_path=str(plan_dir / stage.file)).get_signature_runner()
        result = runner(**{s.tflite_name: feeds[s.name] for s in stage.inputs})
        for spec in stage.outputs:
            made[(stage.index, spec.name)] = result[spec.tflite_name]
    return received, made


def _check_equivalence(root, model, out):
    plan = load_plan(root / out)
    last = plan.stages[-1].index
    heads = [keras.Model(model.input, model.get_layer(run["last_layer"]).output)
             for run in plan.tiles]
    rng = np.random.default_rng(7)
    for _ in range(3):
        image = rng.uniform(0, 1, (1, 40, 36, 3)).astype("float32")
        received, made = _run_by_hand(root / out, plan, image)
        for run, head in zip(plan.tiles, heads, strict=True):
            want = np.asarray(head(image))
            got = received[run["gather_stage"]][run["output"]]
            assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))
        np.testing.assert_allclose(made[(last, "logits")], np.asarray(model(image)),
                                   rtol=1e-5, atol=1e-5)
    return plan


def _strips(root):
    """The two-strip export of c1..dw (made once per module)."""
    if not (root / "strips" / "plan.json").is_file():
        _export(root, "c1..dw:2", "rpi4,rpi4", "strips")
    return root / "strips"


def test_two_strips_equal_the_whole_model(model_file):
    root, model = model_file
    _strips(root)
    plan = _check_equivalence(root, model, "strips")
    run = plan.tiles[0]
    assert [t["rows"] for t in run["tiles"]] == [[0, 5], [5, 10]]
    assert all(t["cols"] == [0, 9] for t in run["tiles"])
    assert run["tiles"][0]["halo"]["rows"] > 0 and run["verification"]["passed"]
    # each tile reads less than the whole image: a strip, not a copy of the model
    inputs = [t["inputs"][0]["rows"] for t in run["tiles"]]
    assert inputs[0][1] < 40 and inputs[1][0] > 0
    assert [s.board for s in plan.stages] == ["rpi4#1", "rpi4#1", "rpi4#2", "rpi4#1"]
    assert verify_plan_dir(root / "strips").passed


def test_a_grid_of_four_tiles_equals_the_whole_model(model_file):
    root, model = model_file
    _export(root, "c1..add:4:2x2", "rpi4*4", "grid")
    plan = _check_equivalence(root, model, "grid")
    regions = [(t["rows"], t["cols"]) for t in plan.tiles[0]["tiles"]]
    assert regions == [([0, 10], [0, 9]), ([0, 10], [9, 18]), ([10, 20], [0, 9]),
                       ([10, 20], [9, 18])]
    # the cells are priced (tests/test_tiles_planning.py checks the cell rule itself)
    assert "unpriced" not in plan.prediction
    tiles = [s["latency_ms"] for s in plan.prediction["stages"][1:5]]
    assert plan.prediction["latency_ms"] > max(tiles) > 0


@pytest.mark.parametrize("runs, middle", [("c1..c2:2,r1..add:2", "bn"),
                                          ("c1..c2:2,bn..add:2", "")])
def test_two_tiled_runs_equal_the_whole_model(model_file, runs, middle):
    """Two runs: the root stage between them gathers the first and scatters the second (with
    no layer of its own when the runs are adjacent); run 2 also reads 'bn' from that root."""
    root, model = model_file
    out = f"two_runs_{middle or 'adjacent'}"
    _export(root, runs, "rpi4,rpi4", out)
    plan = _check_equivalence(root, model, out)
    first, second = plan.tiles
    assert first["gather_stage"] == second["scatter_stage"] == 3
    assert [(s.first_layer, s.last_layer) for s in plan.stages[3::3]] == [
        (middle, middle), ("mp", "logits")]
    assert [s.board for s in plan.stages] == ["rpi4#1", "rpi4#1", "rpi4#2"] * 2 + ["rpi4#1"]


def test_int8_tiles_stay_within_a_few_quantization_steps(model_file):
    """With average pooling at the borders (not bit-exact in int8, the plan says by how many
    steps) the stitched int8 tensor still stays within a few steps of the float one."""
    root, model = model_file
    _export(root, "c1..dw:2", "rpi4,rpi4", "int8", "--precision", "int8")
    plan = load_plan(root / "int8")
    run = plan.tiles[0]
    assert run["verification"]["int8_max_steps"] in range(1, 4)
    scale = max(s.outputs[0].quantization.scale for s in plan.stages[1:3])
    head = keras.Model(model.input, model.get_layer("dw").output)
    image = np.random.default_rng(3).uniform(0, 1, (1, 40, 36, 3)).astype("float32")
    received, _ = _run_by_hand_int8(root / "int8", plan, image)
    gather_spec = next(s for s in plan.stages[3].inputs if s.name == "dw")
    q = gather_spec.quantization
    got = (received.astype(np.float32) - q.zero_point) * q.scale
    assert np.max(np.abs(got - np.asarray(head(image)))) <= 8 * scale


def _run_by_hand_int8(plan_dir, plan, image):
    from ai_edge_litert.interpreter import Interpreter

    def run(stage, feeds):
        runner = Interpreter(model_path=str(plan_dir / stage.file)).get_signature_runner()
        return runner(**{s.tflite_name: feeds[s.name] for s in stage.inputs})

    out0 = run(plan.stages[0], {"image": image})[plan.stages[0].outputs[0].tflite_name]
    gather = plan.stages[3]
    spec = next(s for s in gather.inputs if s.name == "dw")
    stitched = np.zeros(spec.shape, dtype=np.int8)
    for k in (1, 2):
        stage = plan.stages[k]
        (edge_in,) = [e for e in plan.edges if e.to_stage == k]
        crop = out0[tuple(slice(a, b) for a, b in edge_in.region("image"))]
        q_in = stage.inputs[0].quantization
        x = np.clip(np.round(crop / q_in.scale) + q_in.zero_point, -128, 127).astype(np.int8)
        y = run(stage, {"image": x})[stage.outputs[0].tflite_name]
        q_out = stage.outputs[0].quantization
        as_float = (y.astype(np.float32) - q_out.zero_point) * q_out.scale
        requant = np.clip(np.round(as_float / spec.quantization.scale)
                          + spec.quantization.zero_point, -128, 127).astype(np.int8)
        (edge_out,) = [e for e in plan.edges if e.from_stage == k]
        stitched[tuple(slice(a, b) for a, b in edge_out.region("dw"))] = requant
    return stitched, None


def test_plan_keeps_regions_and_tiles_through_json(model_file):
    root, _ = model_file
    plan = load_plan(_strips(root))
    again = plan_from_dict(json.loads(json.dumps(plan_to_dict(plan))))
    assert again.edges == plan.edges and again.tiles == plan.tiles
    assert any(e.regions for e in again.edges)
    data = plan_to_dict(plan)
    data["edges"][0]["regions"] = [[[0, 1], [5, 2]]]
    with pytest.raises(PlanError, match=r"edges\[0\]\.regions\[0\]"):
        plan_from_dict(data)


@pytest.mark.parametrize("text, message", [
    ("c1..dw", "FIRST_LAYER..LAST_LAYER:K"),
    ("c1..dw:2:r3/2/1", "give K strip sizes"),
    ("c1..dw:1", "K must be at least 2"),
    ("c1..dw:4:3x1", "equal ROWS x COLS"),
])
def test_bad_tiles_option_is_one_line(text, message):
    with pytest.raises(TilingError, match=message):
        parse_tiles_option(text)


def test_cli_refuses_bad_runs_in_one_line(model_file, capsys):
    root, _ = model_file
    cases = [
        (["c1..dw:3", "rpi4,rpi4"], "give 3 --platforms"),
        (["c1..logits:2", "rpi4,rpi4"], "layer 'gap' cannot be in a fused run"),
        (["c1..nope:2", "rpi4,rpi4"], "has no layer 'nope'"),
        (["c1..r1:2", "rpi4,rpi4"], "tensor 'bn' of layer 'bn' is used after the run"),
    ]
    for (tiles, platforms), message in cases:
        argv = ["export", str(root / "m.keras"), "--tiles", tiles, "--platforms", platforms,
                "--out", str(root / "bad")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_analyze_tiles_says_how_to_export_its_plan_and_that_export_matches(tmp_path, capsys):
    """``analyze --tiles`` gives the ``--tiles``/``--platforms`` values of its row-tiled runs;
    exporting with them writes exactly the analysis's strips, proven against the model."""
    from test_tiles_cli import _conv_stack

    model = tmp_path / "stack.keras"
    _conv_stack(model)
    argv = ["analyze", str(model), "--platforms", "rpi5,rpi4", "--link", "gige", "--tiles",
            "--no-report", "--json", str(tmp_path / "a.json")]
    assert main(argv) == 0
    assert "export: --tiles" in capsys.readouterr().out
    tiles = json.loads((tmp_path / "a.json").read_text())["tiles"]
    argv = ["export", str(model), "--tiles", tiles["export_tiles"], "--platforms",
            ",".join(tiles["export_platforms"]), "--out", str(tmp_path / "out"),
            "--samples", "2"]
    assert main(argv) == 0
    plan = load_plan(tmp_path / "out")

    def sizes(items, key):
        return [item[key] for item in items]
    analysed = [sizes(s["tiles"], "rows") if s["kind"] == "rows" else sizes(s["parts"],
                "channels") for s in tiles["segments"]]
    assert [sizes(r["tiles"], "rows") if r["kind"] == "rows" else sizes(r["parts"], "channels")
            for r in plan.tiles] == analysed
    assert all(run["verification"]["passed"] for run in plan.tiles)
    assert [s.platform for s in plan.stages][:3] == [tiles["export_platforms"][0],
                                                      *tiles["export_platforms"][:2]]


def test_a_channel_split_of_the_last_layer_after_a_tiled_run(model_file):
    """Tiles, then the classifier split by output channels: each part is the layer with its
    slice of the kernel on the whole input; the last root stage only concatenates."""
    root, model = model_file
    _export(root, "c1..dw:2,logits..logits:2:c3/2", "rpi4,rpi4", "channels")
    plan = _check_equivalence(root, model, "channels")
    tiled, channels = plan.tiles
    assert tiled["kind"] == "rows"
    assert channels["kind"] == "channels" and channels["gather_stage"] == len(plan.stages) - 1
    assert [p["channels"] for p in channels["parts"]] == [[0, 3], [3, 5]]
    assert plan.stages[-1].first_layer == "" and channels["verification"]["passed"]
    assert [e.region("logits") for e in plan.edges if e.to_stage == len(plan.stages) - 1] == [
        ((0, 1), (0, 3)), ((0, 1), (3, 5))]


@pytest.mark.parametrize(("layer", "first"), [("c2", 5), ("r1", 2)])
def test_a_convolution_split_by_output_channels_equals_the_whole_model(model_file, layer, first):
    """A 3×3 convolution (c2: stride 2, same padding; r1: fused ReLU, inside a residual block)
    split by output channels: each part is the convolution with its slice of the filters on
    the whole input; stitched along the channel axis they equal the unsplit layer's output
    (the oracle: the Keras model cut there), and the stages chained equal the whole model."""
    root, model = model_file
    out = f"conv_channels_{layer}"
    _export(root, f"{layer}..{layer}:2:c{first}/{8 - first}", "rpi4,rpi4", out)
    plan = _check_equivalence(root, model, out)
    (run,) = plan.tiles
    assert run["kind"] == "channels" and run["verification"]["passed"]
    assert [p["channels"] for p in run["parts"]] == [[0, first], [first, 8]]
    (shape,) = {tuple(s.shape) for stage in plan.stages if stage.first_layer == layer
                for s in stage.inputs}  # every part reads the whole input map
    assert shape == tuple(model.get_layer(layer).input.shape)


def test_a_softmax_layer_is_not_split_by_channels(model_file, capsys):
    root, _ = model_file
    softmax = keras.Model(*(lambda x: (x, L.Dense(4, activation="softmax", name="sm")(
        L.Flatten(name="flat")(x))))(keras.Input(batch_shape=(1, 4, 4, 2), name="x")))
    softmax.save(root / "sm.keras")
    argv = ["export", str(root / "sm.keras"), "--tiles", "sm..sm:2:c2/2", "--platforms",
            "rpi4,rpi4", "--out", str(root / "sm")]
    assert main(argv) == 2
    assert "channel-wise activation" in capsys.readouterr().err


def test_the_report_draws_the_tiled_plan_on_the_layer_strip(tmp_path):
    """One slice per board per tiled run, as tall as the share of rows its board computes."""
    import re

    from test_tiles_cli import _conv_stack

    model = tmp_path / "stack.keras"
    _conv_stack(model)
    report = tmp_path / "r.html"
    argv = ["analyze", str(model), "--platforms", "rpi5,rpi4", "--link", "gige", "--tiles",
            "--report", str(report), "--json", str(tmp_path / "a.json")]
    assert main(argv) == 0
    html = report.read_text()
    tiles = json.loads((tmp_path / "a.json").read_text())["tiles"]
    figure = html[html.index('id="chart-tiles"'):]
    figure = figure[:figure.index("</svg>")]
    heights = [float(h) for h in re.findall(r'<rect[^>]* height="([0-9.]+)"', figure)]
    rows = [t["rows"][1] - t["rows"][0] for s in tiles["segments"] if s["kind"] == "rows"
            for t in s["tiles"]]
    assert rows
    slices = heights[1:1 + len(rows)]  # after the root's background band
    shares = [h / sum(slices[:2]) for h in slices[:2]]
    assert shares == pytest.approx([r / sum(rows[:2]) for r in rows[:2]], rel=1e-3)


def test_a_report_without_tiles_has_no_tile_figure():
    from hwsched.report.tiles import tiles_figure

    assert tiles_figure({"model": "m", "layers": []}) == ""


def test_int8_tiles_equal_the_unsplit_int8_run_bit_for_bit(model_file):
    """Oracle: the same layers exported as one int8 stage of a plain chain (cut before c1 and
    after mp, calibrated on the same samples). Fed the same input codes, the int8 tiles
    stitched by their regions give exactly its output codes (max pooling's borders included;
    average pooling at a border is the documented exception)."""
    from ai_edge_litert.interpreter import Interpreter

    root, _ = model_file
    _export(root, "c1..mp:2", "rpi4,rpi4", "int8_exact", "--precision", "int8")
    argv = ["export", str(root / "m.keras"), "--cuts", "image,mp", "--platforms", "rpi4*3",
            "--precision", "fp32,int8,fp32", "--out", str(root / "chain8"), "--samples", "2",
            "--calibration", "random:16"]
    assert main(argv) == 0
    tiles, chain = load_plan(root / "int8_exact"), load_plan(root / "chain8")
    (run,) = tiles.tiles
    unsplit = chain.stages[1]
    assert (unsplit.first_layer, unsplit.last_layer) == ("c1", "mp")

    def runner(plan_dir, stage):
        return Interpreter(model_path=str(plan_dir / stage.file)).get_signature_runner()

    image = np.random.default_rng(11).uniform(0, 1, (1, 40, 36, 3)).astype("float32")
    q = unsplit.inputs[0].quantization
    codes = np.clip(np.round(image / q.scale) + q.zero_point, -128, 127).astype(np.int8)
    want = runner(root / "chain8", unsplit)(**{unsplit.inputs[0].tflite_name: codes})[
        unsplit.outputs[0].tflite_name]
    stitched = np.zeros_like(want)
    for tile in run["tiles"]:
        stage = tiles.stages[tile["stage"]]
        assert stage.inputs[0].quantization == q
        (into,) = [e for e in tiles.edges if e.to_stage == stage.index]
        crop = codes[tuple(slice(a, b) for a, b in into.region("image"))]
        out = runner(root / "int8_exact", stage)(**{stage.inputs[0].tflite_name: crop})[
            stage.outputs[0].tflite_name]
        stitched[:, slice(*tile["rows"]), slice(*tile["cols"])] = out
    assert tiles.stages[1].outputs[0].quantization == unsplit.outputs[0].quantization
    assert np.array_equal(stitched, want)
    assert run["verification"]["int8_bit_exact"] is True  # the export's own proof agrees


def test_the_plan_predicts_the_exported_strips_as_the_planner_prices_them(model_file):
    """Prediction of the exported layout = the planner's own tile costs (oracle: TileCoster
    called here on the same strips), the root's layers added once and the root board's
    invocation once per root stage (the scatter's and the gather's: the gather's was missing,
    so a hand-written ``export --tiles`` predicted less than ``analyze --tiles``)."""
    from hwsched.hardware import load_link, load_platform
    from hwsched.load.keras_reader import read_keras_model
    from hwsched.tiles.planning import TileCoster, boards_from_platforms, link_from_descriptor
    from hwsched.tiles.receptive import Span, fused_run

    root, model = model_file
    plan = load_plan(_strips(root))
    graph, _ = read_keras_model(model)
    boards = boards_from_platforms(graph, [load_platform("rpi4")] * 2)
    coster = TileCoster(graph, boards, link_from_descriptor(load_link("gige")))
    run = fused_run(graph, graph.position("c1"), graph.position("dw"))
    tiles = [coster.tile(run, k, Span(*t["rows"])).latency_ms
             for k, t in enumerate(plan.tiles[0]["tiles"])]
    outside = sum(ms for p, ms in enumerate(boards[0].layer_ms) if p not in run.positions)
    root_stages = len(plan.stages) - len(tiles)
    assert root_stages == 2  # the scatter and the gather
    assert plan.prediction["latency_ms"] == pytest.approx(
        root_stages * boards[0].overhead_ms + outside + max(tiles))
    assert [s["latency_ms"] for s in plan.prediction["stages"]][1:3] == pytest.approx(tiles)


def test_an_int8_tiled_export_is_predicted_in_int8(model_file):
    """A hand-written ``export --tiles … --precision int8`` is priced as the planner prices
    int8 boards (int8 compute, int8 weight bytes streamed by every tile); it was priced in
    each board's default precision, fp32 on rpi4: 4× the weight bytes."""
    from hwsched.hardware import load_link, load_platform
    from hwsched.load.keras_reader import read_keras_model
    from hwsched.tiles.planning import TileCoster, boards_from_platforms, link_from_descriptor
    from hwsched.tiles.receptive import Span, fused_run

    root, model = model_file
    if not (root / "int8_exact" / "plan.json").is_file():
        _export(root, "c1..mp:2", "rpi4,rpi4", "int8_exact", "--precision", "int8")
    plan = load_plan(root / "int8_exact")
    graph, _ = read_keras_model(model)
    run = fused_run(graph, graph.position("c1"), graph.position("mp"))
    link = link_from_descriptor(load_link("gige"))

    def tiles_ms(precision: str) -> list[float]:
        coster = TileCoster(graph, boards_from_platforms(graph, [load_platform("rpi4")] * 2,
                                                         precision), link)
        return [coster.tile(run, k, Span(*t["rows"])).latency_ms
                for k, t in enumerate(plan.tiles[0]["tiles"])]

    predicted = [s["latency_ms"] for s in plan.prediction["stages"]][1:3]
    assert predicted == pytest.approx(tiles_ms("int8"))
    assert predicted != pytest.approx(tiles_ms("fp32"))
