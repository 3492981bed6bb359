"""One cost evaluator for every placement: chains, stage graphs (and later, tiles).

A :class:`PlacementCoster` is built once per graph, boards and link (it tabulates each
platform's per-layer latency, weights and activation profile with the registered cost models)
and then costs any :class:`~hwsched.placement.Placement` of that graph:

* a stage's compute time is the sum of its layers' latencies + the platform's invoke overhead
  (+ streaming weights beyond a parameter cache), the same rule as a chain stage; a stage given
  ``k`` of its board's ``n`` listed cores runs ``n / k`` times longer (its share of the board);
* a **resource** is a board, or one core set of it: stages on one resource share its time,
  stages on disjoint core sets of a board run side by side;
* an edge between two boards costs the transfer model's time for its tensors in the encoding
  dtype of the two boards' precisions (as a chain link); edges inside one board use no link
  (no busy time, no energy), but with a ``runtime`` cost a frame on one still waits its
  ``wire_ms`` (the wake-ups between the two runners' shares of the hop, below);
  every ordered pair of boards is its own link (a switched network);
* **frame latency**: one frame scheduled alone: a stage starts when all its inputs have arrived
  and its resource is free (stages in index order), an edge when its source ends and its link
  is free; the latency is when the last stage ends. Without shared resources this is the longest
  path through stage and link times; for a chain, the sum of all of them;
* **a paced profile's wake, once per stage**: a profile timed paced (``hwsched profile
  --gap-ms``) that also timed its segments back to back gives a wake penalty every paced
  invocation paid (:attr:`hwsched.costs.profile.Profile.wake_ms`); it is taken off every
  segment and charged once per stage (a stage is one invocation), like the invoke overhead;
* **co-running stages**: with segments timed co-run (``co_run_ms``), a stage computing while
  a stage that shares its chip computes on another resource (same board, other cores; or
  boards named together in ``shared_chips``, e.g. two cores of one host emulating two boards)
  runs at its co-run speed for that part and at its alone speed otherwise. Of a stage's
  alone time ``A`` and co-run time ``C``, a part overlapping others for ``O`` ms takes
  ``O / C`` of its work, so it lasts ``A + O (1 - A / C)``; the overlaps depend on the
  durations, so the one-frame schedule is played out in time, stage starts and ends as events
  (unique, and at most two events per stage). Such a stage's ``compute_ms`` is that contended
  duration; the period keeps the alone times;
* **period** (1 / throughput): the busiest resource or link, summed over its stages or edges;
* **memory** per board: the sum over its stages of weights + peak activations, checked against
  the board's memory (a stage's peak is the ``arena`` rule on its own layers, holding the
  tensors it receives until their last use here and the tensors it sends until it ends);
* **energy**: busy power x compute time per stage, idle power x period once per board, plus the
  transfer model's energy per edge;
* with a ``runtime`` cost (:class:`hwsched.costs.runtime.RuntimeCost`, the runner's own work
  per frame: decode, hand-off, encode, acknowledge), every edge is charged at **both** ends:
  its sending end (:meth:`~hwsched.costs.runtime.RuntimeCost.sender_ms` of its payload) on the
  core of the stage that sends it, its receiving end on the receiver's core, edges inside one board
  too (two stages are two runner processes); the stage holding the model inputs also pays the
  source's end and its own for the input, and the stage delivering outputs the sink's and its
  own, as the chain's :meth:`~hwsched.costs.runtime.RuntimeCost.stage_ms` charges them. That time
  is part of the stage's ``compute_ms`` (its core is busy) and is reported as ``runtime_ms``.
  For **one frame's latency** the wire part must be measured as such a frame meets the hops:
  paced, the cores idle between frames (``python -m hwsched.runtime.hopcost --gap-ms 50``:
  the cores' shares back to back, the wire part the rest of a paced frame's one-way trip).
  Each hop then also wakes sleeping threads (both runners' ZeroMQ I/O threads, the receiving
  runner): on the 2-core development machine an 884 KB hop's one-way trip took 1.3-1.6 ms
  paced against 0.7 ms back to back, a 4 KB one's 0.5-0.8 ms against 0.1; with the wire part
  measured back to back (0), the two-branch bench model's prediction fell 17-46 % short.
  Given ``same_core_runtime`` (the hop measured with both ends on one core), a hop whose two
  ends share one CPU takes its wire part: two stages on one and the same one-CPU core set
  (:func:`on_one_cpu`; a board without cores is not one, ``emulate`` runs its stages on CPUs
  of their own), and the source's or the sink's hop of a one-CPU first or last stage. Not
  yet: the source's and sink's hops of a stage without cores (``emulate`` pins the source to
  stage 0's CPU and the sink to the last stage's, so they do share one), and the ends of a
  one-core hop (the section's sender and receiver costs are not used, only its wire part).

On a chain placement every number equals the chain evaluator's
(:func:`hwsched.schedule.evaluate`); the tests check that to 1e-9.

>>> from hwsched.placement import Board, chain_placement
>>> from hwsched.schedule.synthetic import synthetic_graph
>>> g = synthetic_graph(12, seed=0)
>>> boards = (Board("pi", "rpi4"), Board("nano", "jetson_nano"))
>>> cost = PlacementCoster(g, boards, "gige").evaluate(chain_placement(g, boards, (6,)))
>>> cost.latency_ms == sum(s.compute_ms for s in cost.stages) + cost.edges[0].latency_ms
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsched.costs import DEFAULT_MODELS, get_model
from hwsched.costs.latency import LayerLatencies, param_stream_ms
from hwsched.costs.memory import memory_fit, weight_bytes
from hwsched.costs.profile import Profile
from hwsched.costs.runtime import RuntimeCost
from hwsched.costs.transfer import (
    ACTIVATION_DTYPES,
    TransferCost,
    encoding_dtype,
    tensor_bytes_as,
)
from hwsched.errors import PlacementError, UnknownNameError
from hwsched.hardware import PRECISION_DTYPES, Link, Platform, load_link, load_platform
from hwsched.ir import DTYPE_BYTES, LayerGraph, OpKind
from hwsched.placement import Board, Edge, EdgeTensor, Placement, Stage

MS_PER_S = 1000.0


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageEstimate:
    index: int
    board: str
    platform: str
    precision: str
    layers: int
    macs: int
    weights_bytes: int
    peak_activation_bytes: int
    compute_ms: float
    start_ms: float
    end_ms: float
    energy_mj: float
    fits_memory: bool
    reasons: tuple[str, ...]
    #: The runner's own per-frame work on the stage's core, included in ``compute_ms``.
    runtime_ms: float = 0.0

    @property
    def memory_bytes(self) -> int:
        return self.weights_bytes + self.peak_activation_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "board": self.board, "platform": self.platform,
            "precision": self.precision, "layer_count": self.layers, "macs": self.macs,
            "weights_bytes": self.weights_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "memory_bytes": self.memory_bytes, "latency_ms": self.compute_ms,
            "start_ms": self.start_ms, "end_ms": self.end_ms, "energy_mj": self.energy_mj,
            "fits_memory": self.fits_memory, "reasons": list(self.reasons),
            "runtime_ms": self.runtime_ms,
        }


@dataclass(frozen=True)
class EdgeEstimate:
    source: int
    target: int
    link: str | None  # None: both stages on one board, no link used
    dtype: str
    messages: int
    transfer_bytes: int
    wire_bytes: int
    latency_ms: float
    energy_mj: float
    start_ms: float
    end_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.source, "to": self.target, "link": self.link, "dtype": self.dtype,
            "messages": self.messages, "transfer_bytes": self.transfer_bytes,
            "wire_bytes": self.wire_bytes, "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj, "start_ms": self.start_ms, "end_ms": self.end_ms,
        }


@dataclass(frozen=True)
class PlacementCost:
    placement: Placement
    stages: tuple[StageEstimate, ...]
    edges: tuple[EdgeEstimate, ...]
    latency_ms: float
    period_ms: float
    energy_mj: float
    #: Busy milliseconds per frame of each resource ("board" or "board[cores]") and link.
    busy_ms: Mapping[str, float]
    #: Memory bytes used per board (weights + peak activations of its stages).
    memory_bytes: Mapping[str, int]
    reasons: tuple[str, ...]

    @property
    def throughput_ips(self) -> float:
        return MS_PER_S / self.period_ms if self.period_ms > 0 else float("inf")

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def objective_value(self, objective: str) -> float:
        return {"throughput": self.period_ms, "latency": self.latency_ms,
                "energy": self.energy_mj}[objective]


# -- per-platform tables -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _PlatformCosts:
    platform: Platform
    precision: str
    latencies: LayerLatencies
    weights: np.ndarray
    macs: np.ndarray
    live: np.ndarray | None  # None: the arena rule, computed per stage
    unsupported: np.ndarray
    blanket_reason: str | None
    #: A paced profile's wake penalty, charged once per stage (0: none recorded).
    wake_ms: float = 0.0
    #: Per-layer co-run times (None: the profile timed no segment co-run).
    co_latencies: LayerLatencies | None = None


class PlacementCoster:
    """Costs placements of one graph over a set of boards joined by one link type.

    ``precision`` is one precision for every board or ``{board or platform name: precision}``;
    ``profile`` gives measured latencies per platform (as in :func:`hwsched.schedule.evaluate`).
    """

    def __init__(
        self,
        graph: LayerGraph,
        boards: Sequence[Board],
        link: str | Link,
        *,
        platforms: Mapping[str, Platform] | None = None,
        precision: str | Mapping[str, str] | None = None,
        profile: Profile | Sequence[Profile] | None = None,
        latency_model: str | None = None,
        memory_model: str | None = None,
        transfer_model: str | None = None,
        energy_model: str | None = None,
        runtime: RuntimeCost | None = None,
        shared_chips: Sequence[Sequence[str]] = (),
        same_core_runtime: RuntimeCost | None = None,
    ) -> None:
        self.graph = graph
        self.runtime = runtime
        #: The wire part of a hop whose two ends share one CPU (default: ``runtime``'s): two
        #: stages on it (:func:`on_one_cpu`), or the source or sink and a stage on it.
        self.same_core_runtime = same_core_runtime
        self.shared_chips = tuple(frozenset(group) for group in shared_chips)
        self.boards = {b.name: b for b in boards}
        self.link = load_link(link)
        self.transfer = get_model("transfer", transfer_model)
        self.energy = get_model("energy", energy_model)
        self._memory_model = memory_model or DEFAULT_MODELS["memory"]
        get_model("memory", memory_model)
        given = dict(platforms or {})
        self.platforms = {b.name: given.get(b.platform) or load_platform(b.platform)
                          for b in boards}
        self.precisions = {name: _precision_of(b, self.platforms[name], precision)
                           for name, b in self.boards.items()}
        profiles = [] if profile is None else [profile] if isinstance(profile, Profile) else profile
        self._tables: dict[tuple[str, str], _PlatformCosts] = {}
        for name, platform in self.platforms.items():
            key = (platform.name, self.precisions[name])
            if key not in self._tables:
                own = [p for p in profiles if p.platform == platform.name]
                model = latency_model or ("measured" if own else None)
                self._tables[key] = self._table(platform, key[1], model, own[0] if own else None)
        self._users = _consumer_positions(graph)

    def _table(self, platform: Platform, precision: str, latency_model, profile):
        blanket, cost_precision = None, precision
        if precision not in platform.compute_gops:
            blanket = (f"{platform.name} does not run {precision} "
                       f"(supported: {', '.join(platform.precisions)})")
            cost_precision = platform.default_precision
        model = get_model("latency", latency_model)
        wake, co_latencies = 0.0, None
        if profile is not None and (latency_model or "measured") == "measured":
            wake = profile.wake_ms or 0.0
            co_profile = profile.co_running()
            if co_profile is not None:
                co_latencies = model(self.graph, platform, cost_precision, co_profile)
            profile = profile.settled()
        latencies = model(self.graph, platform, cost_precision, profile)
        live = None
        if self._memory_model != "arena":
            live = get_model("memory", self._memory_model)(self.graph, cost_precision).live_bytes
        return _PlatformCosts(
            platform=platform,
            precision=cost_precision,
            latencies=latencies,
            weights=weight_bytes(self.graph, cost_precision),
            macs=np.array([layer.macs or 0 for layer in self.graph], dtype=np.int64),
            live=live,
            unsupported=np.array([not platform.supports(x.op) for x in self.graph], dtype=bool),
            blanket_reason=blanket,
            wake_ms=wake,
            co_latencies=co_latencies,
        )

    @property
    def prices_co_run(self) -> bool:
        """Whether some board's stages are priced co-run when they overlap a contending one."""
        return any(t.co_latencies is not None for t in self._tables.values())

    def table(self, board: str) -> _PlatformCosts:
        return self._tables[(self.platforms[board].name, self.precisions[board])]

    # -- one stage, one edge -------------------------------------------------------------------
    def compute_ms(self, placement: Placement, stage: Stage) -> float:
        """Compute time of a stage on its board alone (its core share applied)."""
        return self._stage_ms(placement, stage, self.table(stage.board).latencies)

    def co_run_ms(self, placement: Placement, stage: Stage) -> float:
        """Compute time of a stage while a stage sharing its chip computes beside it (its
        alone time when the profile timed nothing co-run, or when co-run was faster)."""
        table = self.table(stage.board)
        alone = self.compute_ms(placement, stage)
        if table.co_latencies is None:
            return alone
        return max(self._stage_ms(placement, stage, table.co_latencies), alone)

    def _stage_ms(self, placement: Placement, stage: Stage, latencies: LayerLatencies) -> float:
        table = self.table(stage.board)
        positions = np.fromiter(stage.layers, dtype=np.int64)
        weights = int(table.weights[positions].sum())
        latency = float(latencies.latency_ms[positions].sum())
        latency += table.platform.invoke_overhead_ms + table.wake_ms
        if latencies.model != "measured":
            latency += param_stream_ms(table.platform, weights)
        board = placement.board(stage.board)
        if stage.cores is not None and board.cores is not None:
            latency *= len(board.cores) / len(stage.cores)
        return latency

    def peak_activation_bytes(self, placement: Placement, index: int) -> int:
        stage = placement.stages[index]
        table = self.table(stage.board)
        positions = stage.positions
        if table.live is not None:
            return int(table.live[list(positions)].max())
        return _stage_arena_peak(self.graph, placement, index, positions, table.precision,
                                 self._users)

    def edge_payload(self, edge: Edge, dtype: str) -> int:
        return sum(_tensor_bytes(self.graph, item, dtype) for item in edge.tensors)

    # -- the whole placement ---------------------------------------------------------------------
    def evaluate(self, placement: Placement) -> PlacementCost:
        """Every number of the module docstring for one placement."""
        self._check_boards(placement)
        edge_costs = [self._edge_cost(placement, e) for e in placement.edges]
        runtime = self.runtime_ms(placement, [cost[2] for cost in edge_costs])
        alone = [self.compute_ms(placement, s) + r
                 for s, r in zip(placement.stages, runtime, strict=True)]
        co_run = [self.co_run_ms(placement, s) + r
                  for s, r in zip(placement.stages, runtime, strict=True)]
        starts, ends, edge_times, compute = _schedule_one_frame(
            placement, alone, edge_costs, co_run, self.contending(placement))
        busy = _busy(placement, alone, edge_costs)
        period = max(busy.values())
        latency = self._frame_latency_ms(placement, ends)
        memory, misfits = self._memory(placement)
        stages = tuple(
            self._stage_estimate(placement, i, compute[i], starts[i], ends[i], misfits,
                                 runtime[i])
            for i in range(len(placement.stages))
        )
        edges = tuple(
            EdgeEstimate(e.source, e.target, link, dtype, len(e.tensors), payload,
                         cost.wire_bytes, cost.latency_ms, cost.energy_mj, *edge_times[k])
            for k, (e, (link, dtype, payload, cost)) in enumerate(
                zip(placement.edges, edge_costs, strict=True))
        )
        energy = sum(self.energy(self.platforms[s.board]).busy_w * s.compute_ms for s in stages)
        used = dict.fromkeys(s.board for s in placement.stages)
        energy += sum(self.energy(self.platforms[b]).period_w * period for b in used)
        energy += sum(e.energy_mj for e in edges)
        reasons = tuple(dict.fromkeys(r for s in stages for r in s.reasons))
        return PlacementCost(placement, stages, edges, latency, period, energy, busy, memory,
                             reasons)

    def contending(self, placement: Placement) -> list[frozenset[int]]:
        """Per stage, the stages that slow it when they compute at the same time: on another
        resource of the same chip (same board, other cores; or a ``shared_chips`` group)."""
        resources = [resource_of(placement, s) for s in placement.stages]

        def same_chip(a: str, b: str) -> bool:
            return a == b or any(a in group and b in group for group in self.shared_chips)

        return [frozenset(j for j, other in enumerate(placement.stages)
                          if resources[j] != resources[i] and same_chip(stage.board, other.board))
                for i, stage in enumerate(placement.stages)]

    def co_run_partners(self, cost: PlacementCost) -> tuple[int | None, ...]:
        """Per stage, the contending stage (:meth:`contending`) its one-frame compute
        overlaps most (None: it computes alone): whom to time it beside when measuring.

        >>> from hwsched.placement import Board, chain_placement
        >>> from hwsched.schedule.synthetic import synthetic_graph
        >>> g = synthetic_graph(12, seed=0)
        >>> boards = (Board("a", "rpi4"), Board("b", "rpi4"))
        >>> coster = PlacementCoster(g, boards, "gige", shared_chips=[("a", "b")])
        >>> coster.co_run_partners(coster.evaluate(chain_placement(g, boards, (6,))))
        (None, None)
        """
        contending = self.contending(cost.placement)
        partners: list[int | None] = []
        for i, stage in enumerate(cost.stages):
            overlaps = {j: _overlap_ms(stage.start_ms, stage.end_ms,
                                       [(cost.stages[j].start_ms, cost.stages[j].end_ms)])
                        for j in sorted(contending[i])}
            best = max(overlaps, key=lambda j: (overlaps[j], -j), default=None)
            partners.append(best if best is not None and overlaps[best] > 0 else None)
        return tuple(partners)

    def _frame_latency_ms(self, placement: Placement, ends: Sequence[float]) -> float:
        """When one frame's last output reaches the sink: the stages' ends (from the input's
        arrival) plus, with a ``runtime`` cost, the source's and the sink's wire part — hops
        inside the first and last board, charged as the chain evaluator charges them
        (:func:`hwsched.schedule.refine.with_runtime_cost`). ``emulate`` pins the source to
        stage 0's CPUs and the sink to the last stage's, so with ``same_core_runtime`` such a
        hop is priced on one core when its stage and that end share one CPU."""
        if not ends:
            return 0.0
        if self.runtime is None:
            return max(ends)
        inputs = sum(t.bytes for layer in self.graph.input_layers for t in layer.outputs)
        delivered: dict[int, int] = {}
        for name, index in placement.sink.items():
            delivered[index] = delivered.get(index, 0) + self.graph.tensor(name).bytes
        stages = placement.stages
        fed = [s for s in stages if any(self.graph.layers[p].op is OpKind.INPUT
                                        for p in s.positions)] or [stages[0]]
        source_ms = self._wire_ms(inputs, all(on_one_cpu(placement, stages[0], s)
                                              for s in fed))
        return source_ms + max(
            end + (self._wire_ms(delivered[i], on_one_cpu(placement, stages[-1], stages[i]))
                   if i in delivered else 0.0)
            for i, end in enumerate(ends))

    def runtime_ms(self, placement: Placement, payloads: Sequence[int]) -> list[float]:
        """The runner's per-frame work on each stage's core (module docstring); ``payloads``:
        bytes of each edge. All zero without a ``runtime`` cost."""
        ends = [0.0] * len(placement.stages)
        if self.runtime is None:
            return ends
        for edge, payload in zip(placement.edges, payloads, strict=True):
            # each end on its own core: the ends are measured apart and may differ
            ends[edge.source] += self.runtime.sender_ms(payload)
            ends[edge.target] += self.runtime.receiver_ms(payload)
        for index, stage in enumerate(placement.stages):
            sources = [t for p in stage.positions for t in self.graph.layers[p].outputs
                       if self.graph.layers[p].op is OpKind.INPUT]
            delivered = [self.graph.tensor(n) for n, s in placement.sink.items() if s == index]
            for tensors in (sources, delivered):  # the source's or sink's end and the stage's
                if tensors:
                    ends[index] += 2 * self.runtime.end_ms(sum(t.bytes for t in tensors))
        return ends

    def _stage_estimate(self, placement, index, compute_ms, start, end, misfits,
                        runtime_ms=0.0):
        stage = placement.stages[index]
        table = self.table(stage.board)
        positions = np.fromiter(stage.layers, dtype=np.int64)
        reasons = [table.blanket_reason] if table.blanket_reason else []
        bad = sorted(int(p) for p in positions[table.unsupported[positions]])
        if bad:
            layer = self.graph.layers[bad[0]]
            reasons.append(f"{table.platform.name} cannot run op {layer.op.value!r} (layer "
                           f"{layer.name!r}; {len(bad)} unsupported layer(s) in the stage)")
        if stage.board in misfits:
            reasons.append(misfits[stage.board])
        coefficients = self.energy(self.platforms[stage.board])
        return StageEstimate(
            index=index, board=stage.board, platform=table.platform.name,
            precision=self.precisions[stage.board], layers=len(positions),
            macs=int(table.macs[positions].sum()),
            weights_bytes=int(table.weights[positions].sum()),
            peak_activation_bytes=self.peak_activation_bytes(placement, index),
            compute_ms=compute_ms, start_ms=start, end_ms=end,
            energy_mj=coefficients.busy_w * compute_ms, fits_memory=stage.board not in misfits,
            reasons=tuple(reasons), runtime_ms=runtime_ms,
        )

    def _edge_cost(self, placement: Placement, edge: Edge):
        head = placement.stages[edge.source].board
        tail = placement.stages[edge.target].board
        dtype = encoding_dtype(self.link, self.precisions[head], self.precisions[tail])
        payload = self.edge_payload(edge, dtype)
        if head == tail:
            same_core = on_one_cpu(placement, placement.stages[edge.source],
                                   placement.stages[edge.target])
            return None, dtype, payload, self._in_board(payload, same_core)
        return self.link.name, dtype, payload, self.transfer(self.link, payload, len(edge.tensors))

    def _in_board(self, payload_bytes: int, same_core: bool = False) -> TransferCost:
        """An edge inside one board uses no link, but its frame still waits between the two
        runners' shares of the hop: the runtime cost's wire part (module docstring). Between
        two stages on one CPU (:func:`on_one_cpu`), ``same_core_runtime``'s when given: there
        the sending runner's rest of its pass, both ZeroMQ I/O threads and the receiving
        runner take turns on one core instead of overlapping on two (paced 884 KB hops on the
        development machine: one-way 1.49-1.61 ms on one core, 1.10-1.12 ms across two)."""
        if self.runtime is None:
            return self.transfer(self.link, 0, 0)
        return TransferCost(wire_bytes=0, latency_ms=self._wire_ms(payload_bytes, same_core),
                            energy_mj=0.0)

    def _wire_ms(self, payload_bytes: int, same_core: bool) -> float:
        """A hop's wire part: ``same_core_runtime``'s for a hop whose ends share one CPU
        when given, else ``runtime``'s (which must be given)."""
        assert self.runtime is not None
        cost = self.same_core_runtime if same_core and self.same_core_runtime else self.runtime
        return cost.wire_ms(payload_bytes)

    def _memory(self, placement: Placement) -> tuple[dict[str, int], dict[str, str]]:
        weights: dict[str, int] = {}
        peaks: dict[str, int] = {}
        for index, stage in enumerate(placement.stages):
            table = self.table(stage.board)
            positions = list(stage.layers)
            weights[stage.board] = weights.get(stage.board, 0) + int(
                table.weights[positions].sum())
            peaks[stage.board] = peaks.get(stage.board, 0) + self.peak_activation_bytes(
                placement, index)
        memory = {b: weights[b] + peaks[b] for b in weights}
        misfits = {}
        for board in weights:
            misfit = memory_fit(self.platforms[board], weights[board], peaks[board])
            if misfit:
                misfits[board] = f"board {board!r}: {misfit}"
        return memory, misfits

    def _check_boards(self, placement: Placement) -> None:
        for board in placement.boards:
            mine = self.boards.get(board.name)
            if mine is None or mine.platform != board.platform:
                raise PlacementError(
                    f"placement board {board.name!r} ({board.platform}) is not among the "
                    f"costed boards: {', '.join(self.boards)}"
                )


