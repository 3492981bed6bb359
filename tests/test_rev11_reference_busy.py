"""What a starved split's stage is taken to compute a frame in when fed (review of adapt11).

adapt11 prices a never-run split from the running split's busy times reported while no link
limited it (:meth:`Measured.reference_busy_ms`), because a starved stage computes *slower*
(idle gaps, cold caches). So a starved report is an upper bound on the fed time — and a fed
history from long ago (the host has since sped up: another job on it ended) must not price
the stage slower than it is measured computing now, starved. Before the fix the reference
was the old fed median whatever the latest report said: 7.5 ms a frame for a stage
measured at 4 ms.

Oracle: that bound, and the definition (no starved report: the plain busy time), checked
over random report sequences.
"""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from hwsched.runtime.controller import BUSY_HISTORY, Measured
from hwsched.runtime.frames import Report

REPORTS = st.lists(st.tuples(st.floats(0.1, 100.0), st.booleans()), min_size=1, max_size=120)


def _measured(reports) -> Measured:
    m = Measured()
    for busy_ms, starved in reports:
        m = m.with_report(Report(0, 0, None, busy_ms, 0), starved=starved)
    return m


def test_a_stage_faster_now_than_its_old_fed_history_is_priced_as_fast():
    """Failed before: 7.5 (the fed median) for a stage measured, starved, at 4 ms."""
    m = _measured([(7.5, False)] * 30 + [(4.0, True)] * 10)
    assert m.reference_busy_ms(0, 0) == 4.0


@given(REPORTS)
def test_the_reference_is_never_slower_than_the_latest_report(reports):
    m = _measured(reports)
    assert m.reference_busy_ms(0, 0) <= m.stage_busy_ms(0, 0)


@given(REPORTS)
def test_the_reference_is_the_fed_median_or_the_latest_report(reports):
    """The definition: the latest report when it came fed; else the smaller of it and the
    median of the last fed reports (the latest report when none came fed)."""
    m = _measured(reports)
    latest, starved = reports[-1]
    fed = [ms for ms, s in reports if not s][-BUSY_HISTORY:]
    expected = min(statistics.median(fed), latest) if starved and fed else latest
    assert m.reference_busy_ms(0, 0) == expected
