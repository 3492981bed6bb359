"""An Edge TPU stage priced from its compiler's report (hwsched/costs/edgetpu.py): ops left on
the CPU at the host's rate, a USB hand-off at every change between TPU and CPU, one invoke per
TPU segment, the report's off-chip parameters streamed every inference. Checked against a
latency worked out by hand on a four-layer graph, against the analysis's own estimate when the
compiler maps everything, and through ``hwsched export`` with the stand-in compiler of
tests/test_edgetpu.py: the plan's prediction is re-priced and the summary says so."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from test_edgetpu import REPORT, _compiler_on_path

from hwsched.cli import main
from hwsched.costs.edgetpu import price_compiled_stage
from hwsched.deployment import load_plan
from hwsched.export.edgetpu import parse_report
from hwsched.hardware import load_platform
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
from hwsched.load import load_model

UNMAPPED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"


def _report(unmapped: dict[str, int], mapped: dict[str, int], streaming: str = "0.00B") -> dict:
    rows = [f"{op:<31}{n:<11}Mapped to Edge TPU" for op, n in mapped.items()]
    rows += [f"{op:<31}{n:<11}{UNMAPPED}" for op, n in unmapped.items()]
    return parse_report("Edge TPU Compiler version 16.0.384591198\nOff-chip memory used for "
                        f"streaming uncached model parameters: {streaming}\n"
                        "Operator                       Count      Status\n\n" + "\n".join(rows))


def _t(name: str, *shape: int) -> Tensor:
    return Tensor(name, producer=name, shape=(1, *shape), dtype="float32")


@pytest.fixture(scope="module")
def four_layers() -> LayerGraph:
    """x -> fc1 (1000x1000) -> pool (MEAN) -> fc2 (10x10) -> softmax."""
    return LayerGraph("four", (
        Layer("x", OpKind.INPUT, (), (_t("x", 1000),)),
        Layer("fc1", OpKind.DENSE, ("x",), (_t("fc1", 1000),), params=1_001_000,
              flops=2_000_000),
        Layer("pool", OpKind.GLOBAL_POOL, ("fc1",), (_t("pool", 10),), flops=1000),
        Layer("fc2", OpKind.DENSE, ("pool",), (_t("fc2", 10),), params=110, flops=200),
        Layer("sm", OpKind.SOFTMAX, ("fc2",), (_t("sm", 10),), flops=50),
    ), outputs=("sm",))


@pytest.fixture(scope="module")
def round_boards():
    """An Edge TPU and its host with round numbers, so the expected time can be worked out."""
    tpu = replace(load_platform("coral_edgetpu"), compute_gops={"int8": 1000.0},
                  op_efficiency={"default": 0.1}, memory_bandwidth_gbps=10.0,
                  layer_overhead_ms=0.01, invoke_overhead_ms=1.0, offchip_bandwidth_gbps=0.1)
    host = replace(load_platform("rpi4"), name="host", compute_gops={"int8": 10.0},
                   op_efficiency={"default": 1.0}, memory_bandwidth_gbps=1.0,
                   layer_overhead_ms=0.05, invoke_overhead_ms=0.2)
    return tpu, host


def test_a_stage_with_an_op_left_on_the_cpu_costs_what_the_hand_calculation_says(
        four_layers, round_boards):
    tpu, host = round_boards
    report = _report({"MEAN": 1}, {"FULLY_CONNECTED": 2, "SOFTMAX": 1}, streaming="195.3125KiB")
    cost = price_compiled_stage(four_layers, 0, 5, tpu, host, report)
    # TPU at 1000 GOP/s x 0.1 = 1e11 op/s, 10 GB/s, 0.01 ms per layer (sizes in int8):
    #   fc1: compute 2e6 / 1e11 = 0.02 ms < memory (1000 + 1000 + 1_001_000) / 1e10 = 0.1003 ms
    fc1 = 0.1003 + 0.01
    fc2 = (10 + 10 + 110) / 1e10 * 1e3 + 0.01  # memory-bound 1.3e-5 ms
    sm = (10 + 10) / 1e10 * 1e3 + 0.01  # memory-bound 2e-6 ms
    # MEAN on the host at 10 GOP/s, 1 GB/s, 0.05 ms: memory-bound (1000 + 10) B
    pool = (1000 + 10) / 1e9 * 1e3 + 0.05
    # two TPU segments (fc1 | pool on the CPU | fc2, sm): two invokes of 1 ms
    tpu_ms = fc1 + fc2 + sm + 2 * 1.0
    # fc1's 1000 B go to the CPU and pool's 10 B come back, at 0.1 GB/s
    handoff_ms = (1000 + 10) / 1e8 * 1e3
    stream_ms = 200_000 / 1e8 * 1e3  # 195.3125 KiB off chip
    assert cost.cpu_layers == ("pool",) and cost.tpu_segments == 2
    assert (cost.handoff_bytes, cost.param_stream_bytes) == (1010, 200_000)
    assert cost.tpu_ms == pytest.approx(tpu_ms)
    assert cost.cpu_ms == pytest.approx(pool)
    assert cost.handoff_ms == pytest.approx(handoff_ms)
    assert cost.param_stream_ms == pytest.approx(stream_ms)
    assert cost.latency_ms == pytest.approx(tpu_ms + pool + handoff_ms + stream_ms)
    assert cost.latency_ms == pytest.approx(4.191425)


def test_everything_on_the_cpu_is_the_hosts_time_with_no_tpu_invoke(four_layers, round_boards):
    tpu, host = round_boards
    report = _report({"MEAN": 1, "FULLY_CONNECTED": 2, "SOFTMAX": 1}, {})
    cost = price_compiled_stage(four_layers, 0, 5, tpu, host, report)
    assert cost.tpu_segments == 0 and cost.handoff_bytes == 0 and cost.tpu_ms == 0
    # fc1 on the host: memory (1000 + 1000 + 1_001_000) / 1e9 = 1.003 ms
    expected = 1.003 + 0.05 + (1010 / 1e9 * 1e3 + 0.05) + (130 / 1e9 * 1e3 + 0.05) + (
        20 / 1e9 * 1e3 + 0.05) + 0.2
    assert cost.latency_ms == pytest.approx(expected)


def test_the_cpu_ops_are_the_last_of_their_operator_and_unknown_ones_are_listed():
    """The compiler cuts at its first unmapped op: of digits_cnn's two MEANs the later one
    (head_pool) is left on the CPU; a QUANTIZE no layer makes is listed, not dropped."""
    graph = load_model("digits_cnn").graph
    report = _report({"MEAN": 1, "QUANTIZE": 1}, {"CONV_2D": 4})
    cost = price_compiled_stage(graph, 0, len(graph), load_platform("coral_edgetpu"),
                                load_platform("rpi4"), report)
    assert cost.cpu_layers == ("head_pool",)
    assert dict(cost.unmatched_cpu_ops) == {"QUANTIZE": 1}
    assert cost.tpu_segments == 2  # head_pool splits the TPU's work in two


def test_all_ops_mapped_and_nothing_streamed_is_the_analysis_own_estimate():
    """The oracle is the analysis: with the whole stage on the TPU and its weights cached,
    the report adds nothing the descriptor did not already say."""
    from hwsched.schedule import evaluate

    graph = load_model("digits_cnn").graph
    cut = graph.position("res_add") + 1
    estimate = evaluate(graph, ["rpi4", "coral_edgetpu"], "gige", [cut]).stages[1].cost
    report = _report({}, {"CONV_2D": 1})
    cost = price_compiled_stage(graph, cut, len(graph), load_platform("coral_edgetpu"),
                                load_platform("rpi4"), report)
    assert cost.tpu_segments == 1 and cost.cpu_layers == ()
    assert cost.latency_ms == pytest.approx(estimate.latency_ms, rel=1e-12)


@pytest.fixture(scope="module")
def compiled_export(tmp_path_factory):
    """digits_cnn cut after res_add onto rpi4 + coral_edgetpu, exported by ``hwsched export``
    with the stand-in compiler on PATH (its report leaves two MEANs and a QUANTIZE on the
    CPU): the plan directory and what the command printed."""
    tmp_path = tmp_path_factory.mktemp("compiled")
    out, printed = tmp_path / "out", io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _compiler_on_path(tmp_path, monkeypatch)
        monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))
        with contextlib.redirect_stdout(printed):
            assert main(["export", "digits_cnn", "--platforms", "rpi4,coral_edgetpu", "--cuts",
                         "res_add", "--out", str(out), "--samples", "4",
                         "--calibration-samples", "16", "--link", "gige"]) == 0
    return out, printed.getvalue()


def test_export_reprices_the_compiled_stage_in_the_plan_and_says_so(compiled_export):
    out, printed = compiled_export
    plan = load_plan(out)
    graph = load_model("digits_cnn").graph
    cut = graph.position("res_add") + 1
    expected = price_compiled_stage(graph, cut, len(graph), load_platform("coral_edgetpu"),
                                    load_platform("rpi4"), parse_report(REPORT))
    priced = plan.stages[1].edgetpu["priced"]
    assert priced["latency_ms"] == pytest.approx(expected.latency_ms)
    assert priced["cpu_layers"] == ["se_pool", "head_pool"]
    assert priced["unmatched_cpu_ops"] == {"QUANTIZE": 1}
    document = json.loads((out / "plan.json").read_text())["prediction"]
    cpu_stage, tpu_stage = document["stages"]
    analysis = evaluate_stage_ms(graph, cut)
    assert tpu_stage["latency_source"] == "compiler"
    assert tpu_stage["analysis_latency_ms"] == pytest.approx(analysis)
    assert tpu_stage["latency_ms"] == pytest.approx(expected.latency_ms)
    assert expected.latency_ms > analysis  # two MEANs on the CPU cost more than on the TPU
    times = [cpu_stage["latency_ms"], tpu_stage["latency_ms"],
             *(link["latency_ms"] for link in document["links"])]
    assert document["latency_ms"] == pytest.approx(sum(times))
    assert document["period_ms"] == pytest.approx(max(times))
    assert document["throughput_ips"] == pytest.approx(1000 / max(times))
    flat = " ".join(printed.split())  # the console wraps long lines
    assert (f"stage 1 coral_edgetpu: {expected.latency_ms:.3f} ms priced from the Edge TPU "
            "compiler's report") in flat
    assert f"the analysis estimated {analysis:.3f} ms" in flat


def _analyze(tmp_path, name: str, *extra: str) -> dict:
    path = tmp_path / f"{name}.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,coral_edgetpu", "--link", "gige",
                 "--json", str(path), "--no-report", *extra]) == 0
    return json.loads(path.read_text())


def test_analyze_compiled_ranks_the_exported_split_again_on_its_compiled_time(
        compiled_export, tmp_path):
    """The oracle is the plain analysis: every other split keeps its period, and the exported
    split lands where its re-priced period sorts among them."""
    out, _ = compiled_export
    plan = load_plan(out)
    before = _analyze(tmp_path, "plain")
    after = _analyze(tmp_path, "compiled", "--compiled", str(out))

    def key(row):
        return tuple(row["cut_positions"]), tuple(s["platform"] for s in row["stages"])

    split = (tuple(plan.cut_positions), ("rpi4", "coral_edgetpu"))
    (mine,) = [row for row in after["candidates"] if key(row) == split]
    assert mine["stages"][1]["latency_source"] == "compiler"
    assert mine["stages"][0]["latency_source"] == "roofline"
    assert mine["stages"][1]["latency_ms"] == pytest.approx(
        plan.stages[1].edgetpu["priced"]["latency_ms"])
    times = [s["latency_ms"] for s in mine["stages"]] + [x["latency_ms"] for x in mine["links"]]
    assert mine["period_ms"] == pytest.approx(max(times))
    others = {key(row): row["period_ms"] for row in before["candidates"] if key(row) != split}
    assert others == {key(row): row["period_ms"] for row in after["candidates"]
                      if key(row) != split}
    assert mine["rank"] == 1 + sum(period < mine["period_ms"] for period in others.values())
    assert [row["rank"] for row in after["candidates"]] == list(
        range(1, len(after["candidates"]) + 1))


def test_analyze_compiled_refuses_a_plan_without_a_compiled_stage(
        compiled_export, tmp_path, capsys):
    out, _ = compiled_export
    copy = tmp_path / "uncompiled"
    shutil.copytree(out, copy)
    document = json.loads((copy / "plan.json").read_text())
    document["stages"][1]["edgetpu"] = {"compiled": False, "reason": "no compiler"}
    (copy / "plan.json").write_text(json.dumps(document))
    code = main(["analyze", "digits_cnn", "--platforms", "rpi4,coral_edgetpu", "--compiled",
                 str(copy), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        f"hwsched: error: --compiled {copy}: the plan has no compiled Edge TPU stage (export "
        "with edgetpu_compiler on PATH first)"]


def evaluate_stage_ms(graph: LayerGraph, cut: int) -> float:
    """The analysis's estimate of the Edge TPU stage before compiling."""
    from hwsched.schedule import evaluate

    return evaluate(graph, ["rpi4", "coral_edgetpu"], "gige", [cut]).stages[1].cost.latency_ms


