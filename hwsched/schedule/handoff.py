"""The runner's hand-off cost on a chain candidate's cores (:mod:`hwsched.costs.runtime`).

A stage's core runs, besides its layers, the receiving end of the hop into it and the sending
end of the hop out of it; the first core also runs the source (it sends the model input), the
last the sink (it receives the output). :func:`stage_handoff_ms` is that share for a stage of
layers ``[a, b)`` — it depends on the bytes at ``a`` and at ``b`` only, so the search adds it
to its stage matrices (:meth:`~hwsched.schedule.context.Context.stage_matrix`) and the optimum
it finds is the optimum with the hand-off charged, for any number of boards;
:func:`with_runtime_cost` charges one evaluated candidate exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import ScheduleError
from hwsched.ir import LayerGraph
from hwsched.schedule.records import Candidate


def model_io_bytes(graph: LayerGraph) -> tuple[int, int]:
    """Bytes of the model's inputs (what the source sends) and outputs (what the sink gets)."""
    inputs = sum(t.bytes for layer in graph.input_layers for t in layer.outputs)
    outputs = sum(graph.tensor(name).bytes for name in graph.outputs)
    return inputs, outputs


def handoff_vectors(graph: LayerGraph, cut_bytes: np.ndarray, cost: RuntimeCost
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(into, out_of)`` over boundary positions ``0..L``: the ms a stage starting at ``a``
    spends receiving (``into[a]``; at 0 the source's send too) and a stage ending at ``b``
    spends sending (``out_of[b]``; at L the sink's receive too), given the payload bytes that
    cross each cut position (``cut_bytes``, length L+1)."""
    inputs, outputs = model_io_bytes(graph)
    size = len(cut_bytes)
    into = np.array([cost.receiver_ms(float(b)) for b in cut_bytes])
    out_of = np.array([cost.sender_ms(float(b)) for b in cut_bytes])
    into[0] = cost.receiver_ms(inputs) + cost.sender_ms(inputs)
    out_of[size - 1] = cost.sender_ms(outputs) + cost.receiver_ms(outputs)
    return into, out_of


def restage(candidate: Candidate, stage_ms: Sequence[float]) -> Candidate:
    """``candidate`` with its stage times replaced; period and latency recomputed."""
    if len(stage_ms) != len(candidate.stages):
        raise ScheduleError(f"{len(stage_ms)} stage times for a {len(candidate.stages)}-stage "
                            f"split at {list(candidate.cut_positions)}")
    stages = tuple(replace(s, cost=replace(s.cost, latency_ms=float(ms)))
                   for s, ms in zip(candidate.stages, stage_ms, strict=True))
    links = [link.latency_ms for link in candidate.links]
    return replace(candidate, stages=stages, period_ms=max([*stage_ms, *links]),
                   latency_ms=float(sum(stage_ms) + sum(links)))


def boundary_bytes(graph: LayerGraph, candidate: Candidate) -> list[int]:
    """Payload bytes into each stage and out of the last: model input, each cut, output."""
    inputs, outputs = model_io_bytes(graph)
    return [inputs, *(link.transfer_bytes for link in candidate.links), outputs]


def runner_shares_ms(cost: RuntimeCost, sizes: Sequence[int]) -> list[float]:
    """Each stage's core's share of the hand-offs it touches, given the payload bytes into
    each stage and out of the last (:func:`boundary_bytes`): the receiving end of the hop into
    it and the sending end of the hop out of it, the first core also the source's, the last
    the sink's.

    >>> from hwsched.costs.runtime import RuntimeCost
    >>> runner_shares_ms(RuntimeCost(frame_ms=1.0, per_byte_ms=0.0), [8, 4, 2, 1])
    [3.0, 2.0, 3.0]
    """
    n = len(sizes) - 1
    return [cost.stage_ms(sizes[k], sizes[k + 1], first=k == 0, last=k == n - 1)
            for k in range(n)]


def with_runtime_cost(graph: LayerGraph, candidate: Candidate, cost: RuntimeCost) -> Candidate:
    """Each stage's time plus its core's share of the hand-offs it touches: the receiving end
    of the hop into it and the sending end of the hop out of it (the first core also runs the
    source, the last the sink; :mod:`hwsched.costs.runtime`). The period is again the busiest
    core or link; the latency counts every hop whole: both ends in the stages, a cut's wire in
    its link, the source's and the sink's wire added here."""
    sizes = boundary_bytes(graph, candidate)
    extra = runner_shares_ms(cost, sizes)
    charged = restage(candidate, [s.cost.latency_ms + e
                                  for s, e in zip(candidate.stages, extra, strict=True)])
    # a cut's wire is its link's latency already; the source's and the sink's hops have none
    wire_ms = cost.wire_ms(sizes[0]) + cost.wire_ms(sizes[-1])
    return replace(charged, latency_ms=charged.latency_ms + wire_ms)


