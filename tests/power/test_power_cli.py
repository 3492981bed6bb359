from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import threading

import pytest
import yaml
from power_fixtures import (
    HannProfile,
    Pty,
    SyntheticMeter,
    clock_fit_tolerance,
    file_size_limit,
    five_windows,
    wait_until_opened,
)
from waiting import GENEROUS_TIMEOUT_S, wait_until

from hwsched.cli import main
from hwsched.power.logfile import read_log

#: The recording outlasts the meter by this much: time to open the port and read the last lines
#: on a loaded machine.
RECORD_SLACK_S = 5.0


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A log recorded by `hwsched power record` from the synthetic meter, and its events;
    recorded once for the module, since it takes seconds of real time."""
    tmp_path = tmp_path_factory.mktemp("recorded")
    pty = Pty()
    windows = five_windows()
    meter = SyntheticMeter(pty, HannProfile(windows), windows[-1][1] + 0.3)
    out = tmp_path / "power_logs" / "board0.csv"
    printed = io.StringIO()
    argv = [
        "power", "record", "--port", meter.pty.path, "--meter", "ina226", "--out", str(out),
        "--columns", "us,bus_V,current_mA,power_mW",
        "--duration", str(meter.duration_s + RECORD_SLACK_S),
    ]  # fmt: skip
    codes = []

    def record() -> None:
        with contextlib.redirect_stdout(printed):
            codes.append(main(argv))

    command = threading.Thread(target=record)
    command.start()
    wait_until_opened(pty)  # it discards what was written before it opened
    meter.start().join()
    command.join()
    pty.close()
    assert codes == [0]
    assert "garbage lines" in printed.getvalue()
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
    rel = 0.005 + clock_fit_tolerance(meter, read_log(log_path))
    assert report["energy_per_inference_mj"] == pytest.approx(total_mj, rel=rel)
    assert report["dynamic_energy_per_inference_mj"] == pytest.approx(dynamic_mj, rel=rel)
    assert report["idle_power_mw"] == pytest.approx(1000.0)
    assert report["average_power_mw"] > report["idle_power_mw"]
    assert report["period_energy_per_inference_mj"] >= report["energy_per_inference_mj"]
    code = main(["power", "energy", str(log_path), "--events", str(events), "--idle-mw", "0"])
    assert code == 0


def test_failed_json_write_leaves_the_existing_report_intact(recorded, tmp_path, capsys):
    _, log_path, events = recorded
    report_path = tmp_path / "energy.json"
    argv = ["power", "energy", str(log_path), "--events", str(events), "--json", str(report_path)]
    assert main(argv) == 0
    before = report_path.read_text()
    with file_size_limit(100):
        code = main([*argv, "--idle-mw", "0"])
    assert code == 2 and "energy.json: cannot write" in capsys.readouterr().err
    assert report_path.read_text() == before


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


def test_calibrate_help_names_its_consumer(capsys):
    with pytest.raises(SystemExit):
        main(["power", "calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "hwsched analyze --power-calibration FILE" in text and "loader" not in text


def test_bad_events_line_is_one_line_error_with_exit_2(recorded, tmp_path, capsys):
    _, log_path, good_events = recorded
    events = tmp_path / "events.jsonl"
    events.write_text(good_events.read_text() + '{"frame": "x"}\n')
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


def test_record_keeps_an_existing_log_unless_force(tmp_path, capsys):
    out = tmp_path / "old.csv"
    out.write_text("earlier recording\n")
    argv = ["power", "record", "--port", str(tmp_path / "mistyped"), "--meter", "ina219",
            "--out", str(out), "--duration", "0.2"]  # fmt: skip
    assert main(argv) == 2
    assert "old.csv exists and is not empty" in capsys.readouterr().err
    assert out.read_text() == "earlier recording\n"
    assert main([*argv, "--force"]) == 2
    assert "no samples from" in capsys.readouterr().err
    assert len(read_log(out)) == 0


def test_record_into_an_unwritable_place_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code = main(
        ["power", "record", "--port", "loop://", "--meter", "ina219",
         "--out", str(tmp_path / "file" / "x.csv"), "--duration", "0.1"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "error: cannot write power log" in err and "Traceback" not in err


def test_emulate_prints_the_pty_path_and_streams(tmp_path):
    from hwsched.power.record import Recorder

    process = subprocess.Popen(
        [sys.executable, "-m", "hwsched", "power", "emulate", "--pty", "--rate-hz", "100",
         "--duration", str(GENEROUS_TIMEOUT_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = process.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        out = tmp_path / "emulated.csv"
        with Recorder(port, "ina219", out) as recorder:
            wait_until(lambda: recorder.count("samples") > 20 or process.poll() is not None,
                       what="21 samples from the emulated meter")
        assert process.poll() is None, process.stderr.read()
        assert len(read_log(out)) > 20
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_open_ended_record_stops_cleanly_on_ctrl_c_or_term(pty_factory, tmp_path, stop_signal):
    pty = pty_factory()
    out = tmp_path / "open.csv"
    process = subprocess.Popen(
        [sys.executable, "-m", "hwsched", "power", "record", "--port", pty.path,
         "--meter", "ina219", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        ms = 0

        def logged_60() -> bool:
            nonlocal ms
            assert process.poll() is None, "the recorder ended by itself"
            if out.exists() and len(read_log_lines(out)) >= 60:
                return True
            pty.write(f"{ms},5.00,1.0,400.0,2000.0\n".encode())
            ms += 10
            return False

        wait_until(logged_60, what="60 samples in the log")
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=GENEROUS_TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "samples" in stdout
    log = read_log(out)
    assert len(log) >= 50 and log.footer["samples"] == str(len(log))


def read_log_lines(path):
    return [line for line in path.read_text().splitlines() if line[:1].isdigit()]
