"""``analyze --tiles --runtime-cost FILE`` charges tiled candidates the runner's hand-off cost
as it charges chain splits (issue 14): the oracle re-prices each charged candidate's own
strips with the uncharged tile coster and adds the charge computed here by hand from the
cost file's two terms.

Failed before: the tiled candidates were priced from the link alone (``root_peer_ms`` 0, no
per-stage hop cost, no source/sink hops), ``runtime_cost.tiles_charged`` was false and a line
said their ranks flattered them. The hand charge follows the exported stage graph since
tilefix (the root's own tile's bytes, the order of the root's sends and receipts, the gather
stage's invocation; proven against the played layout in :mod:`tests.test_tilefix_charge`)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from hwsched.cli import main
from hwsched.costs.runtime import RuntimeCost
from hwsched.hardware import load_link, load_platform
from hwsched.schedule.tiles import tiled_candidates
from hwsched.tiles.planning import TileCoster, boards_from_platforms, link_from_descriptor

FRAME_MS, PER_BYTE_MS = 0.05, 1e-6
PLATFORMS, LINK = ("rpi5", "rpi4"), "gige"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    import keras

    from hwsched.load.keras_reader import read_keras_model

    root = tmp_path_factory.mktemp("misc17_tiles")
    inputs = keras.Input(batch_shape=(1, 32, 32, 8), name="x")
    x = inputs
    for i in range(3):
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=f"c{i}")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    model.save(root / "stack.keras")
    hop = root / "hop.json"
    hop.write_text(json.dumps({"frame_ms": FRAME_MS, "per_byte_ms": PER_BYTE_MS}))
    return root, read_keras_model(model, "stack", source="test")[0]


def _hand_charged_ms(graph, candidate) -> float:
    """The candidate's plan priced with the uncharged coster, plus by hand: every tile two
    hops' ends per message (4 frame terms) and both ends' bytes of its scatter and gather (the
    root's own tile too: the scatter stage sends it its region, its bytes read here off the
    same region priced on another board), the root two ends per other tile; each tile's path
    also crosses the root's sends of the tiles before it and its receipt of the others'
    strips (the root's tile: their bytes), and the gather stage's invocation; the source's and
    sink's hops both ends on the root (once: not again in the plan's own overhead)."""
    platforms = [load_platform(name) for name in PLATFORMS]
    boards = boards_from_platforms(graph, platforms, "fp32")
    by_name = {b.name: b for b in boards}
    plain = TileCoster(graph, [by_name[b.name] for b in candidate.coster.boards],
                       link_from_descriptor(load_link(LINK)))
    root = plain.boards[0]
    ms = root.overhead_ms
    for segment in candidate.plan.segments:
        assert segment.channels is None  # the oracle below prices row-tiled runs only
        if segment.tiled is None:
            ms += sum(root.layer_ms[p] for p in range(segment.start, segment.end + 1))
            continue
        tiles, peers = segment.tiled.tiles, len(segment.tiled.tiles) - 1
        run = segment.tiled.run
        sizes = [plain.tile_region(run, 1, tile.region, peers) for tile in tiles]
        scatter = [c.scatter_bytes for c in sizes]
        gather = [c.gather_bytes for c in sizes]
        paths = []
        for k, tile in enumerate(tiles):
            cost = plain.tile_region(run, k, tile.region, peers)
            own = (cost.latency_ms + 4 * FRAME_MS
                   + 2 * PER_BYTE_MS * (scatter[k] + gather[k])
                   + (0.0 if k else peers * 2 * FRAME_MS))
            if k == 0:
                waits = PER_BYTE_MS * (sum(scatter[1:]) + sum(gather[1:]))
            else:
                waits = (sum(FRAME_MS + PER_BYTE_MS * s for s in scatter[:k])
                         + sum(FRAME_MS + PER_BYTE_MS * g
                               for j, g in enumerate(gather) if j != k))
            paths.append(own + waits + root.overhead_ms)
        ms += max(paths)
    in_bytes, out_bytes = 32 * 32 * 8 * 4, 32 * 4
    return ms + 4 * FRAME_MS + 2 * PER_BYTE_MS * (in_bytes + out_bytes)


def test_a_tiled_candidate_is_charged_exactly_the_hand_computed_cost(stack):
    _, graph = stack
    platforms = [load_platform(name) for name in PLATFORMS]
    runtime = RuntimeCost(frame_ms=FRAME_MS, per_byte_ms=PER_BYTE_MS)
    charged = tiled_candidates(graph, platforms, load_link(LINK), "fp32", runtime)
    plain = tiled_candidates(graph, platforms, load_link(LINK), "fp32")
    assert charged and plain
    for candidate in charged:
        assert candidate.latency_ms == pytest.approx(_hand_charged_ms(graph, candidate),
                                                     rel=1e-12)
    # the same strips charged cost more than uncharged by at least the fixed hops
    assert min(c.latency_ms for c in charged) > min(c.latency_ms for c in plain) + 8 * FRAME_MS


def test_analyze_charges_them_and_says_so(stack):
    root, graph = stack
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["analyze", str(root / "stack.keras"), "--platforms", ",".join(PLATFORMS),
                     "--link", LINK, "--precision", "fp32", "--objective", "latency",
                     "--no-report", "--tiles", "--runtime-cost", str(root / "hop.json"),
                     "--json", str(root / "a.json")]) == 0
    document = json.loads((root / "a.json").read_text())
    assert document["runtime_cost"]["charged"] is True
    assert document["runtime_cost"]["tiles_charged"] is True
    assert "not charged" not in " ".join(printed.getvalue().split())
    runtime = RuntimeCost(frame_ms=FRAME_MS, per_byte_ms=PER_BYTE_MS)
    found = tiled_candidates(graph, [load_platform(n) for n in PLATFORMS], load_link(LINK),
                             "fp32", runtime)
    listed = [c for c in document["candidates"] if c["placement"] == "tiles"]
    assert listed and len(listed) <= len(found)
    for entry in listed:
        assert any(entry["latency_ms"] == pytest.approx(_hand_charged_ms(graph, c), rel=1e-12)
                   for c in found)
