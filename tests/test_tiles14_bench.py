"""``bench_tiles`` reads how far apart a run's tiles' strips reach the gather from the
emulation's own event logs (one JSON line per stage and frame, as the runners write them:
a graph stage adds ``sent_s`` and, per upstream, ``read_s``), warm-up frames left out.

Failed before (``test_the_spread_is_the_arrival...``): the spread was taken over the tiles'
compute ends, while the planner and the timed spread take the strips' arrival at the gather.
"""

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


def _log(path: Path, stage: int, frames: dict[int, tuple[float, float]], **extra) -> None:
    """One stage's log; ``extra[name][frame]``: a field the graph stage adds to that frame."""
    path.write_text("".join(
        json.dumps({"frame": f, "stage": stage, "start_s": a, "end_s": b,
                    **{name: values[f] for name, values in extra.items() if f in values}})
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
    ((spread,),) = [bench.tile_finish_spreads(tmp_path, [([1, 2], 3)])]
    assert spread["frames"] == 3
    assert spread["ms"] == pytest.approx(2.0)  # 1, 2, 3 ms apart
    assert spread["share"] == pytest.approx(2.0 / 12.0)  # over the longer tile, 12 ms
    assert spread["arrival"] == "end_s"  # a log of the four fields alone: the compute ends
    assert spread["compute_end_ms"] == pytest.approx(2.0)


def test_the_spread_is_the_arrival_of_the_strips_at_the_gather(bench, tmp_path):
    """Tile 1 computes 10 ms, tile 2 12 ms, both ending at once; tile 1's strip is sent and
    read by the gather 4 ms after tile 2's (its send waited): the strips reach the gather 4 ms
    apart, the compute ends 0 ms apart."""
    warm = bench.WARMUP_FRAMES
    frames = range(warm + 3)
    tile1 = {f: (f + 0.002, f + 0.012) for f in frames}
    tile2 = {f: (f, f + 0.012) for f in frames}
    sent = {f: f + 0.013 for f in frames}
    _log(tmp_path / "events1.jsonl", 1, tile1, sent_s={f: f + 0.017 for f in frames})
    _log(tmp_path / "events2.jsonl", 2, tile2, sent_s=sent)
    reads = {f: {"0": f + 0.001, "1": f + 0.018, "2": f + 0.014} for f in frames}
    _log(tmp_path / "events3.jsonl", 3, {f: (f + 0.019, f + 0.020) for f in frames},
         read_s=reads)
    _log(tmp_path / "events0.jsonl", 0, {f: (f, f + 0.001) for f in frames})
    (spread,) = bench.tile_finish_spreads(tmp_path, [([1, 2], 3)])
    assert spread["frames"] == 3 and spread["arrival"] == "read_s"
    assert spread["ms"] == pytest.approx(4.0)
    assert spread["share"] == pytest.approx(4.0 / 12.0)
    assert spread["compute_end_ms"] == pytest.approx(0.0, abs=1e-9)
    # no gather log (a killed gather): each tile's send, 4 ms apart too
    (tmp_path / "events3.jsonl").unlink()
    (spread,) = bench.tile_finish_spreads(tmp_path, [([1, 2], 3)])
    assert spread["arrival"] == "sent_s" and spread["ms"] == pytest.approx(4.0)
