"""A stateful stage that starts mid-stream (restarted by ``emulate --restart``) says, in one
warning line, which stage it is and from which frame its outputs may differ from an
uninterrupted run; a stage that starts at frame 0 says nothing of the kind."""

from __future__ import annotations

import logging

from hwsched.runtime.ordering import SequenceGate


def test_a_stateful_stage_starting_mid_stream_names_itself_and_the_frame(caplog):
    gate = SequenceGate(stateful=True, wait_s=0.0, label="stage 1")
    with caplog.at_level(logging.WARNING, logger="hwsched.runtime"):
        assert gate.ready(37)
    (record,) = caplog.records
    assert record.getMessage() == (
        "stage 1 starts mid-stream at frame 37 (restarted?) and is stateful: its resource "
        "variables start from their initial values, so outputs from frame 37 on may differ "
        "from an uninterrupted run")


def test_a_stateful_stage_starting_at_frame_zero_or_a_stateless_one_warns_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="hwsched.runtime"):
        assert SequenceGate(stateful=True, wait_s=0.0, label="stage 1").ready(0)
        assert SequenceGate(stateful=False, wait_s=0.0, label="stage 2").ready(37)
    assert not caplog.records