def _precision_of(board: Board, platform: Platform, precision) -> str:
    if precision is None:
        return platform.default_precision
    chosen = precision if isinstance(precision, str) else precision.get(
        board.name, precision.get(platform.name, platform.default_precision))
    if chosen not in PRECISION_DTYPES:
        raise UnknownNameError("precision", chosen, tuple(PRECISION_DTYPES))
    return chosen


def resource_of(placement: Placement, stage: Stage) -> str:
    """The board, or ``board[c0,c1]`` for a stage pinned to a core set of it."""
    cores = stage.cores if stage.cores is not None else placement.board(stage.board).cores
    if cores is None:
        return stage.board
    return f"{stage.board}[{','.join(str(c) for c in sorted(cores))}]"


def single_cpu_of(placement: Placement, stage: Stage) -> tuple[str, int] | None:
    """The one CPU a stage runs on, as ``(board, core)``; None when its core set (its own,
    else its board's) has several CPUs or is not given: the whole board, where ``emulate``
    runs each stage on a CPU of its own (stage k on CPU k mod n).

    >>> from hwsched.placement import Board, Stage
    >>> from hwsched.schedule.synthetic import synthetic_graph
    >>> from hwsched.placement import placement_from_stages
    >>> g = synthetic_graph(4, seed=0)
    >>> p = placement_from_stages(g, (Board("a", "rpi4", (0, 1)),),
    ...                           [Stage("a", {0, 1}, (1,)), Stage("a", {2, 3}, (0,))])
    >>> [single_cpu_of(p, s) for s in p.stages]
    [('a', 1), ('a', 0)]
    """
    cores = stage.cores if stage.cores is not None else placement.board(stage.board).cores
    if cores is None or len(set(cores)) != 1:
        return None
    return stage.board, cores[0]


