"""Branch-parallel placements: parallel branches of a block on different boards.

The search space. The topological order is cut at every single-tensor cut point into *blocks*;
inside a block the layers other than its *join* (the producer of the one tensor leaving the
block) fall into connected components, its *branches* (an inception block's towers, a
two-branch model's arms; a residual block's body is one branch, its skip none). A placement of
the space chooses per block either one board for the whole block (a chain move; consecutive
blocks on one board share a stage), or a join board plus a board per branch: branches on the
join board join its stage, the branches of every other board form one stage there, fed the
block's input tensor and sending their outputs to the join.

Latency is additive over blocks in this space (every board is idle when a block's input is
ready), so a dynamic program over blocks with the state "board of the open stage" finds the
**exact** minimum one-frame latency of the space, with the cost rules of
:mod:`hwsched.costs.placement` (the one difference: time to stream weights beyond an on-chip
parameter cache, which only boards with such a cache have, is added afterwards), including the
runner's hand-off cost on both ends of every edge when the coster has one (the open stage sends
every copy of a block's input before any leaves; a receiver decodes before it runs). That the
DP's sum equals the evaluator for every point of the space, on three boards, with and without a
hand-off cost, is checked by enumeration in ``tests/test_graph_gaps.py``. A paced profile's
wake is charged once per stage here too; co-run pricing (stages computing at once on one
chip slow each other) is not additive, so with a profile timed co-run the DP's value is a lower
bound on the evaluator's best (said in ``SearchReport.notes``). Blocks with
more than :data:`MAX_BRANCH_ASSIGNMENTS` branch assignments keep one board (stated in
``SearchReport.notes``). Throughput is not additive; the search returns the latency DP's best
placement per final board and reports, for the period, the gap to a lower bound
(:func:`period_lower_bound_ms`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from hwsched.costs.placement import PlacementCost, PlacementCoster
from hwsched.costs.transfer import encoding_dtype, tensor_bytes_as
from hwsched.cuts import enumerate_cuts
from hwsched.ir import LayerGraph
from hwsched.placement import Board, Placement, Stage, placement_from_stages

#: A block whose branches have more board assignments than this keeps one board.
MAX_BRANCH_ASSIGNMENTS = 4096
INF = float("inf")


@dataclass(frozen=True)
class Block:
    """Layers ``[first, stop)`` of the order; ``join`` is None for a block run whole."""

    first: int
    stop: int
    join: int | None
    branches: tuple[frozenset[int], ...]
    #: The tensor entering the block (None for the first block).
    entry: str | None


@dataclass(frozen=True)
class SearchReport:
    """What the graph search found and how far from optimal it may be."""

    candidates: tuple[PlacementCost, ...]
    blocks: int
    parallel_blocks: int
    #: Minimum one-frame latency of the search space (the DP's value, before parameter
    #: streaming); exact within the space unless ``latency_exact`` is False (co-run pricing:
    #: then a lower bound on the evaluator's best).
    latency_optimum_ms: float
    period_lower_bound_ms: float
    notes: tuple[str, ...]
    latency_exact: bool = True

    @property
    def latency_claim(self) -> str:
        """What :attr:`latency_optimum_ms` is, in words (the JSON ``latency`` field)."""
        if self.latency_exact:
            return "exact minimum over the space (dynamic program over blocks)"
        return ("lower bound over the space (dynamic program over blocks, alone times; the "
                "evaluator prices co-running stages slower)")

    def to_dict(self) -> dict:
        return {
            "space": "cuts at single-tensor cut points; per block one board, or its branches "
            "spread over boards with a join board",
            "latency": self.latency_claim,
            "throughput": "no exactness claim; period lower bound given",
            "blocks": self.blocks,
            "parallel_blocks": self.parallel_blocks,
            "latency_optimum_ms": self.latency_optimum_ms,
            "period_lower_bound_ms": self.period_lower_bound_ms,
            "notes": list(self.notes),
        }


# -- blocks ------------------------------------------------------------------------------------
def find_blocks(graph: LayerGraph) -> tuple[Block, ...]:
    """The blocks between consecutive single-tensor cut points (module docstring)."""
    cuts = [c for c in enumerate_cuts(graph) if c.single_tensor]
    bounds = [0, *(c.head_layers for c in cuts), len(graph)]
    entries = [None, *(c.crossing[0].name for c in cuts)]
    # the last block ends at the model output when there is one
    exits = [*(c.crossing[0].name for c in cuts), graph.outputs[0] if len(graph.outputs) == 1
             else None]
    blocks = []
    for (first, stop), entry, leaving in zip(
        itertools.pairwise(bounds), entries, exits, strict=True
    ):
        blocks.append(_block(graph, first, stop, entry, leaving))
    return tuple(blocks)


def _block(graph: LayerGraph, first: int, stop: int, entry, leaving) -> Block:
    if entry is None or leaving is None:
        return Block(first, stop, None, (), entry)
    join = graph.position(graph.tensor(leaving).producer)
    members = set(range(first, stop)) - {join}
    if any(p > join for p in members):
        return Block(first, stop, None, (), entry)
    branches = _components(graph, members)
    if len(branches) < 2:
        return Block(first, stop, None, (), entry)
    return Block(first, stop, join, branches, entry)


def _components(graph: LayerGraph, members: set[int]) -> tuple[frozenset[int], ...]:
    parent = {p: p for p in members}

    def root(p: int) -> int:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for p in members:
        for pred in graph.predecessors(graph.layers[p].name):
            q = graph.position(pred)
            if q in members:
                parent[root(p)] = root(q)
    groups: dict[int, set[int]] = {}
    for p in sorted(members):
        groups.setdefault(root(p), set()).add(p)
    return tuple(frozenset(g) for g in sorted(groups.values(), key=min))


# -- the dynamic program -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Choice:
    """How one block is placed: ``join_board`` runs the block's chain part/join; ``branches``
    gives a board per branch (empty for a block run whole on ``join_board``)."""

    join_board: str
    branches: tuple[str, ...] = ()
    #: Branches on the join board run in a stage of their own (in parallel with the others)
    #: rather than in the join's stage (which waits for every remote branch first).
    split_local: bool = False


class _Costs:
    """The additive costs the DP adds up, from the coster's own tables."""

    def __init__(self, coster: PlacementCoster, boards: Sequence[Board]) -> None:
        self.coster, self.graph = coster, coster.graph
        self.boards = [b.name for b in boards]
        self.times = {b: coster.table(b).latencies.latency_ms for b in self.boards}
        # a paced profile's wake is paid once per stage, like the invoke overhead
        self.overhead = {b: coster.table(b).platform.invoke_overhead_ms + coster.table(b).wake_ms
                         for b in self.boards}
        self.runtime = coster.runtime
        #: Boards of one CPU: every stage the search puts on one shares it, so a hop inside
        #: it, and the source's or sink's hop of its stage, take the same-core wire part
        #: (:func:`~hwsched.costs.placement.on_one_cpu`, as the evaluator prices them).
        self.one_cpu = {b.name: b.cores is not None and len(set(b.cores)) == 1 for b in boards}
        inputs = [t for layer in self.graph.input_layers for t in layer.outputs]
        outputs = [self.graph.tensor(n) for n in self.graph.outputs]
        #: Per board of the first / last stage, the source's and sink's hand-offs: both ends
        #: on that stage's core and the wire part between them (as the coster charges it).
        self.source_ms, self.sink_ms = (
            {b: 0.0 if self.runtime is None else
             2 * self.runtime.end_ms(sum(t.bytes for t in ts))
             + self.wire_ms(b, sum(t.bytes for t in ts)) for b in self.boards}
            for ts in (inputs, outputs))

    def wire_ms(self, board: str, payload_bytes: int) -> float:
        """The runtime cost's wire part of a hop inside ``board`` (runtime cost given)."""
        assert self.runtime is not None
        same = self.coster.same_core_runtime if self.one_cpu[board] else None
        return (same or self.runtime).wire_ms(payload_bytes)

    def compute(self, board: str, layers) -> float:
        return float(sum(self.times[board][p] for p in layers))

    def payload(self, head: str, tail: str, tensors: Sequence[str]) -> int:
        dtype = encoding_dtype(self.coster.link, self.coster.precisions[head],
                               self.coster.precisions[tail])
        return sum(tensor_bytes_as(self.graph.tensor(n), dtype) for n in tensors)

    def send(self, head: str, tail: str, tensors: Sequence[str]) -> float:
        """An edge's time between its two ends: the link's, or inside one board the runtime
        cost's wire part (as :class:`~hwsched.costs.placement.PlacementCoster` charges it)."""
        if not tensors:
            return 0.0
        payload = self.payload(head, tail, tensors)
        if head == tail:
            return 0.0 if self.runtime is None else self.wire_ms(head, payload)
        return self.coster.transfer(self.coster.link, payload, len(tensors)).latency_ms

    def end(self, head: str, tail: str, tensors: Sequence[str]) -> float:
        """The runner's work at one end of an edge carrying ``tensors`` (0 without a runtime
        cost, or without tensors: no edge)."""
        if self.runtime is None or not tensors:
            return 0.0
        return self.runtime.end_ms(self.payload(head, tail, tensors))

    def branch_outputs(self, branch: frozenset[int], join: int) -> list[str]:
        """Tensors of a branch that the join consumes."""
        wanted = set(self.graph.layers[join].inputs)
        return [t.name for p in sorted(branch) for t in self.graph.layers[p].outputs
                if t.name in wanted]


