"""The controller's belief converges to the split the source runs (issue 11, review item).

A controller decision that crossed a scripted ``--switch-at`` switch on its way is applied by
the source after the scripted one; the controller heard of the scripted switch last and
believed it, and its heartbeats (the count of the decision already applied) were dropped by
the source — so the two disagreed until the next decision. Both ends here are the real
classes (:class:`Steering`, the controller's ``_Controller``) over a real ZeroMQ channel; the
oracle is the source's own record of the split it runs.
"""

from __future__ import annotations

import pytest
from waiting import wait_until

from hwsched.runtime.controller import AlternativeCost, _Controller
from hwsched.runtime.frames import Report, decode_message
from hwsched.runtime.source import Steering
from tests.steering_ends import steering_ends

#: Three splits; split 1 is the fastest once stage 0 measures its prediction on split 0.
COSTS = (AlternativeCost(0, (3,), (5.0, 5.0), {1: 1_000}, {1: None}),
         AlternativeCost(1, (6,), (1.0, 1.0), {1: 1_000}, {1: None}),
         AlternativeCost(2, (8,), (4.0, 4.0), {1: 1_000}, {1: None}))


@pytest.fixture
def ends():
    """(the controller's channel, the source's Steering with a scripted switch to split 2 at
    frame 5, the source's peer id)."""
    with steering_ends(3, ((5, 2),)) as ends:
        yield ends


def _deliver(channel, controller: _Controller) -> int:
    """Everything the source sent so far, taken by the controller; how many messages."""
    count = 0
    while (received := channel.receive()) is not None:
        controller.take(decode_message(received[1], {}))
        count += 1
    return count


def _tell(channel, peer, steer: Steering, controller: _Controller) -> None:
    """The controller's switch message (as ``run_controller`` sends it), heard by the source."""
    heard = steer.heard_s
    channel.send(controller.command(), peer)
    wait_until(lambda: (steer.service([]), steer.heard_s != heard)[1],
               what="the source to hear the controller")


def test_a_decision_crossing_a_scripted_switch_leaves_both_ends_on_one_split(ends):
    channel, steer, peer = ends
    controller = _Controller(COSTS, hold_s=0.0, margin=0.1)
    _deliver(channel, controller)
    assert controller.observe([Report(0, 0, None, 5.0, 0)], now_s=1.0) == 1  # decision 1
    assert [steer.alternative(seq) for seq in range(6)] == [0] * 5 + [2]  # scripted, at 5
    _tell(channel, peer, steer, controller)  # decision 1 crossed the scripted switch
    assert steer.alternative(6) == 1 and steer.switches[-1]["by"] == "controller"
    # the controller hears what the source did, in the order it did it, then beats
    wait_until(lambda: (_deliver(channel, controller), controller.state.current == 1)[1],
               what="the controller to follow the source (failed before: it believed 2)")
    _tell(channel, peer, steer, controller)  # a heartbeat
    assert [steer.alternative(seq) for seq in range(7, 10)] == [1] * 3
    assert controller.state.current == steer.current == 1


def test_a_scripted_switch_after_a_decision_is_still_followed(ends):
    """The converse: the decision applied first, the scripted switch after it; the
    controller ends on the scripted split and its heartbeat does not undo it."""
    channel, steer, peer = ends
    controller = _Controller(COSTS, hold_s=0.0, margin=0.1)
    _deliver(channel, controller)
    assert controller.observe([Report(0, 0, None, 5.0, 0)], now_s=1.0) == 1
    _tell(channel, peer, steer, controller)
    assert [steer.alternative(seq) for seq in range(6)] == [1] * 5 + [2]
    wait_until(lambda: (_deliver(channel, controller), controller.state.current == 2)[1],
               what="the controller to follow the scripted switch")
    _tell(channel, peer, steer, controller)
    assert steer.alternative(6) == 2 and controller.state.current == 2
