"""plan.json: round trip, and every malformed field is a one-line PlanError naming it."""

import copy
import json
import re

import pytest

from hwsched.deployment import (
    LinkPlan,
    Plan,
    Quantization,
    Requantization,
    StagePlan,
    TensorSource,
    TensorSpec,
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
