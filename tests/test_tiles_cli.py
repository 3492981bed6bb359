"""``hwsched analyze --tiles``: the tiled plan beside the chain ranking, kept in the JSON."""

from __future__ import annotations

import itertools
import json

import keras

from hwsched.cli import main
from hwsched.documents.analysis import AnalysisDocument


def _conv_stack(path):
    inputs = keras.Input(batch_shape=(1, 48, 48, 16), name="x")
    x = inputs
    for i in range(4):  # heavy enough (340 M MACs) that sharing it beats the link's cost
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name=f"c{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    keras.Model(inputs, keras.layers.Dense(4, name="fc")(x)).save(path)


def test_analyze_tiles_adds_a_tiled_plan_whose_strips_cover_each_run(tmp_path, capsys):
    model = tmp_path / "stack.keras"
    _conv_stack(model)
    out = tmp_path / "a.json"
    argv = ["analyze", str(model), "--platforms", "rpi5,rpi4", "--link", "gige",
            "--tiles", "--no-report", "--json", str(out)]
    assert main(argv) == 0
    assert "Tiled plan (single-frame latency" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    tiles = doc["tiles"]
    assert sorted(tiles["boards"]) == ["0:rpi5", "1:rpi4"]
    rows = [s for s in tiles["segments"] if s["kind"] == "rows"]
    assert rows, "a 48x48 conv stack over two boards on gigabit should be tiled"
    assert tiles["latency_ms"] <= tiles["root_alone_ms"]
    # the root is the board that gives the least latency, whichever platform came first
    assert tiles["latency_ms"] <= tiles["best_single_ms"]
    for segment in rows:
        spans = [t["rows"] for t in segment["tiles"]]
        assert spans[0][0] == 0 and spans[-1][1] == 48
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert segment["tiles"][0]["scatter_bytes"] == 0  # the root holds the frame
    assert AnalysisDocument.from_dict(doc).to_dict()["tiles"] == tiles
