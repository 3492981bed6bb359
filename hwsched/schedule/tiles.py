"""Tiled candidates of ``analyze --tiles``, ranked in the same ``candidates`` list as the chain
splits and the stage graphs.

Each board in turn is the root (the others keep their order); the fused-run DP of
:func:`hwsched.tiles.planning.plan_tiles` picks the runs, their board counts and strips (in
proportion to the boards' predicted speed on the run, then re-sized to the exact min–max
strips) and which dense/convolution layers split by output channels. Every distinct plan that splits
something becomes a candidate, evaluated on all three objectives so it ranks beside the others:

* ``latency_ms``: the DP's single-frame latency (the root's layers, each split's slowest path
  through the root's sends and receipts, :func:`~hwsched.tiles.planning.run_paths_ms`);
* ``period_ms``: the busiest board (its compute, one invocation per stage and its ends of the
  runner's hops) or the busiest link (its scatter and gather transfers) when frames stream —
  ``throughput_ips`` its inverse;
* ``energy_mj``: every board's :func:`~hwsched.costs.energy.stage_energy_mj` over that period
  plus the link's energy for the bytes scattered and gathered (the link's transfer model);
* memory: every tile and part against its board (:mod:`hwsched.tiles.memory`), the root's
  layers outside the splits with the root's own tiles; a candidate that does not fit is listed
  with ``feasible: false`` and its reasons, as a chain split would be;
* with a runner's hand-off cost (``analyze --runtime-cost``) every candidate is charged it as
  the chain splits are: the tile planner's boards and link carry the hops between the stages
  (:func:`~hwsched.tiles.planning.charge_runtime`, so the DP plans with it charged), and the
  root, which runs the source and the sink, their hops (:func:`runner_io_ms`);
* with measured profiles (``analyze --profile``) a board whose platform has one is priced from
  it, as the chain splits are (each segment's time spread over its layers by roofline
  shares), and a paced profile's wake after idle is charged once per stage — a tiled run's
  tiles and its gather are invocations of their own, each woken by its message
  (:func:`~hwsched.tiles.planning.boards_from_platforms`; JSON ``latency_model``:
  ``measured``, or ``measured+roofline`` when some of its boards have no profile).

:func:`join_ranked` merges the tiled candidates into the existing order (chain splits, or chain
and graph candidates) without reordering those: a tiled candidate goes before the first entry
it beats on ``(infeasible, objective, the other objectives)``, after every one it ties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwsched.costs.energy import active_idle, stage_energy_mj
from hwsched.costs.memory import arena, layer_weight_bytes, memory_fit
from hwsched.costs.profile import Profile
from hwsched.costs.runtime import RuntimeCost
from hwsched.costs.transfer import framed
from hwsched.hardware import Link, Platform
from hwsched.ir import LayerGraph
from hwsched.schedule.context import board_labels, profile_for
from hwsched.schedule.handoff import model_io_bytes, runner_shares_ms
from hwsched.schedule.records import OBJECTIVES
from hwsched.tiles.memory import TileMemory, part_memory, tile_memory
from hwsched.tiles.planning import (
    Segment,
    TileCoster,
    TileLink,
    TilingPlan,
    boards_from_platforms,
    charge_runtime,
    link_from_descriptor,
    plan_tiles,
)
from hwsched.tiles.receptive import tile_plan
from hwsched.tiles.summary import (
    WEIGHTS_CHARGED,
    export_hint,
    segment_to_dict,
    tiles_latency_model,
)
from hwsched.units import MS_PER_S

#: What ``placement`` says of a tiled candidate in ``candidates``.
TILES_PLACEMENT = "tiles"
#: How a tiled plan's scatter and gather travel: as made (its plan is a stage graph, and
#: stage-graph plans refuse compressed links), whatever ``--compress`` allows the chains.
TILES_WIRE_LEVEL = "fp32"


@dataclass(frozen=True)
class TiledCandidate:
    """One tiled plan over boards in ``order`` (indices into the platforms given; root first),
    evaluated on every objective."""

    coster: TileCoster
    plan: TilingPlan
    order: tuple[int, ...]
    labels: tuple[str, ...]
    platforms: tuple[Platform, ...]
    busy_ms: tuple[float, ...]
    link_ms: tuple[float, ...]
    energy_mj: float
    memory: tuple[TileMemory, ...]
    reasons: tuple[str, ...]
    precision: str | None
    #: The runner's share of the model's input and output hops: on the root's core, and on
    #: the wire (0 without a runtime cost; :func:`runner_io_ms`).
    io_core_ms: float = 0.0
    io_wire_ms: float = 0.0

    @property
    def latency_ms(self) -> float:
        return self.plan.latency_ms + self.io_core_ms + self.io_wire_ms

    @property
    def period_ms(self) -> float:
        return max(*self.busy_ms, *self.link_ms)

    @property
    def throughput_ips(self) -> float:
        return MS_PER_S / self.period_ms if self.period_ms > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """The ``candidates`` entry: ``placement: "tiles"``, the objectives, ``boards`` (root
        first), ``tiles`` (each split segment: its run, kind and every tile's board, ``rows``,
        ``cols``, ``halo``, input regions, memory) and the ``export --tiles`` values."""
        used = sorted({k for s in _split_segments(self.plan) for k in range(_width(s))})
        segments = [segment_to_dict(self.coster, s, self.labels)
                    for s in _split_segments(self.plan)]
        return {
            "placement": TILES_PLACEMENT,
            "boards": list(self.labels),
            "platforms": [p.name for p in self.platforms],
            "precision": self.precision,
            "latency_model": tiles_latency_model([self.coster.boards[k] for k in used]),
            "weights_charged": WEIGHTS_CHARGED,
            "latency_ms": self.latency_ms,
            "throughput_ips": self.throughput_ips,
            "period_ms": self.period_ms,
            "energy_mj": self.energy_mj,
            "busy_ms": {self.labels[k]: self.busy_ms[k] for k in used},
            "memory_bytes": {self.labels[k]: self.memory[k].memory_bytes for k in used},
            "feasible": not self.reasons,
            "reasons": list(self.reasons),
            "tiles": segments,
            **export_hint(self.coster, self.plan),
        }


def _split_segments(plan: TilingPlan) -> list[Segment]:
    return [s for s in plan.segments if s.tiled is not None or s.channels is not None]


def _width(segment: Segment) -> int:
    if segment.tiled is not None:
        return len(segment.tiled.tiles)
    assert segment.channels is not None
    return len(segment.channels.parts)


# -- evaluation -----------------------------------------------------------------------------------
def _busy(coster: TileCoster, plan: TilingPlan) -> tuple[list[float], list[float]]:
    """Per board (coster order): its core's work per frame, and its link time (its transfers
    with the runner's ends taken out). The core's work is every stage it runs — one
    invocation each (``overhead_ms``: the root's first stage, and per split the root's own
    tile or part and the gather stage), its compute — and the runner's ends of every hop it
    touches, each on the core that runs it: the root's own tile's four (``hop_ms``) and their
    bytes, the root's sending end of every other tile's scatter and receiving end of its
    gather (``root_peer_ms`` and per byte), both ends of the bypass message; another tile's
    own two ends (receiving its scatter, sending its gather) on its board. These are sums,
    so they equal the exported stage graph's per-core work exactly, but for a tensor that
    crosses several runs (:func:`~hwsched.tiles.planning.run_paths_ms`)."""
    n = len(coster.boards)
    busy, link = [0.0] * n, [0.0] * n
    busy[0] = coster.boards[0].overhead_ms
    for segment in plan.segments:
        if segment.tiled is not None:
            for k, tile in enumerate(segment.tiled.tiles):
                if k == 0:  # all of the root's own tile runs on its core
                    busy[0] += tile.latency_ms
                    continue
                busy[k] += tile.compute_ms + tile.overhead_ms - coster.boards[k].hop_ms / 2
                link[k] += tile.transfer_ms
                _ends_per_byte(coster.link, busy, link, k, *tile.message_bytes)
            _gather_busy(coster, busy, segment.tiled.bypass_bytes)
        elif segment.channels is not None:
            split = segment.channels
            out = coster.graph.layers[split.position].outputs[0].shape[-1]
            busy[0] += split.part_ms[0]
            for k, part in enumerate(split.parts[1:], start=1):
                board = coster.boards[k]
                compute = board.layer_ms[split.position] * part.channels.size / out
                busy[k] += compute + board.overhead_ms + board.hop_ms / 2
                link[k] += split.part_ms[k] - compute - board.overhead_ms - board.hop_ms
                _ends_per_byte(coster.link, busy, link, k, part.input_bytes, part.output_bytes)
            _gather_busy(coster, busy, split.bypass_bytes)
        else:
            busy[0] += segment.latency_ms
    return busy, link


def _gather_busy(coster: TileCoster, busy: list[float], bypass_bytes: int | None) -> None:
    """A split's gather stage is one more invocation on the root; the bypass message (tensors
    from the scatter stage straight to the gather stage) both its ends there too."""
    busy[0] += coster.boards[0].overhead_ms
    if bypass_bytes is not None:  # an empty message still costs its ends
        busy[0] += coster.link.send_ms(bypass_bytes) + coster.link.receive_ms(bypass_bytes)


def _ends_per_byte(tile_link: TileLink, busy: list[float], link: list[float], k: int,
                   scatter_bytes: int, gather_bytes: int) -> None:
    """Move the runner's per-byte ends of board ``k``'s scatter and gather from its link time
    to the cores that run them: the root sends the scatter and receives the gather, board
    ``k`` the other way round."""
    sends, receives = tile_link.sender_per_byte_ms, tile_link.receiver_per_byte_ms
    root = sends * scatter_bytes + receives * gather_bytes
    own = receives * scatter_bytes + sends * gather_bytes
    busy[0] += root
    busy[k] += own
    link[k] -= root + own


def _memory(graph: LayerGraph, plan: TilingPlan, platforms: Sequence[Platform],
            precision: str | None) -> tuple[TileMemory, ...]:
    """Each board's largest tile or part; the root's also holds the layers it runs alone."""
    worst: list[TileMemory | None] = [None] * len(platforms)

    def keep(k: int, memory: TileMemory) -> None:
        if worst[k] is None or memory.memory_bytes > worst[k].memory_bytes:
            worst[k] = memory

    root_positions = []
    for segment in plan.segments:
        if segment.tiled is not None:
            for k, tile in enumerate(segment.tiled.tiles):
                plan_k = tile_plan(graph, segment.tiled.run, tile.region)
                keep(k, tile_memory(graph, plan_k, platforms[k], precision))
        elif segment.channels is not None:
            for k, part in enumerate(segment.channels.parts):
                keep(k, part_memory(graph, part, platforms[k], precision))
        else:
            root_positions.append(segment.start)
    keep(0, _root_memory(graph, root_positions, worst[0], platforms[0], precision))
    empty = TileMemory(0, 0, None)
    return tuple(m or empty for m in worst)


def _root_memory(graph: LayerGraph, positions: Sequence[int], own: TileMemory | None,
                 platform: Platform, precision: str | None) -> TileMemory:
    """The root holds the weights of its own layers and of its largest tile; its activations
    peak at the larger of its layers' arena peak and that tile's."""
    chosen = precision or platform.default_precision
    weights = sum(layer_weight_bytes(graph.layers[p], chosen) for p in positions)
    live = arena(graph, chosen).live_bytes
    peak = max((int(live[p]) for p in positions), default=0)
    if own is not None:
        weights += own.weights_bytes
        peak = max(peak, own.peak_activation_bytes)
    return TileMemory(weights, peak, memory_fit(platform, weights, peak))


def _link_energy_mj(link: Link, plan: TilingPlan) -> float:
    total = 0.0
    for segment in plan.segments:
        if segment.tiled is not None:
            for tile in segment.tiled.tiles[1:]:
                total += framed(link, tile.scatter_bytes + tile.gather_bytes, 2).energy_mj
        elif segment.channels is not None:
            for part in segment.channels.parts[1:]:
                total += framed(link, part.input_bytes + part.output_bytes, 2).energy_mj
    return total


def evaluate(coster: TileCoster, plan: TilingPlan, order: Sequence[int],
             platforms: Sequence[Platform], link: Link, precision: str | None,
             io_ms: tuple[float, float] = (0.0, 0.0)) -> TiledCandidate:
    """A tiled plan over the boards ``order`` picks from ``platforms``, on every objective;
    ``io_ms``: :func:`runner_io_ms` when the runner's cost is charged."""
    ordered = tuple(platforms[k] for k in order)
    labels = board_labels([p.name for p in platforms])
    busy, link_ms = _busy(coster, plan)
    busy[0] += io_ms[0]  # the root's core runs the source and the sink
    period = max(*busy, *link_ms)
    energy = sum(stage_energy_mj(active_idle(p), b, period)
                 for p, b in zip(ordered, busy, strict=True) if b > 0)
    energy += _link_energy_mj(link, plan)
    memory = _memory(coster.graph, plan, ordered, precision)
    ordered_labels = tuple(labels[k] for k in order)
    reasons = tuple(f"{ordered_labels[k]}: {m.reason}" for k, m in enumerate(memory) if m.reason)
    return TiledCandidate(coster, plan, tuple(order), ordered_labels, ordered, tuple(busy),
                          tuple(link_ms), energy, memory, reasons, precision, *io_ms)