def _parallel_step(costs: _Costs, block: Block, here: str, choice: _Choice) -> float:
    """Time from the block's input ready on ``here`` (every board idle) until its join stage
    has run the join; the join stage is newly opened on ``choice.join_board``. With a runtime
    cost every edge also costs an ``end`` at each side: the open stage on ``here`` sends all its
    copies of the input first (``start``), each receiver decodes its inputs before it runs."""
    j, entry = choice.join_board, [block.entry] if block.entry else []
    local = [b for b, on in zip(block.branches, choice.branches, strict=True) if on == j]
    join_takes_entry = block.entry in costs.graph.layers[block.join].inputs
    remote = list(dict.fromkeys(o for o in choice.branches if o != j))
    to_j, entry_end = costs.send(here, j, entry), costs.end(here, j, entry)
    join_work, entry_messages, join_ends = {block.join}, 0, 0.0
    local_done = 0.0
    if local and choice.split_local:
        entry_messages = 1 + int(join_takes_entry)  # the local stage's copy, then the join's
        outputs = [n for b in local for n in costs.branch_outputs(b, block.join)]
        local_end = costs.end(j, j, outputs)
        local_done = (to_j + costs.overhead[j] + entry_end + costs.compute(j, set().union(*local))
                      + local_end + costs.send(j, j, outputs))
        join_ends += local_end + entry_end * int(join_takes_entry)
    elif local or join_takes_entry:
        entry_messages, join_ends = 1, entry_end
        join_work |= set().union(*local) if local else set()
    start = entry_messages * entry_end + sum(costs.end(here, o, entry) for o in remote)
    join_ready = start + max(local_done, entry_messages * to_j)
    for board in remote:
        mine = [b for b, on in zip(block.branches, choice.branches, strict=True) if on == board]
        outputs = [n for b in mine for n in costs.branch_outputs(b, block.join)]
        out_end = costs.end(board, j, outputs)
        done = start + (costs.send(here, board, entry) + costs.overhead[board]
                        + costs.end(here, board, entry) + costs.compute(board, set().union(*mine))
                        + out_end)
        if board == here:  # its outputs queue on the link here->j behind the entry's copies
            done = max(done, start + entry_messages * to_j)
        join_ready = max(join_ready, done + costs.send(board, j, outputs))
        join_ends += out_end
    return join_ready + costs.overhead[j] + join_ends + costs.compute(j, join_work)


