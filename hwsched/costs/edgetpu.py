"""An Edge TPU stage priced from what its compiler reported, not from the descriptor's guess.

The analysis prices an Edge TPU stage as if every op ran on the TPU and every parameter that
fits the descriptor's ``param_cache_mib`` stayed on chip. ``edgetpu_compiler`` says what really
happens (:func:`hwsched.export.edgetpu.parse_report`): which ops it mapped, which it left on
the host CPU, and how many parameter bytes stream over USB every inference. Once a stage is
compiled its time is::

    tpu_ms          = sum(roofline of each mapped layer on the TPU)
                      + invoke_overhead_ms x tpu_segments    (one USB round trip per segment)
    cpu_ms          = sum(roofline of each layer left on the CPU on the host descriptor)
                      (+ the host's invoke overhead when nothing runs on the TPU)
    handoff_ms      = bytes crossing between TPU and CPU segments / offchip_bandwidth_gbps
    param_stream_ms = report's off-chip streaming bytes / offchip_bandwidth_gbps
    latency_ms      = tpu_ms + cpu_ms + handoff_ms + param_stream_ms

The host is the descriptor's ``runtime.host`` (the board the accelerator is plugged into).

Which layers are on the CPU: the report counts ops per TFLite operator, not per layer. The
compiler maps the graph up to its first op it cannot map and leaves what follows on the CPU
(coral.ai, "Compiling": the model is cut at the first unsupported op), so for each operator
the *last* ``count`` layers of the stage with that operator are the CPU ones. An operator the
report leaves on the CPU that no layer of the stage has (a QUANTIZE the converter inserted)
is listed in ``unmatched_cpu_ops`` and costs nothing here, said rather than hidden; so are CPU
ops the report's summary counts when it prints no operator table.

With every op mapped and nothing streamed, this is exactly the analysis's own estimate for a
stage whose weights fit the cache (tests/test_edgetpu_pricing.py checks both ways).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwsched.costs.latency import BYTES_PER_GB, roofline_layer_ms
from hwsched.costs.memory import is_quantized, layer_tflite_ops
from hwsched.costs.transfer import tensor_bytes_as
from hwsched.errors import ScheduleError
from hwsched.hardware import Platform
from hwsched.ir import LayerGraph
from hwsched.units import MS_PER_S

#: The status the compiler's operator table gives an op it mapped onto the TPU.
MAPPED = "Mapped to Edge TPU"
#: The ``latency_source`` of a stage priced from its compiler report.
COMPILER_SOURCE = "compiler"
#: The key of ``unmatched_cpu_ops`` for CPU ops the report counts but does not name.
UNNAMED_OPS = "(not in the operator table)"
#: The Edge TPU runs int8 stages only.
TPU_PRECISION = "int8"


@dataclass(frozen=True)
class CompiledStageCost:
    """An Edge TPU stage's time from its compiler report (milliseconds, bytes)."""

    host: str
    tpu_ms: float
    cpu_ms: float
    handoff_ms: float
    param_stream_ms: float
    tpu_segments: int
    handoff_bytes: int
    param_stream_bytes: int
    #: Layers the compiler left on the host CPU, in stage order.
    cpu_layers: tuple[str, ...] = ()
    #: Operators the report leaves on the CPU that no layer of the stage has: op -> count.
    unmatched_cpu_ops: Mapping[str, int] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return self.tpu_ms + self.cpu_ms + self.handoff_ms + self.param_stream_ms

    def to_dict(self) -> dict[str, Any]:
        """The ``priced`` record of a stage's ``edgetpu`` field in ``plan.json``."""
        return {
            "latency_source": COMPILER_SOURCE, "latency_ms": self.latency_ms,
            "tpu_ms": self.tpu_ms, "cpu_ms": self.cpu_ms, "handoff_ms": self.handoff_ms,
            "param_stream_ms": self.param_stream_ms, "tpu_segments": self.tpu_segments,
            "handoff_bytes": self.handoff_bytes, "param_stream_bytes": self.param_stream_bytes,
            "host": self.host, "cpu_layers": list(self.cpu_layers),
            "unmatched_cpu_ops": dict(self.unmatched_cpu_ops),
        }


def cpu_op_counts(report: Mapping[str, Any]) -> Counter[str]:
    """Ops the compiler left on the CPU, per TFLite operator, from its operator table.

    >>> cpu_op_counts({"operators": [{"op": "MEAN", "count": 2, "status": "not mapped"},
    ...                              {"op": "CONV_2D", "count": 3, "status": MAPPED}]})
    Counter({'MEAN': 2})
    """
    counts: Counter[str] = Counter()
    for row in report.get("operators") or ():
        if row["status"] != MAPPED:
            counts[row["op"]] += int(row["count"])
    return counts


