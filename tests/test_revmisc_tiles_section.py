"""``analyze --tiles --runtime-cost FILE``: the ``tiles`` section (the least-latency tiled
plan) states the latency its candidate is ranked with, and compares it with a single board
charged the same input and output hops.

Failed before: the section kept the plan's latency without the model's input and output hops
(``runner_io_ms``) while the same plan's candidate row held them, so one analysis gave the
plan two latencies and its speedup compared a charged plan with an uncharged board."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from hwsched.cli import main
from hwsched.costs.runtime import RuntimeCost
from hwsched.schedule.tiles import runner_io_ms
from tests.test_misc17_tiles_charge import FRAME_MS, LINK, PER_BYTE_MS, PLATFORMS, stack

__all__ = ["stack"]  # the fixture, shared


def _analyse(root, *extra: str) -> dict:
    path = root / f"a{len(extra)}.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["analyze", str(root / "stack.keras"), "--platforms", ",".join(PLATFORMS),
                     "--link", LINK, "--precision", "fp32", "--objective", "latency",
                     "--no-report", "--tiles", "--json", str(path), *extra]) == 0
    return json.loads(path.read_text())


def test_the_tiles_section_is_its_candidates_latency(stack):
    root, graph = stack
    charged = _analyse(root, "--runtime-cost", str(root / "hop.json"))
    plain = _analyse(root)
    io_ms = sum(runner_io_ms(graph, RuntimeCost(frame_ms=FRAME_MS, per_byte_ms=PER_BYTE_MS)))
    assert io_ms > 0
    for document in (charged, plain):
        tiled = [c["latency_ms"] for c in document["candidates"] if c["placement"] == "tiles"]
        assert document["tiles"]["latency_ms"] == pytest.approx(min(tiled), rel=1e-12)
    # a single board pays the input and output hops as the plan does; nothing else charges it
    assert charged["tiles"]["best_single_ms"] == pytest.approx(
        plain["tiles"]["best_single_ms"] + io_ms, rel=1e-12)
