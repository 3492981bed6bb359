"""Profiling: segment timings in the measured-profile schema, usable by the planner."""

from __future__ import annotations

import os

import pytest

from hwsched.costs.profile import parse_profile
from hwsched.errors import ProfileError
from hwsched.export.profiling import fp32_segments, profile_model
from hwsched.runtime.profile import segment_bounds, write_host_descriptor


@pytest.fixture(scope="module")
def loaded():
    from kerasmodels import residual_se_model

    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    graph, binding = read_keras_model(residual_se_model(), "res_se", source="test")
    return LoadedModel(graph=graph, source="test", kind="keras", keras=binding)


def test_bounds_are_single_tensor_cuts(loaded):
    graph = loaded.graph
    bounds = segment_bounds(graph, 3)
    assert bounds[0] == 0 and bounds[-1] == len(graph) and bounds == sorted(set(bounds))
    from hwsched.cuts import crossing_at

    assert all(len(crossing_at(graph, b)) == 1 for b in bounds[1:-1])
    with pytest.raises(ProfileError, match="segments"):
        segment_bounds(graph, 0)


def test_profile_feeds_the_planner(loaded, tmp_path):
    from hwsched.schedule import rank_splits

    messages = []
    data = profile_model(loaded, segments=3, runs=5, warmup=1, progress=messages.append)
    profile = parse_profile(data, "test")  # the schema of hwsched.costs.profile
    spans = profile.segment_positions(loaded.graph)
    assert spans[0][0] == 0 and spans[-1][1] == len(loaded.graph) - 1
    assert all(ms > 0 for _, _, ms in spans)
    assert any("timing" in m for m in messages)
    assert data["whole_latency_ms"] > 0  # measured in one invocation
    assert data["invoke_overhead_ms"] == pytest.approx(max(
        (data["total_latency_ms"] - data["whole_latency_ms"]) / (len(data["segments"]) - 1), 0.0))
    # two cores of this machine: two platform names (the planner wants them distinct)
    names = ("host_a", "host_b")
    descriptors = [str(write_host_descriptor(n, tmp_path / f"{n}.yaml")) for n in names]
    profiles = [parse_profile({**data, "platform": n}, n) for n in names]
    ranked = rank_splits(loaded.graph, descriptors, "gige", profile=profiles)
    assert ranked.best is not None and ranked.best.throughput_ips > 0
    assert not any(ranked.estimated_layers.get(n) for n in names)  # every layer measured


def _cpu_seconds(pid: int) -> float:
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
def test_co_runners_load_the_other_cores_and_are_reaped(loaded, tmp_path):
    from waiting import wait_until

    from hwsched.runtime.profile import CoRunners

    content = fp32_segments(loaded, ())[0].tflite
    cpu = sorted(os.sched_getaffinity(0))[-1]
    runners = CoRunners([cpu], tmp_path, max_seconds=30)
    try:
        runners.load(content)
        pid = runners.children[0].pid
        assert os.sched_getaffinity(pid) == {cpu}
        before = _cpu_seconds(pid)
        # it computes back to back: CPU time keeps growing (a single invocation of this piece
        # takes milliseconds); how fast depends on the machine's load, so wait for it
        wait_until(lambda: _cpu_seconds(pid) - before > 0.3,
                   what="the co-runner to use 0.3 CPU-seconds")
        runners.load(content)  # switching segments answers again
    finally:
        runners.close()
    assert all(child.poll() is not None for child in runners.children)  # no orphans


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="co-running needs 2 CPUs")
def test_co_run_profile_is_marked_and_restores_affinity(loaded):
    before = os.sched_getaffinity(0)
    data = profile_model(loaded, segments=2, runs=5, warmup=1, co_run=True)
    assert data["co_run"] is True
    parse_profile(data, "test")  # the extra field keeps the schema valid
    assert os.sched_getaffinity(0) == before
    assert profile_model(loaded, segments=1, runs=3, warmup=1)["co_run"] is False


def test_loopback_hop_is_measured_into_a_link_descriptor(tmp_path):
    from hwsched.hardware import load_link
    from hwsched.runtime.hopcost import measure_hop_ms, write_loopback_link

    assert 0 < measure_hop_ms(4096, frames=10, warmup=2) < 1000
    link = load_link(write_loopback_link(tmp_path / "host_loopback.yaml"))
    assert link.name == "host_loopback" and link.bandwidth_bps > 0
    assert link.message_latency_ms >= 0


def test_profile_segments_are_exports_stages(loaded):
    """Profiling converts with export's builder: a segment is byte for byte the fp32 stage
    ``export`` builds for the same cuts (no second exporter to drift)."""
    from hwsched.export.api import build_stages
    from hwsched.export.cache import StageCache
    from hwsched.export.data import default_source
    from hwsched.export.stages import signature_names, slice_stages

    graph = loaded.graph
    bounds = segment_bounds(graph, 2)
    pieces = fp32_segments(loaded, bounds[1:-1], cache=False)
    slices = slice_stages(graph, bounds[1:-1])
    stages = build_stages(loaded, slices, ["fp32"] * len(slices),
                          signature_names(list(graph.tensors)), default_source(graph), 0,
                          StageCache(enabled=False), lambda _m: None)
    assert [(p.start, p.stop) for p in pieces] == [(s.start, s.end) for s in slices]
    assert [p.tflite for p in pieces] == stages


def test_the_whole_model_baseline_is_a_verified_one_stage_export(loaded, tmp_path):
    from hwsched.export import export, verify_plan_dir

    plan = export(loaded, ["rpi4"], tmp_path / "whole", precisions="fp32", cache=False,
                  samples=2)
    assert len(plan.stages) == 1 and plan.links == ()
    assert plan.stages[0].first_layer == loaded.graph.layers[1].name
    assert plan.verification is not None and plan.verification.passed
    assert verify_plan_dir(tmp_path / "whole").max_rel_diff <= 1e-4
