"""Export: chained stages == whole model, for Keras and TFLite input.

The oracle is the tests' own (:mod:`handchain`): the stage files run by hand with LiteRT and the
whole model run by Keras or LiteRT directly, on samples the export never saw, so a verdict that
``export()`` got wrong cannot make these tests pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from handchain import (
    assert_split_equals_keras,
    keras_outputs,
    random_inputs,
    run_stages,
    tflite_outputs,
)
from kerasmodels import dag_model, inception_model, residual_se_model, to_tflite

from hwsched.deployment import load_plan
from hwsched.errors import CutError, ExportError, PlanError
from hwsched.export import export, verify_plan_dir
from hwsched.export.chain import load_chain
from hwsched.export.stages import slice_stages
from hwsched.export.verify import FP32_RELATIVE_TOLERANCE
from hwsched.load import load_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


def _keras_file(tmp_path: Path, model) -> str:
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return str(path)


def _tflite_file(tmp_path: Path, model) -> str:
    path = tmp_path / f"{model.name}.tflite"
    path.write_bytes(to_tflite(model))
    return str(path)


def _crossing_counts(plan) -> list[int]:
    return [len(link.tensors) for link in plan.links]


def test_keras_residual_se_three_stages_fp32(tmp_path: Path) -> None:
    model = residual_se_model()
    source = _keras_file(tmp_path, model)
    # after res_conv: inside the residual block (2 tensors); after se_reduce: inside the SE
    # branch (2 tensors: the block output and the squeeze)
    plan = export(source, ["rpi4", "rpi4", "rpi5"], tmp_path / "out",
                  cut_layers=["res_conv", "se_reduce"], precisions="fp32", samples=8)
    assert _crossing_counts(plan) == [2, 2]
    samples = random_inputs(model, 8, seed=1)
    assert_split_equals_keras(tmp_path / "out", model, samples, ["logits"],
                              FP32_RELATIVE_TOLERANCE)
    # the samples and reference outputs stored for `hwsched verify` are the model's own
    stored = np.load(tmp_path / "out" / "verification.npz")
    for i, image in enumerate(stored["input/image"]):
        (expected,) = keras_outputs(model, {"image": image[None]})
        np.testing.assert_allclose(stored["reference/logits"][i], expected, rtol=1e-5, atol=1e-6)
    assert verify_plan_dir(tmp_path / "out").passed


def test_keras_inception_three_tensor_cut(tmp_path: Path) -> None:
    model = inception_model()
    loaded = load_model(_keras_file(tmp_path, model))
    plan = export(loaded, ["rpi4", "rpi4"], tmp_path / "out", cut_layers=["b2a"],
                  precisions="fp32", samples=4)
    # the input (for the pool branch), b1 and b2a cross
    assert _crossing_counts(plan) == [3]
    assert_split_equals_keras(tmp_path / "out", model, random_inputs(model, 4, seed=2), ["out"],
                              FP32_RELATIVE_TOLERANCE)


def test_multi_input_stage_maps_by_name_and_passes_tensors_through(tmp_path: Path) -> None:
    # n0, n1 inputs; n2 = f(n0 + n1); n3 = f(n2); n4 = f(n1 + n3): n1 must pass through stage 1
    model = dag_model([[], [], [0, 1], [2], [1, 3]], n_inputs=2)
    loaded = load_model(_keras_file(tmp_path, model))
    positions = [loaded.graph.position("n2") + 1, loaded.graph.position("n3") + 1]
    plan = export(loaded, ["rpi4", "rpi4", "rpi4"], tmp_path / "out", cut_positions=positions,
                  precisions="fp32", samples=4)
    middle = plan.stages[1]
    assert {t.name for t in middle.inputs} >= {"n1", "n2"}
    assert "n1" in {t.name for t in middle.outputs}
    assert all(t.tflite_name for t in middle.inputs)
    assert_split_equals_keras(tmp_path / "out", model, random_inputs(model, 4, seed=3), ["n4"],
                              FP32_RELATIVE_TOLERANCE)


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "int8"])
def test_tflite_split_is_exact(tmp_path: Path, quantized: bool) -> None:
    model = residual_se_model()
    if quantized:
        from hwsched.export.convert import convert_stage

        rng = np.random.default_rng(0)
        data = convert_stage(model, "int8",
                             [{"image": rng.random((1, 8, 8, 3), dtype=np.float32)}
                              for _ in range(8)])
        path = tmp_path / "res_int8.tflite"
        path.write_bytes(data)
        source = str(path)
    else:
        source = _tflite_file(tmp_path, model)
    loaded = load_model(source)
    plan = export(loaded, ["rpi4", "rpi4", "rpi4"], tmp_path / "out", cut_positions=[3, 6],
                  samples=8)
    assert _crossing_counts(plan) == [2, 2]
    assert [s.precision for s in plan.stages] == ["int8" if quantized else "fp32"] * 3
    # same ops, same quantization: the stages run by hand are bit-identical to the unsplit
    # model run by hand
    whole = Path(source).read_bytes()
    (model_input,) = [t.name for t in plan.stages[0].inputs]
    (model_output,) = [t.name for t in plan.stages[-1].outputs]
    for sample in random_inputs(model, 8, seed=4):
        (expected,) = tflite_outputs(whole, [sample["image"]])
        split = run_stages(tmp_path / "out", {model_input: sample["image"]})
        np.testing.assert_array_equal(split[model_output], expected)
    steps = [step for link in plan.links for step in link.requantize]
    assert {step.action for step in steps} == {"none"}
    if quantized:
        assert all(step.from_quantization == step.to_quantization is not None for step in steps)
    # each stage file holds only its own weights
    total = sum((tmp_path / "out" / s.file).stat().st_size for s in plan.stages)
    assert total < 2 * Path(source).stat().st_size


def test_plan_round_trips_and_stage_files_match(tmp_path: Path) -> None:
    plan = export("digits_cnn", ["rpi4", "rpi5"], tmp_path / "out", cut_layers=["res_add"],
                  precisions="fp32", samples=4)
    assert load_plan(tmp_path / "out") == plan
    assert plan.stages[1].inputs[0].source.stage == 0
    assert plan.stages[0].inputs[0].source.is_model_input
    stage_file = tmp_path / "out" / plan.stages[0].file
    stage_file.write_bytes(stage_file.read_bytes() + b"\0")
    with pytest.raises(PlanError, match="sha256"):
        verify_plan_dir(tmp_path / "out")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cut_positions": [99]}, CutError, "cut position 99 does not exist"),
        ({"cut_positions": [0]}, CutError, "cut position 0 does not exist"),
        ({"cut_layers": ["no_such_layer"]}, CutError, "no cut point after layer 'no_such_layer'"),
        ({"cut_layers": ["classifier"]}, CutError, "no cut point after layer 'classifier'"),
        ({}, CutError, "no cut given"),
    ],
)
def test_bad_cut_is_a_clear_error(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        export("digits_cnn", ["rpi4", "rpi4"], tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_platform_count_and_precision_support_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="2 stages need 2 platforms"):
        export("digits_cnn", ["rpi4"], tmp_path / "out", cut_layers=["res_add"])
    with pytest.raises(ExportError, match="precision fp32 is not supported"):
        export("digits_cnn", ["rpi4", "coral_edgetpu"], tmp_path / "out",
               cut_layers=["res_add"], precisions="fp32")


def test_failed_export_leaves_existing_dir_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="refusing to replace"):
        export("digits_cnn", ["rpi4", "rpi4"], out, cut_layers=["res_add"], precisions="fp32",
               samples=2)
    assert (out / "mine.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_slices_carry_every_crossing_tensor() -> None:
    graph = load_model("digits_cnn").graph
    slices = slice_stages(graph, [5, 13])
    assert slices[1].inputs == ("stem_relu", "res_conv1")
    assert slices[1].outputs == ("res_relu2", "se_reduce")
    assert slices[2].outputs == graph.outputs


def test_chain_reruns_from_files(tmp_path: Path) -> None:
    plan = export("digits_cnn", ["rpi4", "rpi4"], tmp_path / "out", cut_layers=["se_reduce"],
                  precisions="fp32", samples=2)
    files = [(tmp_path / "out" / s.file).read_bytes() for s in plan.stages]
    chain = load_chain(plan.stages, plan.links, files)
    model = load_model("digits_cnn").keras.model
    for sample in random_inputs(model, 3, seed=5):
        (expected,) = keras_outputs(model, sample)
        np.testing.assert_allclose(chain(sample)["classifier"], expected, rtol=1e-4, atol=1e-6)


def test_package_imports_without_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import sys, hwsched.export, hwsched.export.stages, hwsched.handoff, "
            "hwsched.deployment; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