def cpu_positions(graph: LayerGraph, first: int, stop: int, report: Mapping[str, Any]
                  ) -> tuple[frozenset[int], dict[str, int]]:
    """Positions of the stage ``first..stop-1`` the compiler left on the CPU (each operator's
    count taken from the end of the stage) and the CPU ops no layer accounts for."""
    left = cpu_op_counts(report)
    on_cpu: set[int] = set()
    for position in reversed(range(first, stop)):
        for op in layer_tflite_ops(graph, graph.layers[position]):
            if left[op] > 0:
                left[op] -= 1
                on_cpu.add(position)
    unmatched = {op: n for op, n in sorted(left.items()) if n > 0}
    unnamed = int(report.get("ops_on_cpu") or 0) - sum(cpu_op_counts(report).values())
    if unnamed > 0:  # a summary count without the operator table to say which ops
        unmatched[UNNAMED_OPS] = unnamed
    return frozenset(on_cpu), unmatched


def _devices(graph: LayerGraph, first: int, stop: int, on_cpu: frozenset[int]) -> list[str]:
    """``tpu``/``cpu`` per position; a layer with no op of its own (an input, a layer the
    converter folds) runs where the op before it ran (the first op's device for leading ones).
    """
    devices: list[str | None] = [
        ("cpu" if position in on_cpu else "tpu")
        if layer_tflite_ops(graph, graph.layers[position]) else None
        for position in range(first, stop)
    ]
    known = [d for d in devices if d is not None]
    current = known[0] if known else "tpu"
    filled = []
    for device in devices:
        current = device or current
        filled.append(current)
    return filled


def tpu_segments(graph: LayerGraph, first: int, devices: Sequence[str]) -> int:
    """Runs of TPU ops (each one ``edgetpu-custom-op``, one invoke over USB)."""
    count, inside = 0, False
    for offset, device in enumerate(devices):
        if device != "tpu":
            inside = False
        elif not inside and layer_tflite_ops(graph, graph.layers[first + offset]):
            count, inside = count + 1, True
    return count


def handoff_bytes(graph: LayerGraph, first: int, stop: int, devices: Sequence[str]) -> int:
    """Bytes that cross between the TPU and the CPU inside the stage: each tensor the stage
    makes, once per other device that uses it in the stage (its inputs and outputs travel with
    the invoke, as the analysis prices them)."""
    own = is_quantized(graph)
    total = 0
    for offset, device in enumerate(devices):
        for tensor in graph.layers[first + offset].outputs:
            users = {devices[graph.position(user) - first] for user in graph.consumers(tensor.name)
                     if first <= graph.position(user) < stop}
            crossings = len(users - {device})
            total += crossings * (tensor.bytes if own else tensor_bytes_as(tensor, "int8"))
    return total


def _offchip_ms(platform: Platform, size: int) -> float:
    if not size:
        return 0.0
    if not platform.offchip_bandwidth_gbps:
        raise ScheduleError(f"{platform.name}: memory.offchip_bandwidth_gbps is needed to price "
                            f"{size} B crossing to the host; add it to the descriptor")
    return size / (platform.offchip_bandwidth_gbps * BYTES_PER_GB) * MS_PER_S


def host_precision(host: Platform) -> str:
    """The precision the host runs the int8 ops left to it in (its own default without int8)."""
    return TPU_PRECISION if TPU_PRECISION in host.compute_gops else host.default_precision


def price_compiled_stage(graph: LayerGraph, first: int, stop: int, platform: Platform,
                         host: Platform, report: Mapping[str, Any]) -> CompiledStageCost:
    """The stage ``first..stop-1`` on ``platform`` (an Edge TPU) as its compiler ``report``
    mapped it, the ops left to the CPU on ``host`` (see the module docstring)."""
    on_cpu, unmatched = cpu_positions(graph, first, stop, report)
    devices = _devices(graph, first, stop, on_cpu)
    layers = graph.layers[first:stop]
    segments = tpu_segments(graph, first, devices)
    tpu_ms = sum(roofline_layer_ms(graph, layer, platform, TPU_PRECISION)
                 for layer, device in zip(layers, devices, strict=True) if device == "tpu")
    precision = host_precision(host)
    cpu_ms = sum(roofline_layer_ms(graph, layer, host, precision)
                 for layer, device in zip(layers, devices, strict=True) if device == "cpu")
    crossing = handoff_bytes(graph, first, stop, devices)
    streamed = int(report.get("off_chip_streaming_bytes") or 0)
    return CompiledStageCost(
        host=host.name,
        tpu_ms=tpu_ms + platform.invoke_overhead_ms * segments,
        cpu_ms=cpu_ms + (host.invoke_overhead_ms if segments == 0 else 0.0),
        handoff_ms=_offchip_ms(platform, crossing),
        param_stream_ms=_offchip_ms(platform, streamed),
        tpu_segments=segments,
        handoff_bytes=crossing,
        param_stream_bytes=streamed,
        cpu_layers=tuple(graph.layers[p].name for p in sorted(on_cpu)),
        unmatched_cpu_ops=unmatched,
    )
