"""The big one: a 3-stage EfficientNet-B0 split, exported and verified (slow)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from handchain import assert_split_equals_keras, random_inputs

from hwsched.cuts import enumerate_cuts
from hwsched.export import export, verify_plan_dir
from hwsched.export.verify import FP32_RELATIVE_TOLERANCE
from hwsched.load import load_model


@pytest.mark.slow
def test_efficientnet_b0_three_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))
    loaded = load_model("efficientnet_b0")
    cuts = enumerate_cuts(loaded.graph)
    # one cut inside a squeeze-excite branch (3 tensors cross), one at a single-tensor cut
    se_cut = next(c for c in cuts if len(c.crossing) == 3 and c.head_layers > 60)
    single = next(c for c in cuts if c.single_tensor and c.head_layers > se_cut.head_layers + 60)
    started = time.perf_counter()
    plan = export(loaded, ["rpi4", "rpi5", "jetson_nano"], tmp_path / "out",
                  cut_positions=[se_cut.head_layers, single.head_layers], precisions="fp32",
                  calibration="random:2", samples=3)
    elapsed_s = time.perf_counter() - started
    assert [len(link.tensors) for link in plan.links] == [3, 1]
    # the tests' own oracle: stage files run by hand against the Keras model itself
    model = loaded.keras.model
    worst = assert_split_equals_keras(tmp_path / "out", model, random_inputs(model, 2, seed=6),
                                      list(loaded.graph.outputs), FP32_RELATIVE_TOLERANCE)
    assert verify_plan_dir(tmp_path / "out").passed
    print(f"EfficientNet-B0 3-stage export: {elapsed_s:.1f} s, max rel diff {worst:.2e}")
