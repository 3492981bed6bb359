from __future__ import annotations

import os

import numpy as np
import pytest
import serial
from power_fixtures import clock_fit_tolerance, lines_written, wait_until_opened
from waiting import GENEROUS_TIMEOUT_S, wait_until

from hwsched.errors import UnknownNameError
from hwsched.power.energy import energy_report, read_events
from hwsched.power.logfile import read_log
from hwsched.power.record import LineAssembler, Recorder
from hwsched.power.timebase import align

INA219_LINES = [f"{ms},5.00,{ms % 7}.0,400.0,2000.0\n" for ms in range(0, 200, 10)]


def test_assembler_drops_first_fragment_and_joins_split_lines():
    assembler = LineAssembler()
    assert assembler.feed(b"0,5.0,1\n1") == []  # the first line after open may be cut
    assert assembler.feed(b"0,5.0,2\r\n20,5.") == [b"10,5.0,2"]
    assert assembler.feed(b"0,3\n") == [b"20,5.0,3"]
    assert assembler.partial_lines == 1


def test_assembler_drops_overlong_run_without_newline():
    assembler = LineAssembler(max_line_bytes=16)
    assembler.feed(b"\n")
    assert assembler.feed(b"x" * 40) == []
    assert assembler.feed(b"tail\n1,2\n") == [b"1,2"]  # 'tail' belongs to the overlong line
    assert assembler.overlong_lines == 1


def _loop_opener(data: bytes):
    """A real pyserial loop:// port preloaded with ``data``; reset_input_buffer is a no-op on
    loop:// only after the bytes are in, so they are written on the first read."""
    port = serial.serial_for_url("loop://", timeout=0.05)
    original_read = port.read
    pending = [data]

    def read(size=1):
        if pending:
            port.write(pending.pop())
        return original_read(max(size, port.in_waiting))

    port.read = read
    return lambda *args, **kwargs: port


def test_loop_stream_with_corruption_is_counted_and_skipped(tmp_path):
    stream = (
        b"\n"  # ends the fragment the recorder always drops
        + b"".join(line.encode() for line in INA219_LINES[:5])
        + b"\x00\xff\xfe noise \x81\n"
        + b"Adafruit INA219 test\r\n"
        + b"ms,bus_V,shunt_mV,current_mA,power_mW\n"
        + b"100,5.0\n"
        + b"".join(line.encode() for line in INA219_LINES[10:])
        + b"5,5.00,1.0,400.0,2000.0\n"  # meter clock went back: a reset
    )
    out = tmp_path / "loop.csv"
    recorder = Recorder("loop://", "ina219", out, opener=_loop_opener(stream))
    summary = recorder.run(duration_s=0.5)
    assert summary.samples == 5 + 10 + 1
    assert summary.garbage_lines == 1
    assert summary.banner_lines == 1
    assert summary.header_lines == 1
    assert summary.malformed_lines == 1
    assert summary.meter_resets == 1
    log = read_log(out)
    assert len(log) == 16
    assert log.power_mw.tolist() == [2000.0] * 16
    assert any("banner 'Adafruit INA219 test'" in note for note in log.notes)
    assert any("meter reset" in note for note in log.notes)


def test_header_from_meter_is_adopted_unless_columns_given(tmp_path):
    stream = b"\nms,power_W\n10,1.5\n20,2.5\n"
    summary = Recorder("loop://", "ina219", tmp_path / "a.csv", opener=_loop_opener(stream)).run(
        0.3
    )
    assert summary.samples == 2
    assert read_log(tmp_path / "a.csv").power_mw.tolist() == [1500.0, 2500.0]
    fixed = Recorder(
        "loop://",
        "ina219",
        tmp_path / "b.csv",
        columns=("ms", "bus_V", "shunt_mV", "current_mA", "power_mW"),
        opener=_loop_opener(stream),
    ).run(0.3)
    assert fixed.samples == 0 and fixed.malformed_lines == 2


