"""The measured cost of one more invocation (``Profile.invocation_overhead_ms``), which
``hwsched profile --descriptor`` writes as the descriptor's ``overhead.invoke_ms``: with it a
stage of every layer is priced at the whole model as it was timed (an independent measurement:
one invocation of the unsplit model), and every cut adds one invocation and one wake."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from irgraphs import dag_graph

from hwsched.costs.profile import Profile, Segment
from hwsched.hardware import load_platform
from hwsched.schedule.tables import build_platform_table

LAYERS = 8


@st.composite
def profiles(draw):
    """Segments over the layers of an 8-layer chain, their paced times, the whole model's
    time (below the settled pieces' sum plus one wake, by at most what keeps every settled
    segment above the overhead), and, sometimes, the back-to-back variants that give a wake."""
    cuts = sorted(draw(st.sets(st.integers(1, LAYERS - 1), min_size=1, max_size=LAYERS - 1)))
    bounds = [0, *cuts, LAYERS]
    times = [draw(st.floats(1.0, 20.0)) for _ in bounds[1:]]
    paced = draw(st.booleans())
    excess = [draw(st.floats(0.0, 0.5)) for _ in times] if paced else None
    wake = min(excess) if excess else 0.0
    pieces = len(times)
    slack = (pieces - 1) * 0.9 * (min(times) - wake)
    # at most the settled pieces' sum plus one wake (the overhead is never negative)
    whole = sum(times) - (pieces - 1) * wake - draw(st.floats(0.0, 1.0)) * slack
    segments = tuple(Segment(f"n{a}", f"n{b - 1}", t, None if excess is None else t - e)
                     for a, b, t, e in zip(bounds[:-1], bounds[1:], times,
                                           excess or [0.0] * pieces, strict=True))
    return Profile("dag", "host", segments, whole_latency_ms=whole,
                   whole_back_to_back_ms=None if excess is None else whole - wake), bounds


@settings(max_examples=60, deadline=None)
@given(profiles())
def test_one_stage_costs_the_whole_model_as_timed_and_each_cut_one_invocation(drawn):
    profile, bounds = drawn
    graph = dag_graph([[]] + [[i] for i in range(LAYERS - 1)])
    overhead = profile.invocation_overhead_ms
    platform = dataclasses.replace(load_platform("rpi4"), name="host",
                                   invoke_overhead_ms=overhead)
    table = build_platform_table(graph, platform, "fp32", latency_model="measured",
                                 profile=profile)
    wake = profile.wake_ms or 0.0
    assert table.stage(0, LAYERS).latency_ms == pytest.approx(profile.whole_latency_ms)
    for cut in bounds[1:-1]:
        split = table.stage(0, cut).latency_ms + table.stage(cut, LAYERS).latency_ms
        assert split == pytest.approx(profile.whole_latency_ms + overhead + wake)


def test_no_whole_model_or_one_piece_means_no_measured_overhead():
    one = (Segment("a", "b", 3.0),)
    assert Profile("m", "host", one, whole_latency_ms=2.0).invocation_overhead_ms is None
    two = (*one, Segment("c", "d", 1.0))
    assert Profile("m", "host", two).invocation_overhead_ms is None
    # pieces that sum to less than the whole model: no negative overhead
    assert Profile("m", "host", two, whole_latency_ms=5.0).invocation_overhead_ms == 0.0

