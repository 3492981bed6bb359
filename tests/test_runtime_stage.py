"""The stage loop on in-memory channels: custody, end of stream, and ``--keep-serving``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from memchannel import MemoryChannel
from waiting import wait_until

from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import KIND_ACK, KIND_END, decode_message, encode_control, encode_data
from hwsched.runtime.process import RunOptions
from hwsched.runtime.stage import _StageLoop

SPECS = {"x": TensorSpec("x", (1, 2), "float32")}


class _Identity:
    in_specs = out_specs = SPECS

    def run(self, arrived: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": np.array(arrived["x"])}


def _drain(channel: MemoryChannel, specs) -> list[tuple[str, int]]:
    sent = [decode_message(parts, specs) for parts in channel.sent]
    channel.sent.clear()
    return [(m.kind, m.seq) for m in sent]


def _stream(
    loop: _StageLoop, up: MemoryChannel, down: MemoryChannel, frames: int
) -> tuple[list, list]:
    """Send ``frames`` frames and the end through the stage, acknowledging everything it sends
    on; returns what went downstream and the acknowledgements that came back upstream."""
    for seq in range(frames):
        up.inbox.append(encode_data(seq, 0.0, {"x": np.full((1, 2), seq, np.float32)}, SPECS))
    downstream = []
    for _ in range(4 * frames):
        loop.step()
        forwarded = _drain(down, SPECS)
        downstream += forwarded
        down.inbox.extend(encode_control(KIND_ACK, seq) for _, seq in forwarded)
    up.inbox.append(encode_control(KIND_END, frames))
    for _ in range(4):
        loop.step()
        forwarded = _drain(down, SPECS)
        downstream += forwarded
        down.inbox.extend(encode_control(KIND_ACK, seq) for _, seq in forwarded)
    upstream = _drain(up, {})
    return downstream, upstream


def test_a_kept_serving_stage_carries_a_second_stream_from_seq_0():
    up, down = MemoryChannel(), MemoryChannel()
    loop = _StageLoop(_Identity(), up, down, RunOptions(exit_after_end=False), 0)
    for _ in range(2):
        downstream, upstream = _stream(loop, up, down, 3)
        expected = [("data", 0), ("data", 1), ("data", 2), ("end", 3)]
        assert downstream == expected
        assert sorted(upstream) == [("ack", s) for _, s in expected]
        assert not loop.finished and not loop.end_forwarded
        assert loop.end_grace_s == float("inf")  # no "end not acknowledged" warnings later


def test_a_stage_stops_once_its_end_is_acknowledged_and_upstream_had_time_to_read_it():
    up, down = MemoryChannel(), MemoryChannel()
    loop = _StageLoop(_Identity(), up, down, RunOptions(), 0)
    loop.linger_s = 3600.0  # no machine is this slow: the linger cannot run out by accident
    downstream, upstream = _stream(loop, up, down, 2)
    assert downstream[-1] == ("end", 2) and ("ack", 2) in upstream
    # it lingers: an upstream that lost the last acknowledgement resends the end and is
    # answered again, and the linger restarts from that resend
    for _ in range(5):
        loop.step()
    assert not loop.finished
    first_until = loop.linger_until_s
    loop.linger_s = 7200.0
    up.inbox.append(encode_control(KIND_END, 2))
    loop.step()
    assert _drain(up, {}) == [("ack", 2)] and not loop.finished
    assert loop.linger_until_s > first_until + 3000  # restarted, with the new length
    # once a linger runs out without resends, it stops, sending nothing more downstream
    loop.linger_s = 0.05
    up.inbox.append(encode_control(KIND_END, 2))
    loop.step()
    assert _drain(up, {}) == [("ack", 2)]
    wait_until(lambda: loop.step() or loop.finished, what="the stage to stop after its linger")
    assert _drain(down, SPECS) == []
