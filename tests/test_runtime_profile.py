"""Profiling: segment timings in the measured-profile schema, usable by the planner."""

from __future__ import annotations

import pytest

from hwsched.costs.profile import parse_profile
from hwsched.errors import ProfileError
from hwsched.runtime.profile import profile_model, segment_bounds, write_host_descriptor


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
    from hwsched.schedule import plan

    messages = []
    data = profile_model(loaded, segments=3, runs=5, warmup=1, progress=messages.append)
    profile = parse_profile(data, "test")  # the schema of hwsched.costs.profile
    spans = profile.segment_positions(loaded.graph)
    assert spans[0][0] == 0 and spans[-1][1] == len(loaded.graph) - 1
    assert all(ms > 0 for _, _, ms in spans)
    assert any("timing" in m for m in messages)
    # two cores of this machine: two platform names (the planner wants them distinct)
    names = ("host_a", "host_b")
    descriptors = [str(write_host_descriptor(n, tmp_path / f"{n}.yaml")) for n in names]
    profiles = [parse_profile({**data, "platform": n}, n) for n in names]
    ranked = plan(loaded.graph, descriptors, "gige", profile=profiles)
    assert ranked.best is not None and ranked.best.throughput_ips > 0
    assert not any(ranked.estimated_layers.get(n) for n in names)  # every layer measured
