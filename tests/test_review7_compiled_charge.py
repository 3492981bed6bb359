"""``export --analysis`` of a candidate the analysis charged with the runner's hand-off
(``--runtime-cost``), onto an Edge TPU stage compiled by the stand-in compiler of
tests/test_edgetpu.py: the compiler prices the stage's compute, and the runner's share the
analysis put on that stage stays on it, as ``analyze --compiled`` keeps it.

Failed before the fix: the compiled stage's prediction was the compiler's price alone, so the
charged plan predicted the stage (and the pipeline) faster than the analysis's own basis."""

from __future__ import annotations

import json

import pytest
from test_edgetpu import _compiler_on_path

from hwsched.cli import main
from hwsched.deployment import load_plan

BOARDS = ["rpi4", "coral_edgetpu"]


def _analyze(root, name: str, *extra: str) -> tuple:
    path = root / f"{name}.json"
    assert main(["analyze", "digits_cnn", "--platforms", ",".join(BOARDS), "--stages", "2",
                 "--link", "gige", "--no-report", "--json", str(path), *extra]) == 0
    return path, json.loads(path.read_text())


def _row(document, cuts):
    return next(c for c in document["candidates"] if c["cut_positions"] == cuts
                and [s["platform"] for s in c["stages"]] == BOARDS)


def test_the_compiled_stage_keeps_the_runners_share(tmp_path, monkeypatch):
    _compiler_on_path(tmp_path, monkeypatch)
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))
    hop = tmp_path / "hop.json"
    hop.write_text(json.dumps({"frame_ms": 0.3, "per_byte_ms": 5e-6}))
    _, plain = _analyze(tmp_path, "plain")
    path, charged = _analyze(tmp_path, "charged", "--runtime-cost", str(hop))
    candidate = next(c for c in charged["candidates"] if c["feasible"]
                     and [s["platform"] for s in c["stages"]] == BOARDS)
    out = tmp_path / "split"
    assert main(["export", "digits_cnn", "--analysis", str(path), "--candidate",
                 str(candidate["rank"]), "--out", str(out), "--samples", "2",
                 "--calibration-samples", "16"]) == 0
    plan = load_plan(out)
    priced = plan.stages[1].edgetpu["priced"]["latency_ms"]
    # the oracle: the share is what the charge adds to that stage between the two analyses
    cuts = candidate["cut_positions"]
    share = _row(charged, cuts)["stages"][1]["latency_ms"] - _row(plain, cuts)["stages"][1][
        "latency_ms"]
    assert share > 0
    prediction = plan.prediction
    tpu = prediction["stages"][1]
    assert tpu["latency_source"] == "compiler"
    assert tpu["latency_ms"] == pytest.approx(priced + share)
    assert tpu["analysis_latency_ms"] == pytest.approx(candidate["stages"][1]["latency_ms"])
    moved = tpu["latency_ms"] - candidate["stages"][1]["latency_ms"]
    assert prediction["latency_ms"] == pytest.approx(candidate["latency_ms"] + moved)
    times = [prediction["stages"][0]["latency_ms"], tpu["latency_ms"],
             *(link["latency_ms"] for link in prediction["links"])]
    assert prediction["period_ms"] == pytest.approx(max(times))
    assert prediction["throughput_ips"] == pytest.approx(1000.0 / max(times))
