"""An announcement of the source's split that was sent before the source took the
controller's latest decision does not undo that decision in the controller (read-only review
of rev11). Failed before: the controller took it as the current split, so its next heartbeat
— numbered as the decision, naming the old split — reached a source that had not yet heard
the decision as that decision: the decision was spent and never applied; or, heard, the
controller believed the old split and decided the same switch again."""

from __future__ import annotations

from hwsched.runtime.controller import AlternativeCost, _Controller
from hwsched.runtime.frames import Message, Report, decode_message

#: Split 1 is the fastest once stage 0 measures its prediction on split 0.
COSTS = (AlternativeCost(0, (3,), (5.0, 5.0), {1: 1_000}, {1: None}),
         AlternativeCost(1, (6,), (1.0, 1.0), {1: 1_000}, {1: None}))


def _announcement(seq: int, split: int) -> Message:
    """The source's switch announcement: its split and the latest decision it took."""
    return Message("switch", seq, 0.0, {}, 0, alternative=split)


def _command(controller: _Controller) -> tuple[int, int]:
    message = decode_message(controller.command(), {})
    return message.seq, message.alternative


def test_an_announcement_older_than_the_decision_changes_nothing():
    controller = _Controller(COSTS, hold_s=0.0, margin=0.1)
    assert controller.observe([Report(0, 0, None, 5.0, 0)], now_s=1.0) == 1
    assert _command(controller) == (1, 1)
    controller.take(_announcement(0, 0))  # sent before the source heard decision 1
    assert controller.state.current == 1
    assert _command(controller) == (1, 1)  # the heartbeat still carries the decision
    controller.take(_announcement(1, 1))  # the source applied it
    assert controller.state.current == 1 and len(controller.decisions) == 1


def test_an_announcement_after_the_decision_is_taken():
    """A scripted switch the source makes after applying the decision is the stream's split."""
    controller = _Controller(COSTS, hold_s=0.0, margin=0.1)
    assert controller.observe([Report(0, 0, None, 5.0, 0)], now_s=1.0) == 1
    controller.take(_announcement(1, 0))
    assert controller.state.current == 0
    assert _command(controller) == (1, 0)
