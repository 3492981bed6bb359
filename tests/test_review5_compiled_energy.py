"""``analyze --compiled``: the re-priced split's energy follows its compiler-priced stage and
period. Oracle: the plain analysis of the same split, plus each changed term of
``busy_w * stage_ms + period_w * period_ms`` (hwsched.costs.energy's default model)."""

from __future__ import annotations

import pytest
from test_edgetpu_pricing import _analyze, compiled_export  # noqa: F401  (a fixture)

from hwsched.costs.energy import active_idle
from hwsched.deployment import load_plan
from hwsched.hardware import load_platform


def test_analyze_compiled_reprices_the_energy_with_the_stage(compiled_export, tmp_path):  # noqa: F811
    out, _ = compiled_export
    split = list(load_plan(out).cut_positions)
    boards = ["rpi4", "coral_edgetpu"]

    def row(doc):
        return next(r for r in doc["candidates"] if r["cut_positions"] == split
                    and [s["platform"] for s in r["stages"]] == boards)

    before = row(_analyze(tmp_path, "plain"))
    after = row(_analyze(tmp_path, "compiled", "--compiled", str(out)))
    coefficients = [active_idle(load_platform(name)) for name in boards]
    assert after["stages"][1]["latency_ms"] != pytest.approx(before["stages"][1]["latency_ms"])
    expected = before["energy_mj"] + sum(
        c.busy_w * (a["latency_ms"] - b["latency_ms"])
        + c.period_w * (after["period_ms"] - before["period_ms"])
        for c, a, b in zip(coefficients, after["stages"], before["stages"], strict=True))
    assert after["energy_mj"] == pytest.approx(expected, rel=1e-9)
    for c, stage in zip(coefficients, after["stages"], strict=True):
        assert stage["energy_mj"] == pytest.approx(
            c.busy_w * stage["latency_ms"] + c.period_w * after["period_ms"], rel=1e-9)


@pytest.mark.parametrize("field, value", [
    ("operators", [{"op": "MEAN", "count": 2}]),
    ("operators", [{"op": "MEAN", "count": "two", "status": "not mapped"}]),
    ("operators", "MEAN"),
    ("off_chip_streaming_bytes", "a lot"),
    ("ops_on_cpu", -1),
])
def test_analyze_compiled_refuses_a_malformed_report_in_one_line(
        compiled_export, tmp_path, capsys, field, value):  # noqa: F811
    import json
    import shutil

    from hwsched.cli import main

    out, _ = compiled_export
    copy = tmp_path / "malformed"
    shutil.copytree(out, copy)
    document = json.loads((copy / "plan.json").read_text())
    document["stages"][1]["edgetpu"][field] = value
    (copy / "plan.json").write_text(json.dumps(document))
    code = main(["analyze", "digits_cnn", "--platforms", "rpi4,coral_edgetpu", "--compiled",
                 str(copy), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert str(copy) in err[0] and f"stages[1].edgetpu.{field}" in err[0]


def test_analyze_compiled_keeps_the_source_and_sink_wire_in_the_latency(
        compiled_export, tmp_path):  # noqa: F811
    """With a runtime cost whose hops have a wire part, every candidate's latency holds the
    source's and the sink's wire; the re-priced split keeps it too (oracle: the charged
    analysis of the same split, moved by exactly the change of its compiled stage)."""
    import json

    from hwsched.costs.runtime import RuntimeCost

    out, _ = compiled_export
    split = list(load_plan(out).cut_positions)
    boards = ["rpi4", "coral_edgetpu"]
    cost = tmp_path / "hop.json"
    cost.write_text(json.dumps(RuntimeCost.asymmetric(
        sender=(0.2, 4e-6), receiver=(0.1, 2e-6), wire=(0.5, 1e-5)).to_dict()))

    def row(doc):
        return next(r for r in doc["candidates"] if r["cut_positions"] == split
                    and [s["platform"] for s in r["stages"]] == boards)

    before = row(_analyze(tmp_path, "charged", "--runtime-cost", str(cost)))
    after = row(_analyze(tmp_path, "both", "--runtime-cost", str(cost), "--compiled", str(out)))
    moved = sum(a["latency_ms"] - b["latency_ms"]
                for a, b in zip(after["stages"], before["stages"], strict=True))
    assert after["latency_ms"] == pytest.approx(before["latency_ms"] + moved, rel=1e-9)
