"""Activation compression per link: the round trips hold their precision (hypothesis), plans
record and refuse it strictly, an exported digits_cnn split compressed to fp16 / int8 runs
through the real runner with outputs close to the whole model and ½ / ¼ of fp32's bytes on
the wire (the runner's own counters), and a level beyond the allowed accuracy drop is refused."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hwsched.compression import (
    OUTPUT_TOLERANCE,
    calibrate,
    compress,
    decompress,
    wire_spec,
)
from hwsched.deployment import PLAN_FILE, Quantization, TensorSpec, load_plan
from hwsched.errors import PlanError

SPEC = TensorSpec("t", (1, 8), "float32")
FP16_MAX = 65504.0
FRAMES = 24
#: Bytes of the tensor crossing digits_cnn's cut after res_add (1×8×8×16) in float32.
RES_ADD_FP32_BYTES = 8 * 8 * 16 * 4

floats = st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False, width=32)
arrays = hnp.arrays(np.float32, (1, 8), elements=floats)


# -- the round trips -----------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(arrays)
def test_fp16_round_trip_is_within_fp16_precision(values):
    wire = compress(values, SPEC, "fp16")
    back = decompress(wire, SPEC, "fp16")
    assert wire.dtype == np.float16 and back.dtype == np.float32
    # round to nearest: half a unit in the last of fp16's 11 significant bits, or half the
    # smallest subnormal step near zero
    bound = np.maximum(np.abs(values) * 2.0**-11, 2.0**-25)
    assert (np.abs(back - values) <= bound).all()


@settings(max_examples=150, deadline=None)
@given(arrays, arrays)
def test_int8_round_trip_is_within_half_a_step_inside_the_calibrated_range(seen, values):
    q = calibrate([seen])
    low, high = min(float(seen.min()), 0.0), max(float(seen.max()), 0.0)
    inside = np.clip(values, low, high)
    wire = compress(inside, SPEC, "int8", q)
    back = decompress(wire, SPEC, "int8", q)
    assert wire.dtype == np.int8
    # half a step, plus float32 rounding (the codes and the dequantized value are float32)
    assert (np.abs(back - inside) <= q.scale / 2 * (1 + 1e-4) + np.abs(inside) * 3e-7).all()


@settings(max_examples=100, deadline=None)
@given(arrays, st.floats(1.0, 1e6))
def test_int8_saturates_outside_the_calibrated_range(seen, beyond):
    q = calibrate([seen])
    # the grid's edges: they hold every value seen (and 0), and anything beyond them clips
    top, bottom = (127 - q.zero_point) * q.scale, (-128 - q.zero_point) * q.scale
    assert bottom - q.scale / 2 <= min(float(seen.min()), 0.0)
    assert top + q.scale / 2 >= max(float(seen.max()), 0.0)
    outside = np.array([[top + beyond * (1 + abs(top)), bottom - beyond * (1 + abs(bottom))]
                        * 4], np.float32)
    back = decompress(compress(outside, SPEC, "int8", q), SPEC, "int8", q)
    np.testing.assert_allclose(back[0, ::2], np.float32(top), rtol=1e-6)
    np.testing.assert_allclose(back[0, 1::2], np.float32(bottom), rtol=1e-6)


def test_a_tensor_already_int8_travels_as_it_is():
    int8 = TensorSpec("t", (1, 4), "int8", Quantization(0.1, 3))
    codes = np.array([[-128, 0, 5, 127]], np.int8)
    for level in ("fp16", "int8"):
        assert wire_spec(int8, level, Quantization(0.5, 0)) == int8
        assert compress(codes, int8, level, Quantization(0.5, 0)) is codes


# -- the plan record -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """digits_cnn cut after res_add, fp32 stages, links as made / fp16 / int8 (export CLI)."""
    from hwsched.cli import main

    root = tmp_path_factory.mktemp("compressed")
    plans = {}
    for level in ("fp32", "fp16", "int8"):
        out = root / level
        argv = ["export", "digits_cnn", "--cuts", "res_add", "--platforms", "rpi4,jetson_nano",
                "--precision", "fp32", "--out", str(out), "--samples", "8"]
        assert main(argv + ([] if level == "fp32" else ["--compress", level])) == 0
        plans[level] = out
    return plans


def _plan_json(plan_dir: Path) -> dict:
    return json.loads((plan_dir / PLAN_FILE).read_text())


def test_export_records_level_grids_bytes_and_the_measured_accuracy(exported):
    fp32, fp16, int8 = (load_plan(exported[k]) for k in ("fp32", "fp16", "int8"))
    assert [link.compression for link in fp32.links] == ["fp32"]
    assert [link.transfer_bytes for link in (fp32.links[0], fp16.links[0], int8.links[0])] == [
        RES_ADD_FP32_BYTES, RES_ADD_FP32_BYTES // 2, RES_ADD_FP32_BYTES // 4]
    assert set(int8.links[0].compression_quantization) == set(int8.links[0].tensors)
    record = int8.verification.compression
    assert record["chosen"] == "int8" and set(record["levels"]) == {"fp32", "int8"}
    assert record["levels"]["int8"]["drop_pp"] <= 0.5
    assert int8.verification.passed and fp16.verification.passed


def test_plans_without_the_fields_read_as_fp32_and_the_fields_round_trip(exported, tmp_path):
    data = _plan_json(exported["int8"])
    link = data["links"][0]
    old = json.loads(json.dumps(data))
    for key in ("compression", "compression_quantization"):
        del old["links"][0][key]
    (tmp_path / PLAN_FILE).write_text(json.dumps(old))
    assert load_plan(tmp_path).links[0].compression == "fp32"
    grids = load_plan(exported["int8"]).links[0].compression_quantization
    assert {n: [q.scale, q.zero_point] for n, q in grids.items()} == {
        n: [q["scale"], q["zero_point"]] for n, q in link["compression_quantization"].items()}


@pytest.mark.parametrize(("change", "message"), [
    (lambda link: link.update(compression="int4"), r"links\[0\]\.compression' is 'int4'"),
    (lambda link: link.update(compression_quantization={}),
     r"links\[0\]\.compression_quantization' lacks 'res_add'"),
    (lambda link: link.update(compression="fp16"),
     r"links\[0\]\.compression_quantization' is set on a fp16 link"),
    (lambda link: link["compression_quantization"].update(other={"scale": 1, "zero_point": 0}),
     r"compression_quantization' names 'other'"),
    (lambda link: link["compression_quantization"]["res_add"].update(zero_point=300),
     r"compression_quantization\.res_add' must be .* int8 zero point"),
])
def test_a_bad_compression_field_is_one_line_naming_it(exported, tmp_path, change, message):
    data = _plan_json(exported["int8"])
    change(data["links"][0])
    (tmp_path / PLAN_FILE).write_text(json.dumps(data))
    with pytest.raises(PlanError, match=message) as error:
        load_plan(tmp_path)
    assert "\n" not in str(error.value)


def test_a_stage_graph_plan_refuses_compression(exported, tmp_path):
    data = _plan_json(exported["fp16"])
    data["edges"] = [{"from": 0, "to": 1, "tensors": ["res_add"]}]
    (tmp_path / PLAN_FILE).write_text(json.dumps(data))
    with pytest.raises(PlanError, match=r"links\[0\]\.compression' is 'fp16'; stage-graph"):
        load_plan(tmp_path)


def test_the_hop_carries_the_wire_specs(exported):
    from hwsched.runtime.routing import hop_specs

    for level, dtype in (("fp32", "float32"), ("fp16", "float16"), ("int8", "int8")):
        plan = load_plan(exported[level])
        assert hop_specs(plan, 1)["res_add"].dtype == dtype
        assert hop_specs(plan, 0)["image"].dtype == "float32"  # the source's: never compressed
        assert all(s.dtype == "float32" for s in hop_specs(plan, 2).values())
    int8 = load_plan(exported["int8"])
    assert hop_specs(int8, 1)["res_add"].quantization == \
        int8.links[0].compression_quantization["res_add"]


# -- through the real runner --------------------------------------------------------------------
@pytest.fixture(scope="module")
def whole_model():
    from digitsplit import unsplit_outputs

    return unsplit_outputs(FRAMES)


@pytest.mark.parametrize("level", ["fp32", "fp16", "int8"])
def test_emulated_compressed_split_matches_the_model_with_fewer_bytes(
        exported, whole_model, level, tmp_path):
    from hwsched.datasets import digits
    from hwsched.runtime.emulate import EmulationConfig, emulate

    np.save(tmp_path / "x.npy", digits("test").images[:FRAMES])
    result = emulate(exported[level], EmulationConfig(frames=FRAMES,
                                                      data=str(tmp_path / "x.npy")))
    assert result.complete and result.in_order
    got = result.outputs["classifier"].astype(np.float32)
    scale = float(np.abs(whole_model).max())
    # the level's documented tolerance; fp32 also allows the boards' other float kernels
    # (XNNPACK), as the hand-off tests do
    atol = max(OUTPUT_TOLERANCE[level] * scale, 2e-3)
    np.testing.assert_allclose(got, whole_model.reshape(got.shape), atol=atol)
    assert (got.argmax(-1) == whole_model.reshape(got.shape).argmax(-1)).mean() >= 0.95
    wire = next(h for h in result.hops if h.name == "stage0→stage1")
    ratio = {"fp32": 1, "fp16": 2, "int8": 4}[level]
    assert wire.payload_bytes_per_frame == RES_ADD_FP32_BYTES / ratio


def test_verify_judges_a_compressed_plan_at_its_tolerance(exported, tmp_path, capsys):
    from hwsched.cli import main

    assert main(["verify", str(exported["int8"])]) == 0
    # a grid 100× too fine saturates nearly every activation: outside the int8 tolerance
    bad = tmp_path / "bad"
    shutil.copytree(exported["int8"], bad)
    data = _plan_json(bad)
    data["links"][0]["compression_quantization"]["res_add"]["scale"] /= 100
    (bad / PLAN_FILE).write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["verify", str(bad)]) == 2
    assert "> 0.1 (the int8 tolerance" in capsys.readouterr().err


# -- the accuracy budget ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bright(tmp_path_factory):
    """Digits 8× brighter than the calibration data, labeled with the whole model's own
    predictions: the uncompressed split is right on every image, and int8 links calibrated on
    ordinary digits saturate here, so whatever compression changes is a measured drop."""
    import keras
    from digitsplit import ROOT

    from hwsched.datasets import digits

    model = keras.models.load_model(ROOT / "models" / "digits_cnn.keras")
    images = (digits("test").images[:120] * 8.0).astype(np.float32)
    labels = np.stack([np.asarray(model(images[i:i + 1]))[0] for i in range(len(images))])
    path = tmp_path_factory.mktemp("bright") / "bright.npz"
    np.savez(path, image=images, labels=labels.argmax(-1))
    return path


def _export_argv(out: Path, dataset: Path, *extra: str) -> list[str]:
    return ["export", "digits_cnn", "--cuts", "res_add", "--platforms", "rpi4,jetson_nano",
            "--precision", "fp32", "--out", str(out), "--samples", "8",
            "--dataset", str(dataset), *extra]


def test_a_level_beyond_the_allowed_drop_is_refused_unless_forced(bright, tmp_path, capsys):
    from hwsched.cli import main

    out = tmp_path / "int8"
    assert main(_export_argv(out, bright, "--compress", "int8")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "beyond --max-accuracy-drop 0.5" in lines[0], lines
    assert not out.exists()
    # auto keeps the strongest level within the budget
    assert main(_export_argv(tmp_path / "auto", bright, "--compress", "auto")) == 0
    auto = load_plan(tmp_path / "auto").verification.compression
    within = [lv for lv, m in auto["levels"].items() if m["drop_pp"] <= 0.5]
    assert auto["levels"]["int8"]["drop_pp"] > 0.5 and auto["chosen"] == within[-1]
    # --force records the level and says it was forced
    shutil.rmtree(tmp_path / "auto")
    assert main(_export_argv(out, bright, "--compress", "int8", "--force",
                             "--max-accuracy-drop", "0.1")) == 0
    forced = load_plan(out).verification.compression
    assert forced["chosen"] == "int8" and forced["forced"] is True


def test_bad_compress_options_are_refused_before_the_model_loads(capsys):
    from hwsched.cli import main

    assert main(["export", "digits_cnn", "--cuts", "res_add", "--platforms", "rpi4,rpi4",
                 "--out", "never", "--compress", "int4"]) == 2
    assert "--compress 'int4'" in capsys.readouterr().err
    assert main(["export", "digits_cnn", "--cuts", "res_add", "--platforms", "rpi4,rpi4",
                 "--out", "never", "--compress", "fp16", "--max-accuracy-drop", "-1"]) == 2
    assert "--max-accuracy-drop -1" in capsys.readouterr().err


# -- the planner ------------------------------------------------------------------------------
def _narrow_case():
    """Six dense layers on two rpi4s: the balanced cut (after n2) sends a 60,000-float tensor,
    the cut after n3 a 16-float one but leaves the stages less even."""
    from dataclasses import replace

    from irgraphs import dag_graph

    from hwsched.hardware import load_link

    widths = [16, 16, 60000, 16, 16, 10]
    graph = dag_graph([[], [0], [1], [2], [3], [4]], widths=widths,
                      macs=[0, 2_000_000, 40_000_000, 2_000_000, 38_000_000, 2_000_000],
                      name="narrow")
    link = replace(load_link("gige"), bandwidth_bps=200e6, name="narrow")
    return graph, widths, link


def _by_hand(link, payload_bytes: int, fp32_bytes: int, level: str) -> float:
    """The framed transfer model written out, plus the documented conversion cost."""
    from hwsched.costs.transfer import CONVERSION_MS_PER_MB

    frames = math.ceil(payload_bytes / link.frame_payload_bytes)
    wire = payload_bytes + frames * link.frame_overhead_bytes
    ms = wire * link.bits_per_byte / link.bandwidth_bps * 1000 + frames * link.frame_gap_us / 1000
    convert_ms = 0.0 if level == "fp32" else fp32_bytes / 1e6 * CONVERSION_MS_PER_MB[level]
    return ms + link.message_latency_ms + convert_ms


def test_a_narrow_link_makes_the_planner_compress_and_cut_elsewhere():
    from hwsched.hardware import load_platform
    from hwsched.schedule import rank_splits
    from hwsched.schedule.context import CostOptions, build_context

    graph, widths, link = _narrow_case()
    rpi4 = load_platform("rpi4")
    ctx, _ = build_context(graph, [rpi4, rpi4], link, CostOptions())
    table = ctx.tables["rpi4"]
    bytes_per = {"fp32": 4, "fp16": 2, "int8": 1}
    periods, link_ms = {}, {}
    for cut, level in itertools.product(range(1, len(graph)), bytes_per):
        fp32_bytes = widths[cut - 1] * 4  # a chain: layer cut-1's output crosses
        link_ms[(cut, level)] = _by_hand(link, widths[cut - 1] * bytes_per[level], fp32_bytes,
                                         level)
        stages = table.stage(0, cut).latency_ms, table.stage(cut, len(graph)).latency_ms
        periods[(cut, level)] = max(*stages, link_ms[(cut, level)])
    best_period = min(periods.values())
    best_cuts = {cut for (cut, _), period in periods.items() if period == best_period}
    best_fp32 = min((k for k in periods if k[1] == "fp32"), key=periods.get)

    ranked = rank_splits(graph, ["rpi4", "rpi4"], link, stages=2,
                         compression=("fp32", "fp16", "int8"))
    top = ranked.candidates[0]
    assert top.period_ms == pytest.approx(best_period)
    (cut,) = top.cut_positions
    assert cut in best_cuts
    # a link takes its fastest level (documented: even where a stage is the bottleneck)
    fastest = min(bytes_per, key=lambda level: link_ms[(cut, level)])
    assert top.links[0].compression == fastest == top.links[0].to_dict()["compression"]
    assert top.links[0].latency_ms == pytest.approx(link_ms[(cut, fastest)])
    plain = rank_splits(graph, ["rpi4", "rpi4"], link, stages=2).candidates[0]
    assert plain.cut_positions == (best_fp32[0],) and plain.links[0].compression == "fp32"
    # the case shows what it is meant to: compression moves the cut
    assert fastest != "fp32" and cut != best_fp32[0]


def test_analyze_leaves_int8_out_without_a_measured_drop():
    from hwsched.compression import allowed_levels

    measured = {"levels": {"fp32": {"drop_pp": 0.0}, "fp16": {"drop_pp": 0.0},
                           "int8": {"drop_pp": 0.7}}}
    assert allowed_levels(["fp32", "fp16", "int8"], measured, 0.5)[0] == ("fp32", "fp16")
    assert allowed_levels(["fp32", "fp16", "int8"], measured, 1.0)[0] == ("fp32", "fp16", "int8")
    assert allowed_levels(["fp32", "int8"], None, 0.5)[0] == ("fp32",)


def test_an_int8_consumer_link_uses_its_grid_and_loses_nothing(tmp_path):
    """fp32 → int8 stages: the consumer quantizes the tensor to its own grid anyway, so the
    int8 link sends exactly those codes; the chain's outputs equal the uncompressed chain's."""
    from hwsched.datasets import digits
    from hwsched.export import export
    from hwsched.export.chain import load_chain
    from hwsched.export.compress import CompressRequest
    from hwsched.load import load_model

    plan = export(load_model("digits_cnn"), ["rpi4", "stm32h7"], tmp_path / "mixed",
                  cut_layers=["res_add"], precisions="fp32,int8", calibration="digits",
                  calibration_samples=16, samples=4, compress=CompressRequest("int8"))
    (link,) = plan.links
    consumer = {s.name: s for s in plan.stages[1].inputs}
    assert link.compression == "int8" and link.requantize[0].action == "quantize"
    assert link.compression_quantization["res_add"] == consumer["res_add"].quantization
    files = [(tmp_path / "mixed" / s.file).read_bytes() for s in plan.stages]
    plain = [replace(x, compression="fp32", compression_quantization={}) for x in plan.links]
    images = digits("test").images[:16]
    name, output = plan.stages[0].inputs[0].name, plan.stages[-1].outputs[0].name

    def outputs_with(links) -> np.ndarray:
        chain = load_chain(plan.stages, links, files)
        return np.stack([chain({name: images[i:i + 1]})[output] for i in range(len(images))])

    np.testing.assert_array_equal(outputs_with(plan.links), outputs_with(plain))


def test_analyze_json_names_each_link_compression_and_the_levels_allowed(exported, tmp_path):
    from hwsched.cli import main

    out = tmp_path / "analysis.json"
    argv = ["analyze", "digits_cnn", "--platforms", "rpi4,jetson_nano", "--precision", "fp32",
            "--compress", "fp32,fp16,int8", "--json", str(out), "--no-report"]
    assert main(argv) == 0
    unmeasured = json.loads(out.read_text())
    assert unmeasured["compression"]["levels"] == ["fp32", "fp16"]
    assert set(unmeasured["compression"]["excluded"]) == {"int8"}
    assert main([*argv, "--compression-accuracy", str(exported["int8"])]) == 0
    document = json.loads(out.read_text())
    assert document["compression"]["levels"] == ["fp32", "fp16", "int8"]
    links = [link for c in document["candidates"] for link in c["links"]]
    assert links and {link["compression"] for link in links} <= {"fp32", "fp16", "int8"}
    # a float32 link is never cheaper uncompressed: every split sends int8, but the one whose
    # link carries only the model input, which the runner forwards as the source made it
    plain = [c["cut_positions"] for c in document["candidates"]
             if any(link["compression"] != "int8" for link in c["links"])]
    assert plain == [[1]] and document["cut_points"][0]["head_layers"] == 1
    assert [t["producer"] for t in document["cut_points"][0]["crossing"]] == ["image"]  # input


def test_a_range_near_float32s_smallest_normal_still_saturates_exactly():
    """Hypothesis found it: values of ~1e-38 gave a subnormal step whose dequantized edge lost
    float32 precision (1.17e-38 came back as 1.1700092e-38)."""
    q = calibrate([np.full(SPEC.shape, 1.17e-38, np.float32)])
    top = (127 - q.zero_point) * q.scale
    back = decompress(compress(np.full(SPEC.shape, 1.0, np.float32), SPEC, "int8", q), SPEC,
                      "int8", q)
    np.testing.assert_allclose(back, np.float32(top), rtol=1e-6)


def test_a_link_that_forces_an_encoding_is_exported_sending_it(tmp_path):
    """The planner prices a link descriptor's forced ``encoding``; the export makes the runner
    send that dtype (compressed, verified), so the plan runs what was priced."""
    from testlinks import link_yaml

    from hwsched.cli import main
    from hwsched.load import load_model
    from hwsched.schedule import evaluate

    link = tmp_path / "fp16_link.yaml"
    link.write_text(link_yaml("fp16_link", 100_000_000, 0.1) + "encoding: fp16\n")
    out = tmp_path / "plan"
    argv = ["export", "digits_cnn", "--cuts", "res_add", "--platforms", "rpi4,jetson_nano",
            "--precision", "fp32", "--link", str(link), "--out", str(out), "--samples", "8"]
    assert main(argv) == 0
    plan = load_plan(out)
    assert [lk.compression for lk in plan.links] == ["fp16"]
    assert plan.links[0].transfer_bytes == RES_ADD_FP32_BYTES // 2
    assert plan.verification.passed
    graph = load_model("digits_cnn").graph
    priced = evaluate(graph, ["rpi4", "jetson_nano"], str(link), plan.cut_positions,
                      precision="fp32")
    assert priced.links[0].transfer_bytes == plan.links[0].transfer_bytes