def _chain_step(costs: _Costs, block: Block, here: str | None, board: str) -> float:
    layers = range(block.first, block.stop)
    if here == board:
        return costs.compute(board, layers)
    opening = costs.overhead[board]
    if here is None:  # the first stage: the source's hand-off of the model input
        opening += costs.source_ms[board]
    else:  # one edge: sent (an end on here), carried, received (an end on board)
        entry = [block.entry] if block.entry else []
        opening += costs.send(here, board, entry) + 2 * costs.end(here, board, entry)
    return opening + costs.compute(board, layers)


def _options(block: Block, boards: Sequence[str]) -> list[_Choice]:
    options = [_Choice(b) for b in boards]
    if block.join is None or len(boards) < 2:
        return options
    if len(boards) ** (len(block.branches) + 1) > MAX_BRANCH_ASSIGNMENTS:
        return options
    for j in boards:
        for spread in itertools.product(boards, repeat=len(block.branches)):
            if any(o != j for o in spread):
                options.append(_Choice(j, spread))
                if j in spread:
                    options.append(_Choice(j, spread, split_local=True))
    return options


def latency_dp(costs: _Costs, blocks: Sequence[Block]) -> dict[str, tuple[float, list[_Choice]]]:
    """Final board -> (minimum latency, the choice per block). Ties keep the first found
    (boards in the given order, chain moves before branch spreads)."""
    best: dict[str | None, tuple[float, list[_Choice]]] = {None: (0.0, [])}
    for block in blocks:
        step: dict[str | None, tuple[float, list[_Choice]]] = {}
        for here, (value, path) in best.items():
            for choice in _options(block, costs.boards):
                if choice.branches:
                    if here is None:
                        continue
                    total = value + _parallel_step(costs, block, here, choice)
                else:
                    total = value + _chain_step(costs, block, here, choice.join_board)
                end = choice.join_board
                if end not in step or total < step[end][0]:
                    step[end] = (total, [*path, choice])
        best = step
    # the last stage hands the model outputs to the sink
    return {b: (v + costs.sink_ms[b], path) for b, (v, path) in best.items() if b is not None}


