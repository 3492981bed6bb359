"""``verify.judge``, the verdict every export relies on, tested on chains that must fail.

Two layers. First ``judge`` alone, on outputs built here whose true differences are known
(brute force and hypothesis). Then real exported chains broken on purpose — a stage file with
one weight tensor perturbed, two crossing tensors swapped, a hand-off with the wrong
quantization — judged against the whole model as run by the tests' own oracle
(:mod:`handchain`), never against hwsched's own reference code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hwsched.errors import PlanError, VerificationError
from hwsched.export.verify import FP32_RELATIVE_TOLERANCE, judge

TOL = FP32_RELATIVE_TOLERANCE


def _logits(seed: int, samples: int = 4, classes: int = 10) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"logits": rng.normal(size=(1, classes)).astype(np.float32)} for _ in range(samples)]


def _copy(outputs):
    return [{name: np.array(value) for name, value in o.items()} for o in outputs]


# ---------------------------------------------------------------- judge alone


def test_identical_outputs_pass_exactly():
    want = _logits(0)
    verdict = judge(_copy(want), want, "keras:m", exact=True)
    assert verdict.passed
    assert (verdict.max_abs_diff, verdict.max_rel_diff, verdict.top1_agreement) == (0.0, 0.0, 1.0)
    assert (verdict.samples, verdict.reference) == (4, "keras:m")


@pytest.mark.parametrize(("factor", "passes"), [(0.5, True), (2.0, False), (1000.0, False)])
def test_one_perturbed_element_fails_beyond_the_tolerance(factor, passes):
    want = _logits(1)
    got = _copy(want)
    scale = max(float(np.max(np.abs(w["logits"]))) for w in want)
    got[2]["logits"][0, 3] += factor * TOL * scale
    verdict = judge(got, want, "ref", exact=True)
    assert verdict.passed is passes
    assert verdict.max_abs_diff == pytest.approx(factor * TOL * scale, rel=1e-3)


def test_swapped_outputs_fail():
    want = [{"a": np.array([[1.0, 2.0]]), "b": np.array([[3.0, 5.0]])} for _ in range(2)]
    got = [{"a": w["b"], "b": w["a"]} for w in want]
    verdict = judge(got, want, "ref", exact=True)
    assert not verdict.passed
    assert verdict.max_abs_diff == 3.0


def test_wrong_quantization_fails():
    """int8 outputs dequantized with a zero point off by one step are off by one scale."""
    rng = np.random.default_rng(2)
    raw = [rng.integers(-128, 128, size=(1, 10)) for _ in range(3)]
    scale, zero_point = 0.05, -3
    want = [{"y": ((q - zero_point) * scale).astype(np.float32)} for q in raw]
    right = [{"y": ((q - zero_point) * scale).astype(np.float32)} for q in raw]
    wrong = [{"y": ((q - (zero_point + 1)) * scale).astype(np.float32)} for q in raw]
    assert judge(right, want, "ref", exact=True).passed
    verdict = judge(wrong, want, "ref", exact=True)
    assert not verdict.passed
    assert verdict.max_abs_diff == pytest.approx(scale, rel=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_chain_output_fails(bad):
    want = _logits(3)
    got = _copy(want)
    got[1]["logits"][0, 0] = bad
    assert not judge(got, want, "ref", exact=True).passed
    assert not judge(got, want, "ref", exact=False).passed


def test_missing_output_is_an_error_naming_it():
    want = [{"a": np.zeros((1, 2)), "b": np.zeros((1, 2))}]
    with pytest.raises(VerificationError, match="'b'"):
        judge([{"a": np.zeros((1, 2))}], want, "ref", exact=True)


def test_sample_count_mismatch_is_an_error():
    """One chain output against several reference samples must not broadcast into a pass."""
    want = [{"y": np.ones((1, 3))} for _ in range(3)]
    with pytest.raises(VerificationError, match="1 chain outputs for 3 reference"):
        judge([{"y": np.ones((1, 3))}], want, "ref", exact=True)


def test_shape_mismatch_is_an_error_not_a_broadcast():
    want = [{"y": np.ones((1, 3))}, {"y": np.ones((1, 3))}]
    with pytest.raises(VerificationError, match=r"'y'.*\(1, 1\).*\(1, 3\)"):
        judge([{"y": np.ones((1, 1))}, {"y": np.ones((1, 1))}], want, "ref", exact=True)


def test_reduced_precision_is_reported_not_judged():
    want = _logits(4)
    got = [{"logits": w["logits"] + 0.5} for w in want]
    verdict = judge(got, want, "ref", exact=False)
    assert verdict.passed and verdict.max_abs_diff == pytest.approx(0.5)


_arrays = hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 3),
                                           st.integers(1, 6)),
                     elements=st.floats(-1e3, 1e3, width=32))


@settings(max_examples=60, deadline=None)
@given(want_batch=_arrays, noise=st.data())
def test_verdict_matches_brute_force(want_batch, noise):
    got_batch = noise.draw(hnp.arrays(np.float32, want_batch.shape,
                                      elements=st.floats(-1e3, 1e3, width=32)))
    use_noise = noise.draw(st.booleans())
    got_batch = got_batch if use_noise else want_batch.copy()
    want = [{"t": w} for w in want_batch]
    got = [{"t": g} for g in got_batch]
    verdict = judge(got, want, "ref", exact=True)
    # brute force over every element and sample
    max_abs, peak, agree, votes = 0.0, 0.0, 0, 0
    for g, w in zip(got_batch, want_batch, strict=True):
        for row_g, row_w in zip(g, w, strict=True):
            for x, y in zip(row_g, row_w, strict=True):
                max_abs = max(max_abs, abs(float(x) - float(y)))
                peak = max(peak, abs(float(y)))
            if len(row_w) > 1:
                agree += int(np.argmax(row_g) == np.argmax(row_w))
                votes += 1
    relative = max_abs / peak if peak > 0 else max_abs
    assert verdict.max_abs_diff == pytest.approx(max_abs)
    assert verdict.passed is (relative <= TOL)
    assert verdict.top1_agreement == pytest.approx(agree / votes if votes else 1.0)


# ---------------------------------------------------------------- real chains broken on purpose


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """digits_cnn split after res_conv1 (two tensors of one shape cross), in fp32 and int8."""
    from hwsched.export import export
    from hwsched.load import load_model

    base = tmp_path_factory.mktemp("judge")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HWSCHED_CACHE", str(base / "cache"))
        loaded = load_model("digits_cnn")
        export(loaded, ["rpi4", "rpi4"], base / "fp32", cut_layers=["res_conv1"],
               precisions="fp32", samples=2)
        export(loaded, ["stm32h7", "stm32h7"], base / "int8", cut_layers=["res_conv1"],
               precisions="int8", calibration_samples=32, samples=2)
    return loaded, base


def _samples(count: int = 6):
    from hwsched.datasets import digits

    images = digits("test").images
    return [{"image": images[i:i + 1]} for i in range(count)]


def _chain(out_dir: Path, files=None, stages=None, links=None):
    from hwsched.deployment import load_plan
    from hwsched.export.chain import load_chain

    plan = load_plan(out_dir)
    files = files or [(out_dir / s.file).read_bytes() for s in plan.stages]
    return load_chain(stages or plan.stages, links or plan.links, files), plan


def _judge_against(reference, chain, exact=True):
    samples = _samples()
    got = [chain(sample) for sample in samples]
    return judge(got, [reference(sample) for sample in samples], "oracle", exact)


def _keras_reference(loaded):
    from handchain import keras_outputs

    def reference(sample):
        (out,) = keras_outputs(loaded.keras.model, sample)
        return {loaded.graph.outputs[0]: out}

    return reference


def _perturb_largest_weight(data: bytes) -> bytes:
    """The stage file with its largest float32 weight tensor scaled by 1.3, byte for byte."""
    from handchain import open_builtin

    interpreter = open_builtin(data)
    constants = []
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.float32 or len(detail["shape"]) < 2:
            continue
        try:
            constants.append(np.array(interpreter.get_tensor(detail["index"])))
        except ValueError:  # not a constant (no buffer to read)
            continue
    # intermediate tensors have no buffer in the file; a weight's bytes occur exactly once
    stored = [a for a in constants if np.any(a) and data.count(a.tobytes()) == 1]
    weight = max(stored, key=lambda a: a.size)
    return data.replace(weight.tobytes(), (weight * np.float32(1.3)).tobytes())


def test_honest_fp32_chain_passes_against_the_whole_model(exported):
    from handchain import run_stages

    loaded, base = exported
    chain, _ = _chain(base / "fp32")
    verdict = _judge_against(_keras_reference(loaded), chain)
    assert verdict.passed and verdict.top1_agreement == 1.0
    # and hwsched's chain equals the tests' own hand-run of the stage files
    for sample in _samples(3):
        np.testing.assert_array_equal(chain(sample)["classifier"],
                                      run_stages(base / "fp32", sample)["classifier"])


def test_perturbed_stage_fails(exported):
    from handchain import relative_difference, run_stages

    loaded, base = exported
    files = [(base / "fp32" / name).read_bytes()
             for name in ("stage0_rpi4.tflite", "stage1_rpi4.tflite")]
    files[1] = _perturb_largest_weight(files[1])
    chain, _ = _chain(base / "fp32", files=files)
    # the oracle sees the perturbation: the broken chain differs from the honest files
    samples = _samples()
    assert max(relative_difference(chain(s)["classifier"], run_stages(base / "fp32", s)
                                   ["classifier"]) for s in samples) > 10 * TOL
    assert not _judge_against(_keras_reference(loaded), chain).passed


def test_swapped_crossing_tensors_fail(exported):
    loaded, base = exported
    _, plan = _chain(base / "fp32")
    tail = plan.stages[1]
    first, second = tail.inputs
    assert first.shape == second.shape  # a swap the signature cannot catch
    swapped = (dataclasses.replace(first, tflite_name=second.tflite_name),
               dataclasses.replace(second, tflite_name=first.tflite_name))
    stages = (plan.stages[0], dataclasses.replace(tail, inputs=swapped))
    chain, _ = _chain(base / "fp32", stages=stages)
    assert not _judge_against(_keras_reference(loaded), chain).passed


def _hand_reference(out_dir: Path):
    from handchain import run_stages

    return lambda sample: run_stages(out_dir, sample)


def test_honest_int8_chain_is_bit_exact_with_the_hand_run(exported):
    _, base = exported
    chain, plan = _chain(base / "int8")
    assert [s.precision for s in plan.stages] == ["int8", "int8"]
    verdict = _judge_against(_hand_reference(base / "int8"), chain)
    assert verdict.passed and verdict.max_abs_diff == 0.0


@pytest.mark.parametrize("field", ["scale", "zero_point"])
def test_wrong_quantization_at_the_hand_off_fails(exported, field):
    from hwsched.deployment import Quantization

    _, base = exported
    _, plan = _chain(base / "int8")
    (link,) = plan.links
    step = link.requantize[1]
    right = step.to_quantization
    assert step.action == "none" and right is not None
    wrong = (Quantization(right.scale * 2, right.zero_point) if field == "scale"
             else Quantization(right.scale, right.zero_point + 8))
    bad_step = dataclasses.replace(step, to_quantization=wrong, action="requantize")
    links = (dataclasses.replace(link, requantize=(link.requantize[0], bad_step)),)
    try:
        chain, _ = _chain(base / "int8", links=links)
    except PlanError as refused:  # the hand-off is checked against the stage specs on load
        assert "does not match the stage specs" in str(refused)
        return
    assert not _judge_against(_hand_reference(base / "int8"), chain).passed



def test_a_non_finite_verdict_is_refused_with_its_reason():
    from hwsched.export.verify import require_passed

    want = _logits(5)
    got = _copy(want)
    got[0]["logits"][0, 0] = np.nan
    with pytest.raises(VerificationError, match="non-finite values .* where ref does not"):
        require_passed(judge(got, want, "ref", exact=False))
