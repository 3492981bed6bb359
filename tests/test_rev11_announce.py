"""The controller's belief of the split heals, and a restarted controller does not move the
stream (issue 11's rule: a killed controller leaves the pipeline running on its split).

Review of adapt11: the source announced a switch once, best effort, and a controller learnt
the split only from those announcements (and the hello at the start). A controller restarted
mid-run believed split 0 and its first heartbeat — the count of *its* decisions, 0, not the
source's — read as a new decision: the source switched back to split 0. An announcement lost
left the controller believing the wrong split for good (its heartbeats, of a decision already
applied, are dropped by the source).

Both ends are the real classes (:class:`Steering`, ``_Controller``) over a real ZeroMQ
channel; a restart is a fresh ``_Controller`` on the listening socket (what the process keeps
is gone, the endpoint is the same); the oracle is the source's own record of its split.
"""

from __future__ import annotations

import pytest
from waiting import wait_until

from hwsched.runtime.controller import AlternativeCost, _Controller
from hwsched.runtime.frames import Report, decode_message
from hwsched.runtime.source import Steering
from tests.steering_ends import steering_ends

#: Split 1 is the fastest once stage 0 measures its prediction on split 0.
COSTS = (AlternativeCost(0, (3,), (5.0, 5.0), {1: 1_000}, {1: None}),
         AlternativeCost(1, (6,), (1.0, 1.0), {1: 1_000}, {1: None}))


@pytest.fixture
def ends():
    """(the controller's listening channel, the source's Steering, the source's peer id)."""
    with steering_ends(2) as ends:
        yield ends


def _deliver(channel, controller: _Controller, drop_switches: bool = False) -> int:
    """Everything the source sent so far, taken by the controller (``drop_switches``: its
    switch announcements lost on the way); how many messages."""
    count = 0
    while (received := channel.receive()) is not None:
        message = decode_message(received[1], {})
        if not (drop_switches and message.kind == "switch"):
            controller.take(message)
        count += 1
    return count


def _send(channel, peer, steer: Steering, controller: _Controller) -> bool:
    """The controller's command, if it has one (as ``run_controller`` sends it), heard by the
    source; whether one was sent."""
    command = controller.command()
    if command is None:
        return False
    heard = steer.heard_s
    channel.send(command, peer)
    wait_until(lambda: (steer.service([]), steer.heard_s != heard)[1],
               what="the source to hear the controller")
    return True


def _switch_to_1(channel, peer, steer: Steering) -> _Controller:
    controller = _Controller(COSTS, hold_s=0.0, margin=0.1)
    _deliver(channel, controller)
    assert controller.observe([Report(0, 0, None, 5.0, 0)], now_s=1.0) == 1
    assert _send(channel, peer, steer, controller)
    assert steer.alternative(0) == 1
    return controller


def _follows(channel, steer: Steering, controller: _Controller, report: Report) -> bool:
    """The source serviced (its reports forwarded), the controller fed: whether it now
    believes the source's split."""
    steer.service([report])
    _deliver(channel, controller)
    return controller.state.current == steer.current


def test_a_restarted_controller_leaves_the_stream_on_its_split(ends):
    """Failed before: the fresh controller's heartbeat (seq 0, split 0) switched the source
    back to split 0."""
    channel, steer, peer = ends
    fresh = _restarted(channel, peer, steer)
    _send(channel, peer, steer, fresh)
    assert [steer.alternative(seq) for seq in range(1, 5)] == [1] * 4
    assert [s["to"] for s in steer.switches] == [1]


def test_a_restarted_controller_commands_nothing_before_it_knows_the_split():
    """Until the source has told it its split, a controller sends no command (it would be a
    guess) and decides nothing (it would reason from a split the stream may not be on)."""
    fresh = _Controller(COSTS, hold_s=0.0, margin=0.1, split_known=False)
    assert fresh.command() is None
    assert fresh.observe([Report(0, 0, None, 5.0, 0)], now_s=1.0) is None
    assert fresh.observe([Report(0, 0, None, 5.0, 0)], now_s=2.0) is None
    assert fresh.decisions == []


def test_a_lost_announcement_heals(ends):
    """The source's announcement of the switch is lost: the controller still comes to
    believe the split the source runs (failed before: never — it believed split 0 for good)."""
    channel, steer, peer = ends
    controller = _Controller(COSTS, hold_s=0.0, margin=0.1)
    _deliver(channel, controller)
    steer.schedule = [(0, 1)]  # a scripted switch, announced ...
    assert steer.alternative(0) == 1
    wait_until(lambda: _deliver(channel, controller, drop_switches=True),
               what="the announcement")  # ... and lost
    assert controller.state.current == 0
    report = Report(0, 0, None, 1.0, 1)
    wait_until(lambda: _follows(channel, steer, controller, report),
               what="the controller to learn the split it missed")
    _send(channel, peer, steer, controller)  # its heartbeat moves nothing
    assert steer.alternative(1) == 1


#: Split 1 computes faster, split 0 sends a thousandth of the bytes: a slow hop favours 0.
BY_LINK = (AlternativeCost(0, (3,), (5.0, 5.0), {1: 1_000}, {1: None}),
           AlternativeCost(1, (6,), (1.0, 1.0), {1: 1_000_000}, {1: None}))


def _restarted(channel, peer, steer: Steering, costs=COSTS) -> _Controller:
    """Controller A switches the stream to split 1 and is killed once it has heard the
    announcement; controller B, fresh, learns the split from the source. B, as it is then."""
    old = _switch_to_1(channel, peer, steer)
    wait_until(lambda: (_deliver(channel, old), old.state.current == 1)[1],
               what="the announcement of the switch")
    fresh = _Controller(costs, hold_s=0.0, margin=0.1, split_known=False)
    report = Report(0, 0, None, 1.0, 1)
    wait_until(lambda: _follows(channel, steer, fresh, report),
               what="the restarted controller to learn the source's split")
    return fresh


def test_a_restarted_controllers_first_decision_is_applied(ends):
    """Failed before: B numbered its decisions from 0 again, so its first one carried the
    number of A's, which the source took for a heartbeat of the decision it had applied."""
    channel, steer, peer = ends
    fresh = _restarted(channel, peer, steer, BY_LINK)
    slow_hop = Report(1, 1, 1.0, None, 1)  # 1 Mbit/s: split 1's megabyte takes 8 s
    assert fresh.observe([slow_hop], now_s=10.0) == 0  # no hold (hold_s=0)
    _send(channel, peer, steer, fresh)
    assert steer.alternative(1) == 0


def test_a_restarted_controllers_heartbeat_does_not_undo_a_scripted_switch(ends):
    """B has learnt split 1; a scripted switch to 0 is made before B hears of it, and B's
    heartbeat (split 1, what it believes) reaches the source: the stream stays on 0 (failed
    before: B's heartbeat, not of the decision the source knew, read as a decision)."""
    channel, steer, peer = ends
    fresh = _restarted(channel, peer, steer)
    steer.schedule = [(1, 0)]
    assert steer.alternative(1) == 0  # announced, not yet taken by B
    assert fresh.state.current == 1
    _send(channel, peer, steer, fresh)
    assert [steer.alternative(seq) for seq in range(2, 5)] == [0] * 3