def on_one_cpu(placement: Placement, first: Stage, second: Stage) -> bool:
    """Whether two stages share one CPU (a core set of exactly one, the same): a hop between
    them has its ends take turns on it. Two stages of a board without cores, or sharing a
    set of two CPUs or more, run on different CPUs whenever both are busy."""
    cpu = single_cpu_of(placement, first)
    return cpu is not None and cpu == single_cpu_of(placement, second)


def _link_of(placement: Placement, edge: Edge) -> str | None:
    head, tail = placement.stages[edge.source].board, placement.stages[edge.target].board
    return None if head == tail else f"{head}->{tail}"


def _schedule_one_frame(placement: Placement, compute: Sequence[float], edge_costs,
                        co_run: Sequence[float] | None = None,
                        contending: Sequence[frozenset[int]] | None = None):
    """Start and end of every stage and edge for one frame alone (module docstring), and
    every stage's duration; with ``co_run`` times and the ``contending`` stages of each, the
    durations are played out in time (:func:`_co_run_durations`) and the schedule taken with
    them. A stage never slowed keeps its ``compute`` time to the bit (not end minus start)."""
    durations = list(compute)
    if co_run is not None and contending is not None:
        durations = _co_run_durations(placement, compute, co_run, contending, edge_costs)
    return (*_schedule_pass(placement, durations, edge_costs), durations)


