"""``hwsched emulate --link-emulation --bandwidth-schedule``: a fading link replayed with tc.

The parser is checked against the schedule it was generated from (hypothesis) and against
every refusal; the replay runs a real two-stage pipeline in network namespaces (root and
iproute2, skipped otherwise) whose link drops from 200 to 2 Mbit/s mid-stream, and checks the
sink's own delivery times: after the change frames cannot arrive faster than 2 Mbit/s carries
them (the physics of the token bucket, an oracle the scheduler does not supply), and the stream
was faster before it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testlinks import link_yaml

from hwsched.errors import BandwidthScheduleError, TransportError
from hwsched.runtime.linkemu import (
    BandwidthStep,
    available,
    check_schedule,
    parse_bandwidth_schedule,
)


# -- parsing --------------------------------------------------------------------------------------
@st.composite
def schedules(draw):
    """A valid schedule and its text: times non-decreasing, a hop never twice at one time."""
    steps, t = [], 0.0
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.sampled_from([0.0, 0.5, 1.25, 7.0])) if steps else draw(
            st.sampled_from([0.0, 2.0]))
        hop = draw(st.none() | st.integers(1, 4))
        if any(s.at_s == t and (None in (s.hop, hop) or s.hop == hop) for s in steps):
            continue
        steps.append(BandwidthStep(t, draw(st.sampled_from([0.5, 2.0, 20.0, 1000.0])), hop))
    text = ",".join(("" if s.hop is None else f"{s.hop}@") + f"{s.at_s:g}:{s.bandwidth_mbps:g}"
                    for s in steps)
    return tuple(steps), text


@given(schedules())
def test_parse_reads_back_the_schedule_it_was_written_from(case):
    steps, text = case
    assert parse_bandwidth_schedule(text) == steps


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("0:1000,,5:20", "item '': use T:MBPS"),
    ("0:1000,fast", "item 'fast': use T:MBPS or HOP@T:MBPS"),
    ("0:1000,5:", "item '5:': use T:MBPS"),
    ("x:20", "item 'x:20': the time must be a number of seconds ≥ 0, got x"),
    ("-1:20", "the time must be a number of seconds ≥ 0, got -1"),
    ("0:1000,5:0", "item '5:0': the rate must be a positive number of Mbit/s, got 0"),
    ("0:1000,5:-3", "got -3"),
    ("0:nan", "got nan"),
    ("0:inf", "got inf"),
    ("0:1000,10:20,5:1000", r"item '5:1000': times must increase, but 5 s comes after 10 s"),
    ("0:1000,5:20,5:30", r"item '5:30': the same hop changes twice at 5 s \(item '5:20'\)"),
    ("1@5:20,5:30", "the same hop changes twice"),
    ("0@1:20", "the hop must be a number ≥ 1"),
    ("a@1:20", "the hop must be a number ≥ 1"),
])
def test_bad_schedules_are_refused_naming_the_item(text, message):
    with pytest.raises(BandwidthScheduleError, match=message):
        parse_bandwidth_schedule(text)


def test_two_hops_may_change_at_the_same_time():
    steps = parse_bandwidth_schedule("1@3:20,2@3:5")
    assert [s.hop for s in steps] == [1, 2]


def test_a_schedule_needs_link_emulation_and_a_hop_the_plan_has():
    steps = parse_bandwidth_schedule("0:1000,2@5:20")
    with pytest.raises(BandwidthScheduleError, match="needs --link-emulation"):
        check_schedule(steps, link_emulation=False)
    with pytest.raises(BandwidthScheduleError, match=r"'2@5:20': the plan has 1 hop\(s\)"):
        check_schedule(steps, link_emulation=True, hops=1)
    check_schedule(steps, link_emulation=True, hops=2)
    check_schedule((), link_emulation=False, hops=1)


@pytest.mark.parametrize("args, message", [
    (["--bandwidth-schedule", "0:1000,5:20"], "needs --link-emulation"),
    (["--link-emulation", "--bandwidth-schedule", "5:20,1:1000"], "times must increase"),
])
def test_cli_refuses_in_one_line_before_reading_the_plan(tmp_path, args, message):
    missing = tmp_path / "no-plan-here"
    done = subprocess.run([sys.executable, "-m", "hwsched", "emulate", str(missing), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "no-plan-here" not in lines[0]  # refused before the plan was looked for


# -- a real replay -------------------------------------------------------------------------------
HIGH_MBPS, LOW_MBPS = 200.0, 2.0
CHANGE_AT_S = 1.0
NEVER_S = 3600.0
FRAMES, RATE_HZ, WINDOW = 48, 20.0, 4
#: Frames past the link at any moment, at most: a window on each hop after it and the stage's
#: queue (generous).
IN_FLIGHT = 3 * WINDOW
#: Crossing tensor between the stages: 32×32×8 float32 = 32 KiB, link-bound at 2 Mbit/s
#: (≈ 0.13 s a frame, where the source sends one every 0.05 s).
SIDE, CHANNELS = 32, 8


def _fat_cut_model():
    import keras

    inputs = keras.Input(batch_shape=(1, SIDE, SIDE, 3), name="image")
    x = keras.layers.Conv2D(CHANNELS, 3, padding="same", name="wide")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, name="narrow")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="fatcut")


@pytest.fixture(scope="module")
def fat_plan(tmp_path_factory):
    reason = available()
    if reason:
        pytest.skip(reason)
    from hwsched.cuts import enumerate_cuts
    from hwsched.export import export
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    root = tmp_path_factory.mktemp("fade")
    link = root / "fast200m.yaml"
    link.write_text(link_yaml("fast200m", int(HIGH_MBPS * 1e6), 0.5))
    graph, binding = read_keras_model(_fat_cut_model(), "fatcut", source="test")
    cut = next(c for c in enumerate_cuts(graph) if c.after == "wide")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    plan_dir = root / "plan"
    export(loaded, ["rpi4", "rpi4"], plan_dir, cut_positions=(cut.head_layers,),
           precisions="fp32", cache=False, samples=2, link=str(link))
    return plan_dir, link


def _rate_ips(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


@pytest.mark.network
def test_link_slows_down_when_the_schedule_says_so(fat_plan, tmp_path):
    from hwsched.runtime.emulate import EmulationConfig, EmulationResult, emulate

    plan_dir, link = fat_plan
    keep = tmp_path / "keep"
    # the last step falls long after the stream: never applied, and the run does not wait
    schedule = parse_bandwidth_schedule(
        f"0:{HIGH_MBPS:g},{CHANGE_AT_S:g}:{LOW_MBPS:g},{NEVER_S:g}:{HIGH_MBPS:g}")
    result = emulate(plan_dir, EmulationConfig(
        frames=FRAMES, rate_hz=RATE_HZ, window=WINDOW, link_emulation=True, link=str(link),
        keep_dir=keep, bandwidth_schedule=schedule))
    assert result.complete and result.in_order

    first, change = result.bandwidth_schedule
    assert (first.at_s, first.applied_at_s, first.bandwidth_mbps) == (0.0, 0.0, HIGH_MBPS)
    assert change.bandwidth_mbps == LOW_MBPS and change.applied_at_s >= CHANGE_AT_S
    document = json.loads(json.dumps(result.to_dict()))
    assert document["bandwidth_schedule"][1]["applied_at_s"] == change.applied_at_s
    assert EmulationResult.from_dict(document).bandwidth_schedule == result.bandwidth_schedule

    streaming_s = (keep / "source.ready").stat().st_mtime  # the schedule's time origin
    changed_s = streaming_s + change.applied_at_s
    delivered = json.loads((keep / "sink.json").read_text())["delivered_s"]
    before = [t for t in delivered if t <= changed_s]
    # frames that crossed the link before the change may still be on their way to the sink
    # (a window per hop and the stage's queue): they are delivered first, in order
    after = [t for t in delivered if t > changed_s][IN_FLIGHT:]
    assert len(before) >= 3 and len(after) >= 8, (len(before), len(after))
    payload = result.hops[1].payload_bytes_per_frame
    low_cap_ips = LOW_MBPS * 1e6 / 8 / payload
    assert _rate_ips(after) <= 1.15 * low_cap_ips  # the shaped link carries no more
    assert _rate_ips(before) > 1.5 * _rate_ips(after)


@pytest.mark.network
def test_a_hop_the_plan_lacks_is_refused_before_streaming(fat_plan):
    from hwsched.runtime.emulate import EmulationConfig, emulate

    plan_dir, link = fat_plan
    with pytest.raises(BandwidthScheduleError, match="the plan has 1 hop"):
        emulate(plan_dir, EmulationConfig(
            frames=2, link_emulation=True, link=str(link),
            bandwidth_schedule=parse_bandwidth_schedule("0:100,2@1:5")))


# -- the scheduler without a pipeline ------------------------------------------------------------
def _links_that_do_not_exist():
    from hwsched.runtime.linkemu import EmulatedLinks

    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    return EmulatedLinks(("hwsnone0", "hwsnone1"), 1e9, "hwsnone")


def test_a_rate_change_that_fails_is_raised_when_the_replay_stops():
    """A run whose link did not follow its schedule must not pass for one that did."""
    from hwsched.runtime.linkemu import COMMAND_TIMEOUT_S, BandwidthScheduler

    scheduler = BandwidthScheduler(_links_that_do_not_exist(),
                                   parse_bandwidth_schedule("5:20,6:30"),
                                   started_s=lambda: time.time() - 10)  # both steps are due
    scheduler.start()
    assert scheduler.join(2 * COMMAND_TIMEOUT_S)
    with pytest.raises(TransportError, match="hwsnone"):
        scheduler.stop()
    assert scheduler.applied == []


def test_a_step_at_zero_is_applied_before_streaming_starts():
    from hwsched.runtime.linkemu import BandwidthScheduler

    scheduler = BandwidthScheduler(_links_that_do_not_exist(), parse_bandwidth_schedule("0:20"),
                                   started_s=lambda: None)
    with pytest.raises(TransportError, match="hwsnone"):
        scheduler.start()  # synchronously, before the first frame could leave


def test_a_replay_stopped_before_streaming_started_applies_nothing():
    from hwsched.runtime.linkemu import BandwidthScheduler

    scheduler = BandwidthScheduler(_links_that_do_not_exist(), parse_bandwidth_schedule("1:20"),
                                   started_s=lambda: None).start()
    assert scheduler.stop() == ()
    assert scheduler.join(0.0)
