"""Placements: which board computes which layers, and which tensors travel between them.

A :class:`Placement` is a small DAG over one :class:`~hwsched.ir.LayerGraph`:

* a :class:`Stage` is a board (and optionally a core set of it) plus the set of layers it
  computes (positions in the graph's topological order);
* an :class:`Edge` is the tensors one stage sends another; an :class:`EdgeTensor` may name a
  ``region`` of a tensor (per-axis ``[start, stop)`` bounds) so a tile of a fused run can later
  be one more stage receiving only the rows it needs; ``None`` is the whole tensor;
* ``sink`` says which stage delivers each model output.

Stages are kept in a topological order of the stage graph, so running them in index order runs
every stage after the stages it receives from. Two constructors cover today's two kinds:
:func:`placement_from_stages` derives the edges from the IR (every tensor goes straight from its
producer's stage to every stage that consumes it, as AutoDiCE does), and :func:`chain_placement`
builds the consecutive slices of a chain split, whose edges form a path and relay every crossing
tensor through the stages in between (what the chain exporter and runner do today).

Nothing here imports TensorFlow; the runner side may read placements.

>>> from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
>>> def t(n): return Tensor(n, producer=n, shape=(1, 8), dtype="float32")
>>> g = LayerGraph("fork", (
...     Layer("x", OpKind.INPUT, (), (t("x"),)),
...     Layer("a", OpKind.ACTIVATION, ("x",), (t("a"),)),
...     Layer("b", OpKind.ACTIVATION, ("x",), (t("b"),)),
...     Layer("add", OpKind.ELEMENTWISE, ("a", "b"), (t("add"),)),
... ), outputs=("add",))
>>> boards = (Board("p", "rpi4"), Board("q", "rpi4"))
>>> stages = [Stage("p", {0, 1}), Stage("q", {2}), Stage("p", {3})]   # branch b on q
>>> p = placement_from_stages(g, boards, stages)
>>> [(e.source, e.target, e.tensor_names) for e in p.edges]
[(0, 1, ('x',)), (0, 2, ('a',)), (1, 2, ('b',))]

One board may host several stages; a board's layers that both feed and wait for another board
must be two stages, else the stages form a cycle (the error names it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hwsched.errors import PlacementError
from hwsched.ir import LayerGraph, Tensor


@dataclass(frozen=True)
class Board:
    """A named board of one platform; ``cores`` are the CPU cores its stages may use."""

    name: str
    platform: str
    cores: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Region:
    """Per-axis ``[start, stop)`` bounds of a tensor: what one edge carries of it."""

    bounds: tuple[tuple[int, int], ...]

    def shape(self) -> tuple[int, ...]:
        return tuple(stop - start for start, stop in self.bounds)

    def check(self, tensor: Tensor) -> None:
        """Raise unless the region lies inside ``tensor`` and is not empty."""
        inside = len(self.bounds) == len(tensor.shape) and all(
            0 <= start < stop <= size
            for (start, stop), size in zip(self.bounds, tensor.shape, strict=False)
        )
        if not inside:
            raise PlacementError(
                f"region {[list(b) for b in self.bounds]} is not inside tensor "
                f"{tensor.name!r} of shape {list(tensor.shape)}"
            )


@dataclass(frozen=True)
class EdgeTensor:
    """A tensor (or a region of it) on an edge."""

    name: str
    region: Region | None = None


@dataclass(frozen=True)
class Edge:
    """Tensors stage ``source`` sends stage ``target`` (indices into ``Placement.stages``)."""

    source: int
    target: int
    tensors: tuple[EdgeTensor, ...]

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)


@dataclass(frozen=True)
class Stage:
    """A board (optionally a core set of it) computing a set of layers (topological positions).

    ``layers`` may be given as any iterable of positions; it is stored as a frozenset.
    """

    board: str
    layers: frozenset[int]
    cores: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.layers, frozenset):
            object.__setattr__(self, "layers", frozenset(self.layers))

    @property
    def positions(self) -> tuple[int, ...]:
        """The stage's layer positions in topological order."""
        return tuple(sorted(self.layers))

    def is_slice(self) -> bool:
        """Whether the stage is one consecutive slice of the topological order."""
        first, last = min(self.layers), max(self.layers)
        return last - first + 1 == len(self.layers)


