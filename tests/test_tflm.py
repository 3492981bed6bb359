"""MCU stages on TensorFlow Lite Micro: digits_cnn split onto stm32h7 + esp32s3 over UART runs
end to end on TFLM (both stages, raw int8 hand-off) and classifies as Keras does; the measured
arena is exactly what TFLM needs (16 bytes less and it cannot allocate); the --micro sources
carry that size; a stage whose arena exceeds the board's RAM and an op TFLM lacks are one line
each; the analysis's MCU memory model is within 10% of the measured arena."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsched.datasets import digits as digits_data
from hwsched.deployment import load_plan
from hwsched.errors import EngineError
from hwsched.handoff import apply_handoff, dequantize, link_steps, quantize, step_into
from hwsched.load import LoadedModel, load_model
from hwsched.tflm import MicroModel, subgraph_order

pytest.importorskip("tflite_micro", reason="pip install tflite-micro (the [test] extra)")

SAMPLES = 64
#: TFLM arenas are 16-byte aligned: one alignment unit less must not be enough.
ARENA_ALIGNMENT_BYTES = 16


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    return load_model("digits_cnn")


@pytest.fixture(scope="module")
def mcu_plan(digits, tmp_path_factory) -> Path:
    from hwsched.export import export

    out = tmp_path_factory.mktemp("tflm") / "mcu"
    export(digits, ["stm32h7", "esp32s3"], out, cut_layers=["res_add"], link="uart921600",
           samples=8, micro=True)
    return out


def _run_on_tflm(plan_dir: Path, images: np.ndarray) -> np.ndarray:
    """The whole chain on TFLM alone: quantize, stage 0, the plan's hand-off, stage 1."""
    plan = load_plan(plan_dir)
    models, orders = [], []
    for stage in plan.stages:
        data = (plan_dir / stage.file).read_bytes()
        models.append(MicroModel(data, f"stage {stage.index}"))
        orders.append(subgraph_order(data))
    steps = link_steps(plan.links)
    first, second = plan.stages
    out_spec = second.outputs[0]
    results = []
    for image in images:
        x = quantize(image[None], first.inputs[0].quantization)
        (mid,) = models[0].run([x])
        wire = first.outputs[0]
        arriving = apply_handoff(mid, step_into(steps, 1, wire.name), second.inputs[0].dtype)
        (logits,) = models[1].run([arriving])
        results.append(dequantize(logits, out_spec.quantization)[0])
    return np.array(results)


def test_digits_split_onto_two_mcus_runs_on_tflm_and_agrees_with_keras(mcu_plan, digits):
    plan = load_plan(mcu_plan)
    assert [s.engine for s in plan.stages] == ["tflm", "tflm"]
    assert all(s.engine_verification["samples"] == 8 for s in plan.stages)
    test = digits_data("test")
    images = test.images[:SAMPLES]
    on_mcus = _run_on_tflm(mcu_plan, images).argmax(axis=1)
    keras_top1 = np.asarray(digits.keras.model(images)).argmax(axis=1)
    assert (on_mcus == keras_top1).mean() >= 0.95
    assert (on_mcus == test.labels[:SAMPLES]).mean() >= 0.9


def test_the_recorded_arena_is_exactly_what_tflm_needs(mcu_plan):
    plan = load_plan(mcu_plan)
    for stage in plan.stages:
        data = (mcu_plan / stage.file).read_bytes()
        shape = tuple(stage.inputs[0].shape)
        MicroModel(data, "exact", arena_bytes=stage.arena_bytes).run([np.zeros(shape, np.int8)])
        with pytest.raises(EngineError, match=r"Failed to allocate"):
            MicroModel(data, "short", arena_bytes=stage.arena_bytes - ARENA_ALIGNMENT_BYTES).run(
                [np.zeros(shape, np.int8)])
        header = (mcu_plan / Path(stage.file).with_suffix(".h").name).read_text()
        assert f"_ARENA_BYTES ({stage.arena_bytes} + " in header


def test_an_arena_larger_than_the_boards_ram_is_refused_with_both_numbers(digits, tmp_path,
                                                                         monkeypatch):
    from hwsched.export import export
    from hwsched.hardware import BUILTIN_DIR, PATH_ENV

    text = (BUILTIN_DIR / "platforms" / "stm32h7.yaml").read_text()
    tiny = text.replace("name: stm32h7", "name: tiny_mcu").replace(
        "ram_mib: {value: 1.375,", "ram_mib: {value: 0.004,")
    path = tmp_path / "hw" / "platforms" / "tiny_mcu.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(tiny)
    monkeypatch.setenv(PATH_ENV, str(tmp_path / "hw"))
    with pytest.raises(EngineError, match=r"^stage 0 \(tiny_mcu\): TFLite Micro arena [\d,]+ B "
                       r"\(measured\) exceeds tiny_mcu RAM 4,194 B$"):
        export(digits, ["tiny_mcu", "esp32s3"], tmp_path / "out", cut_layers=["res_add"],
               samples=2)


