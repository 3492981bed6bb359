"""Stateful streaming models: a ring buffer in a resource variable (``CALL_ONCE`` of an init
subgraph, ``VAR_HANDLE``, ``READ_VARIABLE``, ``ASSIGN_VARIABLE``), built and converted here to
fp32 and int8 TFLite (the ring kept float, or quantized to int8 as keyword spotters keep it),
read into the IR, split in two at the flatbuffer level and proven equal to the whole model over
50 frames — state carried from frame to frame — on LiteRT and on TFLite Micro, with the stage
files run here by the engines themselves, not by hwsched's chain. A cut through a variable is
never offered and is refused naming it; a stateful plan streams through ``hwsched emulate`` and
its outputs over the sequence equal the whole model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.cli import main
from hwsched.cuts import enumerate_cuts
from hwsched.errors import CutError, ExportError
from hwsched.export.verify import compare_sequence
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor, Variable
from hwsched.load import load_model

FRAMES = 50
#: The streaming model: each call appends a feature vector of F values to a ring of T frames.
T, F, CLASSES = 4, 8, 6
#: The conversions: fp32; int8 ops with a float32 ring; int8 ops and an int8 ring.
PRECISIONS = ("fp32", "int8", "int8_state")
#: Bytes of the ring in each conversion.
RING_BYTES = {"fp32": T * F * 4, "int8": T * F * 4, "int8_state": T * F}


def _streaming_module():
    import tensorflow as tf

    class Stream(tf.Module):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.ring = tf.Variable(tf.zeros((1, T, F)), name="ring")
            self.w_in = tf.constant(rng.normal(size=(F, F)).astype(np.float32))
            self.w_out = tf.constant(rng.normal(size=(T * F, CLASSES)).astype(np.float32) * 0.3)

        @tf.function(input_signature=[tf.TensorSpec((1, F), tf.float32, name="frame")])
        def __call__(self, x):
            features = tf.nn.relu(tf.matmul(x, self.w_in))
            ring = tf.concat([self.ring[:, 1:, :], tf.reshape(features, (1, 1, F))], axis=1)
            self.ring.assign(ring)
            return {"scores": tf.nn.softmax(tf.matmul(tf.reshape(ring, (1, T * F)),
                                                      self.w_out))}

    return tf, Stream()


def _convert(precision: str) -> bytes:
    tf, module = _streaming_module()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module)
    converter.experimental_enable_resource_variables = True
    if precision != "fp32":
        rng = np.random.default_rng(1)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.normal(size=(1, F)).astype(np.float32)] for _ in range(32))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        # TF's switch for quantizing resource variables (no public name in TF 2.21)
        converter._experimental_variable_quantization = precision == "int8_state"
    return converter.convert()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("streaming")
    paths = {}
    for precision in PRECISIONS:
        paths[precision] = folder / f"stream_{precision}.tflite"
        paths[precision].write_bytes(_convert(precision))
    return paths


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(5).normal(size=(FRAMES, F)).astype(np.float32)


def _ops(data: bytes) -> list[list[str]]:
    """The builtin operator names of every subgraph, read with LiteRT's schema alone."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]
    return [[codes[op.opcodeIndex] for op in sg.operators] for sg in model.subgraphs]


# -- engines run directly: the oracle's own code, not hwsched's chain ------------------------
class _LiteRT:
    def __init__(self, data: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=data)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, value: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], value)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output["index"]))


class _Micro:
    def __init__(self, data: bytes) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.interpreter = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)

    def __call__(self, value: np.ndarray) -> np.ndarray:
        self.interpreter.set_input(value, 0)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_output(0))


ENGINES = {"litert": _LiteRT, "tflm": _Micro}


def _quantized_frames(model: bytes, frames: np.ndarray) -> np.ndarray:
    detail = _LiteRT(model).input
    scale, zero_point = detail["quantization"]
    if not scale:
        return frames.astype(np.float32)
    return np.clip(np.round(frames / scale + zero_point), -128, 127).astype(np.int8)


