from __future__ import annotations

import math

import pytest

from hwsched.power.logfile import (
    COLUMNS,
    RATE_PROBE_SAMPLES,
    LogSample,
    LogWriter,
    PowerLogError,
    read_log,
    utc_iso,
)


def _write(path, count: int, *, close: bool = True) -> LogWriter:
    writer = LogWriter(path, {"meter": "ina219", "port": "/dev/ttyACM0"})
    for index in range(count):
        writer.write(LogSample(1000.0 + index * 0.01, 2000.0 + index, index * 0.01, 5.0, 400.0))
    if close:
        writer.close({"samples": count})
    return writer


def test_round_trip_with_header_block_and_footer(tmp_path):
    path = tmp_path / "log.csv"
    writer = LogWriter(path, {"meter": "ina219", "port": "/dev/ttyACM0", "start_time": "x"})
    writer.note(999.5, "banner 'hello\nworld'")
    for index in range(60):
        writer.write(LogSample(1000.0 + index * 0.01, 2000.0 + index, index * 0.01, 5.0, None, 1))
    writer.close({"samples": 60, "garbage_lines": 2})
    log = read_log(path)
    assert len(log) == 60
    assert log.meter == "ina219"
    assert log.header["port"] == "/dev/ttyACM0"
    assert float(log.header["sample_rate_hz"]) == pytest.approx(100.0)
    assert "power_mw=mW" in log.header["units"]
    assert log.power_mw[-1] == 2059.0
    assert math.isnan(log.current_ma[0])
    assert log.segment[0] == 1
    assert log.notes == ("999.500000 banner 'hello world'",)
    assert log.footer == {"samples": "60", "garbage_lines": "2"}
    assert not log.truncated_last_line


def test_header_waits_for_rate_probe_then_lines_are_flushed_one_by_one(tmp_path):
    path = tmp_path / "live.csv"
    writer = _write(path, RATE_PROBE_SAMPLES - 1, close=False)
    assert path.read_text() == ""  # header not yet known
    writer.write(LogSample(2000.0, 1.0))
    assert len(read_log(path)) == RATE_PROBE_SAMPLES  # readable while still being written
    writer.write(LogSample(2000.1, 2.0))
    assert len(read_log(path)) == RATE_PROBE_SAMPLES + 1
    writer.close()


def test_a_log_cut_mid_line_is_valid_up_to_its_last_complete_line(tmp_path):
    path = tmp_path / "crash.csv"
    _write(path, 60)
    text = path.read_text()
    path.write_text(text[: text.index("\n1000.500000,") + 15])  # power lost mid-write
    log = read_log(path)
    assert log.truncated_last_line
    assert len(log) == 50


def test_empty_recording_still_has_a_header(tmp_path):
    path = tmp_path / "empty.csv"
    writer = LogWriter(path, {"meter": "generic"})
    writer.close()
    log = read_log(path)
    assert len(log) == 0 and log.header["sample_rate_hz"] == "unknown"


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    _write(path, 60)
    lines = path.read_text().split("\n")
    lines[20] = "1000.0,0.1,oops,5.0,400.0,0"
    path.write_text("\n".join(lines))
    with pytest.raises(PowerLogError, match=r"bad.csv:21: power_mw is not a number: 'oops'"):
        read_log(path)
    lines[20] = "1000.0,0.1"
    path.write_text("\n".join(lines))
    with pytest.raises(PowerLogError, match=r"bad.csv:21: expected 6 fields, got 2"):
        read_log(path)


def test_not_a_log_and_missing_log(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("timestamp,power_w\n1,2\n")
    with pytest.raises(PowerLogError, match=r"other.csv:1: not a hwsched power log"):
        read_log(path)
    with pytest.raises(PowerLogError, match="does not exist"):
        read_log(tmp_path / "missing.csv")
    path.write_text("# hwsched power log\n# meter: x\nhost_t_s,power\n")
    with pytest.raises(
        PowerLogError, match=f"other.csv:3: expected column line {','.join(COLUMNS)}"
    ):
        read_log(path)


def test_utc_iso():
    assert utc_iso(0.25) == "1970-01-01T00:00:00.250Z"


def test_existing_non_empty_log_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "kept.csv"
    _write(path, 60)
    before = path.read_text()
    with pytest.raises(PowerLogError, match=r"kept.csv exists and is not empty; .*--force"):
        LogWriter(path, {"meter": "ina219"})
    assert path.read_text() == before
    LogWriter(path, {"meter": "ina219"}, overwrite=True).close()
    assert len(read_log(path)) == 0
    empty = tmp_path / "empty.csv"
    empty.touch()
    LogWriter(empty, {"meter": "ina219"}).close()  # an empty file holds no recording


def test_unwritable_directory_is_a_power_log_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(PowerLogError, match=r"cannot write power log .*file/x.csv: "):
        LogWriter(tmp_path / "file" / "x.csv", {"meter": "ina219"})
