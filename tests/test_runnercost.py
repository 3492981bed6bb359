"""The runners' own per-frame cost beyond a bare hop end (hwsched.runtime.runnercost): the
fit recovers excesses it is given, the real source, stage loop and sink stream a synthetic
plan to the end and report their CPU, and the cost file keeps the new terms apart."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.runtime import RuntimeCost, runtime_cost_from_dict
from hwsched.runtime.runnercost import (
    EVICT_BYTES,
    MAX_EVICT_BYTES,
    RunnerSample,
    default_evict_bytes,
    identity_plan,
    last_level_cache_bytes,
    measure_runner_frames,
    nonnegative_fit,
    runner_terms,
    with_runner_terms,
)

ms = st.floats(0.0, 2.0, allow_nan=False)
per_byte = st.floats(0.0, 1e-5, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(ms, per_byte, ms, per_byte, ms, ms, st.lists(st.integers(0, 1 << 22), min_size=1,
                                                     max_size=4))
def test_the_fit_recovers_the_excess_each_end_was_given(s0, s1, r0, r1, extra_s, extra_r,
                                                        sizes):
    """Runners that cost exactly the hop ends plus a fixed excess per sending and receiving
    end (the source one sending end, the stage both, the sink one receiving end): the
    least-squares fit returns those excesses, whatever the ends and the sizes."""
    cost = RuntimeCost.asymmetric(sender=(s0, s1), receiver=(r0, r1))
    samples = [RunnerSample(b, cost.sender_ms(b) + extra_s,
                            cost.receiver_ms(b) + cost.sender_ms(b) + extra_s + extra_r,
                            cost.receiver_ms(b) + extra_r) for b in sizes]
    assert runner_terms(samples, cost) == pytest.approx((extra_s, extra_r), abs=1e-9)
    folded = with_runner_terms(cost, samples)
    for b in sizes:
        assert folded.sender_ms(b) == pytest.approx(cost.sender_ms(b) + extra_s, abs=1e-9)
        assert folded.receiver_ms(b) == pytest.approx(cost.receiver_ms(b) + extra_r, abs=1e-9)


excess = st.floats(-1.0, 2.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(excess, excess, excess)
def test_the_fit_is_the_best_nonnegative_pair_on_a_fine_grid(source, stage, sink):
    """Brute force: no pair of nonnegative terms on a 0.01 ms grid fits the three excesses
    better than the fit (one of them negative in many draws: the constrained case)."""
    def misfit(s: float, r: float) -> float:
        return (s - source) ** 2 + (s + r - stage) ** 2 + (r - sink) ** 2

    fitted = nonnegative_fit(source, stage, sink)
    assert min(fitted) >= 0
    s, r = np.meshgrid(np.arange(301) / 100, np.arange(301) / 100)
    best = float(misfit(s, r).min())  # every pair on the grid, as arrays
    assert misfit(*fitted) <= best + 1e-9


def test_the_synthetic_plan_carries_the_payload_on_every_hop():
    from hwsched.runtime.frames import spec_bytes
    from hwsched.runtime.routing import hop_specs

    plan = identity_plan(65536)
    for hop in (0, 1):
        assert sum(spec_bytes(s) for s in hop_specs(plan, hop).values()) == 65536


def test_a_cost_file_keeps_the_runner_terms_apart_and_an_old_one_reads_as_before():
    bare = RuntimeCost.asymmetric(sender=(0.2, 1e-6), receiver=(0.1, 1e-6))
    assert "runner_sender_frame_ms" not in bare.to_dict()  # what it always wrote
    assert runtime_cost_from_dict(bare.to_dict()) == bare
    sample = RunnerSample(4096, 0.5, 0.9, 0.4)
    folded = with_runner_terms(bare, [sample])
    again = runtime_cost_from_dict(folded.to_dict())
    assert again.runner_sender_frame_ms == folded.runner_sender_frame_ms > 0
    assert again.sender_ms(4096) == pytest.approx(folded.sender_ms(4096))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_real_runners_stream_to_the_end_and_report_their_cpu():
    samples = measure_runner_frames([4096, 1 << 20], frames=60, evict_bytes=EVICT_BYTES)
    assert [s.payload_bytes for s in samples] == [4096, 1 << 20]
    for s in samples:
        assert s.source_ms > 0 and s.stage_runtime_ms > 0 and s.sink_ms > 0, s
    # moving 256 times the bytes costs each runner more CPU per frame (copies, decode, TCP:
    # 0.2 against 0.9 ms for the stage here)
    small, large = samples
    assert large.stage_runtime_ms > small.stage_runtime_ms
    assert large.source_ms > small.source_ms and large.sink_ms > small.sink_ms


@pytest.mark.parametrize(("files", "expected"), [
    ({"index0": ("1", "Data", "32K"), "index1": ("2", "Unified", "1M")}, 1 << 20),
    ({"index0": ("1", "Data", "48K"), "index1": ("1", "Instruction", "64K"),
      "index2": ("3", "Unified", "")}, 48 << 10),  # an empty size is skipped
    ({"index0": ("1", "Data", "32K"), "index3": ("3", "Unified", None)}, 32 << 10),
    ({}, None),
])
def test_the_last_level_cache_is_read_from_sysfs_or_none(tmp_path, files, expected):
    for index, (level, kind, size) in files.items():
        (tmp_path / index).mkdir()
        (tmp_path / index / "level").write_text(f"{level}\n")
        (tmp_path / index / "type").write_text(f"{kind}\n")
        if size is not None:  # a missing file: that index is skipped
            (tmp_path / index / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(tmp_path) == expected


def test_the_stand_in_sweeps_past_the_llc_within_bounds(monkeypatch):
    from hwsched.runtime import runnercost

    for llc, expected in ((None, EVICT_BYTES), (512 << 10, EVICT_BYTES),
                          (32 << 20, 64 << 20), (1 << 30, MAX_EVICT_BYTES)):
        monkeypatch.setattr(runnercost, "last_level_cache_bytes", lambda llc=llc: llc)
        assert default_evict_bytes() == expected


@settings(max_examples=25, deadline=None)
@given(channels=st.integers(1, 64), side=st.integers(4, 96), layers=st.integers(1, 4),
       llc_mib=st.sampled_from([None, 1, 32]))
def test_a_models_sweep_is_its_weights_and_tensors_within_the_default(channels, side, layers,
                                                                       llc_mib):
    """The stand-in for a model sweeps what its pass streams, counted here by hand from the
    Keras-free IR (every layer's float32 output and its parameters), never beyond the default
    (twice the last-level cache)."""
    from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
    from hwsched.runtime import runnercost
    from hwsched.runtime.runnercost import model_evict_bytes

    def tensor(name: str) -> Tensor:
        return Tensor(name, name, (1, side, side, channels), "float32")

    built = [Layer("x", OpKind.INPUT, (), (tensor("x"),))]
    for k in range(layers):
        built.append(Layer(f"c{k}", OpKind.CONV2D, (built[-1].name,), (tensor(f"c{k}"),),
                           params=9 * channels * channels + channels))
    graph = LayerGraph("g", tuple(built), outputs=(built[-1].name,))
    by_hand = (layers + 1) * side * side * channels * 4 + layers * (9 * channels ** 2
                                                                     + channels) * 4
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runnercost, "last_level_cache_bytes",
                      lambda: None if llc_mib is None else llc_mib << 20)
        assert model_evict_bytes(graph) == min(by_hand, default_evict_bytes())
