"""One hand-off for the proof and the boards: an emulated fp32 → int8 → fp16 pipeline computes
what export's verified chain computes, a plan whose hand-off steps contradict its stage specs
is refused by both, and the runtime imports neither export nor TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwsched.deployment import PLAN_FILE, Quantization, TensorSpec, load_plan
from hwsched.errors import PlanError
from hwsched.handoff import apply_handoff, check_handoffs, convert, handoff

FRAMES = 24
#: Packages a board (and so hwsched.runtime) must never need.
FORBIDDEN = ("tensorflow", "keras")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """digits_cnn exported fp32 → int8 → fp16: the links quantize, then dequantize."""
    from hwsched.export import export
    from hwsched.load import load_model

    out = tmp_path_factory.mktemp("mixed") / "plan"
    plan = export(load_model("digits_cnn"), ["rpi4", "stm32h7", "rpi5"], out,
                  cut_layers=["res_add", "down_relu"], precisions="fp32,int8,fp16",
                  calibration="digits", calibration_samples=16, samples=4)
    return out, plan


def test_emulated_mixed_pipeline_equals_the_verified_chain(mixed, tmp_path):
    from hwsched.datasets import digits
    from hwsched.export.chain import load_chain
    from hwsched.runtime.emulate import EmulationConfig, emulate

    plan_dir, plan = mixed
    assert [[s.action for s in link.requantize] for link in plan.links] == [
        ["quantize"], ["dequantize"]]
    images = digits("test").images[:FRAMES]
    np.save(tmp_path / "x.npy", images)
    result = emulate(plan_dir, EmulationConfig(frames=FRAMES, data=str(tmp_path / "x.npy")))
    assert result.complete and result.in_order
    files = [(plan_dir / s.file).read_bytes() for s in plan.stages]
    chain = load_chain(plan.stages, plan.links, files)
    name = plan.stages[0].inputs[0].name
    output = plan.stages[-1].outputs[0].name
    expected = np.stack([chain({name: images[i:i + 1]})[output] for i in range(FRAMES)])
    got = result.outputs[output].astype(np.float32)
    assert got.shape == expected.shape
    # the boards' LiteRT may pick other float kernels (XNNPACK) than the proof's builtin ones;
    # what the hand-off decides (int8 codes, scales) must not differ beyond that
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def _tamper(plan_dir: Path, out: Path, action: str) -> Path:
    import shutil

    shutil.copytree(plan_dir, out)
    data = json.loads((out / PLAN_FILE).read_text())
    data["links"][0]["requantize"][0]["action"] = action
    (out / PLAN_FILE).write_text(json.dumps(data))
    return out


def test_a_step_that_contradicts_the_specs_is_refused_by_runtime_and_proof(mixed, tmp_path):
    from hwsched.export.chain import load_chain
    from hwsched.runtime.interpreter import StageModel

    plan_dir, _ = mixed
    bad = _tamper(plan_dir, tmp_path / "bad", "none")  # float bytes into an int8 stage
    plan = load_plan(bad)
    with pytest.raises(PlanError, match=r"stage 1, tensor .*'none'.*'quantize'"):
        StageModel(plan, bad, 1)
    files = [(bad / s.file).read_bytes() for s in plan.stages]
    with pytest.raises(PlanError, match="does not match the stage specs"):
        load_chain(plan.stages, plan.links, files)


def test_a_missing_step_is_refused(mixed):
    from dataclasses import replace

    _, plan = mixed
    links = (replace(plan.links[0], requantize=()), *plan.links[1:])
    with pytest.raises(PlanError, match="link into stage 1 has no hand-off entry"):
        check_handoffs(plan.stages, links)


def test_convert_and_apply_agree_with_the_definition():
    wire = TensorSpec("t", (4,), "int8", Quantization(0.1, 0))
    half = TensorSpec("t", (4,), "float16")
    values = np.array([-100, -1, 0, 50], np.int8)
    as_half = convert(values, wire, half)
    assert as_half.dtype == np.float16  # a float consumer gets its own float type
    np.testing.assert_allclose(as_half, values * 0.1, rtol=1e-3)
    with pytest.raises(PlanError, match="unknown action 'teleport'"):
        apply_handoff(values, handoff(wire, wire).__class__("t", None, None, "teleport"))


def test_runtime_imports_neither_export_nor_tensorflow():
    import hwsched.runtime

    modules = sorted(p.stem for p in Path(hwsched.runtime.__file__).parent.glob("*.py")
                     if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('hwsched.runtime.' + m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')"
        " or m.startswith('hwsched.export'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_runtime_module_holds_an_import_of_export_or_tensorflow():
    """Also imports inside functions, which importing the module never runs."""
    import ast

    import hwsched.runtime

    found = []
    for path in sorted(Path(hwsched.runtime.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN
                      or n.startswith("hwsched.export")]
    assert found == []


def _write_plan(out: Path, plan, files) -> None:
    """The plan and its stage files, as export writes them (sha256 of each file)."""
    from dataclasses import replace

    from hwsched.deployment import file_sha256, save_plan

    out.mkdir()
    stages = []
    for stage, data in zip(plan.stages, files, strict=True):
        (out / stage.file).write_bytes(data)
        stages.append(replace(stage, sha256=file_sha256(out / stage.file)))
    save_plan(replace(plan, stages=tuple(stages)), out)


def test_a_real_requantize_runs_on_the_boards_as_in_the_proof(tmp_path):
    """fp32 → int8 → int8 → fp16 with the two int8 stages calibrated on different data, so the
    int8 → int8 link really requantizes (other scale and zero point on each side)."""
    from hwsched.deployment import Plan
    from hwsched.export.api import StageFiles, build_stages, link_record, stage_record
    from hwsched.export.cache import StageCache
    from hwsched.export.chain import load_chain
    from hwsched.export.data import parse_source
    from hwsched.export.litert import read_signature
    from hwsched.export.stages import resolve_cut_positions, signature_names, slice_stages
    from hwsched.load import load_model
    from hwsched.runtime.emulate import EmulationConfig, emulate

    loaded = load_model("digits_cnn")
    graph = loaded.graph
    slices = slice_stages(graph, resolve_cut_positions(graph, ["res_add", "se_scale",
                                                               "down_relu"]))
    precisions = ["fp32", "int8", "int8", "fp16"]
    names = signature_names(list(graph.tensors))
    cache = StageCache(tmp_path / "cache")

    def build(source: str) -> list[bytes]:
        return build_stages(loaded, slices, precisions, names, parse_source(source), 16, cache,
                            lambda _m: None)

    on_digits, on_random = build("digits"), build("random:16")
    files = [on_digits[0], on_digits[1], on_random[2], on_digits[3]]
    stages = tuple(stage_record(graph, StageFiles(s, "rpi4", p, f, read_signature(f)), names)
                   for s, p, f in zip(slices, precisions, files, strict=True))
    links = tuple(link_record(graph, stages, i, "gige") for i in range(1, len(stages)))
    assert [s.action for s in links[1].requantize] == ["requantize"]
    plan_dir = tmp_path / "plan"
    _write_plan(plan_dir, Plan(graph.name, stages, links, source="digits_cnn"), files)

    from hwsched.datasets import digits

    images = digits("test").images[:FRAMES]
    np.save(tmp_path / "x.npy", images)
    result = emulate(plan_dir, EmulationConfig(frames=FRAMES, data=str(tmp_path / "x.npy")))
    chain = load_chain(stages, links, files)
    expected = np.stack([chain({"image": images[i:i + 1]})["classifier"] for i in range(FRAMES)])
    got = result.outputs["classifier"].astype(np.float32)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_a_plan_written_before_same_grids_passed_raw_bytes_still_loads():
    """Plans exported before one-ulp-apart int8 grids became ``none`` record ``requantize``
    for them; that step maps every code to itself, so every reader must still take them."""
    from hwsched.deployment import LinkPlan, Requantization, StagePlan, TensorSource

    made, read = Quantization(0.0148168196901679, -128), Quantization(0.0148168206214, -128)
    out = TensorSpec("t", (1, 256), "int8", made)
    into = TensorSpec("t", (1, 256), "int8", read, TensorSource("t", 0))
    stages = (StagePlan(0, "a", "a.tflite", "", "int8", (), (out,)),
              StagePlan(1, "b", "b.tflite", "", "int8", (into,), ()))
    old_step = Requantization("t", made, read, "requantize")
    assert handoff(out, into).action == "none"
    codes = np.arange(-128, 128, dtype=np.int8)
    assert apply_handoff(codes, old_step).tolist() == codes.tolist()  # the same codes
    check_handoffs(stages, (LinkPlan(0, 1, "gige", ("t",), 256, (old_step,)),))
    # a step between grids that really differ is still held to the specs
    other = Requantization("t", made, Quantization(0.03, -128), "requantize")
    with pytest.raises(PlanError, match="does not match the stage specs"):
        check_handoffs(stages, (LinkPlan(0, 1, "gige", ("t",), 256, (other,)),))
