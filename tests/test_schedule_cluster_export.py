"""Identical boards through export and verify: one stage file per stage, never overwritten by
a later stage on the same platform, and the chain still equals the whole model."""

from __future__ import annotations

import json

from hwsched.cli import main


def test_export_onto_identical_boards_writes_one_file_per_stage(tmp_path, capsys):
    out = tmp_path / "split"
    argv = ["export", "digits_cnn", "--candidate", "1", "--platforms", "rpi4*3", "--stages", "3",
            "--out", str(out), "--samples", "4"]
    assert main(argv) == 0
    plan = json.loads((out / "plan.json").read_text())
    files = [stage["file"] for stage in plan["stages"]]
    assert [stage["platform"] for stage in plan["stages"]] == ["rpi4"] * 3
    assert len(set(files)) == 3 and all((out / name).is_file() for name in files)
    assert len({stage["sha256"] for stage in plan["stages"]}) == 3
    assert [s["board"] for s in plan["prediction"]["stages"]] == ["rpi4#1", "rpi4#2", "rpi4#3"]
    assert [s["board"] for s in plan["stages"]] == ["rpi4#1", "rpi4#2", "rpi4#3"]
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    assert "passed" in capsys.readouterr().out
    run = tmp_path / "run.json"
    assert main(["emulate", str(out), "--frames", "20", "--json", str(run)]) == 0
    stages = json.loads(run.read_text())["stages"]
    assert [(s["platform"], s["board"]) for s in stages] == [
        ("rpi4", "rpi4#1"), ("rpi4", "rpi4#2"), ("rpi4", "rpi4#3")]
    assert all(s["engine"] == "litert-cpu" and s["arena_bytes"] is None for s in stages)


def test_stages_without_a_candidate_is_a_one_line_error(tmp_path, capsys):
    argv = ["export", "digits_cnn", "--cut-positions", "6", "--platforms", "rpi4*2",
            "--stages", "2", "--out", str(tmp_path / "split")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--stages 2 chooses among ranked candidates" in err and err.count("\n") == 1
    assert not (tmp_path / "split").exists()


def test_candidate_rank_is_the_row_analyze_printed(tmp_path, capsys):
    doc = tmp_path / "a.json"
    boards = "rpi4*2,jetson_nano"
    assert main(["analyze", "digits_cnn", "--platforms", boards, "--link", "wifi", "--no-report",
                 "--json", str(doc)]) == 0
    second = json.loads(doc.read_text())["candidates"][1]
    out = tmp_path / "split"
    assert main(["export", "digits_cnn", "--candidate", "2", "--platforms", boards, "--link",
                 "wifi", "--out", str(out), "--samples", "2"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["cut_positions"] == second["cut_positions"]
    assert [s["platform"] for s in plan["stages"]] == [s["platform"] for s in second["stages"]]