@dataclass(frozen=True)
class Placement:
    """Stages in a topological order of the stage graph, the edges between them, the boards,
    and which stage hands each model output to the sink. Build it with the constructors below;
    :func:`check_placement` proves it consistent with a graph."""

    graph_name: str
    boards: tuple[Board, ...]
    stages: tuple[Stage, ...]
    edges: tuple[Edge, ...]
    sink: Mapping[str, int]
    #: "chain" when built from cut positions, else "graph".
    kind: str = "graph"
    _boards: Mapping[str, Board] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.sink, MappingProxyType):
            object.__setattr__(self, "sink", MappingProxyType(dict(self.sink)))
        object.__setattr__(self, "_boards", MappingProxyType({b.name: b for b in self.boards}))

    def board(self, name: str) -> Board:
        try:
            return self._boards[name]
        except KeyError:
            raise PlacementError(
                f"unknown board {name!r}; boards: {', '.join(self._boards)}"
            ) from None

    def incoming(self, stage: int) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.target == stage)

    def outgoing(self, stage: int) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.source == stage)

    def stage_label(self, index: int) -> str:
        return f"stage {index} ({self.stages[index].board})"

    def to_dict(self, graph: LayerGraph) -> dict[str, Any]:
        """JSON-ready: stages with layer names and boards, edges as ``{from, to, tensors}``."""
        return {
            "boards": [board_to_dict(b) for b in self.boards],
            "stages": [
                {
                    "index": i,
                    "board": s.board,
                    "platform": self.board(s.board).platform,
                    "cores": list(s.cores) if s.cores is not None else None,
                    "layers": [graph.layers[p].name for p in s.positions],
                }
                for i, s in enumerate(self.stages)
            ],
            "edges": [edge_to_dict(e) for e in self.edges],
        }


def board_to_dict(board: Board) -> dict[str, Any]:
    cores = list(board.cores) if board.cores is not None else None
    return {"name": board.name, "platform": board.platform, "cores": cores}


def edge_to_dict(edge: Edge) -> dict[str, Any]:
    out: dict[str, Any] = {
        "from": edge.source, "to": edge.target, "tensors": list(edge.tensor_names)
    }
    regions = [t.region for t in edge.tensors]
    if any(r is not None for r in regions):
        out["regions"] = [None if r is None else [list(b) for b in r.bounds] for r in regions]
    return out


# -- constructors ------------------------------------------------------------------------------
def placement_from_stages(
    graph: LayerGraph, boards: Sequence[Board], stages: Sequence[Stage]
) -> Placement:
    """The placement of ``stages`` (in any order) with edges derived from the IR: each tensor a
    stage consumes but does not produce comes straight from its producer's stage.

    Stages are reordered topologically (ties by their first layer); raises
    :class:`~hwsched.errors.PlacementError` naming the stages of a cycle.
    """
    owner = _owners(graph, stages, lambda i: f"stage {i} ({stages[i].board})")
    flows = _direct_flows(graph, stages, owner)
    order = _topological_stage_order(stages, flows, lambda i: f"stage {i} ({stages[i].board})")
    renumber = {old: new for new, old in enumerate(order)}
    edges = tuple(
        Edge(renumber[a], renumber[b], tuple(EdgeTensor(n) for n in names))
        for (a, b), names in sorted(
            flows.items(), key=lambda item: (renumber[item[0][0]], renumber[item[0][1]])
        )
    )
    sink = {out: renumber[owner[graph.tensor(out).producer]] for out in graph.outputs}
    placement = Placement(
        graph.name, tuple(boards), tuple(stages[i] for i in order), edges, sink
    )
    check_placement(graph, placement)
    return placement


