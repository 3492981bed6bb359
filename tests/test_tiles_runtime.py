"""A tiled plan running as real processes: the scatter slices each frame's regions, the tiles
run in parallel, the gather stitches by sequence number — outputs equal to the whole Keras
model (the test's oracle), also after a tile stage is SIGKILLed mid-stream and restarted."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_emulate_supervision import _kill_stage_mid_stream, _start_emulate
from test_tiles_export import tile_model

from hwsched.cli import main
from hwsched.errors import PlanError
from hwsched.tiles.regions_np import check_cover, incoming, outgoing

FRAMES = 40
RESTART_FRAMES = 120


@pytest.fixture(scope="module")
def tiled_plan(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiledplan")
    model = tile_model()
    model.save(root / "m.keras")
    argv = ["export", str(root / "m.keras"), "--tiles", "c1..dw:2", "--platforms", "rpi4,rpi4",
            "--out", str(root / "plan"), "--samples", "2"]
    assert main(argv) == 0
    x = np.random.default_rng(5).uniform(0, 1, (RESTART_FRAMES, 1, 40, 36, 3))
    np.save(root / "x.npy", x.astype(np.float32))
    reference = np.stack([np.asarray(model(x[i].astype(np.float32)))
                          for i in range(RESTART_FRAMES)])
    return root, reference


def test_emulating_two_tiles_equals_the_whole_model(tiled_plan, tmp_path):
    root, reference = tiled_plan
    out, record = tmp_path / "out.npz", tmp_path / "run.json"
    argv = ["emulate", str(root / "plan"), "--frames", str(FRAMES), "--data",
            str(root / "x.npy"), "--outputs", str(out), "--json", str(record)]
    assert main(argv) == 0
    outputs = np.load(out)["logits"]
    np.testing.assert_allclose(outputs, reference[:FRAMES], rtol=1e-4, atol=1e-5)
    run = json.loads(record.read_text())
    hops = {h["name"]: h["payload_bytes_per_frame"] for h in run["hops"]}
    image = 40 * 36 * 3 * 4
    # each tile receives a strip of the image (with its halo), not the whole frame
    assert 0 < hops["stage0→stage1"] < image and 0 < hops["stage0→stage2"] < image
    assert [s["frames"] for s in run["stages"]] == [FRAMES] * 4


def test_a_killed_tile_stage_restarted_loses_no_frame(tiled_plan, tmp_path):
    root, reference = tiled_plan
    keep, report = tmp_path / "keep", tmp_path / "run.json"
    process, workdir = _start_emulate(
        root / "plan", tmp_path, "--frames", str(RESTART_FRAMES), "--rate", "40", "--data",
        str(root / "x.npy"), "--restart", "--keep", str(keep), "--json", str(report),
        "--stall-timeout", "120")  # a loaded machine may pause a stage for seconds
    try:
        computed_before_kill = _kill_stage_mid_stream(process, workdir, 2)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert computed_before_kill < RESTART_FRAMES
    sink = json.loads((keep / "sink.json").read_text())
    assert sink["sequence"] == list(range(RESTART_FRAMES))
    outputs = np.load(keep / "outputs.npz")["logits"]
    np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-5)
    record = json.loads(report.read_text())
    assert [stage["restarts"] for stage in record["stages"]] == [0, 0, 1, 0]


def test_stitching_refuses_holes_and_overlaps():
    x = np.arange(24, dtype=np.float32).reshape(1, 4, 3, 2)
    top = ((0, 1), (0, 2), (0, 3), (0, 2))
    low = ((0, 1), (2, 4), (0, 3), (0, 2))
    assert np.array_equal(incoming(x.shape, [(low, outgoing(x, low)), (top, outgoing(x, top))]),
                          x)
    with pytest.raises(PlanError, match="uncovered or cover some twice"):
        check_cover(x.shape, [top, ((0, 1), (1, 4), (0, 3), (0, 2))], "gather")
    with pytest.raises(PlanError, match="uncovered"):
        incoming(x.shape, [(top, outgoing(x, top))])


def test_the_tiled_runner_never_imports_tensorflow(tiled_plan):
    root, _ = tiled_plan
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from hwsched.runtime.graph_stage import GraphStageModel\n"
        "from hwsched.deployment import load_plan\n"
        f"p = Path({str(root / 'plan')!r})\n"
        "models = [GraphStageModel(load_plan(p), p, k) for k in range(4)]\n"
        "assert list(models[3].stitched) == ['dw'], models[3].stitched\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')\n"
        "       or m.startswith('hwsched.export')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
