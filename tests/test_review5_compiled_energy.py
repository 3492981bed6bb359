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
