"""``analyze --placement graph --runtime-cost``: chain and graph candidates are ranked
together, so the graph candidates must carry the runner's hand-off cost as the chain ones
do. Oracle: the two plain analyses (with and without the cost) — with it, every graph
stage's ``runtime_ms`` is its share, not 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kerasmodels import inception_model

from hwsched.cli import main
from hwsched.costs.runtime import RuntimeCost


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


def test_graph_candidates_carry_the_runtime_cost_like_the_chain_ones(tmp_path):
    model = tmp_path / "inception.keras"
    inception_model().save(model)
    cost = tmp_path / "hop.json"
    cost.write_text(json.dumps(RuntimeCost.asymmetric(sender=(0.2, 4e-6),
                                                      receiver=(0.1, 2e-6)).to_dict()))
    out = tmp_path / "a.json"
    assert main(["analyze", str(model), "--platforms", "rpi4,rpi5", "--link", "gige",
                 "--placement", "graph", "--runtime-cost", str(cost), "--json", str(out),
                 "--no-report"]) == 0
    doc = json.loads(out.read_text())
    graphs = doc["graph_candidates"]
    assert graphs
    for candidate in graphs:
        assert all(stage["runtime_ms"] > 0 for stage in candidate["stages"]), candidate