def _co_run_durations(placement: Placement, alone: Sequence[float], co_run: Sequence[float],
                      contending: Sequence[frozenset[int]], edge_costs) -> list[float]:
    """Each stage's duration when, at every moment, it does ``1 / co_run`` of its work per ms
    while a contending stage computes and ``1 / alone`` otherwise: an event simulation (a
    stage starts or ends at each step), so it ends after at most twice as many steps as
    stages, and its answer is the one schedule whose every duration satisfies
    :func:`co_run_duration_ms` with its own overlap (time runs forward, so it is unique).
    Iterating that equation instead converges only by the factor ``1 - alone / co_run`` per
    pass, far from done after any fixed number of passes when co-run is many times slower.

    A stage's start is known once the durations it waits for are (it only waits for stages
    of lower index), so each step takes the schedule with the unknown durations infinite."""
    count = len(alone)
    durations = [math.inf] * count
    left = [1.0 if alone[i] > 0 else 0.0 for i in range(count)]  # fraction of work not done
    slowed = [False] * count
    now = 0.0
    while any(math.isinf(d) for d in durations):
        starts = _schedule_pass(placement, durations, edge_costs)[0]
        running = [i for i in range(count) if math.isinf(durations[i]) and starts[i] <= now]
        busy = set(running)
        pace = {i: co_run[i] if not contending[i].isdisjoint(busy) else alone[i]
                for i in running}  # ms per whole work at this moment
        finish = {i: now + left[i] * max(pace[i], alone[i]) for i in running}
        waiting = [starts[i] for i in range(count)
                   if math.isinf(durations[i]) and now < starts[i] < math.inf]
        if not finish and not waiting:  # the rest wait on an edge that never arrives
            return [alone[i] if math.isinf(d) else d for i, d in enumerate(durations)]
        step_to = min([*finish.values(), *waiting])
        for i in running:
            slowed[i] = slowed[i] or pace[i] > alone[i]
            if finish[i] <= step_to:
                left[i] = 0.0
                durations[i] = step_to - starts[i] if slowed[i] else alone[i]
            else:
                left[i] -= (step_to - now) / max(pace[i], alone[i])
        now = step_to
    return durations


