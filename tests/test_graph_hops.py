"""A hop measured as a one-frame-at-a-time pipeline meets it (``hopcost`` with a gap between
frames), and the breakdown of a frame's latency the placement bench reads from a kept run."""

from __future__ import annotations

import json

import pytest

from hwsched.runtime.hopcost import HopSample, main, measure_hop_ends


def test_a_paced_hop_measures_each_frames_one_way_trip_within_its_acknowledged_round():
    samples = measure_hop_ends([4096, 65536], frames=6, repeats=1, gap_s=0.01)
    for sample in samples:
        assert sample.one_way_ms is not None and sample.one_way_ms > 0
        # each frame's one-way trip (encode .. decoded) lies inside its acknowledged round,
        # so the medians keep that order
        assert sample.one_way_ms <= sample.wall_ms
        assert sample.wire_ms == max(
            sample.one_way_ms - sample.sender_ms - sample.receiver_ms, 0.0)


def test_a_back_to_back_hop_keeps_its_round_as_the_wire_basis():
    sample = HopSample(4096, sender_ms=0.1, receiver_ms=0.1, wall_ms=0.5)
    assert sample.one_way_ms is None and sample.wire_ms == pytest.approx(0.3)


@pytest.mark.parametrize("gap", ["-1", "nan", "inf", "soon"])
def test_a_bad_gap_is_one_line_and_exit_2(gap, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--gap-ms", gap])
    assert stop.value.code == 2
    assert "--gap-ms" in capsys.readouterr().err


def test_the_bench_breakdown_reads_where_each_frames_time_went(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_placement.py"
    spec = importlib.util.spec_from_file_location("bench_placement", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    events = [  # frame 0 is warm-up; stage 1 joins parts from stages 0 and 2
        {"frame": 0, "stage": 1, "start_s": 0.0, "end_s": 1.0, "sent_s": 1.0,
         "read_s": {"0": 0.0}, "wire_s": {"0": 0.0}},
        {"frame": 1, "stage": 1, "start_s": 10.0, "end_s": 10.008, "sent_s": 10.009,
         "read_s": {"0": 9.998, "2": 9.999}, "wire_s": {"0": 9.997, "2": 9.996}},
    ]
    (tmp_path / "events1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "events.jsonl").write_text("not read: the merged file\n")
    got = bench.latency_breakdown(tmp_path, warmup=1)
    assert got == pytest.approx({"edge 0->1": 1.0, "edge 2->1": 3.0, "stage 1 compute": 8.0,
                                 "stage 1 fan-out": 1.0, "stage 1 join wait": 1.0}, abs=1e-6)


def test_encoding_a_frame_copies_its_tensor_once():
    import tracemalloc

    import numpy as np

    from hwsched.deployment import TensorSpec
    from hwsched.runtime.frames import decode_message, encode_data

    tensor = np.random.default_rng(0).random((1, 256, 256, 8), dtype=np.float32)
    specs = {"x": TensorSpec("x", tensor.shape, "float32")}
    tracemalloc.start()
    try:
        parts = encode_data(3, 1.0, {"x": tensor}, specs)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_bytes < 1.5 * tensor.nbytes  # the frame itself, no intermediate copy
    np.testing.assert_array_equal(decode_message(parts, specs).tensors["x"], tensor)


def test_a_paced_cost_takes_the_cores_shares_back_to_back_and_the_wire_from_the_trip(capsys):
    assert main(["--sizes", "4096,65536", "--frames", "4", "--repeats", "1",
                 "--gap-ms", "5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for sample in printed["samples"]:
        assert sample["one_way_ms"] > 0
        assert sample["wire_ms"] == pytest.approx(max(
            sample["one_way_ms"] - sample["sender_ms"] - sample["receiver_ms"], 0.0))
    assert printed["runtime_cost"]["wire_frame_ms"] >= 0
