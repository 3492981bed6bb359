"""A tile board priced from a profile is anchored to the whole model's own timing: segments
timed one by one each pay their own invocation (and, paced, their own cold start), so summed
they cost more than one invocation of all of them (ResNet-50 on the EPYC VM: 167.5 ms against
123.1 ms whole), while a tile is one invocation of many layers. Oracle: the whole model timed
in one invocation, which a one-stage board must reproduce exactly, and hand arithmetic on the
co-run times."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.profile import Profile, Segment
from hwsched.hardware import load_platform
from hwsched.ir import LayerGraph, OpKind
from hwsched.tiles.planning import boards_from_platforms, whole_model_scale
from tests.test_tiles_planning import _Builder


def _stack(layers: int) -> LayerGraph:
    b = _Builder(16, 16, channels=8)
    for _ in range(layers):
        b.window(OpKind.CONV2D, 3, 1, "same")
    return b.graph()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), layers=st.integers(2, 5), variants=st.booleans())
def test_one_invocation_of_the_whole_model_costs_what_was_timed(data, layers, variants):
    graph = _stack(layers)
    names = [layer.name for layer in graph.layers if layer.op is not OpKind.INPUT]
    n = len(names)  # the convolutions, then a pooling and a dense layer: one segment each
    paced = data.draw(st.lists(st.floats(2.0, 50.0), min_size=n, max_size=n))
    co_run = data.draw(st.lists(st.floats(1.0, 1.5), min_size=n, max_size=n))
    wake = data.draw(st.floats(0.0, 1.0)) if variants else None
    whole = sum(paced) * data.draw(st.floats(0.6, 1.1))  # noise may put it above the sum
    w = wake or 0.0
    segments = tuple(Segment(n, n, ms, None if wake is None else ms - w, ms * f)
                     for n, ms, f in zip(names, paced, co_run, strict=True))
    profile = Profile(graph.name, "rpi4", segments, gap_ms=50.0, whole_latency_ms=whole,
                      whole_back_to_back_ms=None if wake is None else whole - w)
    rpi4 = load_platform("rpi4")
    io = rpi4.invoke_overhead_ms
    (alone,) = boards_from_platforms(graph, [rpi4], "fp32", profiles=[profile])
    assert alone.overhead_ms + sum(alone.layer_ms) == pytest.approx(whole, rel=1e-9)
    # co-run: each segment's co-run time, settled the same way, scaled by the same factor
    scale = (whole - w - io) / sum(ms - w - io for ms in paced)
    assert whole_model_scale(graph, rpi4, "fp32", profile) == pytest.approx(scale, rel=1e-9)
    (together,) = boards_from_platforms(graph, [rpi4], "fp32", profiles=[profile], co_run=True)
    assert sum(together.layer_ms) == pytest.approx(
        scale * sum(ms * f - w - io for ms, f in zip(paced, co_run, strict=True)), rel=1e-9)


def test_without_the_whole_model_or_with_one_segment_the_segments_stand():
    graph = _stack(2)
    rpi4 = load_platform("rpi4")
    names = [layer.name for layer in graph.layers if layer.op is not OpKind.INPUT]
    two = (Segment(names[0], names[1], 4.0), Segment(names[2], names[-1], 6.0))
    assert whole_model_scale(graph, rpi4, "fp32", Profile(graph.name, "rpi4", two)) == 1.0
    one = Profile(graph.name, "rpi4", (Segment(names[0], names[-1], 10.0),),
                  whole_latency_ms=7.0)
    assert whole_model_scale(graph, rpi4, "fp32", one) == 1.0
    (board,) = boards_from_platforms(graph, [rpi4], "fp32",
                                     profiles=[Profile(graph.name, "rpi4", two)])
    assert board.overhead_ms + sum(board.layer_ms) == pytest.approx(
        10.0 - rpi4.invoke_overhead_ms)  # each segment's invocation less, one added