def chain_placement(
    graph: LayerGraph, boards: Sequence[Board], cut_positions: Sequence[int]
) -> Placement:
    """The chain split at ``cut_positions`` (``head_layers`` values), stage ``i`` on
    ``boards[i]``: consecutive slices whose edges form a path, each edge carrying every tensor
    that crosses its cut (tensors for later stages are relayed, as the chain runner does)."""
    from hwsched.cuts import crossing_at

    bounds = (0, *cut_positions, len(graph))
    if len(bounds) - 1 != len(boards) or any(b <= a for a, b in itertools.pairwise(bounds)):
        raise PlacementError(
            f"cut positions {list(cut_positions)} do not split {len(graph)} layers into "
            f"{len(boards)} non-empty stages"
        )
    stages = tuple(
        Stage(board.name, frozenset(range(a, b)), board.cores)
        for board, a, b in zip(boards, bounds, bounds[1:], strict=False)
    )
    edges = tuple(
        Edge(i, i + 1, tuple(EdgeTensor(t.name) for t in crossing_at(graph, cut)))
        for i, cut in enumerate(cut_positions)
    )
    sink = {out: len(stages) - 1 for out in graph.outputs}
    placement = Placement(graph.name, tuple(boards), stages, edges, sink, kind="chain")
    check_placement(graph, placement)
    return placement


# -- validation --------------------------------------------------------------------------------
def check_placement(graph: LayerGraph, placement: Placement) -> None:
    """Raise :class:`~hwsched.errors.PlacementError` (one line naming the stage, board, layer or
    tensor) unless every layer is in exactly one stage, boards and core sets are consistent,
    stages are in a topological order, and every tensor a stage needs (to compute, to forward
    or to deliver) is produced by it or arrives from an earlier stage."""
    _check_boards(placement)
    _owners(graph, placement.stages, placement.stage_label)
    for index, stage in enumerate(placement.stages):
        _check_available(graph, placement, index, stage)
    for out, index in placement.sink.items():
        if out not in graph.tensors or index not in range(len(placement.stages)):
            raise PlacementError(f"sink: model output {out!r} from stage {index} does not exist")
    missing = [out for out in graph.outputs if out not in placement.sink]
    if missing:
        raise PlacementError(f"no stage delivers model output {missing[0]!r}")


def _check_boards(placement: Placement) -> None:
    names = [b.name for b in placement.boards]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PlacementError(f"board {repeated[0]!r} is named twice")
    claimed: dict[str, dict[int, tuple[int, ...]]] = {}
    for index, stage in enumerate(placement.stages):
        board = placement.board(stage.board)
        if stage.cores is None:  # the whole board: its listed cores, or every core
            if board.cores is None and claimed.get(board.name):
                raise PlacementError(
                    f"{placement.stage_label(index)} has no core set but another stage on "
                    f"board {board.name!r} has one; give every stage on it cores, or none"
                )
            claimed.setdefault(board.name, {})
            if board.cores is None:
                continue
            stage = Stage(stage.board, stage.layers, board.cores)
        if len(set(stage.cores)) != len(stage.cores) or any(c < 0 for c in stage.cores):
            raise PlacementError(f"{placement.stage_label(index)}: bad cores {list(stage.cores)}")
        if board.cores is not None and not set(stage.cores) <= set(board.cores):
            raise PlacementError(
                f"{placement.stage_label(index)}: cores {list(stage.cores)} are not among board "
                f"{board.name!r}'s cores {list(board.cores)}"
            )
        if board.cores is None and claimed.get(board.name) == {}:
            raise PlacementError(
                f"{placement.stage_label(index)} has a core set but another stage on board "
                f"{board.name!r} has none (the whole board); give every stage on it cores, or none"
            )
        for core in stage.cores:
            other = claimed.setdefault(board.name, {}).get(core)
            if other is not None and other != tuple(sorted(stage.cores)):
                raise PlacementError(
                    f"{placement.stage_label(index)}: core {core} of board {board.name!r} is "
                    f"also in another stage's core set {list(other)}; core sets on a board must "
                    "be equal or disjoint"
                )
            claimed[board.name][core] = tuple(sorted(stage.cores))


