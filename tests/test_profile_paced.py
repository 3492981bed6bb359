"""Paced profiling (``gap_ms``): each timed invocation follows an idle gap, as a stage fed one
frame at a time computes; the gap is honoured and never counted in the figure."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

import hwsched.runtime.profile as profiling
from hwsched.documents.profile import ProfileDocument
from hwsched.errors import ProfileError
from hwsched.export.profiling import fp32_segments, profile_model

GAP_MS = 50.0


@pytest.fixture(scope="module")
def loaded():
    from tests.placement_models import tiny_conv_loaded

    return tiny_conv_loaded("tiny_paced")


@pytest.fixture(scope="module")
def pieces(loaded):
    """The tiny model in two fp32 pieces (cut after the first convolution)."""
    return [p.tflite for p in fp32_segments(loaded, [2], cache=False)]


@pytest.fixture
def sleeps(monkeypatch):
    """Every ``time.sleep`` the profiler makes, recorded (and really slept)."""
    seen: list[float] = []
    real = time.sleep

    def recording(seconds: float) -> None:
        seen.append(seconds)
        real(seconds)

    monkeypatch.setattr(profiling.time, "sleep", recording)
    return seen


def test_one_gap_before_each_timed_invocation_and_none_in_the_timing(pieces, sleeps):
    begin = time.monotonic()
    median_ms, runs, _ = profiling.time_tflite(pieces[0], 1, warmup=1, runs=5, gap_ms=GAP_MS)
    wall_s = time.monotonic() - begin
    assert runs == 5
    assert sleeps == [GAP_MS / 1000] * runs  # the warm-up stays back to back
    assert wall_s >= runs * GAP_MS / 1000  # the wall clock saw the gaps ...
    assert 0 < median_ms < GAP_MS  # ... the figure of a model of microseconds does not


def test_back_to_back_stays_the_default(pieces, sleeps):
    profiling.time_tflite(pieces[0], 1, warmup=1, runs=3)
    profiling.time_chain(pieces, 1, warmup=1, runs=3)
    assert sleeps == []


def test_a_chain_is_paced_per_frame_not_per_segment(pieces, sleeps):
    results = profiling.time_chain(pieces, 1, warmup=1, runs=4, gap_ms=GAP_MS)
    assert sleeps == [GAP_MS / 1000] * 4
    assert [runs for _, runs, _ in results] == [4, 4]
    assert all(0 < ms < GAP_MS for ms, _, _ in results)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pairing needs 2 CPUs")
def test_paired_stages_are_paced_together(pieces, sleeps, monkeypatch):
    started: list[int] = []
    go = profiling.CoRunners.go

    def counting(self) -> None:
        started.append(len(sleeps))  # the partner starts after the gap, with the timed stage
        go(self)

    monkeypatch.setattr(profiling.CoRunners, "go", counting)
    before = os.sched_getaffinity(0)
    times = profiling.time_stages_paired(pieces, warmup=1, runs=4, gap_ms=GAP_MS)
    assert len(times) == 2 and all(0 < ms < GAP_MS for ms in times)
    # one start per timed run, each after its gap, and one after each warm-up (the partner
    # stops looping, so the first gap is idle too)
    assert started == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8]
    assert os.sched_getaffinity(0) == before


def test_the_profile_records_its_gap_and_the_document_round_trips_it(loaded):
    data = profile_model(loaded, segments=2, runs=3, warmup=1, gap_ms=20, cache=False)
    assert data["gap_ms"] == 20.0
    document = ProfileDocument.from_dict(data, "paced.json")
    assert document.gap_ms == 20.0
    again = ProfileDocument.from_dict(document.to_dict(), "again.json")
    assert again == document and again.to_dict()["gap_ms"] == 20.0
    older = {k: v for k, v in data.items() if k != "gap_ms"}  # written before gap_ms existed
    assert ProfileDocument.from_dict(older, "old.json").gap_ms is None
    assert "gap_ms" not in ProfileDocument.from_dict(older, "old.json").to_dict()
    assert profile_model(loaded, segments=1, runs=3, warmup=1)["gap_ms"] == 0.0


@pytest.mark.parametrize("gap_ms", [-1.0, math.nan, math.inf])
def test_a_bad_gap_is_refused_before_anything_is_converted(loaded, gap_ms):
    messages: list[str] = []
    with pytest.raises(ProfileError, match="gap_ms"):
        profile_model(loaded, segments=2, gap_ms=gap_ms, progress=messages.append)
    assert messages == []
    with pytest.raises(ProfileError, match="gap_ms"):
        profiling.time_stages_paired([b"not read"], gap_ms=gap_ms)


@pytest.mark.parametrize("text", ["-1", "nan", "inf", "soon"])
def test_the_cli_refuses_a_bad_gap_in_one_line_before_tensorflow(text):
    code = ("import sys\nfrom hwsched.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as stop:\n    rc = stop.code\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "profile", "digits_cnn", "--gap-ms", text],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "--gap-ms" in lines[0] and repr(text) in lines[0], lines


@pytest.mark.parametrize("gap_ms", [None, 0.0, 20.0])
def test_a_latency_analysis_says_when_its_profile_was_not_paced(gap_ms, tmp_path, capsys):
    import json

    from hwsched.cli import main
    from hwsched.load import load_model

    graph = load_model("digits_cnn").graph
    profile = {"model": graph.name, "platform": "rpi4",
               "layers": [{"name": layer.name, "latency_ms": 0.1} for layer in graph.layers]}
    if gap_ms is not None:
        profile["gap_ms"] = gap_ms
    path = tmp_path / "digits.profile.json"
    path.write_text(json.dumps(profile))
    argv = ["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--profile", str(path),
            "--no-report"]
    assert main([*argv, "--objective", "latency"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    if gap_ms:
        assert notes == []
    else:
        assert len(notes) == 1 and str(path) in notes[0] and "--gap-ms" in notes[0]
    assert main(argv) == 0  # throughput: pacing does not matter, nothing said
    assert not [line for line in capsys.readouterr().err.splitlines() if "gap_ms" in line]


def _cpu_seconds(pid: int) -> float:
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
def test_a_co_runner_stops_looping_at_go_and_loops_again_on_a_new_segment(pieces, tmp_path):
    """Paired pacing: the partner computes only when told (``go``), not in the gaps."""
    from waiting import wait_until

    cpu = sorted(os.sched_getaffinity(0))[-1]
    runners = profiling.CoRunners([cpu], tmp_path, max_seconds=60)
    try:
        runners.load(pieces[1])
        pid = runners.children[0].pid
        before = _cpu_seconds(pid)
        wait_until(lambda: _cpu_seconds(pid) - before > 0.3, what="the co-runner to loop")
        runners.go()
        runners.load(pieces[0])  # answers: the go was read, and a path loads as before
        runners.go()
        idle_from = _cpu_seconds(pid)
        time.sleep(1.0)  # idle now: a looping co-runner would spend most of this second
        assert _cpu_seconds(pid) - idle_from < 0.2
        runners.load(pieces[1])
        looping_from = _cpu_seconds(pid)
        wait_until(lambda: _cpu_seconds(pid) - looping_from > 0.3, what="looping again")
    finally:
        runners.close()
    assert all(child.poll() is not None for child in runners.children)