def _sequence(engine: str, files: list[bytes], inputs: np.ndarray, reload_last: bool = False
              ) -> np.ndarray:
    """Outputs frame by frame of ``files`` chained (one interpreter per file for the whole
    sequence; ``reload_last``: the last file's interpreter is made anew every frame)."""
    programs = [ENGINES[engine](data) for data in files]
    outputs = []
    for value in inputs:
        if reload_last:
            programs[-1] = ENGINES[engine](files[-1])
        for program in programs:
            value = program(value.reshape(program_shape(program)))
        outputs.append(value)
    return np.stack(outputs)


def program_shape(program) -> tuple[int, ...]:
    if isinstance(program, _LiteRT):
        return tuple(program.input["shape"])
    return tuple(program.interpreter.get_input_details(0)["shape"])


# -- reading -------------------------------------------------------------------------------
def test_the_reader_knows_the_variable_its_reads_assigns_and_state_bytes(models):
    for precision, path in models.items():
        graph = load_model(str(path)).graph
        (ring,) = graph.variables
        assert ring.name == "ring" and ring.shape == (1, T, F)
        assert ring.bytes == RING_BYTES[precision]
        assert (ring.quantization is not None) == (precision == "int8_state")
        assert [graph.layer(n).source_op for n in ring.readers] == ["READ_VARIABLE"]
        assert [graph.layer(n).source_op for n in ring.writers] == ["ASSIGN_VARIABLE"]
        assert {layer.source_op for layer in graph} & {"CALL_ONCE", "VAR_HANDLE"} == set()
        assert sum(layer.state_bytes for layer in graph) == RING_BYTES[precision]


def test_the_analysis_counts_the_ring_buffer_in_the_stage_memory(models):
    """Persistent bytes = every constant buffer of the main subgraph (read from the flatbuffer
    here) plus the variable's state, T*F float32 values."""
    from ai_edge_litert import schema_py_generated as schema

    from hwsched.costs.memory import weight_bytes

    data = models["fp32"].read_bytes()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    main_graph = model.subgraphs[0]
    constants = sum(len(model.buffers[t.buffer].data) for t in main_graph.tensors
                    if model.buffers[t.buffer].data is not None)
    graph = load_model(str(models["fp32"])).graph
    assert int(weight_bytes(graph, "fp32").sum()) == constants + RING_BYTES["fp32"]


# -- cuts ----------------------------------------------------------------------------------
def _separates(graph: LayerGraph, position: int) -> bool:
    """Brute force: the head holds some but not all of a variable's accessors."""
    head = {layer.name for layer in graph.layers[:position]}
    return any(0 < len(head & set(v.accessors)) < len(v.accessors) for v in graph.variables)


def test_no_offered_cut_separates_a_variable_and_every_other_cut_is_offered(models):
    for path in models.values():
        graph = load_model(str(path)).graph
        offered = {cut.head_layers for cut in enumerate_cuts(graph)}
        valid = {k for k in range(1, len(graph)) if not _separates(graph, k)}
        assert offered == valid and len(valid) < len(graph) - 1


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 12), st.data())
def test_cut_enumeration_skips_exactly_the_positions_inside_a_variable(length, data):
    read = data.draw(st.integers(1, length - 2))
    assign = data.draw(st.integers(read, length - 1))

    def t(n: str) -> Tensor:
        return Tensor(n, producer=n, shape=(1, 4), dtype="float32")

    layers = [Layer("x", OpKind.INPUT, (), (t("x"),))]
    for k in range(1, length):
        inputs = () if k == read else (layers[-1].outputs[0].name,) if layers[-1].outputs else ()
        if k == assign and k != read:
            layers.append(Layer(f"l{k}", OpKind.IDENTITY, inputs, ()))
        else:
            layers.append(Layer(f"l{k}", OpKind.IDENTITY, inputs or ("x",), (t(f"l{k}"),)))
    outputs = (next(lay.outputs[0].name for lay in reversed(layers) if lay.outputs),)
    graph = LayerGraph("g", tuple(layers), outputs, variables=(
        Variable("v", (1, 4), "float32", readers=(f"l{read}",), writers=(f"l{assign}",)),))
    offered = {cut.head_layers for cut in enumerate_cuts(graph)}
    assert offered == {k for k in range(1, length) if not _separates(graph, k)}


