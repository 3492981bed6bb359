"""Stage slices: which layers, inputs and outputs each pipeline stage has (pure IR, no TF).

Cut positions ``k1 < k2 < …`` split the topological order into consecutive stages. A stage's
inputs are the crossing tensors of the cut before it (the model inputs for stage 0) and its
outputs are the crossing tensors of the cut after it (the model outputs for the last stage).
Every crossing tensor is carried, so cuts inside residual and squeeze-excite blocks work. A
tensor that a later stage needs but this stage does not touch is *passed through*: it is both
an input and an output of the stage (the runtime only ever talks to the next board).

>>> from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
>>> def t(n): return Tensor(n, producer=n, shape=(1, 8), dtype="float32")
>>> g = LayerGraph("res", (
...     Layer("x", OpKind.INPUT, (), (t("x"),)),
...     Layer("a", OpKind.ACTIVATION, ("x",), (t("a"),)),
...     Layer("b", OpKind.ACTIVATION, ("a",), (t("b"),)),
...     Layer("add", OpKind.ELEMENTWISE, ("x", "b"), (t("add"),)),
... ), outputs=("add",))
>>> [(s.start, s.end, s.inputs, s.outputs) for s in slice_stages(g, (2, 3))]
[(0, 2, ('x',), ('x', 'a')), (2, 3, ('x', 'a'), ('x', 'b')), (3, 4, ('x', 'b'), ('add',))]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hwsched.cuts import crossing_at, cut_at_layer, enumerate_cuts, first_cut_position
from hwsched.errors import CutError
from hwsched.ir import Layer, LayerGraph, OpKind


@dataclass(frozen=True)
class StageSlice:
    """Layers ``[start, end)`` of the topological order, with their boundary tensors."""

    index: int
    start: int
    end: int
    #: IR tensor names that enter the stage, in production order.
    inputs: tuple[str, ...]
    #: IR tensor names that leave the stage, in production order (model outputs: graph order).
    outputs: tuple[str, ...]

    def layers(self, graph: LayerGraph) -> tuple[Layer, ...]:
        """The stage's compute layers (input layers are boundary tensors, not ops)."""
        return tuple(
            layer for layer in graph.layers[self.start:self.end] if layer.op is not OpKind.INPUT
        )

    def first_layer(self, graph: LayerGraph) -> str:
        own = self.layers(graph)
        return own[0].name if own else ""

    def last_layer(self, graph: LayerGraph) -> str:
        own = self.layers(graph)
        return own[-1].name if own else ""


def resolve_cut_positions(
    graph: LayerGraph,
    cut_layers: Sequence[str] = (),
    positions: Sequence[int] = (),
) -> tuple[int, ...]:
    """Cut positions (``head_layers``) from layer names and/or integers, checked and sorted.

    Raises :class:`~hwsched.errors.CutError` for a layer or position that does not exist, a
    repeated cut, or no cut at all.
    """
    cuts = enumerate_cuts(graph)
    chosen = [cut_at_layer(cuts, name, graph).head_layers for name in cut_layers]
    for position in positions:
        crossing_at(graph, int(position))  # raises CutError naming the valid range
        chosen.append(int(position))
    if not chosen:
        raise CutError("no cut given: pass --cuts LAYER[,LAYER…] or --cut-positions K[,K…]")
    if len(set(chosen)) != len(chosen):
        raise CutError(f"cut positions repeat: {sorted(chosen)}")
    return tuple(sorted(chosen))


def slice_stages(graph: LayerGraph, cut_positions: Sequence[int]) -> tuple[StageSlice, ...]:
    """One :class:`StageSlice` per stage, for sorted, valid cut positions."""
    positions = tuple(cut_positions)
    if list(positions) != sorted(set(positions)):
        raise CutError(f"cut positions must be strictly increasing, got {list(positions)}")
    model_inputs = tuple(t.name for layer in graph.input_layers for t in layer.outputs)
    boundaries = [model_inputs]
    for position in positions:
        if position < first_cut_position(graph):
            raise CutError(
                f"cut position {position} does not exist in {graph.name!r}: valid positions "
                f"are {first_cut_position(graph)}..{len(graph) - 1}"
            )
        boundaries.append(tuple(t.name for t in crossing_at(graph, position)))
    boundaries.append(tuple(graph.outputs))
    starts = (0, *positions)
    ends = (*positions, len(graph))
    return tuple(
        StageSlice(i, starts[i], ends[i], boundaries[i], boundaries[i + 1])
        for i in range(len(starts))
    )


def signature_names(tensor_names: Sequence[str]) -> dict[str, str]:
    """IR tensor name -> a TFLite signature name (``[A-Za-z0-9_]``, unique, stable).

    Keras input names and signature keys may not hold ``/``, ``:`` or ``@``, which IR names of
    nested models, multi-output layers and shared layers do.
    """
    result: dict[str, str] = {}
    used: set[str] = set()
    for name in tensor_names:
        base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "tensor"
        if base[0].isdigit():
            base = f"t_{base}"
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        result[name] = candidate
    return result
