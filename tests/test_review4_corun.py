"""Review of paced pairing (issues 13/14's ``gap_ms``): a co-runner that dies, and the
co-runners' own deadline against the paced timing's."""

from __future__ import annotations

import os

import pytest

import hwsched.runtime.profile as profiling
from hwsched.errors import ProfileError


@pytest.fixture(scope="module")
def piece() -> bytes:
    import keras

    from hwsched.export.profiling import fp32_segments
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    inputs = keras.Input(batch_shape=(1, 8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="c0")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="pool")(x),
                        name="tiny_review4")
    graph, binding = read_keras_model(model, "tiny_review4", source="test")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    return fp32_segments(loaded, (), cache=False)[0].tflite


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
@pytest.mark.parametrize("then", ["go", "load"])
def test_a_dead_co_runner_is_a_profile_error_not_a_broken_pipe(piece, tmp_path, then):
    """A partner that died (OOM-killed, its deadline passed) while a paced pairing starts it:
    one ProfileError naming the co-runners' logs, not a BrokenPipeError traceback."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    runners = profiling.CoRunners([cpu], tmp_path, max_seconds=60)
    try:
        runners.load(piece)
        runners.children[0].kill()
        runners.children[0].wait(timeout=60)
        with pytest.raises(ProfileError, match="co-runner 0.*corun"):
            for _ in range(3):  # the first write may still land in the pipe's buffer
                runners.go() if then == "go" else runners.load(piece)
    finally:
        runners.close()
    assert all(child.poll() is not None for child in runners.children)


class _Captured(Exception):
    """Raised by the recording co-runners: the test needs only the deadline they were given."""


@pytest.fixture
def deadline(monkeypatch):
    """The ``max_seconds`` the profiler gives its co-runners (the profile stops there)."""
    seen: list[float] = []

    def recording(self, cpus, workdir, max_seconds):
        seen.append(max_seconds)
        raise _Captured

    monkeypatch.setattr(profiling.CoRunners, "__init__", recording)
    return seen


def _paced_timing_s(runs: int, gap_ms: float) -> float:
    """The longest one paced timing may run (time_tflite's loop: its unpaced limit, the gaps
    of the runs asked for, and the one paced run that may start just before the limit)."""
    return profiling.MAX_TIMING_S + (runs + 1) * gap_ms / 1000


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
def test_paired_co_runners_outlive_a_paced_timing(deadline):
    """Two stages paced 5 s apart, 30 runs each: both timings, back to back, outlast the
    co-runners' unpaced deadline (they ended mid-profile: the partner's stage untimed)."""
    with pytest.raises(_Captured):
        profiling.time_stages_paired([b"a", b"b"], runs=30, gap_ms=5000.0)
    assert deadline and deadline[0] >= 2 * _paced_timing_s(30, 5000.0)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
def test_co_run_segments_outlive_their_paced_timings(deadline, piece):
    """time_segments with --co-run: the whole model and each segment are timed paced."""
    segments = [profiling.Segment(0, 1, piece), profiling.Segment(1, 2, piece)]
    with pytest.raises(_Captured):
        profiling.time_segments(None, segments, piece, runs=30, co_run=True, gap_ms=5000.0)
    assert deadline and deadline[0] >= 3 * _paced_timing_s(30, 5000.0)


@pytest.fixture(scope="module")
def heavy() -> bytes:
    """A convolution of milliseconds per invocation (96x96x64 → 64, 3x3: 340 M MACs)."""
    import keras

    from hwsched.export.profiling import fp32_segments
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    inputs = keras.Input(batch_shape=(1, 96, 96, 64), name="image")
    x = keras.layers.Conv2D(64, 3, padding="same", name="c0")(inputs)
    model = keras.Model(inputs, x, name="heavy_review4")
    graph, binding = read_keras_model(model, "heavy_review4", source="test")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    return fp32_segments(loaded, (), cache=False)[0].tflite


def _cpu_seconds(pid: int) -> float:
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
def test_go_lines_queued_behind_a_slow_partner_are_not_all_run(heavy, piece, tmp_path):
    """A partner slower than the timed stage and its gap falls behind its ``go`` lines; the
    ones still queued when it gets to them (or when the next segment is loaded) ask for one
    invocation, not one each: the next load answers without working off the backlog. CPU
    seconds, not wall time: 200 invocations of ``heavy`` take seconds of CPU wherever they
    run, a few take a small fraction of one."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    runners = profiling.CoRunners([cpu], tmp_path, max_seconds=300)
    try:
        runners.load(heavy)
        runners.go()  # no more looping
        pid = runners.children[0].pid
        before = _cpu_seconds(pid)
        for _ in range(200):
            runners.go()
        runners.load(piece)
        used_s = _cpu_seconds(pid) - before
    finally:
        runners.close()
    assert used_s < 0.5, f"{used_s:.2f} CPU-s: the queued go lines were each run"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
def test_the_partner_idles_in_every_gap_the_first_too(heavy, monkeypatch):
    """Paired pacing: the partner loops through the warm-up (back to back, as documented),
    and must be idle in the gaps, the first one included (it looped on through the first
    gap: the first timed invocation shared the core's neighbour with a looping partner).
    CPU seconds of the partner across each 1 s gap: a looping ``heavy`` takes a good part
    of a core, an idle partner nothing (one ``go`` invocation is ~10 ms)."""
    partners: list[int] = []
    during: list[float] = []
    load = profiling.CoRunners.load
    pause = profiling.paced_pause

    def loading(self, content):
        load(self, content)
        partners.append(self.children[0].pid)

    def pausing(gap_ms):
        before = _cpu_seconds(partners[-1])
        pause(gap_ms)
        during.append(_cpu_seconds(partners[-1]) - before)

    monkeypatch.setattr(profiling.CoRunners, "load", loading)
    monkeypatch.setattr(profiling, "paced_pause", pausing)
    profiling.time_stages_paired([heavy, heavy], warmup=2, runs=3, gap_ms=1000.0)
    assert len(during) == 6
    assert max(during) < 0.2, during
