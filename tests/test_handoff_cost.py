"""The hand-off cost model (hwsched.costs.runtime), its measurement (hwsched.runtime.hopcost)
and the runner's memory reuse that removed most of it (hwsched.runtime.process)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.costs.runtime import (
    HandoffCost,
    RuntimeCost,
    handoff_cost,
    load_runtime_cost,
    runtime_cost_from_dict,
)
from hwsched.deployment import Quantization, TensorSpec
from hwsched.errors import ProfileError
from hwsched.handoff import INT_RANGES, apply_handoff, dequantize, handoff, quantize
from hwsched.runtime.hopcost import HopSample, fit_line, runtime_cost_from_samples
from hwsched.schedule import evaluate, rank_splits
from hwsched.schedule.refine import boundary_bytes, with_runtime_cost
from hwsched.schedule.synthetic import synthetic_graph

terms = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
per_byte = st.floats(min_value=0.0, max_value=1e-5, allow_nan=False)
payloads = st.integers(min_value=0, max_value=1 << 24)


@st.composite
def costs(draw) -> RuntimeCost:
    return RuntimeCost.asymmetric(sender=(draw(terms), draw(per_byte)),
                                  receiver=(draw(terms), draw(per_byte)),
                                  wire=(draw(terms), draw(per_byte)))


@given(costs(), payloads, payloads)
def test_each_part_grows_with_the_bytes(cost, a, b):
    small, large = handoff_cost(min(a, b), cost), handoff_cost(max(a, b), cost)
    assert small.sender_ms <= large.sender_ms
    assert small.receiver_ms <= large.receiver_ms
    assert small.wire_ms <= large.wire_ms
    assert small.latency_ms <= large.latency_ms


@given(costs())
def test_a_hop_of_no_bytes_costs_the_per_frame_terms_only(cost):
    assert handoff_cost(0, cost) == HandoffCost(cost.sender_frame_ms, cost.receiver_frame_ms,
                                                cost.wire_frame_ms)


@given(costs(), payloads)
def test_latency_is_the_whole_hop(cost, size):
    h = handoff_cost(size, cost)
    assert h.latency_ms == pytest.approx(h.sender_ms + h.wire_ms + h.receiver_ms)


def test_negative_bytes_are_refused():
    with pytest.raises(ProfileError, match="-1 bytes"):
        handoff_cost(-1, RuntimeCost(frame_ms=0.1, per_byte_ms=0.0))


def _hops_by_core(sizes: list[int], cost: RuntimeCost) -> list[float]:
    """Brute force: hop j carries sizes[j] from core j-1 to core j; the source (before core 0)
    runs on core 0 and the sink (after the last core) on the last core. Each hop's sending end
    is charged to the core it leaves, its receiving end to the core it enters."""
    n = len(sizes) - 1
    charged = [0.0] * n
    for j, size in enumerate(sizes):
        leaves, enters = max(j - 1, 0), min(j, n - 1)
        charged[leaves] += cost.sender_ms(size)
        charged[enters] += cost.receiver_ms(size)
    return charged


@settings(max_examples=25, deadline=None)
@given(costs(), st.integers(min_value=2, max_value=4), st.integers(min_value=0, max_value=99))
def test_a_chain_charges_each_hop_to_both_cores_it_touches(cost, boards, seed):
    graph = synthetic_graph(12, seed=seed)
    platforms = ["rpi4", "rpi5", "jetson_nano", "rpi4"][:boards]
    candidate = rank_splits(graph, platforms, "gige", top=1, stages=boards).candidates[0]
    charged = with_runtime_cost(graph, candidate, cost)
    expected = [s.cost.latency_ms + extra for s, extra in
                zip(candidate.stages, _hops_by_core(boundary_bytes(graph, candidate), cost),
                    strict=True)]
    assert [s.cost.latency_ms for s in charged.stages] == pytest.approx(expected)
    links = [link.latency_ms for link in candidate.links]
    assert charged.period_ms == pytest.approx(max([*expected, *links]))
    sizes = boundary_bytes(graph, candidate)
    ends = cost.wire_ms(sizes[0]) + cost.wire_ms(sizes[-1])  # the source's and sink's hops
    assert charged.latency_ms == pytest.approx(sum(expected) + sum(links) + ends)


@settings(max_examples=10, deadline=None)
@given(costs(), st.integers(min_value=0, max_value=99))
def test_a_charged_two_board_ranking_is_the_brute_force_order(cost, seed):
    graph = synthetic_graph(10, seed=seed)
    ranking = rank_splits(graph, ["rpi4", "rpi5"], "gige", runtime=cost)

    def period(cuts):
        candidate = evaluate(graph, ["rpi4", "rpi5"], "gige", cuts)
        shares = _hops_by_core(boundary_bytes(graph, candidate), cost)
        return max([s.cost.latency_ms + e for s, e in zip(candidate.stages, shares, strict=True)]
                   + [link.latency_ms for link in candidate.links])

    best = min(period((cut,)) for cut in range(1, len(graph)))
    assert ranking.candidates[0].period_ms == pytest.approx(best)
    assert [c.rank for c in ranking.candidates] == list(range(1, len(ranking.candidates) + 1))
    single = min(b.period_ms for b in ranking.baselines)
    assert ranking.speedup == pytest.approx(single / best)


def test_a_slow_sending_end_loads_the_sending_core():
    """The same per-byte cost on one end or the other loads different cores by exactly the
    bytes of the cut (the source's and the sink's hops keep both ends on one core)."""
    graph = synthetic_graph(12, seed=1)
    candidate = rank_splits(graph, ["rpi4", "rpi5"], "gige", top=1).candidates[0]
    sending = RuntimeCost.asymmetric(sender=(0.0, 1e-5), receiver=(0.0, 0.0))
    receiving = RuntimeCost.asymmetric(sender=(0.0, 0.0), receiver=(0.0, 1e-5))
    head, tail = zip(*([s.cost.latency_ms for s in with_runtime_cost(graph, candidate, c).stages]
                       for c in (sending, receiving)), strict=True)
    moved = candidate.links[0].transfer_bytes * 1e-5
    assert moved > 0
    assert head[0] - head[1] == pytest.approx(moved)
    assert tail[1] - tail[0] == pytest.approx(moved)


def test_a_cost_reads_back_what_it_wrote(tmp_path):
    cost = RuntimeCost.asymmetric(sender=(0.1, 2e-6), receiver=(0.05, 1e-6), wire=(0.2, 3e-7),
                                  source="test")
    path = tmp_path / "runtime_cost.json"
    path.write_text(json.dumps(cost.to_dict()))
    assert load_runtime_cost(path) == cost


def test_an_older_symmetric_cost_charges_both_ends_alike():
    cost = runtime_cost_from_dict({"frame_ms": 0.1, "per_byte_ms": 1e-6})
    h = handoff_cost(1000, cost)
    assert h.sender_ms == h.receiver_ms == pytest.approx(0.101) and h.wire_ms == 0.0


def test_a_bad_field_is_named():
    with pytest.raises(ProfileError, match="'receiver_per_byte_ms' must be a number >= 0"):
        runtime_cost_from_dict({"frame_ms": 0.1, "per_byte_ms": 0.0, "receiver_per_byte_ms": -1})
    with pytest.raises(ProfileError, match="'frame_ms' must be a number >= 0, got None"):
        runtime_cost_from_dict({"per_byte_ms": 0.0})


@given(st.floats(min_value=0, max_value=10), st.floats(min_value=0, max_value=1e-3),
       st.lists(st.integers(min_value=0, max_value=1 << 22), min_size=2, max_size=6, unique=True))
def test_a_line_through_exact_points_is_recovered(intercept, slope, xs):
    got = fit_line([(x, intercept + slope * x) for x in xs])
    assert got == pytest.approx((intercept, slope), rel=1e-6, abs=1e-9)


def test_samples_fit_each_end_and_the_wire_apart():
    samples = [HopSample(b, 0.1 + b * 2e-6, 0.05 + b * 1e-6, 0.4 + b * 3.5e-6)
               for b in (1000, 100_000, 1_000_000)]
    cost = runtime_cost_from_samples(samples)
    assert (cost.sender_frame_ms, cost.sender_per_byte_ms) == pytest.approx((0.1, 2e-6))
    assert (cost.receiver_frame_ms, cost.receiver_per_byte_ms) == pytest.approx((0.05, 1e-6))
    assert (cost.wire_frame_ms, cost.wire_per_byte_ms) == pytest.approx((0.25, 5e-7))


def test_the_hop_is_measured_on_two_cores_into_a_sane_fit():
    from hwsched.runtime.hopcost import measure_hop_ends

    samples = measure_hop_ends([4096, 65536], frames=5, repeats=2)
    assert [s.payload_bytes for s in samples] == [4096, 65536]
    assert all(s.sender_ms > 0 and s.receiver_ms > 0 and s.wall_ms > 0 for s in samples)
    cost = runtime_cost_from_samples(samples)
    assert cost.sender_ms(65536) > 0 and cost.receiver_ms(65536) > 0
    assert "two processes on two cores" in cost.source


FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import encode_data
from hwsched.runtime.process import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
spec = {"x": TensorSpec("x", (1, 878080 // 4), "float32")}
tensor = np.ones(spec["x"].shape, np.float32)
for seq in range(5):
    encode_data(seq, 0.0, {"x": tensor.copy()}, spec)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for seq in range(20):
    encode_data(seq, 0.0, {"x": tensor.copy()}, spec)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_frame(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, mode], capture_output=True,
                          text=True, check=True, timeout=120)
    return float(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_runner_reuses_its_frame_buffers_instead_of_faulting_new_pages():
    """A 878 KB frame's buffers (the output copy, the tensor bytes, the frame) came from a
    fresh mmap every frame: ~215 page faults each. With keep_freed_memory, which every runner
    process calls first, they are reused."""
    page_bytes = 4096
    fresh_pages = 878080 / page_bytes
    assert _faults_per_frame("default") > fresh_pages  # the defect, on this libc
    assert _faults_per_frame("keep") < fresh_pages / 10


def test_the_runner_reuses_memory_before_it_loads_anything(monkeypatch, tmp_path):
    from hwsched.runtime import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    status = cli.main([str(tmp_path / "no-plan"), "--stage", "0", "--listen",
                       "tcp://127.0.0.1:0", "--next", "tcp://127.0.0.1:5999"])
    assert status == 2 and calls == [True]


# -- the hand-off conversion, made cheaper: the same results as the formulas it replaced -------
def _quantize_formula(values, q, dtype):
    low, high = INT_RANGES[dtype]
    scaled = np.asarray(values, dtype=np.float64) / q.scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + q.zero_point, low, high).astype(dtype)


scales = st.floats(min_value=1e-4, max_value=10.0, allow_nan=False)
zero_points = st.integers(min_value=-128, max_value=127)


@given(st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=1,
                max_size=64), scales, zero_points, st.sampled_from(["int8", "uint8", "int16"]))
def test_quantize_rounds_exactly_as_the_formula(values, scale, zero_point, dtype):
    q = Quantization(scale, zero_point)
    halves = np.asarray(values) * 0 + np.round(np.asarray(values)) + 0.5  # ties both ways
    for x in (np.asarray(values, np.float32), halves * scale, -halves * scale):
        assert np.array_equal(quantize(x, q, dtype), _quantize_formula(x, q, dtype))


@given(scales, zero_points, scales, zero_points, st.sampled_from(["int8", "uint8"]))
def test_requantize_maps_every_code_as_the_formula(s1, z1, s2, z2, dtype):
    a = TensorSpec("t", (2, 128), dtype, Quantization(s1, z1))
    b = TensorSpec("t", (2, 128), dtype, Quantization(s2, z2))
    step = handoff(a, b)
    codes = np.arange(256, dtype=np.uint8).view(dtype).reshape(2, 128)
    expected = _quantize_formula(dequantize(codes, a.quantization), b.quantization, dtype)
    assert step.action in ("requantize", "none")
    if step.action == "requantize":
        assert np.array_equal(apply_handoff(codes, step, dtype), expected)
        assert np.array_equal(apply_handoff(codes[:, ::3], step, dtype), expected[:, ::3])


def test_analyze_charges_a_measured_hop_cost_and_refuses_a_bad_file(tmp_path, capsys):
    from hwsched.cli import main

    cost = RuntimeCost.asymmetric(sender=(0.2, 4e-6), receiver=(0.1, 2e-6), source="test")
    path = tmp_path / "hop.json"
    path.write_text(json.dumps(cost.to_dict()))
    out = tmp_path / "a.json"
    common = ["analyze", "digits_cnn", "--platforms", "rpi4,rpi5", "--no-report"]
    assert main([*common, "--json", str(tmp_path / "plain.json")]) == 0
    assert main([*common, "--runtime-cost", str(path), "--json", str(out)]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    charged = json.loads(out.read_text())
    by_cuts = {tuple(c["cut_positions"]): c for c in plain["candidates"]}
    for row in charged["candidates"][:3]:
        before = by_cuts[tuple(row["cut_positions"])]
        extra = [a["latency_ms"] - b["latency_ms"] for a, b in zip(row["stages"],
                                                                   before["stages"], strict=True)]
        assert all(e > 0 for e in extra)  # both cores of the hop pay their share
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"frame_ms": "fast", "per_byte_ms": 0}))
    capsys.readouterr()
    assert main([*common, "--runtime-cost", str(bad)]) == 2
    assert "'frame_ms' must be a number" in capsys.readouterr().err


def test_profile_measures_the_hop_cost_into_a_file_analyze_reads(tmp_path, capsys):
    from hwsched.cli import main

    hop = tmp_path / "hop.json"
    argv = ["profile", "digits_cnn", "--segments", "1", "--runs", "2", "--warmup", "0",
            "--out", str(tmp_path / "p.json"), "--hop-cost", str(hop)]
    assert main(argv) == 0
    cost = load_runtime_cost(hop)
    assert cost.sender_ms(1 << 20) > 0 and cost.receiver_ms(1 << 20) > 0
    assert "hand-off per frame" in capsys.readouterr().out


def test_profile_refuses_an_unwritable_hop_cost_file_before_profiling(tmp_path, capsys):
    from hwsched.cli import main

    target = tmp_path / "a-directory"
    target.mkdir()
    assert main(["profile", "digits_cnn", "--hop-cost", str(target)]) == 2
    assert "--hop-cost" in capsys.readouterr().err


def test_a_burst_of_acknowledgements_larger_than_the_hwm_arrives_whole():
    """A window of 32 frames acknowledged at once: the receiving ROUTER used the data's
    high-water mark (8) for its acknowledgements too, and ZeroMQ dropped all but 8 of them
    (each dropped one costs its frame a resend a second later; `emulate --window 32` resent
    26–70 frames of 200). Nothing is resent here, so a lost acknowledgement never arrives."""
    from hwsched.runtime.frames import encode_data
    from hwsched.runtime.reliable import Receiver, Sender
    from hwsched.runtime.transport import open_channel

    frames = 32
    specs = {"x": TensorSpec("x", (1, 4), "float32")}
    inbound = open_channel("tcp://127.0.0.1:0", listen=True, specs=specs)
    outbound = open_channel(inbound.bound_url, listen=False, specs=specs)
    try:
        # no resend within the test, however slow the machine: only first sends count
        sender = Sender(outbound, window=frames, resend_after_s=3600.0)
        receiver = Receiver(inbound, specs, window=frames)
        tensor = np.zeros((1, 4), np.float32)
        for seq in range(frames):
            sender.send(seq, encode_data(seq, 0.0, {"x": tensor}, specs))
        received = _until(lambda got: len(got) == frames, receiver.messages,
                          [inbound], sender.service)
        for message in received:
            receiver.done(message.seq)  # one burst of 32 acknowledgements
        acked = _until(lambda got: len(got) == frames, sender.acks, [outbound])
        assert sorted(acked) == list(range(frames)) and sender.counters.resent == 0
    finally:
        outbound.close()
        inbound.close()


def _until(done, take, channels, service=lambda: None, timeout_s: float = 20.0) -> list:
    import time

    from hwsched.runtime.transport import wait_readable

    got: list = []
    limit = time.monotonic() + timeout_s
    while not done(got) and time.monotonic() < limit:
        service()
        wait_readable(channels, 0.05)
        got += take()
    return got