# -- from choices to a placement ---------------------------------------------------------------
def placement_of(graph: LayerGraph, boards: Sequence[Board], blocks: Sequence[Block],
                 choices: Sequence[_Choice]) -> Placement:
    """The placement a DP path describes (stages as in the module docstring)."""
    stages: list[tuple[str, set[int]]] = []
    for block, choice in zip(blocks, choices, strict=True):
        if not choice.branches:
            if stages and stages[-1][0] == choice.join_board:
                stages[-1][1].update(range(block.first, block.stop))
            else:
                stages.append((choice.join_board, set(range(block.first, block.stop))))
            continue
        join_stage: set[int] = {block.join}
        for board in dict.fromkeys(choice.branches):
            mine = [b for b, on in zip(block.branches, choice.branches, strict=True)
                    if on == board]
            if board != choice.join_board or choice.split_local:
                stages.append((board, set().union(*mine)))
            else:
                join_stage.update(*mine)
        stages.append((choice.join_board, join_stage))
    return placement_from_stages(graph, boards, [Stage(b, frozenset(s)) for b, s in stages])


def period_lower_bound_ms(coster: PlacementCoster, boards: Sequence[Board]) -> float:
    """No placement over ``boards`` has a shorter period: each layer at its fastest board, the
    work shared perfectly, and no layer split (invoke overheads and links ignored)."""
    times = [coster.table(b.name).latencies.latency_ms for b in boards]
    fastest = [min(float(t[p]) for t in times) for p in range(len(coster.graph))]
    return max(max(fastest, default=0.0), sum(fastest) / len(boards))


def search_graph_placements(coster: PlacementCoster, boards: Sequence[Board]) -> SearchReport:
    """Branch-parallel placements of ``coster.graph`` over ``boards`` (module docstring)."""
    graph = coster.graph
    blocks = find_blocks(graph)
    costs = _Costs(coster, boards)
    found = latency_dp(costs, blocks)
    notes = []
    skipped = [b for b in blocks if b.join is not None
               and len(boards) ** (len(b.branches) + 1) > MAX_BRANCH_ASSIGNMENTS]
    if skipped:
        notes.append(f"{len(skipped)} block(s) with too many branch assignments kept whole")
    if coster.prices_co_run:
        notes.append("stages that compute at once on one chip are priced co-run by the "
                     "evaluator; the DP adds alone times, so its optimum is a lower bound")
    seen: dict[tuple, PlacementCost] = {}
    for _, (_, path) in sorted(found.items(), key=lambda item: item[1][0]):
        placement = placement_of(graph, boards, blocks, path)
        key = tuple((s.board, s.layers) for s in placement.stages)
        seen.setdefault(key, coster.evaluate(placement))
    optimum = min((v for v, _ in found.values()), default=INF)
    return SearchReport(
        candidates=tuple(seen.values()),
        blocks=len(blocks),
        parallel_blocks=sum(1 for b in blocks if b.join is not None),
        latency_optimum_ms=optimum,
        period_lower_bound_ms=period_lower_bound_ms(coster, boards),
        notes=tuple(notes),
        latency_exact=not coster.prices_co_run,
    )
