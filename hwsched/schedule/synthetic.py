"""Synthetic layer graphs for benchmarks and tests: conv chains with residual blocks.

>>> g = synthetic_graph(12, seed=0)
>>> len(g), g.layers[0].op.value
(12, 'input')
"""

from __future__ import annotations

import numpy as np

from hwsched.ir import Layer, LayerGraph, OpKind, Tensor

#: Every this many layers a residual add joins the block input back in.
RESIDUAL_EVERY = 4
#: Channel counts and spatial sizes the generator draws from.
CHANNELS = (8, 16, 32, 64, 128)
SPATIAL = (7, 14, 28, 56)
#: 3x3 kernels.
KERNEL_ELEMENTS = 9


def synthetic_graph(n_layers: int, seed: int = 0, name: str = "synthetic") -> LayerGraph:
    """A deterministic pseudo-random CNN-like graph of ``n_layers`` layers (>= 2)."""
    rng = np.random.default_rng(seed)
    hw = int(rng.choice(SPATIAL))
    channels = int(rng.choice(CHANNELS))

    def tensor(layer: str, c: int) -> Tensor:
        return Tensor(layer, producer=layer, shape=(1, hw, hw, c), dtype="float32")

    layers = [Layer("input", OpKind.INPUT, (), (tensor("input", channels),))]
    block_input = "input"
    previous = "input"
    for i in range(1, n_layers):
        name_i = f"l{i}"
        if i % RESIDUAL_EVERY == 0:
            layer = Layer(
                name_i,
                OpKind.ELEMENTWISE,
                (previous, block_input),
                (tensor(name_i, channels),),
                macs=0,
                flops=hw * hw * channels,
            )
            block_input = name_i
        else:
            out_c = channels
            params = KERNEL_ELEMENTS * channels * out_c + out_c
            macs = hw * hw * KERNEL_ELEMENTS * channels * out_c
            layer = Layer(
                name_i,
                OpKind.CONV2D,
                (previous,),
                (tensor(name_i, out_c),),
                params=params,
                weight_bytes=4 * params,
                macs=macs,
                flops=2 * macs,
            )
        layers.append(layer)
        previous = name_i
    return LayerGraph(name, tuple(layers), outputs=(previous,))