def runner_io_ms(graph: LayerGraph, runtime: RuntimeCost) -> tuple[float, float]:
    """``(core, wire)`` ms of the model's input and output hops in a tiled plan: both ends of
    each on the root's core, which runs the source and the sink beside its stages — a
    one-stage chain's share (:func:`~hwsched.schedule.handoff.runner_shares_ms`) — and their
    wire in the latency only, as :func:`~hwsched.schedule.handoff.with_runtime_cost` adds it.
    """
    sizes = model_io_bytes(graph)
    return runner_shares_ms(runtime, sizes)[0], sum(runtime.wire_ms(b) for b in sizes)


def tiled_candidates(graph: LayerGraph, platforms: Sequence[Platform], link: Link,
                     precision: str | None = None, runtime: RuntimeCost | None = None,
                     profiles: Sequence[Profile] = ()) -> tuple[TiledCandidate, ...]:
    """One candidate per root board whose DP plan splits something; plans that export the same
    way (same ``--tiles`` and boards) are listed once, the earlier root's. With ``runtime``
    the runner's hand-off cost is charged (module docstring); a board whose platform has one
    of ``profiles`` is priced from it (module docstring)."""
    boards = boards_from_platforms(graph, platforms, precision,
                                   profiles=[profile_for(p.name, profiles) for p in platforms])
    tile_link = link_from_descriptor(link)
    io_ms = (0.0, 0.0)
    if runtime is not None:
        boards, tile_link = charge_runtime(boards, tile_link, runtime)
        io_ms = runner_io_ms(graph, runtime)
    found, seen = [], set()
    for root in range(len(boards)):
        order = (root, *(k for k in range(len(boards)) if k != root))
        coster = TileCoster(graph, tuple(boards[k] for k in order), tile_link)
        plan = plan_tiles(coster)
        if not _split_segments(plan):
            continue
        candidate = evaluate(coster, plan, order, platforms, link, precision, io_ms)
        hint = export_hint(coster, plan)
        key = (hint.get("export_tiles"), tuple(hint.get("export_platforms", ())))
        if key not in seen:
            seen.add(key)
            found.append(candidate)
    return tuple(found)


