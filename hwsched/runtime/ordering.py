"""Sequence order for stateful stages: which queued frame a stage may compute next.

A stateless stage computes whatever frame it has, lowest first. A stateful one (resource
variables, ``StagePlan.stateful``) must feed its variables the frames in sequence order, and a
frame can arrive after newer ones: a sender resends a frame only after its resend timeout but
sends a new one at once, so after a stage restarts, its upstream's new frames overtake the
resent older ones. :class:`SequenceGate` makes such a stage wait for the next sequence number.
It starts at seq 0, or, when the first frame it sees is not 0 (after a restart), at the lowest
one that arrived within the wait; a frame still missing after the wait (one its predecessor
finished before a restart is never resent) is given up, with a warning.

>>> gate = SequenceGate(stateful=True, wait_s=3600.0, label="stage 1")
>>> gate.ready(0), gate.computed(0), gate.ready(2), gate.ready(1)
(True, None, False, True)
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("hwsched.runtime")


class SequenceGate:
    """Whether the lowest queued frame may be computed now (module docstring)."""

    def __init__(self, stateful: bool, wait_s: float, label: str) -> None:
        self.stateful, self.wait_s, self.label = stateful, wait_s, label
        self.next_seq: int | None = None  # the frame the state expects next (None: not known)
        self.waiting_since_s: float | None = None

    def ready(self, lowest: int | None) -> bool:
        """``lowest``: the lowest sequence number queued (None: nothing queued)."""
        if lowest is None:
            return False
        if not self.stateful or lowest == (0 if self.next_seq is None else self.next_seq):
            return True
        if self.next_seq is not None and lowest < self.next_seq:
            return True  # late, after it was given up: computing it beats holding it forever
        now = time.monotonic()
        if self.waiting_since_s is None:
            self.waiting_since_s = now
        if now - self.waiting_since_s < self.wait_s:
            return False
        if self.next_seq is not None:
            log.warning("%s is stateful: frame %d did not arrive within %.1f s; continuing "
                        "with frame %d", self.label, self.next_seq, self.wait_s, lowest)
        else:  # started mid-stream: a restart, whose state begins again here
            log.warning("%s starts mid-stream at frame %d (restarted?) and is stateful: its "
                        "resource variables start from their initial values, so outputs from "
                        "frame %d on may differ from an uninterrupted run", self.label, lowest,
                        lowest)
        return True

    def due_s(self) -> float | None:
        """When a frame waited for is given up (``time.monotonic()``); None: none waited for."""
        return None if self.waiting_since_s is None else self.waiting_since_s + self.wait_s

    def computed(self, seq: int) -> None:
        self.next_seq = max(seq + 1, self.next_seq or 0)
        self.waiting_since_s = None

    def reset(self) -> None:
        """A new stream starts at seq 0 again."""
        self.next_seq, self.waiting_since_s = None, None
