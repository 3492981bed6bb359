"""Review of two of the lead's late fixes, checked against brute force (both held: these are
the evidence, and guard them).

* ``Measured.stage_busy_ms``: a stage's running split (the split of its latest busy report)
  is priced by that report, a split it left by the median of its last ``BUSY_HISTORY``
  reports — recomputed here from the raw report stream, over any interleaving of stages and
  splits, re-entries included.
* ``HopMeter.observe_probe``: an exact train within a step of the saturated estimate never
  replaces it, never counts as a step, and never raises the estimate (a faster one is a bound).
"""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from hwsched.runtime.controller import BUSY_HISTORY, Measured
from hwsched.runtime.frames import Report
from hwsched.runtime.reliable import STEP_FACTOR, HopMeter

reports = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2),
                             st.floats(0.5, 50.0, allow_nan=False)), max_size=160)


@given(reports)
def test_busy_time_of_each_split_matches_the_raw_reports(stream):
    measured = Measured()
    for stage, alternative, busy_ms in stream:
        measured = measured.with_report(Report(stage, stage, None, busy_ms, alternative))
    for stage in range(3):
        own = [(alt, ms) for k, alt, ms in stream if k == stage]
        for alternative in range(3):
            seen = [ms for alt, ms in own if alt == alternative]
            if not seen:
                expected = None
            elif own[-1][0] == alternative:  # still running it: its latest report
                expected = seen[-1]
            else:  # left: the median of its last BUSY_HISTORY reports
                expected = statistics.median(seen[-BUSY_HISTORY:])
            assert measured.stage_busy_ms(stage, alternative) == expected


# a relative 1e-9 inside the step's bounds: the train's rate is recomputed from a duration,
# so a ratio one ulp below the factor can read back as the factor itself
@given(st.floats(1.0, 1000.0), st.floats(1.0 / STEP_FACTOR * (1 + 1e-9),
                                         STEP_FACTOR * (1 - 1e-9)))
def test_a_train_within_a_step_never_replaces_nor_raises_the_estimate(saturated, ratio):
    meter = HopMeter()
    meter._take(saturated * 1e6 / 8, exact=True)  # one saturated sample: the estimate
    wire_bytes = 125_000
    seconds = wire_bytes * 8 / (saturated * ratio * 1e6)  # a train at saturated * ratio
    mbps = meter.observe_probe(wire_bytes, sent_s=100.0, read_s=100.0 + seconds, exact=True)
    assert mbps is not None and meter.steps == 0
    assert min(saturated, mbps) * (1 - 1e-9) <= meter.exact_mbps <= saturated * (1 + 1e-9)
    if mbps > saturated:
        assert meter.at_least_mbps == mbps  # kept as a bound only
