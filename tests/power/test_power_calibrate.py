from __future__ import annotations

import datetime as dt

import pytest
import yaml
from power_fixtures import file_size_limit

from hwsched.errors import HwschedError, PowerError
from hwsched.power.calibrate import (
    calibration_from_report,
    default_calibration_path,
    read_calibration,
    write_calibration,
)
from hwsched.power.energy import EnergyReport

REPORT = EnergyReport(
    log="power_logs/rpi4_stage0.csv",
    meter="ina219",
    stage=0,
    inferences=50,
    energy_per_inference_mj=215.5,
    dynamic_energy_per_inference_mj=80.1,
    period_energy_per_inference_mj=300.0,
    idle_power_mw=2710.0,
    idle_source="measured",
    idle_samples=400,
    average_power_mw=4310.25,
    peak_power_mw=5000.0,
    busy_s=2.5,
    uncovered_frames=0,
    max_gap_in_windows_s=0.01,
    time_source="meter clock",
    clock_fits=(),
    windows=(),
)
NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_calibration_round_trip_with_descriptor_shaped_power_block(tmp_path):
    calibration = calibration_from_report(REPORT, "rpi4", "run/events.jsonl", now=NOW)
    path = write_calibration(calibration, tmp_path / "rpi4.power.yaml")
    record = yaml.safe_load(path.read_text())
    assert record["kind"] == "hwsched-power-calibration"
    assert record["active_power_mw"] == 4310.25 and record["idle_power_mw"] == 2710.0
    assert record["energy_per_inference_mj"] == 215.5
    assert record["date"] == "2024-05-01T12:00:00Z"
    assert record["power"]["active_w"]["value"] == 4.3102
    assert record["power"]["idle_w"]["source"].startswith("measured: power_logs/rpi4_stage0.csv")
    assert read_calibration(path) == calibration


def test_bad_platform_name_and_bad_file(tmp_path):
    with pytest.raises(PowerError, match="platform name '../x' must be"):
        calibration_from_report(REPORT, "../x", "e.jsonl")
    path = tmp_path / "x.yaml"
    path.write_text("kind: something-else\n")
    with pytest.raises(PowerError, match="x.yaml: not a power calibration"):
        read_calibration(path)
    assert default_calibration_path("rpi4").as_posix() == "power_logs/rpi4.power.yaml"


def test_failed_write_leaves_the_existing_calibration_intact(tmp_path):
    path = tmp_path / "rpi4.power.yaml"
    old = write_calibration(calibration_from_report(REPORT, "rpi4", "a.jsonl", now=NOW), path)
    before = old.read_text()
    new = calibration_from_report(REPORT, "rpi4", "b.jsonl", now=NOW)
    with file_size_limit(100), pytest.raises(HwschedError, match=r"rpi4.power.yaml: cannot write"):
        write_calibration(new, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rpi4.power.yaml"]  # no temporary left


def test_binary_file_is_a_power_error(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(PowerError, match=r"cannot read calibration .*x.yaml: .*codec"):
        read_calibration(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("active_power_mw", "4310", r"field 'active_power_mw' must be a finite number, got '4310'"),
        ("idle_power_mw", float("nan"), r"field 'idle_power_mw' must be a finite number"),
        ("energy_per_inference_mj", True, r"field .* must be a finite number, got True"),
        ("inferences", 50.5, r"field 'inferences' must be an integer, got 50.5"),
        ("stage", "0", r"field 'stage' must be an integer, got '0'"),
    ],
)
def test_calibration_fields_are_type_checked(tmp_path, field, value, message):
    path = write_calibration(
        calibration_from_report(REPORT, "rpi4", "e.jsonl", now=NOW), tmp_path / "x.yaml"
    )
    record = yaml.safe_load(path.read_text())
    record[field] = value
    path.write_text(yaml.safe_dump(record))
    with pytest.raises(PowerError, match=f"x.yaml: {message}"):
        read_calibration(path)


def test_integral_power_and_null_stage_are_accepted(tmp_path):
    calibration = calibration_from_report(REPORT, "rpi4", "e.jsonl", now=NOW)
    path = write_calibration(calibration, tmp_path / "x.yaml")
    record = yaml.safe_load(path.read_text())
    record.update(idle_power_mw=2710, stage=None)
    path.write_text(yaml.safe_dump(record))
    read = read_calibration(path)
    assert read.idle_power_mw == 2710.0 and isinstance(read.idle_power_mw, float)
    assert read.stage is None
