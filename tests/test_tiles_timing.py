"""The single-frame latency of a plan from timed stages, against closed forms derived here."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsched.costs.runtime import RuntimeCost
from hwsched.tiles.timing import frame_latency_ms

_ms = st.floats(0.0, 50.0)
_bytes = st.integers(0, 10**6)
_runtimes = st.builds(
    RuntimeCost.asymmetric,
    sender=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1e-5)),
    receiver=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1e-5)),
    wire=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1e-5)),
)


def _hop(runtime: RuntimeCost, payload: int) -> float:
    h = runtime.handoff(payload)
    return h.sender_ms + h.wire_ms + h.receiver_ms


@given(compute=st.lists(_ms, min_size=1, max_size=5), payloads=st.lists(_bytes, min_size=6,
                                                                         max_size=6),
       runtime=_runtimes, data=st.data())
def test_a_chain_costs_its_stages_and_every_hop_in_turn(compute, payloads, runtime, data):
    # any cores: in a chain every stage waits for the one before, so cores never matter
    cores = data.draw(st.lists(st.integers(0, 2), min_size=len(compute),
                               max_size=len(compute)))
    n = len(compute)
    edges = [(k, k + 1, payloads[k + 1]) for k in range(n - 1)]
    expected = (sum(compute) + _hop(runtime, payloads[0]) + _hop(runtime, payloads[-1])
                + sum(_hop(runtime, b) for _, _, b in edges))
    got = frame_latency_ms(list(zip(cores, compute, strict=True)), edges, {0: payloads[0]},
                           {n - 1: payloads[-1]}, runtime)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(times=st.tuples(_ms, _ms, _ms, _ms), sizes=st.tuples(*[_bytes] * 6), runtime=_runtimes)
def test_a_fork_join_over_two_cores_waits_for_the_later_tile_and_shares_the_root_core(
        times, sizes, runtime):
    scatter, tile0, tile1, gather = times
    source, to0, to1, from0, from1, sink = sizes
    s, r, w = runtime.sender_ms, runtime.receiver_ms, runtime.wire_ms
    # stage 0 scatter (core 0) sends tile 0 (core 0) first, then tile 1 (core 1)
    scatter_end = s(source) + w(source) + r(source) + scatter + s(to0) + s(to1)
    arrived_at_tile0 = scatter_end - s(to1) + w(to0)
    tile0_end = max(scatter_end, arrived_at_tile0) + r(to0) + tile0 + s(from0)
    tile1_sent = scatter_end + w(to1) + r(to1) + tile1 + s(from1)
    # the gather (core 0) starts when core 0 is free and both strips have arrived
    gather_start = max(tile0_end, tile0_end + w(from0), tile1_sent + w(from1))
    expected = gather_start + r(from0) + r(from1) + gather + s(sink) + w(sink) + r(sink)
    stages = [(0, scatter), (0, tile0), (1, tile1), (0, gather)]
    edges = [(0, 1, to0), (0, 2, to1), (1, 3, from0), (2, 3, from1)]
    got = frame_latency_ms(stages, edges, {0: source}, {3: sink}, runtime)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_two_stages_on_one_core_never_overlap():
    free = RuntimeCost(frame_ms=0.0, per_byte_ms=0.0)
    # two independent tiles after a scatter: on two cores they overlap, on one they add up
    edges = [(0, 1, 0), (0, 2, 0), (1, 3, 0), (2, 3, 0)]
    apart = frame_latency_ms([(0, 1.0), (0, 10.0), (1, 10.0), (0, 1.0)], edges, {}, {3: 0},
                             free)
    together = frame_latency_ms([(0, 1.0), (0, 10.0), (0, 10.0), (0, 1.0)], edges, {}, {3: 0},
                                free)
    assert (apart, together) == (12.0, 22.0)
