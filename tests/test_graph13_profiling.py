"""Issue 13: a paced profile also times each segment back to back and paced beside a copy on
the other core (invoked together), and ``time_stages_beside`` starts each stage's partner
with every timed invocation."""

from __future__ import annotations

import os
import time

import pytest

import hwsched.runtime.profile as profiling
from hwsched.costs.profile import parse_profile
from hwsched.export.profiling import fp32_segments, profile_model

GAP_MS = 20.0
two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-run needs 2 CPUs")


@pytest.fixture(scope="module")
def loaded():
    from tests.placement_models import tiny_conv_loaded

    return tiny_conv_loaded("tiny13")


@two_cpus
def test_a_paced_profile_records_back_to_back_and_co_run_times(loaded):
    data = profile_model(loaded, segments=2, runs=3, warmup=1, gap_ms=GAP_MS, cache=False,
                         variants=True)
    assert len(data["segments"]) == 2
    for segment in data["segments"]:
        assert segment["back_to_back_ms"] > 0 and segment["co_run_ms"] > 0
    assert data["whole_back_to_back_ms"] > 0
    assert data["gap_ms"] == GAP_MS and data["co_run"] is False  # the paced run's own fields
    profile = parse_profile(data, "tiny13 profile")
    assert profile.wake_ms is not None and profile.wake_ms >= 0
    assert profile.co_running() is not None


def test_without_variants_the_profile_is_as_before(loaded):
    data = profile_model(loaded, segments=2, runs=3, warmup=1, gap_ms=GAP_MS, cache=False)
    assert all("back_to_back_ms" not in s and "co_run_ms" not in s for s in data["segments"])
    assert "whole_back_to_back_ms" not in data
    assert parse_profile(data).wake_ms is None


@two_cpus
def test_stages_beside_their_partner_start_together_and_alone_ones_alone(loaded, monkeypatch):
    pieces = [p.tflite for p in fp32_segments(loaded, [2], cache=False)]
    sleeps: list[float] = []
    started: list[int] = []
    real_sleep, go = time.sleep, profiling.CoRunners.go

    def recording(seconds: float) -> None:
        sleeps.append(seconds)
        real_sleep(seconds)

    def counting(self) -> None:
        started.append(len(sleeps))
        go(self)

    monkeypatch.setattr(profiling.time, "sleep", recording)
    monkeypatch.setattr(profiling.CoRunners, "go", counting)
    before = os.sched_getaffinity(0)
    times = profiling.time_stages_beside([*pieces, pieces[0]], [None, 2, 1], warmup=1, runs=3,
                                         gap_ms=GAP_MS)
    assert len(times) == 3 and all(0 < ms < GAP_MS for ms in times)
    # stage 0 alone: 3 gaps, no partner; stages 1 and 2: a start after each warm-up and after
    # each of their gaps
    assert started == [3, 4, 5, 6, 6, 7, 8, 9]
    assert os.sched_getaffinity(0) == before
    with pytest.raises(profiling.ProfileError, match="partners"):
        profiling.time_stages_beside(pieces, [None, 5])
