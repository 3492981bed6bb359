"""``bench_tiles`` reads how far apart a run's tiles finish from the emulation's own event logs
(one JSON line per stage and frame, as the runners write them), warm-up frames left out."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_tiles.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_tiles_tiles14", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(path: Path, stage: int, frames: dict[int, tuple[float, float]]) -> None:
    path.write_text("".join(json.dumps({"frame": f, "stage": stage, "start_s": a, "end_s": b})
                            + "\n" for f, (a, b) in frames.items()))


def test_the_spread_is_the_median_over_measured_frames(bench, tmp_path):
    warm = bench.WARMUP_FRAMES
    # tile stages 1 and 2; frame f: tile 1 runs 10 ms, tile 2 ends (f - warm + 1) ms later
    tile1 = {f: (f, f + 0.010) for f in range(warm + 3)}
    tile2 = {f: (f, f + 0.010 + (f - warm + 1) * 1e-3) for f in range(warm + 3)}
    tile2[0] = (0.0, 5.0)  # a warm-up frame far apart: not counted
    _log(tmp_path / "events1.jsonl", 1, tile1)
    _log(tmp_path / "events2.jsonl", 2, tile2)
    _log(tmp_path / "events0.jsonl", 0, {f: (f, f + 0.001) for f in range(warm + 3)})
    ((spread,),) = [bench.tile_finish_spreads(tmp_path, [[1, 2]])]
    assert spread["frames"] == 3
    assert spread["ms"] == pytest.approx(2.0)  # 1, 2, 3 ms apart
    assert spread["share"] == pytest.approx(2.0 / 12.0)  # over the longer tile, 12 ms
