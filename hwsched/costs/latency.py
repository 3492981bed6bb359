"""Latency models: milliseconds per layer of a graph on one platform at one precision.

Signature of every model: ``model(graph, platform, precision, profile) -> LayerLatencies``.
A stage's latency is ``platform.invoke_overhead_ms`` + the sum of its layers' latencies (+ the
time to stream parameters that do not fit a parameter cache, see :func:`param_stream_ms`).

``roofline`` (default), per layer at position ``p``::

    compute_ms = flops / (compute_gops[precision] * op_efficiency[op] * 1e9) * 1e3
    memory_ms  = (input + output activation bytes + weight bytes) / (bandwidth_gbps * 1e9) * 1e3
    latency_ms = max(compute_ms, memory_ms) + layer_overhead_ms        (0 for input layers)

A layer whose op has no cost rule (``flops is None``) is costed by its memory traffic alone and
listed in ``LayerLatencies.unscored``, never silently free.

``measured`` uses a :class:`~hwsched.costs.profile.Profile` of the platform: each segment's
measured time, minus the platform's invoke overhead, is spread over the segment's layers in
proportion to their roofline estimates, so a stage that equals a measured segment reproduces the
measurement exactly, and stages that are unions of segments add their segment times. Layers
outside every segment keep the roofline estimate and are listed in ``LayerLatencies.estimated``.

>>> from hwsched.hardware import load_platform
>>> from hwsched.ir import Layer, LayerGraph, OpKind, Tensor
>>> x = Tensor("x", producer="x", shape=(1, 1000), dtype="float32")
>>> y = Tensor("fc", producer="fc", shape=(1, 1000), dtype="float32")
>>> g = LayerGraph("fc", (Layer("x", OpKind.INPUT, (), (x,)),
...     Layer("fc", OpKind.DENSE, ("x",), (y,), params=1_001_000, macs=1_000_000,
...           flops=2_000_000)), outputs=("fc",))
>>> # memory-bound: (4000 + 4000 + 4_004_000 B) / 5.6 GB/s = 0.7164 ms, + 0.01 ms dispatch
>>> [round(float(ms), 4) for ms in roofline(g, load_platform("rpi4"), "fp32").latency_ms]
[0.0, 0.7264]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from hwsched.costs.memory import layer_weight_bytes
from hwsched.costs.profile import Profile
from hwsched.costs.transfer import tensor_bytes_as
from hwsched.errors import ProfileError, ScheduleError
from hwsched.hardware import PRECISION_DTYPES, Platform
from hwsched.ir import Layer, LayerGraph, OpKind
from hwsched.units import MS_PER_S

#: Operations per GOP and bytes per GB (descriptor units are decimal).
OPS_PER_GOP = 1e9
BYTES_PER_GB = 1e9


@dataclass(frozen=True, eq=False)
class LayerLatencies:
    """Milliseconds per layer, in topological order."""

    model: str
    platform: str
    precision: str
    latency_ms: np.ndarray
    #: Layers with no cost rule, costed by memory traffic only.
    unscored: tuple[str, ...] = ()
    #: Layers the measured model had no measurement for (roofline estimate used).
    estimated: tuple[str, ...] = ()
    #: Whether the times already contain streaming parameters past an on-chip cache (a
    #: measurement does; an estimate from the descriptor does not): the scheduler adds
    #: :func:`param_stream_ms` only when this is False.
    includes_param_streaming: bool = False


def _check_precision(platform: Platform, precision: str) -> None:
    if precision not in platform.compute_gops:
        raise ScheduleError(
            f"platform {platform.name!r} does not run {precision}; "
            f"supported: {', '.join(platform.precisions)}"
        )


def layer_traffic_bytes(graph: LayerGraph, layer: Layer, precision: str) -> int:
    """Bytes a layer reads and writes: distinct inputs, outputs and weights."""
    dtype = PRECISION_DTYPES[precision]
    inputs = sum(tensor_bytes_as(graph.tensor(n), dtype) for n in dict.fromkeys(layer.inputs))
    outputs = sum(tensor_bytes_as(t, dtype) for t in layer.outputs)
    return inputs + outputs + layer_weight_bytes(layer, precision)


def roofline_layer_ms(graph: LayerGraph, layer: Layer, platform: Platform, precision: str) -> float:
    """Roofline latency of one layer (see the module docstring)."""
    if layer.op is OpKind.INPUT:
        return 0.0
    rate = platform.compute_gops[precision] * platform.efficiency(layer.op) * OPS_PER_GOP
    compute_ms = (layer.flops or 0) / rate * MS_PER_S
    bandwidth = platform.memory_bandwidth_gbps * BYTES_PER_GB
    memory_ms = layer_traffic_bytes(graph, layer, precision) / bandwidth * MS_PER_S
    return max(compute_ms, memory_ms) + platform.layer_overhead_ms


def roofline(
    graph: LayerGraph, platform: Platform, precision: str, profile: Profile | None = None
) -> LayerLatencies:
    """Compute- vs memory-bound estimate per layer from the descriptor (profile ignored)."""
    _check_precision(platform, precision)
    times = np.array(
        [roofline_layer_ms(graph, layer, platform, precision) for layer in graph],
        dtype=np.float64,
    )
    unscored = tuple(layer.name for layer in graph.unscored_layers)
    return LayerLatencies("roofline", platform.name, precision, times, unscored=unscored)


def measured(
    graph: LayerGraph, platform: Platform, precision: str, profile: Profile | None = None
) -> LayerLatencies:
    """Measured segment/layer times spread over layers by the roofline shares."""
    if profile is None:
        raise ProfileError(f"the measured latency model needs a profile for {platform.name!r}")
    if profile.platform != platform.name:
        raise ProfileError(
            f"{profile.source}: profile was measured on {profile.platform!r}, not {platform.name!r}"
        )
    if profile.precision is not None and profile.precision != precision:
        raise ProfileError(
            f"{profile.source}: profile was measured in {profile.precision}, "
            f"but the stage on {platform.name!r} runs {precision}"
        )
    estimate = roofline(graph, platform, precision)
    times = estimate.latency_ms.copy()
    covered = np.zeros(len(graph), dtype=bool)
    for first, last, latency_ms in profile.segment_positions(graph):
        span = slice(first, last + 1)
        compute_ms = max(latency_ms - platform.invoke_overhead_ms, 0.0)
        weights = estimate.latency_ms[span]
        total = weights.sum()
        share = weights / total if total > 0 else np.full(last - first + 1, 1 / (last - first + 1))
        times[span] = compute_ms * share
        covered[span] = True
    estimated = tuple(
        layer.name
        for layer, hit in zip(graph.layers, covered, strict=True)
        if not hit and layer.op is not OpKind.INPUT
    )
    return LayerLatencies(
        "measured",
        platform.name,
        precision,
        times,
        unscored=estimate.unscored,
        estimated=estimated,
        includes_param_streaming=True,
    )


def param_stream_ms(platform: Platform, stage_weight_bytes: int) -> float:
    """Time to stream the parameters that exceed an on-chip parameter cache, per inference."""
    if platform.param_cache_bytes is None or platform.offchip_bandwidth_gbps is None:
        return 0.0
    spill = max(stage_weight_bytes - platform.param_cache_bytes, 0)
    return spill / (platform.offchip_bandwidth_gbps * BYTES_PER_GB) * MS_PER_S


LatencyModel = Callable[[LayerGraph, Platform, str, "Profile | None"], LayerLatencies]

LATENCY_MODELS: Mapping[str, LatencyModel] = MappingProxyType(
    {"roofline": roofline, "measured": measured}
)
