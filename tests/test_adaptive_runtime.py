"""Switching splits mid-stream (issue 11): an adaptive plan's frames run on the alternative the
source names, a switch loses, duplicates or reorders nothing, and every output still equals
the unsplit model's — also while a stage is killed and restarted, while the link is down, and
after the controller is killed. The controller's hysteresis is checked against a brute-force
reading of its definition."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from adaptive_plans import build_adaptive_plan, hop_bytes, with_large_first
from digitsplit import HWSCHED, command, line_count, unsplit_outputs, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.deployment import load_plan
from hwsched.errors import DocumentError, PlanError
from hwsched.runtime.controller import (
    AlternativeCost,
    Hold,
    Measured,
    best_alternative,
    decide,
    estimate_throughput_ips,
)
from hwsched.runtime.emulate import EmulationConfig, EmulationResult, emulate
from hwsched.runtime.frames import (
    FrameError,
    Report,
    decode_message,
    encode_data,
    encode_report,
    restamp,
)

#: Frames of the short runs; the scripted switches (frame, alternative) inside them.
FRAMES = 60
SWITCHES = ((20, 1), (40, 0))
#: Longest any one run may take on a loaded machine (a bound, never a measurement).
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def adaptive(tmp_path_factory) -> Path:
    return build_adaptive_plan(tmp_path_factory.mktemp("adaptive"))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return unsplit_outputs(300)


def _assert_whole_model(outputs: np.ndarray, reference: np.ndarray) -> None:
    np.testing.assert_allclose(outputs, reference[:len(outputs)], rtol=1e-4, atol=1e-5)


# -- the wire ------------------------------------------------------------------------------
def test_a_frame_is_checked_against_the_alternative_it_names(adaptive):
    from hwsched.runtime.controller import hop_specs_by_alternative

    by_alt = hop_specs_by_alternative(load_plan(adaptive), 1)
    arrays = {name: np.zeros(spec.shape, spec.dtype) for name, spec in by_alt[1].items()}
    wire = encode_data(5, 0.0, arrays, by_alt[1], alternative=1)
    assert decode_message(wire, {}, alternatives=by_alt).alternative == 1
    with pytest.raises(FrameError):  # alternative 0 sends other tensors across this hop
        decode_message(encode_data(5, 0.0, arrays, by_alt[1], alternative=0), {},
                       alternatives=by_alt)
    with pytest.raises(FrameError, match="alternative 7"):
        decode_message(encode_data(5, 0.0, arrays, by_alt[1], alternative=7), {},
                       alternatives=by_alt)


def test_report_and_send_stamp_round_trip():
    report = Report(stage=1, hop=1, bandwidth_mbps=12.5, busy_ms=None, alternative=1,
                    measured_s=100.0, bandwidth_at_least_mbps=30.0)
    (message,) = [decode_message(restamp(encode_report(3, report), 42.0), {})]
    assert (message.kind, message.report, message.sent_s) == ("report", report, 42.0)
    bad = encode_report(3, Report(1, 1, -1.0, None))[0]
    with pytest.raises(FrameError, match="not a measurement"):
        decode_message([bad], {})


# -- the controller's decision -------------------------------------------------------------
def test_throughput_estimate_scales_predictions_by_what_the_board_measured():
    small = AlternativeCost(0, (5,), (4.0, 1.0), {1: 1_000}, {1: None})
    large = AlternativeCost(1, (9,), (1.0, 4.0), {1: 125_000}, {1: None})
    # stage 1 measured at twice its prediction on alternative 0: 2 ms; on alternative 1 its
    # predicted 4 ms becomes 8 ms. Hop 1 at 1000 Mbit/s: 125 kB take 1 ms.
    measured = Measured({1: 1000.0}, {(0, 0): 4.0, (1, 0): 2.0})
    assert estimate_throughput_ips(small, measured, (small, large)) == pytest.approx(250.0)
    assert estimate_throughput_ips(large, measured, (small, large)) == pytest.approx(125.0)
    slow_link = Measured({1: 10.0}, measured.busy_ms)  # 125 kB at 10 Mbit/s: 100 ms
    assert estimate_throughput_ips(large, slow_link, (small, large)) == pytest.approx(10.0)


def test_a_lower_bound_on_bandwidth_defers_to_the_plan_until_the_link_saturates():
    planned = AlternativeCost(0, (9,), (4.0, 4.0), {1: 125_000}, {1: 1.0})  # 1 ms planned
    # only "at least 10 Mbit/s" known (an unsaturated link): the planned 1 ms, not 100 ms
    assert estimate_throughput_ips(planned, Measured({}, {}, {1: 10.0})) == pytest.approx(250.0)
    # at least 1000 Mbit/s: faster than planned, 1 ms → 0.5 ms (the stages bound it at 4 ms)
    assert estimate_throughput_ips(planned, Measured({}, {}, {1: 2000.0})) == pytest.approx(
        250.0)
    # measured saturated at 10 Mbit/s, no larger bound since: 100 ms
    assert estimate_throughput_ips(planned, Measured({1: 10.0}, {}, {1: 5.0})) == pytest.approx(
        10.0)
    # a larger bound came after that measurement: the link got better, back to the plan
    assert estimate_throughput_ips(planned, Measured({1: 10.0}, {}, {1: 50.0})) == pytest.approx(
        250.0)


def _reference_switches(observations, hold_s, margin):
    """Brute force over the history: switch at observation i to A when A was the best and beat
    the then-current split by the margin at every observation of a stretch ending at i,
    starting after the last switch, that spans at least ``hold_s``."""
    current, last, switches = 0, -1, []

    def qualifies(m, target):
        ips = observations[m][1]
        return best_alternative(ips) == target != current and (
            ips[target] > ips.get(current, 0.0) * (1 + margin))

    for i, (now_s, ips) in enumerate(observations):
        target = best_alternative(ips)
        if not qualifies(i, target):
            continue
        j = i
        while j - 1 > last and qualifies(j - 1, target):
            j -= 1
        if now_s - observations[j][0] >= hold_s:
            switches.append((i, target))
            current, last = target, i
    return switches


_throughputs = st.dictionaries(st.integers(0, 2), st.floats(1.0, 100.0), min_size=3,
                               max_size=3)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.0, 0.6), _throughputs), max_size=60),
       hold_s=st.floats(0.0, 2.0), margin=st.sampled_from([0.0, 0.1, 0.5]))
def test_hysteresis_switches_as_defined_and_at_most_once_per_hold_time(steps, hold_s, margin):
    observations, now_s = [], 0.0
    for dt, ips in steps:
        now_s += dt
        observations.append((now_s, ips))
    state, switches = Hold(0), []
    for i, (t, ips) in enumerate(observations):
        state, switch = decide(state, ips, t, hold_s, margin)
        if switch is not None:
            switches.append((i, switch))
    assert switches == _reference_switches(observations, hold_s, margin)
    times = [observations[i][0] for i, _ in switches]
    assert all(b - a >= hold_s for a, b in itertools.pairwise(times))


def test_a_flapping_link_switches_once_per_hold_time():
    """The bandwidth flips every 0.1 s for 10 s: the better split never holds for 1 s, so the
    controller never switches; a steady change switches once, after the hold."""
    state, switched = Hold(0), []
    for i in range(100):
        ips = {0: 30.0, 1: 10.0} if i % 2 else {0: 10.0, 1: 30.0}
        state, switch = decide(state, ips, i * 0.1, hold_s=1.0)
        switched += [switch] if switch is not None else []
    assert switched == []
    for i in range(100, 125):
        state, switch = decide(state, {0: 10.0, 1: 30.0}, i * 0.1, hold_s=1.0)
        switched += [(i, switch)] if switch is not None else []
    assert switched == [(110, 1)]


def test_the_controller_follows_a_switch_the_source_made_on_its_own():
    """After a scripted switch to 1 the controller reasons from 1: with 0 now faster by the
    margin it asks to go back (had it kept believing in 0, it would stay silent)."""
    from hwsched.runtime.controller import _Controller
    from hwsched.runtime.frames import KIND_SWITCH, encode_control

    costs = (AlternativeCost(0, (5,), (1.0, 1.0), {1: 1_000}, {1: None}),
             AlternativeCost(1, (9,), (5.0, 5.0), {1: 1_000}, {1: None}))
    controller = _Controller(costs, hold_s=0.0, margin=0.1)
    switched = decode_message(encode_control(KIND_SWITCH, 10, 0.0, alternative=1), {})
    assert controller.take(switched) == []
    assert controller.state.current == 1
    assert controller.observe([Report(0, 1, None, 1.0, alternative=1)], now_s=1.0) == 0


# -- the running pipeline ------------------------------------------------------------------
def test_forced_switches_lose_nothing_and_equal_the_whole_model(adaptive, reference, tmp_path):
    keep = tmp_path / "keep"
    result = emulate(adaptive, EmulationConfig(frames=FRAMES, data="digits", adapt=False,
                                               switch_at=SWITCHES, keep_dir=keep))
    assert (result.frames_sent, result.frames_delivered) == (FRAMES, FRAMES)
    assert (result.frames_duplicated, result.frames_out_of_order) == (0, 0)
    assert result.complete and result.in_order
    _assert_whole_model(result.outputs["classifier"], reference)
    plan = load_plan(adaptive)
    cuts = [alt.cut_positions for alt in plan.alternatives]
    assert [(s.at_frame, s.from_cut_positions, s.to_cut_positions) for s in result.switches] == [
        (20, cuts[0], cuts[1]), (40, cuts[1], cuts[0])]
    # the stages' own count: each ran 40 frames on one split and 20 on the other
    for k in range(2):
        stats = json.loads((keep / f"stage{k}.json").read_text())
        assert stats["frames_by_alternative"] == {"0": 40, "1": 20}
    events = [json.loads(line) for line in (keep / "events1.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in events if e["alternative"] == 1] == list(range(20, 40))
    document = json.loads(json.dumps(result.to_dict()))
    again = EmulationResult.from_dict(document)
    assert again.switches == result.switches and again.timeline == result.timeline
    document["switches"][1]["at_frame"] = "forty"  # the strict reader names the field
    with pytest.raises(DocumentError, match=r"switches\[1\]\.at_frame' must be an integer"):
        EmulationResult.from_dict(document, "run.json")


def test_a_stale_alternative_is_refused_before_streaming(adaptive, tmp_path):
    import shutil

    copy = tmp_path / "stale"
    shutil.copytree(adaptive, copy)
    alt_file = load_plan(copy).alternatives[1].plan.stages[1].file
    with (copy / alt_file).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(PlanError, match="sha256"):
        emulate(copy, EmulationConfig(frames=4, adapt=False))


@pytest.mark.parametrize(("args", "message"), [
    (["--switch-at", "5:9"], "switch at frame 5 to alternative 9: the plan has alternatives 0..1"),
    (["--switch-at", "abc"], "--switch-at 'abc': each entry is SEQ:ALT"),
])
def test_a_bad_switch_request_is_one_line_before_anything_runs(adaptive, args, message):
    from digitsplit import run

    result = run(HWSCHED, ["emulate", str(adaptive), "--frames", "5", *args])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def _spawn_emulate(plan: Path, scratch: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """``hwsched emulate`` with its work directory under ``scratch`` (through TMPDIR), so
    the test can follow the run's events and find its children."""
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    process = subprocess.Popen(command(HWSCHED, ["emulate", str(plan), *args]), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workdir = wait_for(lambda: next(scratch.glob("hwsched-emulate-*"), None), 120,
                       "the emulation's work directory")
    return process, workdir


def _finish(process: subprocess.Popen) -> str:
    try:
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    return stderr


def _pid(workdir: Path, name: str) -> int:
    return int((workdir / f"{name}.ready").read_text().split()[0])  # PID, then address


def test_switch_while_a_stage_is_killed_and_restarted(adaptive, reference, tmp_path):
    frames, switch_frame = 200, 100
    keep, report = tmp_path / "keep", tmp_path / "run.json"
    process, workdir = _spawn_emulate(
        adaptive, tmp_path / "scratch", "--frames", str(frames), "--rate", "100",
        "--data", "digits", "--no-adapt", "--switch-at", f"{switch_frame}:1", "--restart",
        "--keep", str(keep), "--json", str(report))
    events = workdir / "events1.jsonl"
    wait_for(lambda: True if line_count(events) >= switch_frame - 5 else None, RUN_TIMEOUT_S,
             "stage 1 to come close to the switch")
    os.kill(_pid(workdir, "stage1"), signal.SIGKILL)
    _finish(process)
    record = json.loads(report.read_text())
    assert [stage["restarts"] for stage in record["stages"]] == [0, 1]
    assert (record["frames_sent"], record["frames_delivered"]) == (frames, frames)
    assert (record["frames_duplicated"], record["frames_out_of_order"]) == (0, 0)
    assert [(s["at_frame"], s["to_alternative"]) for s in record["switches"]] == [
        (switch_frame, 1)]
    sink = json.loads((keep / "sink.json").read_text())
    assert sink["sequence"] == list(range(frames))
    assert sink["alternatives"] == [0] * switch_frame + [1] * (frames - switch_frame)
    _assert_whole_model(np.load(keep / "outputs.npz")["classifier"], reference)


def test_a_killed_controller_leaves_the_pipeline_on_its_split(adaptive, reference, tmp_path):
    frames = 200
    keep, report = tmp_path / "keep", tmp_path / "run.json"
    process, workdir = _spawn_emulate(
        adaptive, tmp_path / "scratch", "--frames", str(frames), "--rate", "40",
        "--data", "digits", "--adapt", "--keep", str(keep), "--json", str(report))
    events = workdir / "events1.jsonl"
    wait_for(lambda: True if line_count(events) >= 20 else None, RUN_TIMEOUT_S,
             "stage 1 to compute 20 frames")
    controller = _pid(workdir, "controller")
    os.kill(controller, signal.SIGKILL)
    killed_at = line_count(events)
    _finish(process)
    record = json.loads(report.read_text())
    assert record["adaptive"] is True
    assert (record["frames_delivered"], record["frames_duplicated"],
            record["frames_out_of_order"]) == (frames, 0, 0)
    sink = json.loads((keep / "sink.json").read_text())
    after = set(sink["alternatives"][killed_at:])
    assert len(after) == 1  # no switch after the kill: it stayed on its split
    said = [line for line in (keep / "source.log").read_text().splitlines()
            if "controller silent" in line]
    assert said and said[-1].endswith(f"staying on alternative {after.pop()}")  # said so
    _assert_whole_model(np.load(keep / "outputs.npz")["classifier"], reference)


def test_switch_during_a_link_outage_resumes_and_loses_nothing(adaptive, reference, tmp_path):
    """Stage 0 reaches stage 1 through a relay whose link goes down at the first frame; the
    source switches at frame 3, so stage 0 computes frames of both splits while the link is
    down; once stage 0 has computed the switch frame the link comes back."""
    from tcprelay import Relay
    from waiting import ready_address

    frames, switch_frame = 40, 3
    children: list[subprocess.Popen] = []

    def runner(name: str, *args: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "hwsched.runtime.cli", str(adaptive), *args,
             "--stats", str(tmp_path / f"{name}.json"), "--ready",
             str(tmp_path / f"{name}.ready"), "--max-runtime", str(RUN_TIMEOUT_S),
             "--resend-after", "0.3", "-v"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{name}.log").open("wb"))
        children.append(child)
        return child

    listen = "tcp://127.0.0.1:0"
    relay = None
    try:
        sink = runner("sink", "--sink", "--listen", listen, "--outputs",
                      str(tmp_path / "out.npz"))
        runner("stage1", "--stage", "1", "--listen", listen, "--next",
               ready_address(tmp_path / "sink.ready"), "--events",
               str(tmp_path / "events1.jsonl"))
        relay = Relay(int(ready_address(tmp_path / "stage1.ready").rpartition(":")[2])).start()
        runner("stage0", "--stage", "0", "--listen", listen, "--next", relay.url,
               "--events", str(tmp_path / "events0.jsonl"))
        stage0 = ready_address(tmp_path / "stage0.ready")
        relay.cut(RUN_TIMEOUT_S)  # at stage 0's next bytes: the first frame
        source = runner("source", "--source", "--next", stage0, "--frames", str(frames),
                        "--data", "digits", "--switch-at", f"{switch_frame}:1")
        events0 = tmp_path / "events0.jsonl"

        def switched_during_outage():
            lines = events0.read_text().splitlines() if events0.exists() else []
            return any(json.loads(x)["frame"] == switch_frame for x in lines) or None

        wait_for(switched_during_outage, RUN_TIMEOUT_S, "stage 0 to compute the switch frame")
        assert relay.cut_at_s is not None and relay.resumed_at_s is None  # still down
        relay.down_until = 0.0  # the link comes back
        assert source.wait(timeout=RUN_TIMEOUT_S) == 0
        assert sink.wait(timeout=RUN_TIMEOUT_S) == 0
        for child in children:
            child.wait(timeout=RUN_TIMEOUT_S)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        if relay is not None:
            relay.close()
    result = json.loads((tmp_path / "sink.json").read_text())
    assert result["sequence"] == list(range(frames))
    assert result["alternatives"] == [0] * switch_frame + [1] * (frames - switch_frame)
    assert (result["frames_duplicated"], result["frames_out_of_order"]) == (0, 0)
    assert relay.counters.aborted >= 1 and relay.resumed_at_s is not None
    _assert_whole_model(np.load(tmp_path / "out.npz")["classifier"], reference)
    stage1_frames = sorted(json.loads(x)["frame"] for x in
                           (tmp_path / "events1.jsonl").read_text().splitlines())
    assert stage1_frames == list(range(frames))  # each computed once: resends de-duplicated


@pytest.mark.network
def test_over_a_slow_link_the_controller_switches_to_the_split_that_sends_less(
        adaptive, reference, tmp_path):
    """The run starts on the split sending 2 KiB per frame across a 921.6 kbit/s shaped link
    (tc), where the other split sends 128 B: the measured bandwidth makes the controller
    switch, once, to it; every frame still arrives once, in order, equal to the model's."""
    from hwsched.runtime.linkemu import available

    reason = available()
    if reason:
        pytest.skip(reason)
    plan_dir = with_large_first(adaptive, tmp_path / "large_first")
    plan = load_plan(plan_dir)
    assert hop_bytes(plan.alternatives[0].plan) > 10 * hop_bytes(plan.alternatives[1].plan)
    frames = 300
    result = emulate(plan_dir, EmulationConfig(frames=frames, data="digits",
                                               link_emulation=True, link="uart921600"))
    assert result.adaptive
    assert (result.frames_delivered, result.frames_duplicated,
            result.frames_out_of_order) == (frames, 0, 0)
    assert [(s.from_alternative, s.to_alternative, s.by) for s in result.switches] == [
        (0, 1, "controller")]
    (switch,) = result.switches
    assert switch.measured_bandwidth_mbps is not None and switch.measured_bandwidth_mbps < 10
    assert switch.to_cut_positions == plan.alternatives[1].cut_positions
    assert {b.alternative for b in result.timeline} == {0, 1}
    _assert_whole_model(result.outputs["classifier"], reference)


@settings(max_examples=100, deadline=None)
@given(mbps=st.floats(1.0, 1000.0), latency_s=st.floats(0.0, 0.01),
       sizes=st.lists(st.integers(1_000, 200_000), min_size=1, max_size=8))
def test_hop_meter_finds_a_saturated_links_rate_and_never_overshoots(mbps, latency_s, sizes):
    """Oracle: a simulated FIFO link of ``mbps`` whose sender always has the next message
    queued; the receiver reads each message as it arrives. Every estimate stays at or below
    the link's rate (each sample is a bound or exact), and after 25 samples it is within 1%
    of it (the first, an isolated message's, includes the latency)."""
    from hwsched.runtime.reliable import HopMeter

    meter, k = HopMeter(), 0
    done_s = 100.0  # host clock: when the link is free again
    bytes_per_s = mbps * 1e6 / 8
    while meter.samples < 25:
        size = sizes[k % len(sizes)]
        sent_s = done_s  # handed to the link while its predecessor was still on the wire
        done_s += size / bytes_per_s  # transmitted back to back after its predecessor
        meter.observe(size, sent_s=sent_s, read_s=done_s + latency_s, busy_s=0.0)
        k += 1
        assert meter.mbps <= mbps * (1 + 1e-9)
    assert meter.mbps == pytest.approx(mbps, rel=0.01)


def test_the_sink_dequantizes_when_alternatives_deliver_different_types():
    """One alternative ends in an int8 stage, the other in float32: the saved outputs are all
    float32 values (oracle: the int8 bytes dequantized by hand), in frame order, and the
    sink reports its hop's bandwidth upstream."""
    from memchannel import MemoryChannel

    from hwsched.deployment import Quantization, TensorSpec
    from hwsched.runtime.sink import _SinkLoop

    f32 = {"y": TensorSpec("y", (1, 3), "float32")}
    i8 = {"y": TensorSpec("y", (1, 3), "int8", Quantization(0.5, -1))}
    channel = MemoryChannel()
    sink = _SinkLoop(channel, f32, window=4, labels=None, alternatives={0: f32, 1: i8}, hop=2)
    raw = np.array([[-1, 1, 3]], np.int8)
    channel.inbox.extend([
        restamp(encode_data(0, 0.0, {"y": np.array([[0.5, 1.0, 1.5]], np.float32)}, f32), 1.0),
        restamp(encode_data(1, 0.0, {"y": raw}, i8, alternative=1), 1.0)])
    sink.next_report_s = 0.0
    sink.step()
    delivered = np.stack(sink.collector.outputs["y"])
    assert delivered.dtype == np.float32
    np.testing.assert_array_equal(delivered[1], (raw.astype(np.float32) + 1) * 0.5)
    assert sink.collector.alternatives == [0, 1]
    reports = [decode_message(parts, {}) for parts in channel.sent
               if decode_message(parts, {}).kind == "report"]
    assert reports and reports[-1].report.hop == 2


def test_accuracy_counts_frames_past_the_end_of_the_dataset():
    """The source wraps around a dataset shorter than the stream (frame i is item i mod N):
    frames past the end are scored against the wrapped labels, not left out of the count
    while still in its denominator (a 3000-frame digits run read 14.8% instead of ~98%)."""
    from hwsched.runtime.sink import _Collector

    collector = _Collector([0, 1], max_waiting=8)
    for seq in range(6):
        logits = np.zeros((1, 2), np.float32)
        logits[0, seq % 2] = 1.0  # always right
        collector.add(seq, 0.0, {"logits": logits})
    assert collector.correct == 6
