from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
import yaml

from hwsched.cli import main
from hwsched.power.logfile import read_log


@pytest.fixture
def recorded(synthetic_meter, tmp_path, capsys):
    """A log recorded by `hwsched power record` from the synthetic meter, and its events."""
    meter = synthetic_meter()
    out = tmp_path / "power_logs" / "board0.csv"
    argv = [
        "power", "record", "--port", meter.pty.path, "--meter", "ina226", "--out", str(out),
        "--columns", "us,bus_V,current_mA,power_mW", "--duration", str(meter.duration_s + 1.0),
    ]  # fmt: skip
    codes = []
    command = threading.Thread(target=lambda: codes.append(main(argv)))
    command.start()
    deadline = time.monotonic() + 10
    while not out.exists():  # the log is created just before the port is opened
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)
    meter.start().join()
    command.join()
    assert codes == [0]
    assert "garbage lines" in capsys.readouterr().out
    return meter, out, meter.events(tmp_path / "events.jsonl")


def test_record_then_energy_json(recorded, tmp_path, capsys):
    meter, log_path, events = recorded
    assert read_log(log_path).header["meter"] == "ina226"
    report_path = tmp_path / "energy.json"
    code = main(
        ["power", "energy", str(log_path), "--events", str(events), "--json", str(report_path)]
    )
    assert code == 0
    assert "energy per inference" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    total_mj, dynamic_mj = meter.expected_mj()
    assert report["inferences"] == 5
    assert report["energy_per_inference_mj"] == pytest.approx(total_mj, rel=0.005)
    assert report["dynamic_energy_per_inference_mj"] == pytest.approx(dynamic_mj, rel=0.005)
    assert report["idle_power_mw"] == pytest.approx(1000.0)
    assert report["average_power_mw"] > report["idle_power_mw"]
    code = main(["power", "energy", str(log_path), "--events", str(events), "--idle-mw", "0"])
    assert code == 0


def test_calibrate_writes_platform_file(recorded, tmp_path, capsys):
    _, log_path, events = recorded
    out = tmp_path / "rpi4.power.yaml"
    code = main(
        ["power", "calibrate", str(log_path), "--events", str(events), "--platform", "rpi4",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    record = yaml.safe_load(out.read_text())
    assert record["platform"] == "rpi4" and record["source_log"] == str(log_path)
    assert record["idle_power_mw"] == pytest.approx(1000.0)


def test_bad_events_line_is_one_line_error_with_exit_2(recorded, tmp_path, capsys):
    _, log_path, events = recorded
    events.write_text(events.read_text() + '{"frame": "x"}\n')
    code = main(["power", "energy", str(log_path), "--events", str(events)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "events.jsonl:6: field 'frame' must be int" in err
    assert "Traceback" not in err


def test_bad_log_via_subprocess_has_no_traceback(tmp_path):
    log = tmp_path / "bad.csv"
    log.write_text(
        "# hwsched power log\nhost_t_s,meter_t_s,power_mw,voltage_v,current_ma,segment\n1,,x,,,0\n"
    )
    events = tmp_path / "e.jsonl"
    events.write_text('{"frame": 0, "stage": 0, "start_s": 0, "end_s": 1}\n')
    result = subprocess.run(
        [sys.executable, "-m", "hwsched", "power", "energy", str(log), "--events", str(events)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().endswith("bad.csv:3: power_mw is not a number: 'x'")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_argument_errors(tmp_path, capsys):
    assert main(["power", "energy", "a.csv", "b.csv", "--events", "e", "--stage", "0"]) == 2
    assert "--stage has 1 values for 2 logs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["power", "record", "--port", "loop://", "--meter", "ina999", "--out", "x"])


def test_record_without_samples_fails(tmp_path, capsys):
    code = main(
        ["power", "record", "--port", str(tmp_path / "nothing"), "--meter", "ina219",
         "--out", str(tmp_path / "x.csv"), "--duration", "0.2"]
    )  # fmt: skip
    assert code == 2
    assert "no samples from" in capsys.readouterr().err


def test_emulate_prints_the_pty_path_and_streams(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "hwsched", "power", "emulate", "--pty", "--rate-hz", "100",
         "--duration", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = process.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        out = tmp_path / "emulated.csv"
        assert main(["power", "record", "--port", port, "--meter", "ina219", "--out", str(out),
                     "--duration", "0.6"]) == 0  # fmt: skip
        assert len(read_log(out)) > 20
    finally:
        process.kill()
        process.wait()
