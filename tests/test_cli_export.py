import json

import pytest

from hwsched.cli import main
from hwsched.cuts import cut_at_layer, enumerate_cuts
from hwsched.load import load_model
from hwsched.schedule import evaluate


def test_export_by_layer_names_records_the_analysis_prediction(tmp_path, capsys):
    out = tmp_path / "split"
    argv = ["export", "digits_cnn", "--cuts", "res_add", "--platforms", "rpi4,jetson_nano",
            "--link", "eth100", "--out", str(out), "--samples", "4"]
    assert main(argv) == 0
    plan = json.loads((out / "plan.json").read_text())
    graph = load_model("digits_cnn").graph
    position = cut_at_layer(enumerate_cuts(graph), "res_add").head_layers
    assert plan["cut_positions"] == [position]
    expected = evaluate(graph, ["rpi4", "jetson_nano"], "eth100", [position])
    prediction = plan["prediction"]
    assert prediction["link"] == "eth100"
    assert prediction["throughput_ips"] == pytest.approx(expected.throughput_ips)
    assert [s["latency_ms"] for s in prediction["stages"]] == pytest.approx(
        [s.cost.latency_ms for s in expected.stages]
    )


def test_cut_positions_in_any_order(tmp_path):
    out = tmp_path / "split"
    argv = ["export", "digits_cnn", "--cut-positions", "14,6", "--platforms",
            "rpi4,rpi5,jetson_nano", "--out", str(out), "--samples", "2"]
    assert main(argv) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["cut_positions"] == [6, 14]
    assert [s["platform"] for s in plan["prediction"]["stages"]] == ["rpi4", "rpi5", "jetson_nano"]


def test_re_export_keeps_a_directory_holding_the_users_files(tmp_path, capsys):
    out = tmp_path / "split"
    argv = ["export", "digits_cnn", "--cut-positions", "6", "--platforms", "rpi4,rpi5",
            "--out", str(out), "--samples", "2"]
    assert main(argv) == 0
    assert main(argv) == 0  # an earlier export alone is replaced
    (out / "run.json").write_text("{}")  # e.g. 'hwsched emulate … --json' results
    assert main(argv) == 2
    assert "holds 'run.json', which the earlier export did not write" in capsys.readouterr().err
    assert (out / "run.json").read_text() == "{}"


def test_corrupt_stored_samples_are_a_verification_error(tmp_path, capsys):
    out = tmp_path / "split"
    assert main(["export", "digits_cnn", "--cut-positions", "6", "--platforms", "rpi4,rpi5",
                 "--out", str(out), "--samples", "2"]) == 0
    (out / "verification.npz").write_bytes(b"PK\x03\x04 truncated")
    plan = json.loads((out / "plan.json").read_text())
    plan["source"] = "nowhere.keras"  # force verify to use the stored reference
    (out / "plan.json").write_text(json.dumps(plan))
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err
    assert "verification.npz: cannot read the stored samples" in err and "Traceback" not in err
