"""``export --analysis`` of an analysis made with a descriptor *file*: the analysis records the
descriptor's name (``platform`` names the descriptor), which the registry does not know, so the
export must take the descriptor from ``--platforms`` or from the analysis's own ``hardware``
section. Real command output only (analyze, export on digits_cnn)."""

from __future__ import annotations

import json

import pytest
import yaml

from hwsched.cli import main
from hwsched.deployment import load_plan
from hwsched.hardware import BUILTIN_DIR


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fileboards")
    data = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
    data["name"] = "my_pi"  # a board only this file describes
    board = root / "my_pi.yaml"
    board.write_text(yaml.safe_dump(data))
    analysis = root / "analysis.json"
    assert main(["analyze", "digits_cnn", "--platforms", f"{board},jetson_nano",
                 "--precision", "fp32", "--no-report", "--json", str(analysis)]) == 0
    document = json.loads(analysis.read_text())
    ranks = {len(c["stages"]): c["rank"] for c in reversed(document["candidates"])}
    return {"root": root, "board": board, "analysis": analysis, "document": document,
            "ranks": ranks}


def test_a_candidate_on_a_descriptor_file_exports_without_the_file(analysed):
    """Failed before the fix: 'unknown platform 'my_pi'' (the name was looked up in the
    registry)."""
    rank = analysed["ranks"][2]
    candidate = next(c for c in analysed["document"]["candidates"] if c["rank"] == rank)
    out = analysed["root"] / "split2"
    assert main(["export", "digits_cnn", "--analysis", str(analysed["analysis"]),
                 "--candidate", str(rank), "--out", str(out), "--samples", "2"]) == 0
    plan = load_plan(out)
    assert [s.platform for s in plan.stages] == [s["platform"] for s in candidate["stages"]]
    assert "my_pi" in [s.platform for s in plan.stages]
    assert list(plan.cut_positions) == candidate["cut_positions"]


def test_the_boards_analyze_was_given_are_accepted_with_a_candidate_leaving_some_idle(analysed):
    """Failed before the fix: '--platforms contradicts candidate …' — the given list (a file
    path, and both boards) was compared with the names of the boards the candidate uses."""
    rank = analysed["ranks"][1]
    out = analysed["root"] / "split1"
    assert main(["export", "digits_cnn", "--analysis", str(analysed["analysis"]),
                 "--candidate", str(rank), "--platforms", f"{analysed['board']},jetson_nano",
                 "--out", str(out), "--samples", "2"]) == 0
    candidate = next(c for c in analysed["document"]["candidates"] if c["rank"] == rank)
    assert [s.platform for s in load_plan(out).stages] == [candidate["stages"][0]["platform"]]


def test_other_boards_still_contradict_the_analysis(analysed, capsys):
    out = analysed["root"] / "never"
    assert main(["export", "digits_cnn", "--analysis", str(analysed["analysis"]),
                 "--candidate", "1", "--platforms", "rpi5,jetson_nano", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--platforms contradicts candidate 1" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_stage_count_other_than_the_candidates_is_refused(analysed, capsys):
    """Failed before the fix: --stages was ignored silently with --analysis."""
    rank = analysed["ranks"][2]
    out = analysed["root"] / "never3"
    assert main(["export", "digits_cnn", "--analysis", str(analysed["analysis"]),
                 "--candidate", str(rank), "--stages", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--stages 1 contradicts candidate {rank}" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("boards", ["jetson_nano*2", "{file},jetson_nano"])
def test_the_prediction_of_given_cuts_is_made_in_the_precisions_exported(
    analysed, tmp_path, boards
):
    """Failed before the fix: the prediction keyed --precision by the strings given (a file
    path) and dropped it for repeated boards, so plan.json predicted the defaults (fp16 on a
    Jetson) for stages exported in fp32."""
    data = yaml.safe_load((BUILTIN_DIR / "platforms" / "jetson_nano.yaml").read_text())
    data["name"] = "my_jetson"
    board = tmp_path / "my_jetson.yaml"
    board.write_text(yaml.safe_dump(data))
    out = tmp_path / "split"
    assert main(["export", "digits_cnn", "--cut-positions", "3", "--platforms",
                 boards.format(file=board), "--precision", "fp32,fp32", "--out", str(out),
                 "--samples", "2"]) == 0
    plan = load_plan(out)
    assert [s.precision for s in plan.stages] == ["fp32", "fp32"]
    assert [s["precision"] for s in plan.prediction["stages"]] == ["fp32", "fp32"]


def test_a_fresh_candidate_is_ranked_in_the_precision_it_is_exported_in(tmp_path):
    """Failed before the fix: plain --candidate ranked (and predicted) in each board's default
    precision (fp16 on the Jetsons) while --precision fp32 was exported."""
    out = tmp_path / "split"
    assert main(["export", "digits_cnn", "--candidate", "1", "--platforms", "jetson_nano*2",
                 "--stages", "2", "--precision", "fp32", "--out", str(out),
                 "--samples", "2"]) == 0
    plan = load_plan(out)
    assert [s.precision for s in plan.stages] == ["fp32", "fp32"]
    assert [s["precision"] for s in plan.prediction["stages"]] == ["fp32", "fp32"]
