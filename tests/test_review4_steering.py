"""Review of the controller ↔ source protocol under trials (issue 11): the source applies the
controller's latest decision, never a heartbeat that crossed a scripted switch, and
``emulate --json`` flags as a trial exactly the switch the trial decision caused.

The controller side here is a real ZeroMQ channel speaking the controller's messages (a
switch carrying the number of decisions made so far, as :func:`run_controller` sends them)."""

from __future__ import annotations

import time

import pytest
from waiting import wait_until

from hwsched.runtime.emulate import SwitchMeasure, with_trials
from hwsched.runtime.frames import KIND_SWITCH, Report, encode_control
from hwsched.runtime.source import Steering
from hwsched.runtime.transport import open_channel

REPORT = Report(0, 0, None, 1.0, 0)


@pytest.fixture
def link():
    """(controller end, the source's Steering over 3 alternatives, the controller's peer)."""
    controller = open_channel("tcp://127.0.0.1:0", listen=True, specs={})

    def steering(schedule=()):
        source_end = open_channel(controller.bound_url, listen=False, specs={})
        steer = Steering(3, schedule, source_end)
        # the hello is best effort (lost while the connection is being made): a report
        # forwarded introduces the source as well
        peer, _ = wait_until(lambda: controller.receive() or steer.service([REPORT]),
                             what="a message from the source")
        while controller.receive() is not None:
            pass
        return steer, peer

    yield controller, steering
    controller.close()


def _say(controller, peer, steer: Steering, decisions: int, alternative: int) -> None:
    """The controller's switch message (``decisions`` made so far, its current split), and
    the source servicing its channel until the message has been heard."""
    heard = steer.heard_s
    controller.send(encode_control(KIND_SWITCH, decisions, time.time(), alternative), peer)
    wait_until(lambda: (steer.service([]), steer.heard_s != heard)[1],
               what="the source to hear the controller")


def test_a_heartbeat_crossing_a_scripted_switch_does_not_undo_it(link):
    controller, steering = link
    steer, peer = steering(schedule=((5, 2),))
    _say(controller, peer, steer, 1, 1)  # decision 1: to split 1
    assert [steer.alternative(seq) for seq in range(5)] == [1] * 5
    assert steer.alternative(5) == 2  # scripted; the source tells the controller
    _say(controller, peer, steer, 1, 1)  # a heartbeat sent before the controller heard it
    assert [steer.alternative(seq) for seq in range(6, 9)] == [2] * 3
    assert [(s["to"], s["by"]) for s in steer.switches] == [(1, "controller"), (2, "schedule")]
    _say(controller, peer, steer, 2, 0)  # a new decision is applied
    assert steer.alternative(9) == 0 and steer.switches[-1]["by"] == "controller"
    steer.close()


def test_the_latest_decision_wins_when_two_arrive_between_frames(link):
    controller, steering = link
    steer, peer = steering()
    assert steer.alternative(0) == 0
    _say(controller, peer, steer, 1, 1)  # to split 1 ...
    _say(controller, peer, steer, 2, 0)  # ... and back, before the next frame was sent
    assert steer.alternative(1) == 0 and steer.switches == []
    _say(controller, peer, steer, 2, 0)  # its heartbeat
    assert steer.alternative(2) == 0 and steer.switches == []
    steer.close()


def _switch(frame: int, source: int, to: int, by: str) -> SwitchMeasure:
    return SwitchMeasure(frame / 10, frame, source, to, (), (), None, by=by)


def test_trial_flags_follow_the_decision_each_switch_applied():
    """A switch no decision asked for (a lost or merged decision, a stale heartbeat) takes
    no decision's flag, and the switch after it keeps its own."""
    decisions = [{"from": 0, "to": 1, "trial": False}, {"from": 1, "to": 2, "trial": False},
                 {"from": 2, "to": 0, "trial": True}]
    # decision 2 was never applied (decision 3 came before the next frame)
    switches = [_switch(10, 0, 1, "controller"), _switch(20, 1, 0, "controller")]
    announced = [{"at_frame": 10, "decision": 1}, {"at_frame": 20, "decision": 3}]
    assert [s.trial for s in with_trials(switches, decisions, announced)] == [False, True]
    # a scripted switch, then a controller switch no decision made (the count of the one
    # already applied): no flag for it
    switches = [_switch(10, 0, 1, "controller"), _switch(30, 1, 2, "schedule"),
                _switch(31, 2, 1, "controller")]
    announced = [{"at_frame": 10, "decision": 1}, {"at_frame": 31, "decision": 1}]
    assert [s.trial for s in with_trials(switches, decisions[:1], announced)] == [
        False, None, None]
