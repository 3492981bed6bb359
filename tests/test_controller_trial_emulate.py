"""A trial through ``emulate --link-emulation --bandwidth-schedule`` (issue 11): the run starts
on the wide split over a slow shaped link, the controller moves it to the narrow split (16 B
across, both heavy layers on the first stage), the link steps up to 1000 Mbit/s. With a margin
of 1.5 the wide split, about twice as fast as the narrow one here, never qualifies on its
price — it would stay on the narrow split for ever — but the link step earns it a trial: the
run goes back to it, the wide split measured fresh stays, and ``emulate --json`` says which
switch was the trial. Every frame arrives once, in order, equal to the whole model's."""

from __future__ import annotations

import numpy as np
import pytest
from test_probe_emulate import FRAMES, HIGH_MBPS, LOW_MBPS, RATE_HZ, RECOVER_AT_S

#: Beyond the wide split's lead over the narrow one (about 2× with the heavy layers apart),
#: within the host's drift of it: the switch back can only be a trial.
MARGIN = 1.5


@pytest.mark.network
def test_a_link_step_earns_the_split_left_behind_a_trial(fading_plan, fading_expected, tmp_path):
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.runtime.linkemu import parse_bandwidth_schedule

    plan_dir, _ = fading_plan
    keep = tmp_path / "keep"
    result = emulate(plan_dir, EmulationConfig(
        frames=FRAMES, rate_hz=RATE_HZ, link_emulation=True, link="gige", keep_dir=keep,
        margin=MARGIN, bandwidth_schedule=parse_bandwidth_schedule(
            f"0:{LOW_MBPS:g},{RECOVER_AT_S:g}:{HIGH_MBPS:g}")))
    moves = [(s.from_alternative, s.to_alternative, s.by, s.trial) for s in result.switches]
    said = (moves, [s.at_s for s in result.switches], (keep / "controller.json").read_text())
    assert moves == [(0, 1, "controller", False), (1, 0, "controller", True)], said
    recovered_s = result.bandwidth_schedule[1].applied_at_s
    assert recovered_s is not None and result.switches[1].at_s > recovered_s
    assert (result.frames_delivered, result.frames_duplicated,
            result.frames_out_of_order) == (FRAMES, 0, 0)

    np.testing.assert_allclose(result.outputs["logits"].reshape(fading_expected.shape),
                               fading_expected, rtol=1e-4, atol=1e-4)
