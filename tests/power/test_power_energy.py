from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.errors import PowerError
from hwsched.power.energy import (
    EventsError,
    InferenceEvent,
    cumulative_energy_mj,
    energy_between_mj,
    energy_report,
    merge_intervals,
    pipeline_energy,
    read_events,
)
from hwsched.power.logfile import LogSample, LogWriter, read_log


def _log(path: Path, t_s, power_mw, *, meter_clock: bool = True):
    writer = LogWriter(path, {"meter": "generic", "port": "test"})
    for t, p in zip(t_s, power_mw, strict=True):
        writer.write(LogSample(float(t), float(p), float(t - t_s[0]) if meter_clock else None))
    writer.close()
    return read_log(path)


def _square_wave(path: Path, *, frames: int = 10, period_s: float = 0.5, busy_s: float = 0.2):
    """Idle 1000 mW, 3000 mW while busy; samples every 1 ms, edges on sample instants."""
    t_s = 1000.0 + np.arange(0, frames * period_s + 1.0, 0.001).round(6)
    events = [
        InferenceEvent(k, 0, 1000.5 + k * period_s, 1000.5 + k * period_s + busy_s)
        for k in range(frames)
    ]
    busy = np.zeros(t_s.size, dtype=bool)
    for event in events:
        busy |= (t_s >= event.start_s - 1e-9) & (t_s <= event.end_s + 1e-9)
    return _log(path, t_s, np.where(busy, 3000.0, 1000.0)), events


def test_cumulative_trapezoid_and_interpolated_interval_energy():
    t_s = np.array([0.0, 1.0, 2.0])
    power_mw = np.array([0.0, 1000.0, 1000.0])
    cumulative = cumulative_energy_mj(t_s, power_mw)
    assert cumulative.tolist() == [0.0, 500.0, 1500.0]
    # power ramps 0→1000 mW over the first second: energy over [0.5, 1.5] = 375 + 500
    assert energy_between_mj(t_s, power_mw, cumulative, [0.5], [1.5]).tolist() == [875.0]


@settings(max_examples=100, deadline=None)
@given(
    power=st.lists(st.floats(0, 1e5), min_size=3, max_size=30),
    cuts=st.lists(st.floats(0, 1), min_size=3, max_size=3),
)
def test_interval_energy_is_additive(power, cuts):
    t_s = np.linspace(0.0, 1.0, len(power))
    power_mw = np.array(power)
    cumulative = cumulative_energy_mj(t_s, power_mw)
    a, b, c = sorted(cuts)
    parts = energy_between_mj(t_s, power_mw, cumulative, [a, b], [b, c]).sum()
    whole = energy_between_mj(t_s, power_mw, cumulative, [a], [c])[0]
    assert parts == pytest.approx(whole, rel=1e-9, abs=1e-6)


def test_merge_intervals():
    assert merge_intervals([(3, 4), (0, 1), (0.5, 2), (2, 2.5)]) == [(0, 2.5), (3, 4)]


def test_square_wave_energy_idle_average_peak(tmp_path):
    log, events = _square_wave(tmp_path / "sq.csv")
    report = energy_report(log, events)
    assert report.inferences == 10 and len(report.windows) == 5
    assert report.idle_power_mw == 1000.0 and report.idle_source == "measured"
    assert report.energy_per_inference_mj == pytest.approx(600.0, rel=1e-6)
    assert report.dynamic_energy_per_inference_mj == pytest.approx(400.0, rel=1e-6)
    assert report.average_power_mw == pytest.approx(3000.0, rel=1e-6)
    assert report.peak_power_mw == 3000.0
    assert report.max_gap_in_windows_s == pytest.approx(0.001)
    assert report.time_source == "meter clock"


def test_period_energy_includes_the_waits_between_inferences(tmp_path):
    log, events = _square_wave(tmp_path / "sq.csv")  # busy 0.2 s at 3000 mW, 0.3 s idle waits
    edge_mj = 0.001 * 2000.0 / 2  # power ramps over the sample step at each busy edge
    one = energy_report(log, events, windows=1)
    waits_mj = 9 * (0.3 * 1000.0 + 2 * edge_mj)
    expected = (10 * 600.0 + waits_mj) / 10
    assert one.period_energy_per_inference_mj == pytest.approx(expected, rel=1e-6)
    assert one.windows[0].span_s == pytest.approx(4.7)
    assert one.to_json()["windows"][0]["period_energy_per_inference_mj"] == pytest.approx(expected)
    single = energy_report(log, events, windows=10)  # one inference per window: no waits
    assert single.period_energy_per_inference_mj == pytest.approx(
        single.energy_per_inference_mj, rel=1e-9
    )


def test_given_idle_power_and_median_over_windows(tmp_path):
    log, events = _square_wave(tmp_path / "sq.csv")
    report = energy_report(log, events, idle_power_mw=500.0, windows=10)
    assert report.idle_source == "given" and len(report.windows) == 10
    assert report.dynamic_energy_per_inference_mj == pytest.approx(500.0, rel=1e-6)
    # one frame twice as long: it moves one window, not the median
    long = [*events[:-1], InferenceEvent(9, 0, events[9].start_s, events[9].end_s + 0.2)]
    assert energy_report(log, long, windows=10).energy_per_inference_mj == pytest.approx(
        600.0, rel=1e-6
    )


def test_frames_outside_the_log_are_left_out_and_counted(tmp_path):
    log, events = _square_wave(tmp_path / "sq.csv")
    late = InferenceEvent(99, 0, 5000.0, 5000.1)
    report = energy_report(log, [*events, late])
    assert report.uncovered_frames == 1 and report.inferences == 10
    with pytest.raises(PowerError, match=r"sq.csv: covers host time 1000.000–1005.999 s but"):
        energy_report(log, [late])