def test_a_cut_through_the_variable_is_refused_in_one_line_naming_it(models, tmp_path, capsys):
    graph = load_model(str(models["fp32"])).graph
    inside = graph.layers[graph.position("ReadVariableOp")].name
    for how in (["--cuts", inside], ["--cut-positions", str(graph.position(inside) + 1)]):
        code = main(["export", str(models["fp32"]), *how, "--platforms", "rpi4,rpi4",
                     "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and "Traceback" not in err
        assert "variable 'ring'" in err and "ReadVariableOp" in err and "assign_ring" in err
    with pytest.raises(CutError, match="would separate variable 'ring'"):
        from hwsched.cuts import crossing_at

        crossing_at(graph, graph.position(inside) + 1)
    assert not (tmp_path / "out").exists()


def test_a_stage_holding_only_part_of_a_variable_is_refused(models):
    """A stage-graph placement can group layers freely: a stage with the read but not the
    assign would keep a state of its own that never advances."""
    from hwsched.export.stages import StageSlice, signature_names
    from hwsched.export.tflite_split import split_tflite

    loaded = load_model(str(models["fp32"]))
    graph = loaded.graph
    stop = graph.position("ReadVariableOp") + 1
    part = StageSlice(0, 0, stop, ("serving_default_frame:0",), ("Reshape", "ReadVariableOp"))
    with pytest.raises(ExportError, match="variable 'ring' but not assign_ring"):
        split_tflite(loaded, part, signature_names(list(graph.tensors)))


# -- one ring per layer: the converter hoists every read to the top ----------------------------
RINGS = 3


def _rings_model() -> bytes:
    """Three layers, each keeping its own int8 ring of its last T inputs (a streaming
    keyword spotter keeps one per layer)."""
    import tensorflow as tf

    class Rings(tf.Module):
        def __init__(self) -> None:
            self.rings = [tf.Variable(tf.zeros((1, T, F)), name=f"ring{k}") for k in range(RINGS)]
            self.w = tf.constant(np.random.default_rng(0).normal(size=(F, F)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec((1, F), tf.float32)])
        def __call__(self, x):
            h = tf.nn.relu(tf.matmul(x, self.w))
            for ring in self.rings:
                window = tf.concat([ring[:, 1:, :], tf.reshape(h, (1, 1, F))], axis=1)
                ring.assign(window)
                h = tf.reduce_sum(window, axis=1)
            return {"o": h}

    module = Rings()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module)
    converter.experimental_enable_resource_variables = True
    rng = np.random.default_rng(1)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.normal(size=(1, F)).astype(np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_variable_quantization = True
    return converter.convert()


@pytest.fixture(scope="module")
def rings(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rings") / "rings.tflite"
    path.write_bytes(_rings_model())
    return path


def test_one_ring_per_layer_splits_into_one_stage_per_ring_equal_to_the_whole(
        rings, frames, tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    from hwsched.export import export

    data = rings.read_bytes()
    main_ops = _ops(data)[0]
    assert main_ops.index("READ_VARIABLE") < main_ops.index("ASSIGN_VARIABLE")  # hoisted reads
    graph = load_model(str(rings)).graph
    assert len(graph.variables) == RINGS
    for variable in graph.variables:  # each variable's accesses keep the flatbuffer's order
        ops = [graph.layer(n).attrs["op_index"] for n in sorted(
            variable.accessors, key=graph.position)]
        assert ops == sorted(ops)
    offered = {cut.head_layers for cut in enumerate_cuts(graph)}
    assert offered == {k for k in range(1, len(graph)) if not _separates(graph, k)}
    between = sorted(graph.position(v.writers[-1]) + 1 for v in graph.variables)[:-1]
    assert set(between) <= offered  # a cut between every two rings
    export(str(rings), ["rpi4"] * RINGS, tmp_path / "split", cut_positions=between,
           samples=FRAMES)
    files = _stage_files(tmp_path / "split")
    held = []
    for stage in files:
        model = schema.ModelT.InitFromPackedBuf(stage, 0)
        names = {op.builtinOptions.sharedName for sg in model.subgraphs for op in sg.operators
                 if type(op.builtinOptions).__name__ == "VarHandleOptionsT"}
        held.append(names)
    assert [len(h) for h in held] == [1] * RINGS and len(set.union(*held)) == RINGS
    inputs = _quantized_frames(data, frames)
    for engine in ENGINES:
        if engine == "tflm":
            pytest.importorskip("tflite_micro", reason="pip install tflite-micro")
        np.testing.assert_array_equal(_sequence(engine, files, inputs),
                                      _sequence(engine, [data], inputs))


# -- split, verified over a sequence ---------------------------------------------------------
CUTS = ("Reshape", "assign_ring")  # the variable in the tail; the variable in the head


@pytest.fixture(scope="module")
def plans(models, tmp_path_factory) -> dict[tuple[str, str], Path]:
    from hwsched.export import export

    folder = tmp_path_factory.mktemp("plans")
    out = {}
    for precision, path in models.items():
        for cut in CUTS:
            out[precision, cut] = folder / f"{precision}_{cut}"
            export(str(path), ["rpi4", "rpi4"], out[precision, cut], cut_layers=[cut],
                   samples=FRAMES)
    return out


def _stage_files(plan_dir: Path) -> list[bytes]:
    plan = json.loads((plan_dir / "plan.json").read_text())
    return [(plan_dir / s["file"]).read_bytes() for s in plan["stages"]]


@pytest.mark.parametrize("engine", ["litert", "tflm"])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cut", CUTS)
def test_two_stages_equal_the_whole_model_at_every_one_of_50_frames(
        models, plans, frames, engine, precision, cut):
    if engine == "tflm":
        pytest.importorskip("tflite_micro", reason="pip install tflite-micro")
    whole = models[precision].read_bytes()
    inputs = _quantized_frames(whole, frames)
    expected = _sequence(engine, [whole], inputs)
    got = _sequence(engine, _stage_files(plans[precision, cut]), inputs)
    # the state matters: the model answers the same frame differently as the ring fills
    assert not np.array_equal(_sequence(engine, [whole], inputs[[0, 0]])[0],
                              _sequence(engine, [whole], inputs[[0, 0]])[1])
    np.testing.assert_array_equal(got, expected)


def test_a_stage_whose_state_is_lost_departs_from_the_whole_model(models, plans, frames):
    """The oracle can fail: re-created every frame, the stage holding the ring forgets it."""
    whole = models["fp32"].read_bytes()
    files = _stage_files(plans["fp32", "Reshape"])
    expected = _sequence("litert", [whole], frames)
    lossy = _sequence("litert", files, frames, reload_last=True)
    assert np.array_equal(lossy[0], expected[0]) and not np.array_equal(lossy[1:], expected[1:])
    steps = iter(lossy)
    wanted = iter(expected)
    check = compare_sequence(lambda _frame: {"y": next(steps)},
                             lambda _frame: {"y": next(wanted)}, list(frames), "litert")
    assert check.first_divergent_frame == 1 and not check.passed


def test_the_variable_and_its_init_subgraph_travel_with_its_stage_quantization_kept(
        models, plans):
    from ai_edge_litert import schema_py_generated as schema

    for precision in PRECISIONS:
        for cut, holder in zip(CUTS, (1, 0), strict=True):
            files = _stage_files(plans[precision, cut])
            ops = [_ops(data) for data in files]
            assert ops[holder][0][:2] == ["CALL_ONCE", "VAR_HANDLE"]
            assert ops[holder][1] == ["VAR_HANDLE", "ASSIGN_VARIABLE"]  # the init subgraph
            assert len(ops[1 - holder]) == 1
            assert not {"CALL_ONCE", "VAR_HANDLE"} & set(ops[1 - holder][0])
            call = schema.ModelT.InitFromPackedBuf(files[holder], 0).subgraphs[0].operators[0]
            assert call.builtinOptions.initSubgraphIndex == 1
            plan = json.loads((plans[precision, cut] / "plan.json").read_text())
            assert [s["stateful"] for s in plan["stages"]] == [holder == 0, holder == 1]
            sequence = plan["verification"]["sequence"]
            for engine in ("litert", "tflm"):
                assert sequence[engine] == {"frames": FRAMES, "max_abs_diff": 0.0,
                                            "first_divergent_frame": None}
            crossing = plan["stages"][0]["outputs"][0]
            assert crossing == {**plan["stages"][1]["inputs"][0], "source": None}
            if precision != "fp32":
                assert crossing["dtype"] == "int8" and crossing["quantization"] is not None
            assert _ring_initialiser(files[holder]) == _ring_initialiser(
                models[precision].read_bytes())


def _ring_initialiser(data: bytes) -> tuple:
    """The init subgraph's initial ring: type, shape, scale/zero point and bytes."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    init = model.subgraphs[1]
    (assign,) = [op for op in init.operators if len(op.inputs) == 2]
    tensor = init.tensors[assign.inputs[1]]
    q = tensor.quantization
    scales = () if q is None or q.scale is None else tuple(q.scale)
    points = () if q is None or q.zeroPoint is None else tuple(q.zeroPoint)
    return (tensor.type, tuple(tensor.shape), scales, points,
            bytes(model.buffers[tensor.buffer].data))


def test_an_int8_stateful_stage_on_an_mcu_runs_on_tflm(models, tmp_path):
    from hwsched.export import export

    plan = export(str(models["int8"]), ["rpi4", "stm32h7"], tmp_path / "mcu",
                  cut_layers=["Reshape"], samples=20)
    mcu = plan.stages[1]
    assert mcu.engine == "tflm" and mcu.stateful and mcu.arena_bytes
    assert mcu.engine_verification["samples"] == 20


# -- the runtime ----------------------------------------------------------------------------
def test_a_stateful_plan_streams_through_emulate_equal_to_the_whole_model(
        models, plans, frames, tmp_path):
    plan_dir = plans["fp32", "Reshape"]
    np.save(tmp_path / "frames.npy", frames)
    code = main(["emulate", str(plan_dir), "--frames", str(FRAMES), "--data",
                 str(tmp_path / "frames.npy"), "--outputs", str(tmp_path / "out.npz"),
                 "--keep", str(tmp_path / "logs")])
    assert code == 0
    with np.load(tmp_path / "out.npz") as outputs:
        (got,) = outputs.values()
    expected = _sequence("litert", [models["fp32"].read_bytes()], frames)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    assert "stage 1 is stateful" in (tmp_path / "logs" / "stage1.log").read_text()


def test_verify_reruns_the_sequence_proof_of_a_stateful_plan(plans):
    from hwsched.export.verify import verify_plan_dir

    verification = verify_plan_dir(plans["int8", "assign_ring"])
    assert verification.passed
    assert {engine: record["frames"] for engine, record in verification.sequence.items()} == {
        "litert": FRAMES, "tflm": FRAMES}


def test_the_analysis_ranks_only_splits_that_keep_the_variable_on_one_board(models, tmp_path):
    graph = load_model(str(models["int8"])).graph
    for platforms in ("rpi4,stm32h7", "rpi4,rpi4,stm32h7"):
        out = tmp_path / f"{platforms}.json"
        assert main(["analyze", str(models["int8"]), "--platforms", platforms, "--link",
                     "uart921600", "--json", str(out), "--no-report"]) == 0
        analysis = json.loads(out.read_text())
        positions = [k for c in analysis["candidates"] for k in c["cut_positions"]]
        assert positions and not any(_separates(graph, k) for k in positions)
        assert not any(_separates(graph, c["head_layers"]) for c in analysis["cut_points"])


def test_the_mcu_memory_model_predicts_the_stateful_stages_tflm_arena_within_10_percent(
        models, plans):
    """Predicted (activations, TFLM structures, the ring buffer and the ops that open and
    initialise it) against what TFLM's recording allocator measures after a few frames."""
    pytest.importorskip("tflite_micro", reason="pip install tflite-micro")
    from hwsched.costs.memory import tflm_arena_bytes
    from hwsched.tflm import MicroModel

    graph = load_model(str(models["int8"])).graph
    for cut in CUTS:
        stop = graph.position(cut) + 1
        for data, (first, last) in zip(_stage_files(plans["int8", cut]),
                                       ((0, stop - 1), (stop, len(graph) - 1)), strict=True):
            model = MicroModel(data, f"cut after {cut}")
            for _ in range(3):
                model.run([np.zeros(tuple(d["shape"]), d["dtype"]) for d in model.inputs])
            measured = model.arena().total_bytes
            predicted = tflm_arena_bytes(graph, first, last, "int8")
            assert abs(predicted - measured) <= 0.10 * measured, (cut, first, predicted, measured)


def test_a_restarted_stateful_stage_is_announced_and_its_state_starts_again(
        models, plans, tmp_path):
    """Stage 1 holds the ring; killed mid-stream and restarted, it starts from the initial
    state: the run says so, and the outputs differ from the whole model's only in the few
    frames before the ring has refilled (T - 1 of them at most), never before the kill."""
    import os
    import signal
    import subprocess

    from digitsplit import HWSCHED, command, line_count, wait_for

    count, kill_after = 300, 20
    stream = np.random.default_rng(9).normal(size=(count, F)).astype(np.float32)
    np.save(tmp_path / "stream.npy", stream)
    scratch, keep = tmp_path / "scratch", tmp_path / "keep"
    scratch.mkdir()
    process = subprocess.Popen(
        command(HWSCHED, ["emulate", str(plans["fp32", "Reshape"]), "--frames", str(count),
                          "--rate", "100", "--data", str(tmp_path / "stream.npy"), "--restart",
                          "--keep", str(keep)]),
        env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        workdir = wait_for(lambda: next(scratch.glob("hwsched-emulate-*"), None), 120,
                           "the emulation's work directory")
        wait_for(lambda: True if line_count(workdir / "events1.jsonl") >= kill_after else None,
                 120, f"stage 1 to compute {kill_after} frames")
        os.kill(int((workdir / "stage1.ready").read_text().split()[0]), signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    said = " ".join(stderr.split())
    assert "stage 1 is stateful and was restarted 1 time(s)" in said
    assert "started again from their initial values" in said
    assert (keep / "stage1.log").read_text().count("stage 1 is stateful") == 2  # each start
    with np.load(keep / "outputs.npz") as outputs:
        (got,) = outputs.values()
    expected = _sequence("litert", [models["fp32"].read_bytes()], stream)
    differ = np.flatnonzero([not np.array_equal(g, e) for g, e in
                             zip(got.reshape(expected.shape), expected, strict=True)])
    assert 0 < len(differ) <= T - 1 and differ[0] >= kill_after
    assert differ[-1] - differ[0] < T - 1


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["op", "read", "assign"]), st.integers(0, 2),
                          st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=25))
def test_the_reorder_is_topological_and_keeps_each_variables_access_order(steps):
    """On random layer lists (ops on one or two earlier tensors, reads and assigns of three
    variables): the tightened order holds the same layers, the IR accepts it as topological,
    the inputs stay first and every variable is accessed in the same order as before."""
    from hwsched.load.tflite_reader import tighten_variable_accesses

    def t(n: str) -> Tensor:
        return Tensor(n, producer=n, shape=(1, 4), dtype="float32")

    layers = [Layer("x", OpKind.INPUT, (), (t("x"),))]
    tensors = ["x"]
    for k, (kind, variable, a, b) in enumerate(steps):
        name, attrs = f"l{k}", {"variable": f"v{variable}"}
        if kind == "read":
            layers.append(Layer(name, OpKind.IDENTITY, (), (t(name),), source_op="READ_VARIABLE",
                                attrs=attrs))
        elif kind == "assign":
            layers.append(Layer(name, OpKind.IDENTITY, (tensors[a % len(tensors)],), (),
                                source_op="ASSIGN_VARIABLE", attrs=attrs))
            continue
        else:
            inputs = tuple(dict.fromkeys((tensors[a % len(tensors)], tensors[b % len(tensors)])))
            layers.append(Layer(name, OpKind.ELEMENTWISE, inputs, (t(name),)))
        tensors.append(name)
    tight = tighten_variable_accesses(layers)
    assert sorted(lay.name for lay in tight) == sorted(lay.name for lay in layers)
    assert tight[0].name == "x"
    LayerGraph("g", tuple(tight), (tensors[-1],))  # raises unless topological

    def accesses(order: list[Layer]) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for lay in order:
            if "variable" in lay.attrs:
                seen.setdefault(lay.attrs["variable"], []).append(lay.name)
        return seen

    assert accesses(tight) == accesses(layers)


def test_rings_on_mcus_run_on_tflm_and_their_sources_ask_for_resource_variables(
        rings, tmp_path):
    """Each engine rounds its own sums into its rings, so TFLM and LiteRT drift apart
    by more than a stateless stage's 2 steps (never growing); the proof on TFLM itself stays
    exact. The C header tells firmware how many resource variables to create."""
    pytest.importorskip("tflite_micro", reason="pip install tflite-micro")
    from hwsched.export import export

    graph = load_model(str(rings)).graph
    cut = min(graph.position(v.writers[-1]) + 1 for v in graph.variables)
    plan = export(str(rings), ["stm32h7", "stm32h7"], tmp_path / "mcu", cut_positions=[cut],
                  samples=FRAMES, micro=True)
    assert plan.verification.sequence["tflm"]["max_abs_diff"] == 0.0
    for stage in plan.stages:
        held = 1 if stage.index == 0 else RINGS - 1
        assert stage.stateful and stage.engine_verification["max_quant_steps"] <= 2 + held
        header = (tmp_path / "mcu" / Path(stage.file).with_suffix(".h").name).read_text()
        assert f"_RESOURCE_VARIABLES {held}\n" in header
    print("TFLM vs LiteRT, quantization steps per stage:",
          [s.engine_verification["max_quant_steps"] for s in plan.stages])


def _edited(data: bytes, edit) -> bytes:
    """The model with ``edit(model, codes)`` applied (codes: builtin name -> opcode index)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = {names[max(c.builtinCode, c.deprecatedBuiltinCode)]: k
             for k, c in enumerate(model.operatorCodes)}
    edit(model, codes)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_init_subgraph_that_computes_or_does_not_exist_is_one_line(models, tmp_path, capsys):
    def computing(model, codes):
        model.subgraphs[1].operators[1].opcodeIndex = codes["RESHAPE"]

    def missing(model, codes):
        model.subgraphs[0].operators[0].builtinOptions.initSubgraphIndex = 7

    for edit, expected in ((computing, "init subgraph 1 (called once by operator 0) holds "
                            "operator 1, a RESHAPE"),
                           (missing, "operator 0 (CALL_ONCE) names init subgraph 7, which does "
                            "not exist")):
        path = tmp_path / f"{edit.__name__}.tflite"
        path.write_bytes(_edited(models["fp32"].read_bytes(), edit))
        code = main(["analyze", str(path), "--platforms", "rpi4,rpi4", "--no-report"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and expected in err and str(path) in err


def test_an_adaptive_export_of_a_stateful_model_is_refused_before_converting(models, tmp_path,
                                                                            capsys):
    """Each split keeps the resource variables in its own stages: switching splits mid-stream
    would restart the state, so the outputs would leave the model's; one line, nothing
    written."""
    from hwsched.cli import main

    out = tmp_path / "out"
    argv = ["export", str(models["fp32"]), "--platforms", "rpi4,rpi4", "--adaptive", "2",
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "stateful" in err and "ring" in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