def test_an_op_tflm_lacks_is_one_line_naming_op_and_stage(tmp_path):
    import tensorflow as tf

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def f(self, x):
            return {"o": tf.linalg.diag(x * 2.0)}

    net = Net()
    data = tf.lite.TFLiteConverter.from_concrete_functions(
        [net.f.get_concrete_function()], net).convert()
    with pytest.raises(EngineError, match=r"^stage 1 \(esp32s3\): TensorFlow Lite Micro has no "
                       r"kernel for op MATRIX_DIAG;"):
        MicroModel(data, "stage 1 (esp32s3)")


def _predicted_and_measured(loaded, plan_dir: Path, platforms) -> list[tuple[int, int]]:
    """(analysis's predicted memory for the stage's activations, TFLM's measured arena)."""
    from hwsched.schedule import evaluate

    plan = load_plan(plan_dir)
    candidate = evaluate(loaded.graph, platforms, "uart921600", list(plan.cut_positions))
    return [(s.cost.peak_activation_bytes, stage.arena_bytes)
            for s, stage in zip(candidate.stages, plan.stages, strict=True)]


def test_the_analysis_predicts_the_measured_tflm_arena_within_10_percent(digits, mcu_plan,
                                                                          tmp_path):
    """The oracle is TFLM's own arena (the smallest it runs in, see above), on digits_cnn cut
    at two places and on a residual/squeeze-excite test model cut inside its residual block."""
    from kerasmodels import residual_se_model

    from hwsched.export import export
    from hwsched.load.keras_reader import read_keras_model

    platforms = ["stm32h7", "esp32s3"]
    pairs = _predicted_and_measured(digits, mcu_plan, platforms)
    export(digits, platforms, tmp_path / "late", cut_layers=["down_relu"], samples=2)
    pairs += _predicted_and_measured(digits, tmp_path / "late", platforms)
    graph, binding = read_keras_model(residual_se_model(), "res_se", source="test")
    res_se = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    export(res_se, platforms, tmp_path / "res", cut_positions=[6], samples=2)
    pairs += _predicted_and_measured(res_se, tmp_path / "res", platforms)
    for predicted, measured in pairs:
        assert abs(predicted - measured) <= 0.10 * measured, pairs


def test_the_report_shows_the_measured_arena_beside_the_predicted_memory(mcu_plan, tmp_path):
    import json
    import re

    from hwsched.cli import main
    from hwsched.report.html import render_html
    from hwsched.runtime.emulate import EmulationConfig, emulate

    analysis = tmp_path / "analysis.json"
    assert main(["analyze", "digits_cnn", "--platforms", "stm32h7,esp32s3", "--link",
                 "uart921600", "--json", str(analysis), "--no-report"]) == 0
    document = json.loads(analysis.read_text())
    result = emulate(mcu_plan, EmulationConfig(frames=12, data="digits"))
    html = render_html(document, json.loads(json.dumps(result.to_dict())))
    plan = load_plan(mcu_plan)
    candidate = next(c for c in document["candidates"]
                     if c["cut_positions"] == list(plan.cut_positions))
    for i, (stage, predicted) in enumerate(zip(plan.stages, candidate["stages"], strict=True)):
        row = re.search(rf"<td>stage {i + 1} {stage.platform} TFLM arena</td>"
                        r'<td class="n">([\d,.]+)</td><td class="n">([\d,.]+)</td>', html)
        assert row, f"no arena row for stage {i}"
        shown = [float(v.replace(",", "")) for v in row.groups()]
        assert shown == pytest.approx([predicted["peak_activation_bytes"], stage.arena_bytes],
                                      rel=1e-3)


def test_the_runner_runs_an_mcu_stage_on_tflm_in_its_measured_arena(mcu_plan):
    from hwsched.runtime.interpreter import StageModel

    plan = load_plan(mcu_plan)
    first = StageModel(plan, mcu_plan, 0)
    assert first.label.startswith("TFLite Micro (tflite-micro ")
    assert first.label.endswith(f"in the {plan.stages[0].arena_bytes} B arena measured at export")
    image = digits_data("test").images[:1]
    expected = _run_on_tflm(mcu_plan, image)  # stage by stage on TFLM, by position
    from hwsched.handoff import from_float
    from hwsched.runtime.routing import hop_specs

    sent = from_float(image.astype(np.float32), hop_specs(plan, 0)["image"])  # as the source
    arrived = first.run({"image": sent})
    logits = StageModel(plan, mcu_plan, 1).run(arrived)["classifier"]
    out = plan.stages[1].outputs[0]
    np.testing.assert_array_equal(dequantize(logits, out.quantization), expected)
