"""int8 hand-off, accuracy per precision combination, Micro sources, CLI and cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from handchain import top1_agreement

from hwsched.cli import main
from hwsched.datasets import digits as digits_data
from hwsched.deployment import Quantization, TensorSpec, load_plan
from hwsched.export import export, split_accuracy
from hwsched.export.chain import load_chain
from hwsched.export.litert import StageProgram
from hwsched.handoff import apply_handoff, dequantize, handoff, quantize
from hwsched.load import LoadedModel, load_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    return load_model("digits_cnn")


def test_int8_handoff_passes_raw_bytes_unchanged(tmp_path: Path, digits: LoadedModel) -> None:
    plan = export(digits, ["stm32h7", "stm32h7"], tmp_path / "out", cut_layers=["res_conv1"],
                  calibration_samples=32, samples=8)
    assert [s.precision for s in plan.stages] == ["int8", "int8"]  # the platform default
    (link,) = plan.links
    assert [(r.tensor, r.action) for r in link.requantize] == [
        ("stem_relu", "none"), ("res_conv1", "none")
    ]
    head, tail = plan.stages
    for out_spec, in_spec in zip(head.outputs, tail.inputs, strict=True):
        assert out_spec.dtype == in_spec.dtype == "int8"
        assert out_spec.quantization.zero_point == in_spec.quantization.zero_point
        assert out_spec.quantization.scale == pytest.approx(in_spec.quantization.scale, rel=1e-6)
    # run the head, hand its raw int8 buffers to the tail untouched, compare with the chain
    files = [(tmp_path / "out" / s.file).read_bytes() for s in plan.stages]
    chain = load_chain(plan.stages, plan.links, files)
    head_program, tail_program = StageProgram(files[0]), StageProgram(files[1])
    received: dict[int, dict[str, np.ndarray]] = {}
    for i in range(4):
        image = digits_data("test").images[i:i + 1]
        raw = head_program({head.inputs[0].tflite_name: quantize(image, head.inputs[0]
                                                                  .quantization)})
        direct = tail_program({s.tflite_name: raw[s.tflite_name] for s in head.outputs})
        via_chain = chain({"image": image},
                          tap=lambda index, values: received.__setitem__(index, dict(values)))
        for spec in tail.inputs:  # the tail received exactly the head's bytes
            assert received[1][spec.name].tobytes() == raw[spec.tflite_name].tobytes()
        out = tail.outputs[0]
        expected = dequantize(direct[out.tflite_name], out.quantization)
        np.testing.assert_array_equal(via_chain["classifier"], expected)
    samples = [{"image": digits_data("test").images[i:i + 1]} for i in range(32)]
    assert top1_agreement(tmp_path / "out", digits.keras.model, samples, "classifier") >= 0.9


def test_mixed_precision_links_say_how_to_convert(tmp_path: Path, digits: LoadedModel) -> None:
    plan = export(digits, ["rpi4", "stm32h7", "rpi5"], tmp_path / "out",
                  cut_layers=["res_add", "down_relu"], precisions="fp32,int8,fp16",
                  calibration="digits", calibration_samples=16, samples=8)
    actions = [[r.action for r in link.requantize] for link in plan.links]
    assert actions == [["quantize"], ["dequantize"]]
    assert plan.links[0].requantize[0].to_quantization is not None
    samples = [{"image": digits_data("test").images[i:i + 1]} for i in range(32)]
    assert top1_agreement(tmp_path / "out", digits.keras.model, samples, "classifier") >= 0.9


def test_handoff_requantizes_when_parameters_differ() -> None:
    a = TensorSpec("t", (1, 4), "int8", Quantization(0.5, 0))
    b = TensorSpec("t", (1, 4), "int8", Quantization(0.25, -1))
    step = handoff(a, b)
    assert step.action == "requantize"
    moved = apply_handoff(np.array([3, -2, 100, -128], dtype=np.int8), step)
    np.testing.assert_allclose(dequantize(moved, b.quantization)[:2], [1.5, -1.0])
    assert moved[2] == 127  # saturates instead of wrapping
    assert handoff(a, a).action == "none"


def test_digits_accuracy_for_each_precision_combination(digits: LoadedModel) -> None:
    combos = [("fp32", "fp32"), ("fp32", "int8"), ("int8", "int8"), ("fp16", "int8")]
    result = split_accuracy(digits, [digits.graph.position("res_add") + 1], precisions=combos,
                            calibration_samples=64)
    reference = result["reference"]["top1"]
    assert result["samples"] == 449 and result["dataset"] == "digits:test"
    assert reference >= 0.95
    top1 = {tuple(row["precisions"]): row["top1"] for row in result["combinations"]}
    assert list(top1) == combos
    assert top1[("fp32", "fp32")] == reference  # a float split changes nothing
    assert all(value >= 0.9 for value in top1.values())
    assert abs(top1[("int8", "int8")] - reference) <= 0.03


def test_export_accuracy_micro_and_cli_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    code = main(["export", "digits_cnn", "--cuts", "se_scale", "--platforms", "rpi4,stm32h7",
                 "--out", str(out), "--accuracy", "--micro", "--samples", "4",
                 "--calibration-samples", "16"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "passed" in printed and "accuracy on digits:test" in printed
    plan = load_plan(out)
    assert plan.verification.accuracy["split"] >= 0.9
    assert plan.verification.accuracy["reference"] >= 0.95
    header = (out / plan.stages[1].extra_files[1]).read_text()
    assert "input(0): se_scale" in header and "int8" in header
    source = (out / plan.stages[1].extra_files[0]).read_text()
    data = (out / plan.stages[1].file).read_bytes()
    assert f"_len = {len(data)};" in source and "alignas(16)" in source
    assert main(["verify", str(out)]) == 0
    assert main(["export", "digits_cnn", "--cut-positions", "50", "--platforms", "rpi4,rpi4",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "cut position 50 does not exist" in capsys.readouterr().err


def test_cache_reuses_converted_stages(digits: LoadedModel) -> None:
    from hwsched.export.api import build_stages
    from hwsched.export.cache import StageCache
    from hwsched.export.data import parse_source
    from hwsched.export.stages import signature_names, slice_stages

    slices = slice_stages(digits.graph, [10])
    names = signature_names(list(digits.graph.tensors))

    def build(calibration: str, cache: StageCache) -> list[bytes]:
        return build_stages(digits, slices, ["fp32", "int8"], names, parse_source(calibration),
                            8, cache, lambda _message: None)

    first_cache, second_cache, other = StageCache(), StageCache(), StageCache()
    first = build("digits", first_cache)
    assert build("digits", second_cache) == first
    assert (first_cache.misses, second_cache.hits, second_cache.misses) == (2, 2, 0)
    build("random:8", other)
    assert (other.hits, other.misses) == (1, 1)  # fp32 is reused; int8 depends on calibration