def test_pty_stream_energy_recovered_within_half_a_percent(synthetic_meter, tmp_path):
    meter = synthetic_meter()
    out = tmp_path / "synthetic.csv"
    columns = ("us", "bus_V", "current_mA", "power_mW")
    with Recorder(meter.pty.path, "ina226", out, columns=columns) as recorder:
        wait_until_opened(meter.pty)
        meter.start().join()
        # every line but the first, which a freshly opened recorder drops as possibly cut
        wait_until(lambda: _lines_read(recorder) >= lines_written(meter) - 1,
                   what="the recorder to read every line the meter wrote")
    log = read_log(out)
    report = energy_report(log, read_events(meter.events(tmp_path / "events.jsonl")))
    total_mj, dynamic_mj = meter.expected_mj()
    assert report.inferences == 5
    assert report.idle_power_mw == pytest.approx(meter.profile.idle_mw, rel=1e-6)
    rel = 0.005 + clock_fit_tolerance(meter, log)
    assert report.energy_per_inference_mj == pytest.approx(total_mj, rel=rel)
    assert report.dynamic_energy_per_inference_mj == pytest.approx(dynamic_mj, rel=rel)
    assert report.time_source == "meter clock"
    # 150 ppm is 0.35 ms over this short run, below the arrival jitter of a busy machine, so
    # the drift itself is checked in test_power_timebase; here: every sample lands in place.
    aligned_s = align(log.meter_t_s, log.host_t_s, log.segment).t_s
    assert np.max(np.abs(aligned_s - meter.host_time(log.meter_t_s))) < 0.002
    footer = log.footer
    assert int(footer["garbage_lines"]) >= 5 and int(footer["malformed_lines"]) >= 5
    assert int(footer["banner_lines"]) >= 3


def test_unplug_and_replug_at_the_same_path(pty_factory, tmp_path):
    link = tmp_path / "ttyMETER"  # udev's /dev/serial/by-id link survives a replug
    first = pty_factory()
    os.symlink(first.path, link)
    out = tmp_path / "replug.csv"
    with Recorder(str(link), "ina219", out, reconnect_interval_s=0.05) as recorder:
        _feed_until(first, recorder, samples=5, start_ms=0)
        first.close()  # unplug: reads fail with EIO
        os.unlink(link)
        _wait_for(lambda: recorder.count("disconnects") >= 1)
        second = pty_factory()
        os.symlink(second.path, link)
        _feed_until(second, recorder, samples=10, start_ms=0)  # the meter restarted
    summary = recorder.summary
    assert summary.disconnects >= 1
    assert summary.samples >= 10
    log = read_log(out)
    assert any("disconnect" in note for note in log.notes)
    # The restarted meter clock is fitted on its own, whether or not a step back was seen.
    assert log.segment[0] == 0 and log.segment[-1] >= 1
    assert len(summary.clock_fits) == len(set(log.segment.tolist()))


def test_stalled_port_is_reopened(pty_factory, tmp_path):
    pty = pty_factory()
    with Recorder(pty.path, "ina219", tmp_path / "stall.csv", stall_timeout_s=0.2) as recorder:
        _feed_until(pty, recorder, samples=3, start_ms=0)
        _wait_for(lambda: recorder.count("stalls") >= 1)
        _feed_until(pty, recorder, samples=6, start_ms=1000)
    assert recorder.summary.stalls >= 1
    assert recorder.summary.samples >= 6


def test_unopenable_port_records_nothing_and_notes_why(tmp_path):
    out = tmp_path / "none.csv"
    summary = Recorder(str(tmp_path / "no-such-tty"), "ina219", out).run(0.2)
    assert summary.samples == 0
    assert any("cannot open" in note for note in read_log(out).notes)


def test_unknown_meter_is_rejected(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown meter 'ina999'; valid: generic, ina219"):
        Recorder("loop://", "ina999", tmp_path / "x.csv")


def _lines_read(recorder: Recorder) -> int:
    kinds = ("samples", "header_lines", "banner_lines", "garbage_lines", "malformed_lines")
    return sum(recorder.count(kind) for kind in kinds)


def _feed_until(pty, recorder, *, samples: int, start_ms: int) -> None:
    """Write lines until the recorder has ``samples`` samples in total."""
    ms = start_ms

    def fed() -> bool:
        nonlocal ms
        if recorder.count("samples") >= samples:
            return True
        pty.write(f"{ms},5.00,1.0,400.0,2000.0\n".encode())
        ms += 10
        return False

    wait_until(fed, what=f"the recorder to receive {samples} samples")


def _wait_for(condition, timeout_s: float = GENEROUS_TIMEOUT_S) -> None:
    wait_until(condition, timeout_s)
