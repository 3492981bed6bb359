"""plan.json: round trip, and every malformed field is a one-line PlanError naming it."""

import copy
import json
import re
from dataclasses import replace

import pytest

from hwsched.deployment import (
    LinkPlan,
    Plan,
    Quantization,
    Requantization,
    StagePlan,
    TensorSource,
    TensorSpec,
    check_stage_file,
    file_sha256,
    load_plan,
    plan_from_dict,
    plan_to_dict,
    save_plan,
)
from hwsched.errors import PlanError


def two_stage_plan() -> Plan:
    q = Quantization(0.05, -3)
    x = TensorSpec("x", (1, 4), "float32", None, TensorSource("x"), "x")
    h = TensorSpec("h", (1, 4), "int8", q, TensorSource("h", 0), "h")
    y = TensorSpec("y", (1, 2), "float32", None, None, "y")
    return Plan(
        model="m",
        stages=(
            StagePlan(0, "rpi4", "stage0.tflite", "a" * 64, "int8", (x,), (h,)),
            StagePlan(1, "rpi5", "stage1.tflite", "b" * 64, "int8", (h,), (y,)),
        ),
        links=(LinkPlan(0, 1, "gige", ("h",), 4, (Requantization("h", q, q, "none"),)),),
        cut_positions=(3,),
        prediction={"throughput_ips": 10.0},
    )


def test_round_trip_through_a_file(tmp_path):
    plan = two_stage_plan()
    save_plan(plan, tmp_path)
    assert load_plan(tmp_path) == plan
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan)))) == plan


def damaged(edit):
    data = copy.deepcopy(plan_to_dict(two_stage_plan()))
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(cut_positions=["a"]), "'cut_positions' must list positive integers"),
        (lambda d: d.update(prediction=[1]), "field 'prediction' must be an object"),
        (lambda d: d.update(links=[1]), "field 'links[0]' must be an object"),
        (lambda d: d["links"][0]["requantize"][0].pop("tensor"),
         "missing field 'links[0].requantize[0].tensor'"),
        (lambda d: d["links"][0]["requantize"][0].update(action="teleport"),
         "'links[0].requantize[0].action' is 'teleport'; valid: none, cast"),
        (lambda d: d["stages"][1]["outputs"][0].update(quantization={"scale": 1, "zero_point": 0}),
         "'stages[1].outputs[0].quantization' is set on a float32 tensor"),
        (lambda d: d["stages"][0].update(precision="fp8"), "'stages[0].precision' is 'fp8'"),
        (lambda d: d["stages"][0]["inputs"][0].update(shape=[1, -4]),
         "'stages[0].inputs[0].shape' must list non-negative ints"),
        (lambda d: d.pop("model"), "missing field 'model'"),
    ],
)
def test_malformed_fields_are_named(edit, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        plan_from_dict(damaged(edit), where="plan.json")


def test_unreadable_plans(tmp_path):
    with pytest.raises(PlanError, match="no such file"):
        load_plan(tmp_path)
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_plan(tmp_path)


# -- issue 15: plans that escape or lie ---------------------------------------------------------
def saved_with_stage_file(tmp_path, file_name="stage0.tflite"):
    """A plan directory whose stage 0 file exists with the right sha256 (stage 1 does not)."""
    plan = two_stage_plan()
    directory = tmp_path / "plan"
    directory.mkdir()
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"model bytes")
    stage = replace(plan.stages[0], file=file_name, sha256=file_sha256(outside))
    save_plan(replace(plan, stages=(stage, plan.stages[1])), directory)
    return directory, outside


@pytest.mark.parametrize("name", ["../outside.tflite", "/etc/passwd", "a/../../x", ""])
def test_stage_files_outside_the_plan_directory_are_refused(tmp_path, name):
    directory, _ = saved_with_stage_file(tmp_path, name)
    with pytest.raises(PlanError, match="must be a file name relative to the plan directory"):
        load_plan(directory)


