"""``analyze --tiles --placement graph --runtime-cost FILE``: the tiled candidates are charged
the runner's hand-off cost as the chain and graph candidates beside them are (issue 14, since
misc17; they were priced from the link alone before, which the analysis, a printed line and
an exported plan said); every row of the joint ranking says how its links travel.

Failed before the fix: nothing said the tiled candidates were uncharged (``runtime_cost`` was
not recorded at all), and their ``placement_ranking`` rows had no ``compression``."""

from __future__ import annotations

import contextlib
import io
import json

import keras
import pytest

from hwsched.cli import main


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiled_charge")
    inputs = keras.Input(batch_shape=(1, 32, 32, 8), name="x")
    x = inputs
    for i in range(3):
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=f"c{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    keras.Model(inputs, keras.layers.Dense(4, name="fc")(x)).save(root / "stack.keras")
    hop = root / "hop.json"
    hop.write_text(json.dumps({"frame_ms": 0.05, "per_byte_ms": 1e-6}))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["analyze", str(root / "stack.keras"), "--platforms", "rpi5,rpi4",
                     "--link", "gige", "--objective", "latency", "--no-report", "--tiles",
                     "--placement", "graph", "--runtime-cost", str(hop),
                     "--json", str(root / "a.json")]) == 0
    return root, json.loads((root / "a.json").read_text()), " ".join(printed.getvalue().split())


def test_the_analysis_says_tiled_candidates_are_charged(analysed):
    _, document, printed = analysed
    assert any(c["placement"] == "tiles" for c in document["candidates"])
    assert document["runtime_cost"]["charged"] is True
    assert document["runtime_cost"]["tiles_charged"] is True
    assert "tiled candidates are not charged" not in printed


def test_every_ranked_row_says_how_its_links_travel(analysed):
    _, document, _ = analysed
    rows = document["placement_ranking"]
    assert {r["kind"] for r in rows} >= {"chain", "tiles"}
    assert all(r["compression"] == "fp32" for r in rows)  # nothing compresses without --compress


def test_an_exported_tiled_plan_says_its_prediction_is_charged(analysed):
    root, document, _ = analysed
    best = next(c for c in document["candidates"] if c["placement"] == "tiles")
    out = root / "tiled"
    assert main(["export", str(root / "stack.keras"), "--analysis", str(root / "a.json"),
                 "--candidate", str(best["rank"]), "--out", str(out), "--samples", "2",
                 "--calibration", "random:8"]) == 0
    prediction = json.loads((out / "plan.json").read_text())["prediction"]
    assert prediction["runtime_cost"] == document["runtime_cost"]
    assert prediction["runtime_cost"]["charged"] is True
    assert prediction["latency_ms"] == best["latency_ms"]