# -- the joint ranking ----------------------------------------------------------------------------
def ranking_key(record: Mapping[str, Any], objective: str) -> tuple:
    """Feasible first, then the objective, then the other two (as the graph ranking)."""
    values = {"throughput": record["period_ms"], "latency": record["latency_ms"],
              "energy": record["energy_mj"]}
    return (not record["feasible"], values[objective],
            *(values[o] for o in OBJECTIVES if o != objective))


def join_ranked(ranked: Sequence[Mapping[str, Any]], tiled: Sequence[Mapping[str, Any]],
                objective: str) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """``ranked`` (the ``candidates`` list, in its order) with the ``tiled`` records merged in
    by :func:`ranking_key` (module docstring); ranks renumbered from 1. Entries without
    ``placement`` are chain splits and gain ``placement: "chain"`` and ``chain_rank``. Returns
    the list and the map from each old rank to its new one.

    >>> chain = [{"rank": 1, "latency_ms": 5.0, "period_ms": 3.0, "energy_mj": 1.0,
    ...           "feasible": True}]
    >>> tiled = [{"placement": "tiles", "latency_ms": 4.0, "period_ms": 4.0, "energy_mj": 2.0,
    ...           "feasible": True}]
    >>> joined, moved = join_ranked(chain, tiled, "latency")
    >>> [(c["rank"], c["placement"]) for c in joined], moved
    ([(1, 'tiles'), (2, 'chain')], {1: 2})
    """
    pending = sorted(tiled, key=lambda r: ranking_key(r, objective))
    out: list[dict[str, Any]] = []
    moved: dict[int, int] = {}
    for entry in ranked:
        while pending and ranking_key(pending[0], objective) < ranking_key(entry, objective):
            out.append(dict(pending.pop(0)))
        entry = dict(entry)
        if "placement" not in entry:
            entry.update(placement="chain", chain_rank=entry["rank"])
        moved[entry["rank"]] = len(out) + 1
        out.append(entry)
    out.extend(dict(r) for r in pending)
    for rank, entry in enumerate(out, start=1):
        entry["rank"] = rank
    return [{"rank": e.pop("rank"), **e} for e in out], moved


