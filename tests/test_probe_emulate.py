"""The switch back after a link recovers (issue 11), through ``emulate --link-emulation
--bandwidth-schedule``: the run starts on the split that sends a wide tensor over a slow shaped
link, the controller moves it to the split that sends 16 bytes, the link steps up to 1000
Mbit/s, and — the link now idle between frames, so only a capacity probe can show it is fast —
the controller moves it back. Every frame arrives once, in order, equal to the whole model's;
no probe reaches the sink or a model."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hwsched.deployment import Alternative, Plan, save_plan

#: The wide cut sends 32×32×4 float32 (16 KiB); the narrow one 4 float32.
SIDE, IN_CHANNELS, WIDE_CHANNELS = 32, 16, 4
#: The heavy layers' filters: ~38 M MACs each, about 1.1 ms on this host, so that at a
#: quarter of the link's nominal 1000 Mbit/s the wide split's 16 KiB cross in half the time a
#: stage computes (0.5 ms), inside the controller's strong-evidence box
#: (:data:`hwsched.runtime.controller.STRONG_EVIDENCE_FACTOR`) whatever tbf's burst adds to
#: what a probe reads (1.5-2.4 Gbit/s). With 32 KiB and half these MACs (0.55 ms) the box's
#: corner sat on the link's edge and the trial came or not by chance.
HEAVY_A, HEAVY_B = 256, 1024
#: The upper edge of the narrow split's winning range written into the plan (Mbit/s): where
#: the wide split's 16 KiB cost as much as a stage's compute, roughly, on this host.
EDGE_MBPS = 120.0
LOW_MBPS, HIGH_MBPS, RECOVER_AT_S = 10.0, 1000.0, 5.0
#: 14 s of stream at 100 frames/s: 9 s after the recovery, several probe intervals and holds.
FRAMES, RATE_HZ = 1400, 100.0


def _model():
    import keras

    inputs = keras.Input(batch_shape=(1, SIDE, SIDE, IN_CHANNELS), name="image")
    x = keras.layers.Conv2D(HEAVY_A, 3, padding="same", activation="relu", name="heavy_a")(inputs)
    x = keras.layers.Conv2D(WIDE_CHANNELS, 1, name="wide")(x)
    x = keras.layers.Conv2D(HEAVY_B, 3, padding="same", activation="relu", name="heavy_b")(x)
    x = keras.layers.Conv2D(4, 1, strides=2, name="narrow")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="probecut")


def whole_model_outputs(keras_model, images: np.ndarray) -> np.ndarray:
    """The model's outputs for a batch of frames: its layers (a plain chain) replayed on an
    input without the fixed batch of 1, so the frames go through in batches, not one eager
    call each (~26 ms a call on this host)."""
    import keras

    assert isinstance(keras_model.layers[0], keras.layers.InputLayer)
    inputs = keras.Input(shape=images.shape[1:])
    x = inputs
    for layer in keras_model.layers[1:]:
        x = layer(x)
    return keras.Model(inputs, x).predict(images, batch_size=25, verbose=0)


def _renamed(plan: Plan, prefix: str) -> Plan:
    return replace(plan, stages=tuple(replace(s, file=prefix + s.file) for s in plan.stages))


def build_plan(root: Path) -> tuple[Path, object]:
    """``root/adaptive``: alternative 0 cuts after ``wide`` (balanced, 16 KiB across), 1 after
    ``pool`` (both heavy layers on stage 0, 16 B across); and the loaded model."""
    from hwsched.cuts import enumerate_cuts
    from hwsched.export import export
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    keras_model = _model()
    graph, binding = read_keras_model(keras_model, "probecut", source="test")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    cuts = {c.after: c.head_layers for c in enumerate_cuts(graph)}
    out = root / "adaptive"
    out.mkdir(parents=True)
    plans = []
    for alt, after in enumerate(("wide", "pool")):
        export_dir = root / f"cut_{after}"
        plan = export(loaded, ["rpi4", "rpi4"], export_dir, cut_positions=(cuts[after],),
                      precisions="fp32", cache=False, samples=2)
        for stage in plan.stages:
            shutil.copyfile(export_dir / stage.file, out / f"alt{alt}_{stage.file}")
        plans.append(_renamed(plan, f"alt{alt}_"))
    alternatives = (
        Alternative(0, plans[0].cut_positions, EDGE_MBPS, float("inf"), plans[0]),
        Alternative(1, plans[1].cut_positions, 0.0, EDGE_MBPS, plans[1]))
    save_plan(replace(plans[0], alternatives=alternatives), out)
    return out, keras_model


@pytest.mark.network
def test_after_the_link_recovers_a_probe_brings_the_wide_split_back(fading_plan, fading_expected,
                                                                   tmp_path):
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.runtime.linkemu import parse_bandwidth_schedule

    plan_dir, _ = fading_plan
    keep = tmp_path / "keep"
    schedule = parse_bandwidth_schedule(f"0:{LOW_MBPS:g},{RECOVER_AT_S:g}:{HIGH_MBPS:g}")
    result = emulate(plan_dir, EmulationConfig(
        frames=FRAMES, rate_hz=RATE_HZ, link_emulation=True, link="gige", keep_dir=keep,
        bandwidth_schedule=schedule))
    assert result.adaptive
    assert (result.frames_delivered, result.frames_duplicated,
            result.frames_out_of_order) == (FRAMES, 0, 0)
    stage0, stage1 = (json.loads((keep / f"stage{k}.json").read_text()) for k in (0, 1))
    moves = [(s.from_alternative, s.to_alternative, s.by) for s in result.switches]
    said = (moves, [s.at_s for s in result.switches], stage0["downstream"], stage1["upstream"],
            (keep / "controller.json").read_text())
    assert moves == [(0, 1, "controller"), (1, 0, "controller")], said
    recovered_s = result.bandwidth_schedule[1].applied_at_s
    assert recovered_s is not None and result.switches[1].at_s > recovered_s  # after, not by luck

    assert stage0["downstream"]["probes"] >= 1 and stage1["upstream"]["probes_exact"] >= 1
    # probes never reach a model or the sink: each frame computed once per stage, delivered once
    for k in (0, 1):
        frames = sorted(json.loads(x)["frame"] for x in
                        (keep / f"events{k}.jsonl").read_text().splitlines())
        assert frames == list(range(FRAMES))

    outputs = result.outputs["logits"].reshape(fading_expected.shape)
    np.testing.assert_allclose(outputs, fading_expected, rtol=1e-4, atol=1e-4)