def test_too_few_idle_samples_asks_for_idle_mw(tmp_path):
    log, _ = _square_wave(tmp_path / "sq.csv")
    everything = [InferenceEvent(0, 0, 1000.0, 1005.99)]
    with pytest.raises(PowerError, match=r"too few for an idle baseline; .* pass --idle-mw"):
        energy_report(log, everything)


def test_per_stage_attribution_one_log_per_board(tmp_path):
    board0, events0 = _square_wave(tmp_path / "b0.csv")
    board1, _ = _square_wave(tmp_path / "b1.csv", busy_s=0.1)
    events1 = [InferenceEvent(e.frame, 1, e.start_s, e.start_s + 0.1) for e in events0]
    result = pipeline_energy([(0, board0), (1, board1)], [*events0, *events1])
    record = result.to_json()
    assert [stage["stage"] for stage in record["stages"]] == [0, 1]
    assert record["energy_per_inference_mj"] == pytest.approx(600.0 + 300.0, rel=1e-6)
    assert record["dynamic_energy_per_inference_mj"] == pytest.approx(400.0 + 200.0, rel=1e-6)
    assert record["idle_power_mw"] == 2000.0 and record["inferences"] == 10
    assert record["period_energy_per_inference_mj"] == pytest.approx(
        sum(stage["period_energy_per_inference_mj"] for stage in record["stages"])
    )
    with pytest.raises(
        PowerError, match=r"b0.csv: no events for stage 7; the events have \[0, 1\]"
    ):
        pipeline_energy([(7, board0)], events0 + events1)


def test_one_given_idle_power_applies_to_every_log(tmp_path):
    board0, events0 = _square_wave(tmp_path / "b0.csv")
    board1, _ = _square_wave(tmp_path / "b1.csv")
    events1 = [InferenceEvent(e.frame, 1, e.start_s, e.end_s) for e in events0]
    logs = [(0, board0), (1, board1)]
    result = pipeline_energy(logs, [*events0, *events1], idle_power_mw=[500.0])
    assert [report.idle_power_mw for report in result.stages] == [500.0, 500.0]
    with pytest.raises(PowerError, match="3 idle powers given for 2 logs; give 1 or each"):
        pipeline_energy(logs, [*events0, *events1], idle_power_mw=[1.0, 2.0, 3.0])


def test_whole_pipeline_on_one_board_counts_overlapping_stages_once(tmp_path):
    log, events = _square_wave(tmp_path / "sq.csv")
    # stage 1 of each frame overlaps stage 0: the busy time is the union
    overlapping = [InferenceEvent(e.frame, 1, e.start_s + 0.1, e.end_s) for e in events]
    assert energy_report(log, events + overlapping).energy_per_inference_mj == pytest.approx(
        600.0, rel=1e-6
    )


def test_zero_length_inference_is_an_error_not_a_division_by_zero(tmp_path):
    log, _ = _square_wave(tmp_path / "sq.csv")
    instant = [InferenceEvent(0, 0, 1000.5005, 1000.5005)]  # between two samples
    with pytest.raises(PowerError, match=r"sq.csv: frame 0 stage 0 has no inference time"):
        energy_report(log, instant, idle_power_mw=1000.0)


def test_host_arrival_time_used_without_meter_clock(tmp_path):
    log, events = _square_wave(tmp_path / "sq.csv")
    plain = _log(tmp_path / "plain.csv", log.host_t_s, log.power_mw, meter_clock=False)
    report = energy_report(plain, events)
    assert report.time_source == "host arrival time"
    assert report.energy_per_inference_mj == pytest.approx(600.0, rel=1e-6)


def _events_file(tmp_path, lines: list[str], final_newline: bool = True) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""))
    return path


def test_read_events_runtime_format(tmp_path):
    line = json.dumps({"frame": 3, "stage": 1, "start_s": 10, "end_s": 10.5, "extra": "ok"})
    path = _events_file(tmp_path, [line, "", '{"frame": 4, "stage": 1, "sta'], final_newline=False)
    assert read_events(path) == (InferenceEvent(3, 1, 10.0, 10.5),)  # cut last line ignored


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"events.jsonl:2: not JSON"),
        ("[1, 2]", r"events.jsonl:2: expected a JSON object, got list"),
        ('{"frame": 1, "stage": 0, "start_s": 1}', r"events.jsonl:2: missing field 'end_s'"),
        (
            '{"frame": 1.5, "stage": 0, "start_s": 1, "end_s": 2}',
            r"events.jsonl:2: field 'frame' must be int, got 1.5",
        ),
        (
            '{"frame": true, "stage": 0, "start_s": 1, "end_s": 2}',
            r"field 'frame' must be int, got True",
        ),
        ('{"frame": 1, "stage": 0, "start_s": 2, "end_s": 1}', r"end_s 1.0 is before start_s"),
        (
            '{"frame": 1, "stage": 0, "start_s": 2, "end_s": 2}',
            r"events.jsonl:2: end_s equals start_s 2.0; an inference takes time",
        ),
    ],
)
def test_bad_event_lines_name_file_and_line(tmp_path, line, message):
    good = '{"frame": 0, "stage": 0, "start_s": 0, "end_s": 1}'
    with pytest.raises(EventsError, match=message):
        read_events(_events_file(tmp_path, [good, line, good]))


def test_missing_or_empty_events(tmp_path):
    with pytest.raises(EventsError, match="does not exist"):
        read_events(tmp_path / "nope.jsonl")
    with pytest.raises(EventsError, match="has no inference events"):
        read_events(_events_file(tmp_path, [""]))
