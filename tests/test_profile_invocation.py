"""The measured cost of one more invocation (``Profile.invocation_overhead_ms``), which
``hwsched profile --descriptor`` writes as the descriptor's ``overhead.invoke_ms``: with it a
stage of every layer is priced at the whole model as it was timed (an independent measurement:
one invocation of the unsplit model) whenever any price can be, and every cut adds one
invocation and one wake."""

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
    """Pieces over the layers of an 8-layer chain (a one-layer piece sometimes timed as a
    layer, not a segment), their paced times, any whole-model time from 0.3x their sum to
    their sum, and, sometimes, the back-to-back variants that give a wake."""
    cuts = sorted(draw(st.sets(st.integers(1, LAYERS - 1), min_size=1, max_size=LAYERS - 1)))
    spans = list(zip([0, *cuts], [*cuts, LAYERS], strict=True))
    times = [draw(st.floats(1.0, 20.0)) for _ in spans]
    as_layer = [b - a == 1 and draw(st.booleans()) for a, b in spans]
    paced = draw(st.booleans())
    excess = [draw(st.floats(0.0, 0.5)) for _ in spans] if paced else [None] * len(spans)
    segments = tuple(Segment(f"n{a}", f"n{b - 1}", t, None if e is None else t - e)
                     for (a, b), t, e, layer in zip(spans, times, excess, as_layer, strict=True)
                     if not layer)
    layers = tuple((f"n{a}", t) for (a, _), t, layer in zip(spans, times, as_layer, strict=True)
                   if layer)
    wake = min((e for e, layer in zip(excess, as_layer, strict=True) if not layer),
               default=None) if paced else None
    whole = draw(st.floats(0.3, 1.0)) * sum(times)
    return Profile("dag", "host", segments, layers, whole_latency_ms=whole,
                   whole_back_to_back_ms=None if wake is None else whole - wake), spans


@settings(max_examples=100, deadline=None)
@given(profiles())
def test_one_stage_costs_the_whole_model_as_timed_and_each_cut_one_invocation(drawn):
    profile, spans = drawn
    graph = dag_graph([[]] + [[i] for i in range(LAYERS - 1)])
    overhead = profile.invocation_overhead_ms
    platform = dataclasses.replace(load_platform("rpi4"), name="host",
                                   invoke_overhead_ms=overhead)
    table = build_platform_table(graph, platform, "fp32", latency_model="measured",
                                 profile=profile)
    wake = profile.wake_ms or 0.0
    # the oracle: the whole model as timed, unless no overhead can make the pieces cost it
    # (the longest piece alone outlasts it, or all of them together fall short of it)
    pieces = [s.latency_ms - wake for s in profile.segments]
    pieces += [ms - wake for _, ms in profile.layers]
    whole = profile.whole_latency_ms - wake
    expected = min(max(whole, max(pieces)), sum(pieces)) + wake
    one = table.stage(0, LAYERS).latency_ms
    assert one == pytest.approx(expected)
    if max(pieces) <= whole <= sum(pieces):
        assert one == pytest.approx(profile.whole_latency_ms)
    for _, cut in spans[:-1]:
        split = table.stage(0, cut).latency_ms + table.stage(cut, LAYERS).latency_ms
        assert split == pytest.approx(one + overhead + wake)


def test_no_whole_model_or_one_piece_means_no_measured_overhead():
    one = (Segment("a", "b", 3.0),)
    assert Profile("m", "host", one, whole_latency_ms=2.0).invocation_overhead_ms is None
    two = (*one, Segment("c", "d", 1.0))
    assert Profile("m", "host", two).invocation_overhead_ms is None
    # pieces that sum to less than the whole model: no negative overhead
    assert Profile("m", "host", two, whole_latency_ms=5.0).invocation_overhead_ms == 0.0