def renumber_placements(document: dict[str, Any], moved: Mapping[int, int]) -> None:
    """Carry the new ranks into ``graph_candidates`` and ``placement_ranking`` (``analyze
    --placement graph``), which name candidates by rank."""
    for record in document.get("graph_candidates", ()):
        if "rank" in record:
            record["rank"] = moved[record["rank"]]
    for row in document.get("placement_ranking", ()):
        row["rank"] = moved[row["rank"]]




def add_tiled_candidates(document: dict[str, Any], graph: LayerGraph,
                         platforms: Sequence[Platform], link: Link, precision: str | None,
                         objective: str, runtime: RuntimeCost | None = None,
                         profiles: Sequence[Profile] = ()) -> tuple[TiledCandidate, ...]:
    """Rank the tiled candidates (charged the runner's hand-off cost with ``runtime``, priced
    from ``profiles`` where a board's platform has one) into ``document["candidates"]`` (and
    renumber the graph records that name ranks); the candidates found."""
    found = tiled_candidates(graph, platforms, link, precision, runtime, profiles)
    joined, moved = join_ranked(document.get("candidates", []),
                                [c.to_dict() for c in found], objective)
    document["candidates"] = joined
    renumber_placements(document, moved)
    if "placement_ranking" in document:  # the joint ranking's rows gain the tiled ones
        rows = document["placement_ranking"] + [
            {"kind": TILES_PLACEMENT, "rank": c["rank"],
             **{k: c[k] for k in ("latency_ms", "period_ms", "throughput_ips", "energy_mj",
                                  "feasible")},
             "compression": TILES_WIRE_LEVEL}
            for c in joined if c["placement"] == TILES_PLACEMENT]
        document["placement_ranking"] = sorted(rows, key=lambda row: row["rank"])
    return found


def tiled_candidate_lines(document: Mapping[str, Any]) -> list[str]:
    """One terminal line per tiled candidate: its joint rank and how to export it."""
    lines = []
    for c in document.get("candidates", ()):
        if c.get("placement") != TILES_PLACEMENT:
            continue
        status = "" if c["feasible"] else f" (does not fit: {c['reasons'][0]})"
        lines.append(f"  tiled candidate rank {c['rank']}: {c['latency_ms']:.2f} ms/frame, "
                     f"{c['throughput_ips']:.1f} inf/s, {c['energy_mj']:.1f} mJ on "
                     f"{','.join(c['boards'])}{status}; export --candidate {c['rank']}")
    return lines


__all__ = ["TILES_PLACEMENT", "TiledCandidate", "add_tiled_candidates", "evaluate",
           "join_ranked", "ranking_key", "renumber_placements", "runner_io_ms",
           "tiled_candidate_lines", "tiled_candidates"]
