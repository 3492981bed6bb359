"""Cut points: every place a layer graph can be split into a head and a tail.

A cut at position ``k`` puts the first ``k`` layers of the graph's topological order in the
head and the rest in the tail. Because the order is topological, the head is closed under
predecessors. The *crossing* tensors are the head tensors that the tail consumes; a model
output produced in the head crosses too (it must travel to the sink at the end of the pipeline).

One cut point exists per position ``n_inputs <= k < len(graph)``, where ``n_inputs`` is the
number of input layers (they come first, and all model inputs enter the pipeline at its first
stage; for the usual single-input model the positions are ``1 .. len(graph) - 1``). A cut at
``k = n_inputs`` leaves only the inputs in the head. A cut has exactly one crossing
tensor iff its last head layer lies on every input-to-output path (it dominates the virtual
sink) and has one output; :func:`dominating_layers` computes that set independently with
dominators, and the tests check that both agree.

A stateful model's resource variable is not an edge: its state stays on the board that holds
it, so no cut may fall between the first and the last layer that reads or assigns it
(:func:`separated_variable`); :func:`enumerate_cuts` leaves those positions out and an explicit
cut there is refused with the variable's name.

>>> from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
>>> def t(n): return Tensor(n, producer=n, shape=(1, 8), dtype="float32")
>>> g = LayerGraph("res", (
...     Layer("x", OpKind.INPUT, (), (t("x"),)),
...     Layer("a", OpKind.ACTIVATION, ("x",), (t("a"),)),
...     Layer("b", OpKind.ACTIVATION, ("a",), (t("b"),)),
...     Layer("add", OpKind.ELEMENTWISE, ("x", "b"), (t("add"),)),
... ), outputs=("add",))
>>> [(c.head_layers, c.after, [x.name for x in c.crossing]) for c in enumerate_cuts(g)]
[(1, 'x', ['x']), (2, 'a', ['x', 'a']), (3, 'b', ['x', 'b'])]
>>> sorted(dominating_layers(g))
['add', 'x']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hwsched.errors import CutError
from hwsched.ir import LayerGraph, Tensor, Variable


@dataclass(frozen=True)
class CutPoint:
    """A cut after the first ``head_layers`` layers of the topological order."""

    head_layers: int
    after: str
    crossing: tuple[Tensor, ...]
    head_macs: int
    tail_macs: int

    @property
    def transfer_bytes(self) -> int:
        return sum(t.bytes for t in self.crossing)

    @property
    def single_tensor(self) -> bool:
        return len(self.crossing) == 1


def last_use_positions(graph: LayerGraph) -> dict[str, int]:
    """For each tensor, the position of its last consumer (``len(graph)`` for model outputs)."""
    last_use: dict[str, int] = {}
    for position, layer in enumerate(graph.layers):
        for tensor_name in layer.inputs:
            last_use[tensor_name] = position
    for out in graph.outputs:
        last_use[out] = len(graph)
    return last_use


def crossing_at(graph: LayerGraph, head_layers: int) -> tuple[Tensor, ...]:
    """Crossing tensors of one cut position, in production order."""
    _check_position(graph, head_layers)
    check_keeps_variables(graph, head_layers)
    last_use = last_use_positions(graph)
    return tuple(
        tensor
        for layer in graph.layers[:head_layers]
        for tensor in layer.outputs
        if last_use.get(tensor.name, -1) >= head_layers
    )


def enumerate_cuts(graph: LayerGraph) -> tuple[CutPoint, ...]:
    """All cut points of a graph, one per position, in position order.

    Runs in O(layers + total crossing tensors): a sweep keeps the set of live tensors (produced
    at or before the cut, still used after it).
    """
    last_use = last_use_positions(graph)
    total_macs = graph.total_macs
    live: dict[str, Tensor] = {}  # insertion order = production order: deterministic
    cuts: list[CutPoint] = []
    head_macs = 0
    first = first_cut_position(graph)
    blocked = variable_blocked_positions(graph)
    for position, layer in enumerate(graph.layers[:-1]):
        head_layers = position + 1
        head_macs += layer.macs or 0
        for tensor in layer.outputs:
            live[tensor.name] = tensor
        for name in [n for n in live if last_use.get(n, -1) < head_layers]:
            del live[name]
        if head_layers < first or head_layers in blocked:
            continue
        cuts.append(
            CutPoint(
                head_layers=head_layers,
                after=layer.name,
                crossing=tuple(live.values()),
                head_macs=head_macs,
                tail_macs=total_macs - head_macs,
            )
        )
    return tuple(cuts)


def variable_blocked_positions(graph: LayerGraph) -> dict[int, Variable]:
    """Cut positions that would separate a variable's accesses, each with (the first such)
    variable: a cut at ``k`` separates a variable whose first access lies before position
    ``k`` and whose last access at or after it."""
    blocked: dict[int, Variable] = {}
    for variable in graph.variables:
        first, last = graph.variable_span(variable)
        for position in range(first + 1, last + 1):
            blocked.setdefault(position, variable)
    return blocked


def separated_variable(graph: LayerGraph, head_layers: int) -> Variable | None:
    """The variable a cut at ``head_layers`` would split between two boards, or None."""
    for variable in graph.variables:
        first, last = graph.variable_span(variable)
        if first < head_layers <= last:
            return variable
    return None


def check_keeps_variables(graph: LayerGraph, head_layers: int) -> None:
    """Raise :class:`~hwsched.errors.CutError` naming the variable a cut would separate."""
    variable = separated_variable(graph, head_layers)
    if variable is None:
        return
    first, last = graph.variable_span(variable)
    raise CutError(
        f"a cut after layer {graph.layers[head_layers - 1].name!r} (position {head_layers}) "
        f"would separate variable {variable.name!r} (read by "
        f"{', '.join(variable.readers) or 'no layer'}, assigned by "
        f"{', '.join(variable.writers) or 'no layer'}) onto two boards; its state stays on one: "
        f"cut at position {first} or earlier, or {last + 1} or later"
    )


def dominating_layers(graph: LayerGraph) -> frozenset[str]:
    """Layers on every path from any model input to any model output.

    Computed as the dominators of a virtual sink (fed by every output) from a virtual source
    (feeding every input layer), with immediate dominators found in one topological sweep:
    in a DAG, ``idom(v)`` is the nearest common dominator of ``v``'s predecessors.
    """
    source = -1
    index = {layer.name: i for i, layer in enumerate(graph.layers)}
    idom: list[int] = []
    depth: list[int] = []  # depth in the dominator tree; the source has depth 0

    def intersect(a: int, b: int) -> int:
        while a != b:
            if _depth(a) < _depth(b):
                a, b = b, a
            a = idom[a] if a != source else source
        return a

    def _depth(v: int) -> int:
        return 0 if v == source else depth[v]

    for layer in graph.layers:
        preds = [index[p] for p in graph.predecessors(layer.name)] or [source]
        dom = preds[0]
        for p in preds[1:]:
            dom = intersect(dom, p)
        idom.append(dom)
        depth.append(_depth(dom) + 1)

    sink_preds = [index[graph.tensor(t).producer] for t in graph.outputs]
    dom = sink_preds[0]
    for p in sink_preds[1:]:
        dom = intersect(dom, p)
    result: set[str] = set()
    while dom != source:
        result.add(graph.layers[dom].name)
        dom = idom[dom]
    return frozenset(result)


def cut_at_layer(
    cuts: Sequence[CutPoint], layer_name: str, graph: LayerGraph | None = None
) -> CutPoint:
    """The cut point right after a named layer (with ``graph``: a cut left out because it
    would separate a variable is refused naming that variable)."""
    for cut in cuts:
        if cut.after == layer_name:
            return cut
    if graph is not None and layer_name in {layer.name for layer in graph.layers[:-1]}:
        check_keeps_variables(graph, graph.position(layer_name) + 1)
    raise CutError(
        f"no cut point after layer {layer_name!r}: the layer does not exist or is the last one"
    )


def first_cut_position(graph: LayerGraph) -> int:
    """The smallest valid ``head_layers``: the head must hold every input layer."""
    return len(graph.input_layers)


def _check_position(graph: LayerGraph, head_layers: int) -> None:
    first = first_cut_position(graph)
    if not first <= head_layers < len(graph):
        raise CutError(
            f"cut position {head_layers} does not exist in {graph.name!r}: "
            f"valid positions are {first}..{len(graph) - 1}"
        )


#: How ``rank_by_proxy`` orders cuts before hardware costs are applied, for reports.
PROXY_RANKING = "MAC balance (larger side's share), then fewer transfer bytes, then position"


def rank_by_proxy(
    cuts: Sequence[CutPoint], max_crossing: int | None = None
) -> tuple[CutPoint, ...]:
    """Order cut points by a hardware-free proxy (see :data:`PROXY_RANKING`).

    Two equal devices pipelined over a free link would reach their best throughput at the cut
    whose bigger side has the fewest MACs; among equally balanced cuts, less data to send wins.
    ``max_crossing`` drops cuts with more crossing tensors than that.
    """

    def key(cut: CutPoint) -> tuple[float, int, int]:
        total = cut.head_macs + cut.tail_macs
        share = max(cut.head_macs, cut.tail_macs) / total if total else 1.0
        return (round(share, 6), cut.transfer_bytes, cut.head_layers)

    kept = [c for c in cuts if max_crossing is None or len(c.crossing) <= max_crossing]
    return tuple(sorted(kept, key=key))
