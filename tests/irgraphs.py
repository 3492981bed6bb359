"""Tiny IR graphs for tests: build a LayerGraph from a literal DAG, and brute-force oracles."""

from __future__ import annotations

from collections.abc import Sequence

from hwsched.ir import Layer, LayerGraph, OpKind, Tensor


def chain_tensor(name: str, shape: tuple[int, ...] = (1, 4), dtype: str = "float32") -> Tensor:
    return Tensor(name, producer=name, shape=shape, dtype=dtype)


def dag_graph(
    preds: Sequence[Sequence[int]],
    n_inputs: int = 1,
    widths: Sequence[int] | None = None,
    macs: Sequence[int] | None = None,
    name: str = "dag",
) -> LayerGraph:
    """Layers ``n0..n{N-1}``; ``preds[i]`` lists the predecessors of node ``i`` (inputs: none).

    Node ``i`` outputs one float32 tensor ``(1, widths[i])``; nodes nobody consumes are the
    model outputs.
    """
    n = len(preds)
    widths = widths or [4] * n
    macs = macs or [10 * (i + 1) for i in range(n)]
    consumed = {p for ps in preds for p in ps}
    layers = []
    for i, ps in enumerate(preds):
        tensor = chain_tensor(f"n{i}", (1, widths[i]))
        if i < n_inputs:
            layers.append(Layer(f"n{i}", OpKind.INPUT, (), (tensor,)))
        else:
            layers.append(
                Layer(f"n{i}", OpKind.DENSE, tuple(f"n{p}" for p in ps), (tensor,),
                      macs=macs[i], flops=2 * macs[i])
            )
    outputs = tuple(f"n{i}" for i in range(n) if i not in consumed)
    return LayerGraph(name, tuple(layers), outputs)


def brute_force_crossing(graph: LayerGraph, head_layers: int) -> set[str]:
    """Crossing tensors straight from the definition."""
    head = {layer.name for layer in graph.layers[:head_layers]}
    tail = graph.layers[head_layers:]
    crossing = set()
    for layer in graph.layers[:head_layers]:
        for tensor in layer.outputs:
            used_in_tail = any(tensor.name in t.inputs for t in tail)
            if used_in_tail or tensor.name in graph.outputs:
                crossing.add(tensor.name)
    assert all(graph.tensor(c).producer in head for c in crossing)
    return crossing


def brute_force_on_every_path(graph: LayerGraph) -> set[str]:
    """Layers on every path from any input layer to any output (all paths enumerated)."""
    sinks = {graph.tensor(t).producer for t in graph.outputs}
    paths: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        path = [*path, node]
        if node in sinks:
            paths.append(path)
        for succ in graph.successors(node):
            walk(succ, path)

    for layer in graph.input_layers:
        walk(layer.name, [])
    common = set(paths[0])
    for path in paths[1:]:
        common &= set(path)
    return common
