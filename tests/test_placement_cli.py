"""``analyze --placement graph`` and ``--mapping`` end to end through the CLI."""

from __future__ import annotations

import json

import pytest
import yaml

from hwsched.cli import main


@pytest.fixture(scope="module")
def two_branch_file(tmp_path_factory):
    from tests.placement_models import two_branch_model

    path = tmp_path_factory.mktemp("models") / "two_branch.keras"
    two_branch_model(size=32, channels=64).save(path)
    return path


def test_graph_search_finds_the_branch_parallel_placement(two_branch_file, tmp_path, capsys):
    out = tmp_path / "a.json"
    argv = ["analyze", str(two_branch_file), "--platforms", "rpi4,rpi4", "--placement", "graph",
            "--objective", "latency", "--no-report", "--json", str(out)]
    assert main(argv) == 0
    assert "exact minimum over placements" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    first = doc["placement_ranking"][0]
    assert first["kind"] == "graph"
    best = doc["graph_candidates"][first["graph_index"]]
    board_of = {name: s["board"] for s in best["stages"] for name in s["layers"]}
    assert board_of["a0"] == board_of["a1"] != board_of["b0"] == board_of["b1"]
    for edge in best["edges"]:
        assert {"from", "to", "tensors"} <= set(edge)
    chain_best = min(c["latency_ms"] for c in doc["candidates"] if c["placement"] == "chain")
    alone = min(b["latency_ms"] for b in doc["baselines"])
    assert best["latency_ms"] < chain_best and alone / best["latency_ms"] > 1.5
    # ranked together in ``candidates``: chain entries keep their fields (tests/test_graph_gaps)
    assert doc["candidates"][0]["placement"] == "graph"
    assert all("cut_positions" in c for c in doc["candidates"] if c["placement"] == "chain")


def test_a_mapping_is_evaluated_beside_the_ranking(two_branch_file, tmp_path, capsys):
    mapping = tmp_path / "m.yaml"
    from tests.placement_models import BRANCH_PARALLEL_MAPPING

    mapping.write_text(yaml.safe_dump({**BRANCH_PARALLEL_MAPPING, "link": "eth100"}))
    out = tmp_path / "a.json"
    argv = ["analyze", str(two_branch_file), "--platforms", "rpi4", "--mapping", str(mapping),
            "--no-report", "--json", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())["mapping"]
    assert record["link"] == "eth100" and [s["board"] for s in record["stages"]] == [
        "pi_a", "pi_a", "pi_b", "pi_a"]
    assert [(e["from"], e["to"]) for e in record["edges"]] == [(0, 1), (0, 2), (1, 3), (2, 3)]


def test_a_bad_mapping_fails_before_the_model_is_read(tmp_path, capsys):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("boards: [{name: a, platform: rpi9}]\nstages: [{board: a, layers: [rest]}]")
    assert main(["analyze", "no_such_model", "--mapping", str(mapping)]) == 2
    err = capsys.readouterr().err
    assert "unknown platform 'rpi9'" in err and err.count("\n") == 1


def test_a_mapping_over_memory_is_a_warning_in_analyze(tmp_path, capsys):
    from tests.placement_models import two_branch_model

    big = tmp_path / "big.keras"  # 96x96x64 activations: ~590 KB each in int8
    two_branch_model(size=96, channels=64, depth=1).save(big)
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({
        "boards": [{"name": "mcu", "platform": "stm32h7"}],
        "stages": [{"board": "mcu", "layers": ["rest"]}],
    }))
    argv = ["analyze", str(big), "--platforms", "rpi4", "--mapping", str(mapping), "--no-report"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "board 'mcu'" in err and "exceed stm32h7 RAM" in err
