import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwsched.cli import main


def test_analyze_writes_the_json_contract(tmp_path, capsys):
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--top", "3", "--show-cuts", "--no-report", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Cut points of digits_cnn" in printed and "proxy ranking" in printed
    doc = json.loads(out.read_text())
    layers, cuts = doc["layers"], doc["cut_points"]
    assert doc["model"] == "digits_cnn"
    assert {"name", "op", "inputs", "params", "macs"} <= set(layers[0])
    assert len(cuts) == len(layers) - 1
    for cut in cuts:
        assert {"head_layers", "after", "crossing", "transfer_bytes"} <= set(cut)
        assert layers[cut["head_layers"] - 1]["name"] == cut["after"]
        assert cut["transfer_bytes"] == sum(c["bytes"] for c in cut["crossing"])
        for crossing in cut["crossing"]:
            assert {"producer", "shape", "dtype", "bytes"} <= set(crossing)
    # head_layers indexes the layer list: inputs of a head layer are in the head
    names = [layer["name"] for layer in layers]
    for i, layer in enumerate(layers):
        assert all(names.index(p) < i for p in layer["inputs"])
    ranked = doc["cut_ranking"]["head_layers"]
    assert sorted(ranked) == [c["head_layers"] for c in cuts]


def test_max_crossing_filters_the_ranking(tmp_path, capsys):
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--max-crossing", "1", "--no-report", "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    by_position = {c["head_layers"]: c for c in doc["cut_points"]}
    ranked = doc["cut_ranking"]["head_layers"]
    assert ranked and all(len(by_position[k]["crossing"]) == 1 for k in ranked)
    assert len(ranked) < len(doc["cut_points"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["analyze", "no_such_model"], "unknown model 'no_such_model'; valid:"),
        (["analyze", "missing.keras"], "missing.keras: no such file"),
        (["analyze", "missing.tflite"], "missing.tflite: no such file"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_json_path_is_an_error_and_keeps_existing_file(tmp_path, capsys):
    target = tmp_path / "keep.json"
    target.write_text("precious")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["analyze", "digits_cnn", "--no-report", "--json", str(blocker / "a.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert target.read_text() == "precious"


def test_bad_option_value_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "digits_cnn", "--top", "0"])
    assert exit_info.value.code == 2


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    for name in ("efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small", "resnet50", "vgg16"):
        assert name in printed


def test_console_script_debug_shows_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hwsched", "--debug", "analyze", str(tmp_path / "x.tflite")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ModelLoadError" in result.stderr


def test_three_way_split_is_ranked_with_candidates_and_baselines(tmp_path, capsys):
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--platforms", "rpi4,jetson_nano,rpi5", "--link", "eth100",
            "--stages", "3",
            "--objective", "latency", "--json", str(out), "--report", str(tmp_path / "r.html")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "each platform alone" in printed
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    doc = json.loads(out.read_text())
    assert doc["objective"] == "latency" and doc["link"] == "eth100"
    candidates = doc["candidates"]
    assert [c["rank"] for c in candidates] == list(range(1, len(candidates) + 1))
    best = candidates[0]
    assert len(best["stages"]) == 3 and len(best["cut_positions"]) == 2
    assert [s["platform"] for s in best["stages"]] == ["rpi4", "jetson_nano", "rpi5"]
    feasible = [c["latency_ms"] for c in candidates if c["feasible"]]
    assert feasible == sorted(feasible)
    for key in ("latency_ms", "throughput_ips", "energy_mj", "feasible", "pareto", "links"):
        assert key in best
    assert {b["platform"] for b in doc["baselines"]} == {"rpi4", "jetson_nano", "rpi5"}
    assert "speedup" in doc
    # the cut positions index the same layer list as the cut points
    positions = {c["head_layers"] for c in doc["cut_points"]}
    assert set(best["cut_positions"]) <= positions


def test_unknown_platform_is_a_one_line_error(capsys):
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,cray1", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "cray1" in err and "Traceback" not in err


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from hwsched.fileio import atomic_write_text

    path = atomic_write_text(tmp_path / "x.txt", "hi")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_accuracy_of_the_best_split_for_every_precision_combination(tmp_path, capsys):
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--accuracy", "--stages", "2", "--no-report",
            "--json", str(out)]
    assert main(argv) == 0
    assert "Top-1 accuracy on digits" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    shipped = json.loads((Path(__file__).parents[1] / "models" / "digits_cnn.json").read_text())
    (result,) = doc["accuracy"]
    assert result["reference"]["top1"] == pytest.approx(shipped["test_top1_accuracy"], abs=1e-4)
    assert result["samples"] == shipped["test_images"]
    combos = {tuple(row["precisions"]): row for row in result["combinations"]}
    assert len(combos) == 9  # fp32/fp16/int8 for each of the two stages
    assert combos[("fp32", "fp32")]["agreement"] == 1.0
    assert all(row["top1"] > 0.95 for row in combos.values())
    best = doc["candidates"][0]
    assert tuple(best["cut_positions"]) == tuple(result["cut_positions"])
    own = tuple(stage["precision"] for stage in best["stages"])
    assert best["accuracy"] == combos[own]["top1"]


def test_measured_power_calibrates_the_energy_column(tmp_path, capsys):
    logs = Path(__file__).parents[1] / "power_logs"
    calibration = tmp_path / "rpi4.power.yaml"
    assert main(["power", "calibrate", str(logs / "example_ina219.csv"), "--events",
                 str(logs / "example_ina219.events.jsonl"), "--platform", "rpi4",
                 "--out", str(calibration)]) == 0
    plain, measured = tmp_path / "plain.json", tmp_path / "measured.json"
    base = ["analyze", "digits_cnn", "--platforms", "rpi4,jetson_nano", "--no-report"]
    assert main([*base, "--json", str(plain)]) == 0
    assert main([*base, "--power-calibration", str(calibration), "--json", str(measured)]) == 0
    before, after = json.loads(plain.read_text()), json.loads(measured.read_text())
    rpi4 = after["hardware"]["platforms"]["rpi4"]
    assert rpi4["sources"]["power.active_w"].startswith("source: measured")
    # energy of the rpi4 baseline = active x busy + idle x (period - busy), period = busy
    base_before = next(b for b in before["baselines"] if b["platform"] == "rpi4")
    base_after = next(b for b in after["baselines"] if b["platform"] == "rpi4")
    import yaml

    active_w = yaml.safe_load(calibration.read_text())["active_power_mw"] / 1000
    assert base_after["energy_mj"] == pytest.approx(active_w * base_before["latency_ms"])
    jetson = [next(b for b in d["baselines"] if b["platform"] == "jetson_nano")
              for d in (before, after)]
    assert jetson[0] == jetson[1]


def test_calibration_for_another_platform_is_refused(tmp_path, capsys):
    calibration = tmp_path / "x.power.yaml"
    calibration.write_text(
        "kind: hwsched-power-calibration\nversion: 1\nplatform: rpi5\nactive_power_mw: 5000\n"
        "idle_power_mw: 2000\nenergy_per_inference_mj: 1\ndynamic_energy_per_inference_mj: 1\n"
        "inferences: 1\nsource_log: a\nevents: b\nmeter: ina219\nstage: null\ndate: now\n"
    )
    argv = ["analyze", "digits_cnn", "--no-report", "--power-calibration", str(calibration)]
    assert main(argv) == 2
    assert "calibrates platform 'rpi5', which is not among --platforms" in capsys.readouterr().err


def test_cost_models_are_chosen_by_name(tmp_path):
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--no-report", "--memory-model", "largest_tensor",
            "--transfer-model", "ideal", "--json", str(out)]
    assert main(argv) == 0
    models = json.loads(out.read_text())["cost_models"]
    assert models["memory"] == "largest_tensor" and models["transfer"] == "ideal"
    with pytest.raises(SystemExit):
        main(["analyze", "digits_cnn", "--latency-model", "magic"])