def co_run_duration_ms(alone_ms: float, co_run_ms: float, overlap_ms: float) -> float:
    """How long a stage lasts when ``overlap_ms`` of it runs beside a contending stage: that
    part proceeds at the co-run speed, the rest alone (module docstring).

    >>> co_run_duration_ms(10.0, 12.0, 6.0)    # 6 ms co-run do half the work: 5 ms alone left
    11.0
    >>> co_run_duration_ms(10.0, 12.0, 12.0), co_run_duration_ms(10.0, 12.0, 0.0)
    (12.0, 10.0)
    """
    if co_run_ms <= alone_ms or overlap_ms <= 0:
        return alone_ms
    overlap_ms = min(overlap_ms, co_run_ms)
    return alone_ms + overlap_ms * (1.0 - alone_ms / co_run_ms)


def _overlap_ms(start: float, end: float, others: Sequence[tuple[float, float]]) -> float:
    """Length of ``[start, end]`` covered by the union of ``others``.

    >>> _overlap_ms(0.0, 10.0, [(2.0, 5.0), (4.0, 6.0), (9.0, 20.0)])
    5.0
    """
    covered, reach = 0.0, start
    for begin, finish in sorted(others):
        begin, finish = max(begin, reach), min(finish, end)
        if finish > begin:
            covered += finish - begin
            reach = finish
    return covered