def _owners(graph: LayerGraph, stages: Sequence[Stage], label) -> dict[str, int]:
    """Layer name -> index of the one stage that computes it."""
    owner: dict[str, int] = {}
    for index, stage in enumerate(stages):
        if not stage.layers:
            raise PlacementError(f"{label(index)} has no layers")
        for position in stage.positions:
            if not 0 <= position < len(graph):
                raise PlacementError(f"{label(index)}: no layer at position {position}")
            name = graph.layers[position].name
            if name in owner:
                raise PlacementError(
                    f"layer {name!r} is in two stages: {label(owner[name])} and {label(index)}"
                )
            owner[name] = index
    unplaced = [layer.name for layer in graph if layer.name not in owner]
    if unplaced:
        more = f" (and {len(unplaced) - 1} more)" if len(unplaced) > 1 else ""
        raise PlacementError(f"layer {unplaced[0]!r}{more} is in no stage")
    return owner


def _direct_flows(
    graph: LayerGraph, stages: Sequence[Stage], owner: Mapping[str, int]
) -> dict[tuple[int, int], list[str]]:
    """(producer stage, consumer stage) -> tensors, in production order."""
    flows: dict[tuple[int, int], list[str]] = {}
    for layer in graph:
        for tensor in layer.outputs:
            source = owner[layer.name]
            for user in graph.consumers(tensor.name):
                target = owner[user]
                names = flows.setdefault((source, target), []) if target != source else None
                if names is not None and tensor.name not in names:
                    names.append(tensor.name)
    return flows


def _topological_stage_order(
    stages: Sequence[Stage], flows: Iterable[tuple[int, int]], label
) -> list[int]:
    """Stage indices in a topological order of the flows (ties: first layer position)."""
    succ: dict[int, set[int]] = {i: set() for i in range(len(stages))}
    indegree = dict.fromkeys(range(len(stages)), 0)
    for a, b in flows:
        if b not in succ[a]:
            succ[a].add(b)
            indegree[b] += 1
    ready = sorted((i for i, d in indegree.items() if d == 0), key=lambda i: min(stages[i].layers))
    order: list[int] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for nxt in succ[current]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
        ready.sort(key=lambda i: min(stages[i].layers))
    if len(order) < len(stages):
        left = {i for i in range(len(stages)) if i not in order}
        cycle = _find_cycle({i: succ[i] & left for i in sorted(left)})
        raise PlacementError(
            "the stages form a cycle: " + " -> ".join(label(i) for i in cycle)
            + "; split a stage that both feeds and waits for another into two stages"
        )
    return order


def _find_cycle(succ: Mapping[int, set[int]]) -> list[int]:
    """One cycle among what Kahn's sort leaves: every node left has a predecessor left, so
    walking predecessors from any node must revisit one."""
    preds = {n: sorted(a for a in succ if n in succ[a]) for n in succ}
    path: list[int] = []
    node = min(succ)
    while node not in path:
        path.append(node)
        node = preds[node][0]
    cycle = path[path.index(node):][::-1]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]


def _check_available(graph: LayerGraph, placement: Placement, index: int, stage: Stage) -> None:
    """Every tensor the stage consumes, sends or delivers is its own or arrives from earlier."""
    label = placement.stage_label(index)
    produced = {t.name for p in stage.layers for t in graph.layers[p].outputs}
    received: set[str] = set()
    for edge in placement.incoming(index):
        if edge.source >= index:
            raise PlacementError(
                f"{label} receives from {placement.stage_label(edge.source)}, which is not "
                "earlier: stages must be in a topological order"
            )
        received.update(edge.tensor_names)
    have = produced | received
    needed = [(n, "consumes") for p in stage.positions for n in graph.layers[p].inputs]
    needed += [(n, "sends") for e in placement.outgoing(index) for n in e.tensor_names]
    needed += [(n, "delivers") for n, s in placement.sink.items() if s == index]
    for name, verb in needed:
        if name not in have:
            raise PlacementError(
                f"{label} {verb} tensor {name!r}, which no earlier stage sends it"
            )
    for edge in placement.incoming(index):
        for item in edge.tensors:
            if item.region is not None:
                item.region.check(graph.tensor(item.name))