def test_a_symlink_out_of_the_plan_directory_is_refused_though_the_sha256_matches(tmp_path):
    directory, outside = saved_with_stage_file(tmp_path)
    (directory / "stage0.tflite").symlink_to(outside)
    plan = load_plan(directory)
    with pytest.raises(PlanError, match="resolves outside the plan directory"):
        check_stage_file(directory, plan.stages[0], tensors=False)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["stages"][0]["inputs"][0].update(shape=[4000000000, 4000000000]),
         "larger than any stage can hold"),
        (lambda d: d["stages"][0].update(extra_files=5), "'stages[0].extra_files' must be a list"),
        (lambda d: d["stages"][0].update(extra_files=["../x.cc"]), "relative to the plan"),
        (lambda d: d["stages"][1]["inputs"][0]["source"].update(tensor="ghost"),
         "'ghost', which stage 0 does not output"),
        (lambda d: d["stages"][1]["inputs"][0]["source"].update(stage=1),
         "a stage reads only from stages before it"),
        (lambda d: d["links"][0].update(tensors=[]), "'links[0].tensors' lacks 'h'"),
        (lambda d: d["links"][0].update(to_stage=5), "'links[0].to_stage' is 5"),
        (lambda d: d["stages"][0].update(sha256="xyz"), "64 lowercase hex digits"),
        (lambda d: d["verification"].update(top1_agreement=2), "must be in [0.0, 1.0]"),
        (lambda d: d["prediction"].update(stages=5), "'prediction.stages' must be a list"),
        (lambda d: d["stages"][0]["outputs"][0]["quantization"].update(scale=0),
         "scale' is 0"),
    ],
)
def test_lying_fields_are_named(edit, message):
    def with_verification(d):
        d["verification"] = {"max_abs_diff": 0.0, "top1_agreement": 1.0, "samples": 2,
                             "reference": "r"}
        edit(d)

    with pytest.raises(PlanError, match=re.escape(message)):
        plan_from_dict(damaged(with_verification), where="plan.json")


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" * 30])
def test_numbers_no_float_holds_are_refused_anywhere(tmp_path, number):
    text = json.dumps(plan_to_dict(two_stage_plan())).replace('"zero_point": -3',
                                                              f'"zero_point": {number}', 1)
    (tmp_path / "plan.json").write_text(text)
    with pytest.raises(PlanError, match="zero_point"):
        load_plan(tmp_path)


def test_deep_nesting_is_refused_before_parsing(tmp_path):
    (tmp_path / "plan.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PlanError, match="nested 100000 levels deep"):
        load_plan(tmp_path)


@pytest.mark.parametrize("module_name", ["hwsched.deployment", "hwsched.fileio",
                                         "hwsched.litert", "hwsched.hardware"])
def test_docstring_examples_run(module_name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name))
    assert result.attempted > 0 and result.failed == 0


def adaptive_plan() -> Plan:
    from hwsched.deployment import Alternative

    base = two_stage_plan()
    other = replace(base, cut_positions=(5,), stages=(
        replace(base.stages[0], file="alt1_stage0.tflite", sha256="c" * 64), base.stages[1]))
    return replace(base, alternatives=(
        Alternative(0, (3,), 100.0, float("inf"), base),
        Alternative(1, (5,), 0.0, 100.0, other),
    ))


def test_an_adaptive_plan_round_trips_with_an_open_ended_range():
    plan = adaptive_plan()
    text = json.dumps(plan_to_dict(plan), allow_nan=False)  # inf is written as null
    assert plan_from_dict(json.loads(text)) == plan


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["alternatives"][1]["plan"].update(model="other"), "another model"),
        (lambda d: d["alternatives"][1]["plan"]["stages"].pop(), r"alternatives\[1\]"),
        (lambda d: d["alternatives"][1].update(id=7), "ids must be"),
        (lambda d: d["alternatives"][1].update(bandwidth_mbps_low=-1), "bandwidth_mbps_low"),
    ],
)
def test_bad_alternatives_are_named(edit, message):
    data = copy.deepcopy(plan_to_dict(adaptive_plan()))
    edit(data)
    with pytest.raises(PlanError, match=message):
        plan_from_dict(data)


def test_a_conflicting_or_missing_alternative_file_is_refused(tmp_path):
    from hwsched.deployment import check_alternatives

    plan = adaptive_plan()
    for name in ("stage0.tflite", "stage1.tflite", "alt1_stage0.tflite"):
        (tmp_path / name).write_bytes(name.encode())
    shas = {n: file_sha256(tmp_path / n) for n in
            ("stage0.tflite", "stage1.tflite", "alt1_stage0.tflite")}

    def fixed(p: Plan) -> Plan:
        return replace(p, stages=tuple(replace(s, sha256=shas[s.file]) for s in p.stages))

    good = replace(fixed(plan), alternatives=tuple(
        replace(a, plan=fixed(a.plan)) for a in plan.alternatives))
    check_alternatives(good, tmp_path, tensors=False)
    (tmp_path / "alt1_stage0.tflite").unlink()
    with pytest.raises(PlanError, match="alt1_stage0.tflite.*missing"):
        check_alternatives(good, tmp_path, tensors=False)
    stale = replace(good, alternatives=(good.alternatives[0], replace(
        good.alternatives[1], plan=replace(good.alternatives[1].plan, stages=(
            replace(good.alternatives[1].plan.stages[0], file="stage0.tflite"),
            good.alternatives[1].plan.stages[1])))))
    with pytest.raises(PlanError, match="conflicting"):
        check_alternatives(stale, tmp_path, tensors=False)
