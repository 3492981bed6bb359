"""Compute rules: MACs and FLOPs of one op from its kind, shapes and attributes.

Loaders call :func:`op_work` for every layer they read. The rules count inference work at
batch 1 as the layer's shapes give it; a kind without a rule returns ``OpWork(None, None)`` so
that the layer is reported as unscored instead of silently free.

Conventions: one MAC is one multiply plus one add (2 FLOPs); a bias add, a BN scale-and-shift or
an activation counts its elementwise FLOPs; data movement ops (reshape, concat, pad, identity)
cost 0 FLOPs here — their cost is memory traffic, which the cost models charge by bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hwsched.ir import OpKind

#: FLOPs per output element of common activations (how TFLite's reference kernels compute
#: them, rounded; exp counted as 1 op). Unknown activations fall back to ``DEFAULT_ACT_FLOPS``.
ACTIVATION_FLOPS: Mapping[str, int] = MappingProxyType(
    {
        "linear": 0,
        "relu": 1,
        "relu6": 2,
        "leaky_relu": 2,
        "elu": 3,
        "sigmoid": 4,
        "hard_sigmoid": 3,
        "tanh": 5,
        "swish": 5,
        "silu": 5,
        "hard_swish": 4,
        "hard_silu": 4,
        "gelu": 8,
        "logistic": 4,
        "softplus": 3,
        "exp": 1,
    }
)
DEFAULT_ACT_FLOPS = 4
#: FLOPs per element of softmax: exp, sum, divide, max-subtract.
SOFTMAX_FLOPS_PER_ELEMENT = 4
#: BN at inference: one multiply and one add per element.
BATCH_NORM_FLOPS_PER_ELEMENT = 2

_FREE_KINDS = frozenset(
    {OpKind.INPUT, OpKind.CONCAT, OpKind.RESHAPE, OpKind.PAD, OpKind.IDENTITY}
)


@dataclass(frozen=True)
class OpWork:
    macs: int | None
    flops: int | None


def op_work(
    op: OpKind,
    input_shapes: Sequence[tuple[int, ...]],
    output_shapes: Sequence[tuple[int, ...]],
    attrs: Mapping[str, Any] | None = None,
) -> OpWork:
    """MACs and FLOPs of one op (batch included in the shapes).

    >>> op_work(OpKind.CONV2D, [(1, 8, 8, 3)], [(1, 8, 8, 16)], {"kernel_size": (3, 3)})
    OpWork(macs=27648, flops=56320)
    >>> op_work(OpKind.OTHER, [(1, 4)], [(1, 4)])
    OpWork(macs=None, flops=None)
    """
    attrs = attrs or {}
    out_elems = sum(math.prod(s) for s in output_shapes)
    in_elems = sum(math.prod(s) for s in input_shapes)
    bias = out_elems if attrs.get("use_bias", True) else 0
    act = _activation_flops(attrs.get("activation")) * out_elems
    if op in _FREE_KINDS:
        return OpWork(0, 0)
    window = _window(attrs.get("kernel_size", (1, 1)))
    if op is OpKind.CONV2D:
        in_ch = int(
            attrs.get("filter_in_channels", input_shapes[0][-1] // int(attrs.get("groups", 1)))
        )
        macs = out_elems * window * in_ch
        return OpWork(macs, 2 * macs + bias + act)
    if op is OpKind.DEPTHWISE_CONV2D:
        macs = out_elems * window
        return OpWork(macs, 2 * macs + bias + act)
    if op is OpKind.SEPARABLE_CONV2D:
        in_ch = input_shapes[0][-1]
        mid_ch = in_ch * int(attrs.get("depth_multiplier", 1))
        positions = out_elems // output_shapes[0][-1]
        macs = positions * mid_ch * window + out_elems * mid_ch
        return OpWork(macs, 2 * macs + bias + act)
    if op is OpKind.CONV2D_TRANSPOSE:
        macs = in_elems * window * output_shapes[0][-1]
        return OpWork(macs, 2 * macs + bias + act)
    if op in (OpKind.DENSE, OpKind.MATMUL):
        reduce_dim = int(attrs.get("reduce_dim", input_shapes[0][-1]))
        macs = out_elems * reduce_dim
        return OpWork(macs, 2 * macs + (bias if op is OpKind.DENSE else 0) + act)
    if op in (OpKind.MAX_POOL, OpKind.AVG_POOL):
        return OpWork(0, out_elems * _window(attrs.get("pool_size", (2, 2))))
    if op in (OpKind.GLOBAL_POOL, OpKind.REDUCE):
        return OpWork(0, in_elems)
    if op is OpKind.BATCH_NORM:
        return OpWork(out_elems, BATCH_NORM_FLOPS_PER_ELEMENT * out_elems)
    if op is OpKind.ACTIVATION:
        return OpWork(0, _activation_flops(attrs.get("activation", "")) * out_elems)
    if op is OpKind.SOFTMAX:
        return OpWork(0, SOFTMAX_FLOPS_PER_ELEMENT * out_elems)
    if op is OpKind.ELEMENTWISE:
        operands = max(len(input_shapes), 2)
        return OpWork(0, (operands - 1) * out_elems + act)
    if op in (OpKind.RESIZE, OpKind.QUANTIZE):
        return OpWork(0, out_elems)
    return OpWork(None, None)


def _activation_flops(name: object) -> int:
    if not name:
        return 0
    return ACTIVATION_FLOPS.get(str(name).lower(), DEFAULT_ACT_FLOPS)


def _window(value: object) -> int:
    """Elements in a kernel or pool window; a bare int means a square 2-D window."""
    if isinstance(value, int):
        return value * value
    return math.prod(int(v) for v in value)  # type: ignore[attr-defined]