def _descriptor(tmp_path, name: str, host_line: str):
    """The Coral descriptor under another name, with ``host_line`` for its runtime.host."""
    text = Path(load_platform("coral_edgetpu").path).read_text()
    lines = [line for line in text.splitlines() if "host:" not in line]
    body = "\n".join(lines).replace("name: coral_edgetpu", f"name: {name}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(body + ("\n" + host_line if host_line else "") + "\n")
    return path


def test_a_host_that_is_no_platform_is_one_line_naming_the_field(tmp_path, capsys):
    path = _descriptor(tmp_path, "coral_on_nothing", "  host: no_such_board")
    code = main(["export", "digits_cnn", "--platforms", f"rpi4,{path}", "--cuts", "res_add",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"hwsched: error: {path}: field 'runtime.host': ")
    assert "no_such_board" in err[0]


def test_a_compiled_stage_whose_descriptor_names_no_host_keeps_the_estimate_and_says_why(
        tmp_path):
    from hwsched.deployment import StagePlan
    from hwsched.export.edgetpu import price_compiled_stages

    graph = load_model("digits_cnn").graph
    platform = load_platform(_descriptor(tmp_path, "coral_hostless", ""))
    stage = StagePlan(1, platform.name, "s.tflite", "0" * 64, "int8", (), (),
                      first_layer="res_relu2", last_layer="classifier", engine="edgetpu",
                      edgetpu=_report({"MEAN": 1}, {"CONV_2D": 1}))
    prediction = {"stages": [{"latency_ms": 1.0}, {"latency_ms": 2.0}], "links": [],
                  "latency_ms": 3.0}
    cpu = replace(stage, index=0, engine="litert-cpu", edgetpu=None)
    (_, priced), repriced = price_compiled_stages(graph, [cpu, stage],
                                                  [load_platform("rpi4"), platform], prediction)
    assert "priced" not in priced.edgetpu
    assert "names no runtime.host" in priced.edgetpu["unpriced"]
    assert repriced == prediction


def test_cpu_ops_the_report_counts_but_does_not_name_are_listed(four_layers, round_boards):
    tpu, host = round_boards
    report = {"ops_on_cpu": 2, "operators": [], "off_chip_streaming_bytes": 0}
    cost = price_compiled_stage(four_layers, 0, 5, tpu, host, report)
    assert dict(cost.unmatched_cpu_ops) == {"(not in the operator table)": 2}


def test_analyze_compiled_keeps_the_runners_share_on_the_compiled_stage(compiled_export,
                                                                        tmp_path):
    """With ``--runtime-cost`` the compiler prices the stage's compute and the runner's
    hand-off share stays on it: the compiled stage is its compiler price plus exactly the
    share the charged analysis puts on that stage (oracle: the two plain analyses)."""
    import json as json_

    from hwsched.costs.runtime import RuntimeCost

    out, _ = compiled_export
    plan = load_plan(out)
    cost = tmp_path / "hop.json"
    cost.write_text(json_.dumps(RuntimeCost.asymmetric(sender=(0.2, 4e-6),
                                                       receiver=(0.1, 2e-6)).to_dict()))
    plain = _analyze(tmp_path, "plain")
    charged = _analyze(tmp_path, "charged", "--runtime-cost", str(cost))
    both = _analyze(tmp_path, "both", "--runtime-cost", str(cost), "--compiled", str(out))
    split = list(plan.cut_positions)

    def stage1(doc):
        row = next(r for r in doc["candidates"] if r["cut_positions"] == split
                   and [s["platform"] for s in r["stages"]] == ["rpi4", "coral_edgetpu"])
        return row["stages"][1]["latency_ms"]

    share = stage1(charged) - stage1(plain)
    assert share > 0
    assert stage1(both) == pytest.approx(plan.stages[1].edgetpu["priced"]["latency_ms"] + share)
