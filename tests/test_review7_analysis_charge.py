"""``analyze --runtime-cost FILE --json A`` then ``export --analysis A --candidate N``: the plan's
prediction is the analysis's own figures for that candidate, chain or stage graph, with and
without the runner's hand-off charge, and both documents say which charge they hold.

Failed before the fix: the analysis did not record the charge, and a stage-graph candidate's
plan was priced again by the default cost model without it (digits' one-board graph candidate:
2.38 ms in the analysis, 0.32 ms in the plan)."""

from __future__ import annotations

import json

import pytest

from hwsched.cli import main
from hwsched.costs.runtime import load_runtime_cost
from hwsched.deployment import file_sha256

FIGURES = ("latency_ms", "period_ms", "throughput_ips", "energy_mj")


@pytest.fixture(scope="module")
def two_branch_file(tmp_path_factory):
    from tests.placement_models import two_branch_model

    path = tmp_path_factory.mktemp("models") / "two_branch.keras"
    two_branch_model(size=32, channels=64).save(path)
    return path


@pytest.fixture(scope="module")
def hop_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hop") / "hop.json"  # large enough to move every figure
    path.write_text(json.dumps({"frame_ms": 0.2, "per_byte_ms": 2e-6}))
    return path


def _analyze(model, root, extra) -> dict:
    out = root / "analysis.json"
    assert main(["analyze", str(model), "--platforms", "rpi4,rpi4", "--placement", "graph",
                 "--objective", "latency", "--no-report", "--json", str(out), *extra]) == 0
    return {"path": out, "document": json.loads(out.read_text())}


@pytest.fixture(scope="module", params=["charged", "uncharged"])
def analysed(request, two_branch_file, hop_file, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    extra = ["--runtime-cost", str(hop_file)] if request.param == "charged" else []
    return {"root": root, "charged": request.param == "charged",
            **_analyze(two_branch_file, root, extra)}


def test_the_analysis_records_whether_and_what_it_charged(analysed, hop_file):
    section = analysed["document"]["runtime_cost"]
    if not analysed["charged"]:
        assert section == {"charged": False}
        return
    assert section["charged"] is True and section["file"] == str(hop_file)
    assert section["sha256"] == file_sha256(hop_file)
    assert section["cost"] == load_runtime_cost(hop_file).to_dict()


def test_the_charge_moves_the_figures(two_branch_file, hop_file, tmp_path):
    """The oracle below is only worth something if the charge changes what is compared."""
    bare = _analyze(two_branch_file, tmp_path, [])["document"]
    (tmp_path / "c").mkdir()
    charged = _analyze(two_branch_file, tmp_path / "c",
                       ["--runtime-cost", str(hop_file)])["document"]
    graph = [[c["latency_ms"] for c in d["candidates"] if c["placement"] == "graph"]
             for d in (bare, charged)]
    assert graph[0] and all(b > a for a, b in zip(graph[0], graph[1], strict=False))


@pytest.mark.parametrize("placement", ["chain", "graph"])
def test_the_exported_prediction_is_the_analysed_candidates(analysed, placement, two_branch_file):
    document = analysed["document"]
    candidate = next(c for c in document["candidates"] if c["placement"] == placement
                     and len({s["board"] for s in c["stages"]}) == 2)  # both boards used
    out = analysed["root"] / f"split_{placement}"
    assert main(["export", str(two_branch_file), "--analysis", str(analysed["path"]),
                 "--candidate", str(candidate["rank"]), "--out", str(out),
                 "--samples", "2"]) == 0
    prediction = json.loads((out / "plan.json").read_text())["prediction"]
    assert {k: prediction[k] for k in FIGURES} == {k: candidate[k] for k in FIGURES}
    assert [s["latency_ms"] for s in prediction["stages"]] == [
        s["latency_ms"] for s in candidate["stages"]]
    assert prediction["runtime_cost"] == document["runtime_cost"]
    assert prediction["analysis"]["rank"] == candidate["rank"]