def _schedule_pass(placement: Placement, compute: Sequence[float], edge_costs):
    """One pass of the one-frame schedule with the given stage durations."""
    free: dict[str, float] = {}
    arrive = [0.0] * len(placement.stages)
    starts, ends = [0.0] * len(compute), [0.0] * len(compute)
    edge_times: list[tuple[float, float]] = [(0.0, 0.0)] * len(placement.edges)
    by_source: dict[int, list[int]] = {}
    for k, edge in enumerate(placement.edges):
        by_source.setdefault(edge.source, []).append(k)
    for index, stage in enumerate(placement.stages):
        resource = resource_of(placement, stage)
        starts[index] = max(arrive[index], free.get(resource, 0.0))
        ends[index] = free[resource] = starts[index] + compute[index]
        for k in by_source.get(index, []):
            edge = placement.edges[k]
            link = _link_of(placement, edge)
            begin = max(ends[index], free.get(link, 0.0)) if link else ends[index]
            finish = begin + edge_costs[k][3].latency_ms
            if link:
                free[link] = finish
            edge_times[k] = (begin, finish)
            arrive[edge.target] = max(arrive[edge.target], finish)
    return starts, ends, edge_times


def _busy(placement: Placement, compute: Sequence[float], edge_costs) -> dict[str, float]:
    busy: dict[str, float] = {}
    for stage, ms in zip(placement.stages, compute, strict=True):
        key = resource_of(placement, stage)
        busy[key] = busy.get(key, 0.0) + ms
    for edge, cost in zip(placement.edges, edge_costs, strict=True):
        link = _link_of(placement, edge)
        if link:
            busy[link] = busy.get(link, 0.0) + cost[3].latency_ms
    return busy


