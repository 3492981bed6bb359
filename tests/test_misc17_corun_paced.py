"""``time_segments`` with ``co_run`` and ``gap_ms``: the co-runners are paced with the timed
core (one invocation with each timed one, idle in every gap), not left looping.

Failed before: the co-runners looped back to back through every gap while the timed segment
was paced (and so loaded the shared caches and memory all through its idle). CPU seconds of
a co-runner across each 1 s gap are the oracle: a looping convolution of milliseconds takes
a good part of a core there, a paced one nothing (one invocation is ~10 ms)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hwsched.runtime.profile as profiling

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                reason="co-running needs 2 CPUs")


@pytest.fixture(scope="module")
def heavy():
    """Two convolutions of milliseconds each (48x48x64 → 64, 3x3), cut between them."""
    import keras

    from hwsched.export.profiling import fp32_segments
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    inputs = keras.Input(batch_shape=(1, 48, 48, 64), name="image")
    x = keras.layers.Conv2D(64, 3, padding="same", name="c0")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(64, 3, padding="same", name="c1")(x),
                        name="heavy_misc17")
    graph, binding = read_keras_model(model, "heavy_misc17", source="test")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    return graph, fp32_segments(loaded, [2], cache=False), fp32_segments(loaded, [], False)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.fixture
def co_runner_cpu_in_gaps(monkeypatch):
    """CPU seconds the (last loaded) co-runner spends in each paced gap."""
    partners: list[int] = []
    during: list[float] = []
    load, pause = profiling.CoRunners.load, profiling.paced_pause

    def loading(self, content):
        load(self, content)
        partners.append(self.children[0].pid)

    def pausing(gap_ms):
        before = _cpu_seconds(partners[-1]) if partners else None
        pause(gap_ms)
        if before is not None:
            during.append(_cpu_seconds(partners[-1]) - before)

    monkeypatch.setattr(profiling.CoRunners, "load", loading)
    monkeypatch.setattr(profiling, "paced_pause", pausing)
    return during


@pytest.mark.parametrize("chained", [False, True])
def test_co_runners_idle_in_every_gap(heavy, co_runner_cpu_in_gaps, chained):
    graph, pieces, whole = heavy
    segments = [profiling.Segment(p.start, p.stop, p.tflite) for p in pieces]
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:2])  # one co-runner: the one the fixture watches
    try:
        profile = profiling.time_segments(graph, segments, whole[0].tflite, warmup=1, runs=2,
                                          co_run=True, gap_ms=1000.0, chained=chained)
    finally:
        os.sched_setaffinity(0, cpus)
    assert profile["co_run"] and profile["gap_ms"] == 1000.0
    timings = 2 if chained else 3  # chained: the whole model, then one frame of both pieces
    assert len(co_runner_cpu_in_gaps) == 2 * timings
    assert max(co_runner_cpu_in_gaps) < 0.2, co_runner_cpu_in_gaps
