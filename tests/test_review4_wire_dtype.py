"""The planner charges a link the bytes the runner really sends.

Stages hand tensors over on arrival (the consumer applies the hand-off step,
:mod:`hwsched.runtime.interpreter`), so a link carries what its producing stage outputs: an
fp16 stage (float16 weights) still outputs float32, and an fp32 stage feeding an int8 one sends
float32 that the int8 stage quantizes itself. The planner charged "the smaller of the two
stages' precisions": half or a quarter of the bytes on the wire. The oracle is a real export:
the dtype LiteRT reports for the producing stage file's outputs, read with LiteRT itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ai_edge_litert import interpreter as litert

from hwsched.cli import main
from hwsched.costs.transfer import encoding_dtype
from hwsched.hardware import load_link
from hwsched.load import load_model
from hwsched.schedule import evaluate


def _output_bytes(stage_file) -> int:
    """Bytes of every output of a stage file, in the dtypes LiteRT gives them."""
    interpreter = litert.Interpreter(model_path=str(stage_file))
    return sum(math.prod(d["shape"]) * np.dtype(d["dtype"]).itemsize
               for d in interpreter.get_output_details())


@pytest.mark.parametrize(("boards", "precisions"), [
    ("rpi4,jetson_nano", "fp32,fp16"), ("jetson_nano,rpi4", "fp16,fp32")])
def test_a_link_from_or_to_an_fp16_stage_is_charged_the_float32_it_carries(
        tmp_path, boards, precisions):
    out = tmp_path / "split"
    assert main(["export", "digits_cnn", "--cut-positions", "6", "--platforms", boards,
                 "--precision", precisions, "--out", str(out), "--samples", "2"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    sent = _output_bytes(out / plan["stages"][0]["file"])
    graph = load_model("digits_cnn").graph
    predicted = evaluate(graph, boards.split(","), "gige", [6],
                         precision=dict(zip(boards.split(","), precisions.split(","),
                                            strict=True)))
    assert predicted.links[0].transfer_bytes == sent == plan["links"][0]["transfer_bytes"]


def test_native_encoding_is_what_the_head_stage_outputs():
    gige = load_link("gige")
    # fp32 and fp16 stages output float32 (export/convert.py); int8 stages int8
    assert encoding_dtype(gige, "fp32", "int8") == "float32"
    assert encoding_dtype(gige, "fp16", "fp32") == "float32"
    assert encoding_dtype(gige, "int8", "fp32") == "int8"