def _tensor_bytes(graph: LayerGraph, item: EdgeTensor, dtype: str) -> int:
    tensor = graph.tensor(item.name)
    elements = tensor.elements if item.region is None else int(np.prod(item.region.shape()))
    size = DTYPE_BYTES[dtype] if tensor.dtype in ACTIVATION_DTYPES else DTYPE_BYTES[tensor.dtype]
    return elements * size


def _consumer_positions(graph: LayerGraph) -> dict[str, list[int]]:
    """Tensor -> sorted positions of the layers that consume it."""
    users: dict[str, list[int]] = {}
    for position, layer in enumerate(graph):
        for name in dict.fromkeys(layer.inputs):
            users.setdefault(name, []).append(position)
    return users


def _stage_arena_peak(graph, placement, index, positions, precision, users) -> int:
    """Peak of the arena rule restricted to one stage's layers (module docstring): a tensor is
    held from its producer (or the stage's start, if received) through its last consumer in the
    stage, or through the stage's end if the stage sends it on."""
    dtype = PRECISION_DTYPES[precision]
    leaving = {n for e in placement.outgoing(index) for n in e.tensor_names}
    leaving |= {n for n, s in placement.sink.items() if s == index}
    received = dict.fromkeys(n for e in placement.incoming(index) for n in e.tensor_names)
    index_of = {position: k for k, position in enumerate(positions)}
    delta = np.zeros(len(positions) + 1, dtype=np.int64)

    def hold(name: str, first: int) -> None:
        used = [index_of[p] for p in users.get(name, ()) if p in index_of]
        end = len(positions) - 1 if name in leaving else max(used, default=first)
        size = tensor_bytes_as(graph.tensor(name), dtype)
        delta[first] += size
        delta[max(end, first) + 1] -= size

    for name in received:
        hold(name, 0)
    for k, position in enumerate(positions):
        for tensor in graph.layers[position].outputs:
            hold(tensor.name, k)
    return int(np.cumsum(delta[:-1]).max())