def test_terminal_tables_print_data_verbatim(capsys):
    # '[fp32]' would vanish if rich read it as markup
    assert main(["analyze", "digits_cnn", "--no-report", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "rpi4 [fp32]" in out and "jetson_nano [fp16]" in out


def test_hardware_show_prints_sources_verbatim(tmp_path, capsys):
    import yaml

    from hwsched.hardware import BUILTIN_DIR

    data = yaml.safe_load((BUILTIN_DIR / "platforms" / "rpi4.yaml").read_text())
    data["name"] = "marked"
    data["description"] = "board [bold]rev 2[/bold]"
    path = tmp_path / "marked.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["hardware", "show", str(path)]) == 0
    assert "board [bold]rev 2[/bold]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("platforms", "stages", "message"),
    [
        ("rpi4*0", "auto", "'rpi4*0' repeats a board '0' times"),
        ("rpi4*-2,jetson_nano", "auto", "'rpi4*-2' repeats a board '-2' times"),
        ("rpi4*two", "auto", "'rpi4*two' repeats a board 'two' times"),
        ("rpi4*2,cray1", "auto", "unknown platform 'cray1'"),
        ("rpi4,rpi4", "3", "stages 3 is more than the 2 boards given"),
    ],
)
def test_board_list_errors_are_one_line_before_the_model_is_built(
    platforms, stages, message, capsys, monkeypatch
):
    import hwsched.cli.analyze as analyze

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the board list was checked")

    monkeypatch.setattr(analyze, "load_model", no_model)
    argv = ["analyze", "digits_cnn", "--platforms", platforms, "--stages", stages, "--no-report"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_identical_boards_rank_two_stage_splits(tmp_path, capsys):
    out = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--no-report",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    best = doc["candidates"][0]
    assert [s["board"] for s in best["stages"]] == ["rpi4#1", "rpi4#2"]
    assert [s["platform"] for s in best["stages"]] == ["rpi4", "rpi4"]
    assert doc["boards"] == ["rpi4#1", "rpi4#2"] and doc["idle_boards"] == []


def test_a_slow_link_leaves_boards_idle_and_says_so(tmp_path, capsys):
    out = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4*4", "--link", "ble", "--no-report",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    used = len(doc["candidates"][0]["stages"])
    assert used < 4 and len(doc["idle_boards"]) == 4 - used
    assert "Idle: " + ", ".join(doc["idle_boards"]) in printed.replace("\n", " ")
    counts = [entry["stages"] for entry in doc["best_by_stage_count"]]
    assert counts == [1, 2, 3, 4]  # why: the best split with every other number of stages
