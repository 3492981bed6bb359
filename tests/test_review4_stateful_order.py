"""A stateful stage computes its frames in sequence order, whatever order they arrive in.

A sender resends a frame only after its resend timeout, while a frame it sends for the first
time goes at once: after a stage restarts, its upstream's new frames overtake the resent older
ones. A stage that computed the lowest sequence number it *had* then fed its resource
variables frame 4 before frame 2. The oracle is the running sum of the inputs in sequence
order, computed here with numpy, against a stage whose state is a running sum.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from memchannel import MemoryChannel
from waiting import wait_until

from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import KIND_ACK, decode_message, encode_control, encode_data
from hwsched.runtime.process import RunOptions
from hwsched.runtime.stage import _StageLoop

SPECS = {"x": TensorSpec("x", (1, 2), "float32")}


class _RunningSum:
    """A stage with state: each output is the sum of every input it has run so far."""

    in_specs = out_specs = SPECS

    def __init__(self) -> None:
        self.total = np.zeros((1, 2), np.float32)

    def run(self, arrived: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.total = self.total + arrived["x"]
        return {"x": self.total.copy()}


def _frame(seq: int) -> list[bytes]:
    return encode_data(seq, 0.0, {"x": np.full((1, 2), seq + 1, np.float32)}, SPECS)


def _pump(loop: _StageLoop, down: MemoryChannel, steps: int = 8) -> dict[int, float]:
    """Step the loop, acknowledging what it sends on; the outputs by seq."""
    out = {}
    for _ in range(steps):
        loop.step()
        for parts in down.sent:
            message = decode_message(parts, SPECS)
            out[message.seq] = float(message.tensors["x"][0, 0])
            down.inbox.append(_ack(message.seq))
        down.sent.clear()
    return out


def _ack(seq: int) -> list[bytes]:
    return encode_control(KIND_ACK, seq)


def _oracle(seqs: list[int], first: int = 0) -> dict[int, float]:
    inputs = np.array([s + 1 for s in seqs if s >= first], np.float64)
    return dict(zip([s for s in seqs if s >= first], np.cumsum(inputs).tolist(), strict=True))


def _stateful_loop(**options) -> tuple[_StageLoop, MemoryChannel, MemoryChannel]:
    up, down = MemoryChannel(), MemoryChannel()
    loop = _StageLoop(_RunningSum(), up, down, RunOptions(**options), 1, stateful=True)
    loop.order.wait_s = 3600.0  # no machine is this slow: a resend always arrives before
    return loop, up, down


def test_a_resent_frame_arriving_after_newer_ones_is_computed_in_order():
    loop, up, down = _stateful_loop()
    out = {}
    for seq in (0, 1, 4, 5):  # 2 and 3 were lost; 4 and 5 go out at once
        up.inbox.append(_frame(seq))
    out |= _pump(loop, down)
    assert sorted(out) == [0, 1]  # 4 and 5 wait for 2 and 3
    for seq in (2, 3):  # the resends, a resend interval later
        up.inbox.append(_frame(seq))
    out |= _pump(loop, down)
    assert out == _oracle(list(range(6)))


def test_a_restarted_stateful_stage_starts_at_the_lowest_frame_resent():
    loop, up, down = _stateful_loop()
    for seq in (28, 29):  # new frames first, then the resends of 20..27
        up.inbox.append(_frame(seq))
    assert _pump(loop, down) == {}
    for seq in range(20, 28):
        up.inbox.append(_frame(seq))
    loop.order.wait_s = 0.0  # the start grace ends
    out = _pump(loop, down, steps=20)
    assert out == _oracle(list(range(20, 30)))


def test_a_frame_that_never_comes_is_given_up_after_the_wait():
    loop, up, down = _stateful_loop()
    for seq in (0, 2):  # 1 was finished before a restart: nobody resends it
        up.inbox.append(_frame(seq))
    assert _pump(loop, down) == {0: 1.0}
    loop.order.wait_s = 0.05
    out = {}
    wait_until(lambda: out.update(_pump(loop, down, steps=1)) or 2 in out,
               what="the stage to give up frame 1")
    assert out == {2: 4.0}


def test_a_stateless_stage_does_not_wait():
    up, down = MemoryChannel(), MemoryChannel()
    loop = _StageLoop(_RunningSum(), up, down, RunOptions(), 1)
    for seq in (0, 2):
        up.inbox.append(_frame(seq))
    assert sorted(_pump(loop, down)) == [0, 2]


def test_a_stateful_graph_stage_joins_and_computes_in_sequence_order():
    from hwsched.runtime.graph_stage import SINK, _GraphStageLoop

    class _GraphRunningSum(_RunningSum):
        def __init__(self) -> None:
            super().__init__()
            self.in_specs, self.out_specs = {0: SPECS}, {SINK: SPECS}

        def join(self, messages):  # no stitched inputs: every upstream's tensors as they came
            return {n: a for m in messages.values() for n, a in m.tensors.items()}

        def sent(self, _downstream, outputs):
            return outputs

    up, down = MemoryChannel(), MemoryChannel()
    loop = _GraphStageLoop(_GraphRunningSum(), {0: up}, {SINK: down}, RunOptions(), 1,
                           stateful=True)
    loop.order.wait_s = 3600.0
    for seq in (0, 1, 4, 5):
        up.inbox.append(_frame(seq))
    out = _pump(loop, down)
    assert sorted(out) == [0, 1]
    for seq in (2, 3):
        up.inbox.append(_frame(seq))
    out |= _pump(loop, down)
    assert out == _oracle(list(range(6)))
