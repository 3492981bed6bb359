"""``analyze --tiles --runtime-cost``: the "tiled candidates are not charged" line warns that
their ranks beside charged candidates flatter them, so it is printed only when a tiled
candidate was ranked. Failed before: a model with no run of convolutions to tile (no tiled
candidate) printed it anyway."""

from __future__ import annotations

import contextlib
import io
import json

import keras

from hwsched.cli import main

NOTE = "tiled candidates are not charged"


def test_no_uncharged_tiles_line_without_a_tiled_candidate(tmp_path):
    inputs = keras.Input(batch_shape=(1, 16), name="x")
    x = keras.layers.Dense(32, activation="relu", name="d0")(inputs)
    keras.Model(inputs, keras.layers.Dense(4, name="fc")(x)).save(tmp_path / "dense.keras")
    hop = tmp_path / "hop.json"
    hop.write_text(json.dumps({"frame_ms": 0.05, "per_byte_ms": 1e-6}))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["analyze", str(tmp_path / "dense.keras"), "--platforms", "rpi5,rpi4",
                     "--no-report", "--tiles", "--runtime-cost", str(hop),
                     "--json", str(tmp_path / "a.json")]) == 0
    document = json.loads((tmp_path / "a.json").read_text())
    assert not any(c["placement"] == "tiles" for c in document["candidates"])
    assert NOTE not in " ".join(printed.getvalue().split())
