"""Transfer models: what it costs to send a stage's crossing tensors over a link.

``framed`` (default) for ``B`` payload bytes sent as ``m`` messages (one per crossing tensor)::

    frames = ceil(B / frame_payload_bytes)        (0 frames for B = 0; 1 "frame" for raw links)
    wire_bytes = B + frames * frame_overhead_bytes
    wire_ms = wire_bytes * bits_per_byte / bandwidth_bps * 1000 + frames * frame_gap_us / 1000
    latency_ms = wire_ms + m * message_latency_ms
    energy_mj = active_power_w * wire_ms
           or wire_bytes * bits_per_byte * energy_per_bit_nj * 1e-6

``ideal`` ignores framing, gaps and per-message latency: ``B * 8 / bandwidth``.

>>> from hwsched.hardware import load_link
>>> cost = framed(load_link("gige"), payload_bytes=1460 * 2, messages=1)
>>> cost.wire_bytes, round(cost.latency_ms, 6)      # 2 frames of 1460 + 78 B; + 0.1 ms
(3076, 0.124608)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from hwsched.hardware import NATIVE_ENCODING, PRECISION_DTYPES, Link
from hwsched.ir import DTYPE_BYTES, Tensor
from hwsched.units import MS_PER_S

US_PER_MS = 1000.0
#: Millijoules per nanojoule.
MJ_PER_NJ = 1e-6
#: Bits in a byte when nothing is framed around it (the ideal model).
BITS_PER_BYTE = 8
#: Dtypes that hold activations and follow the stage/link precision; others (indices, shapes)
#: keep their own size.
ACTIVATION_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16", "int8", "uint8"})


@dataclass(frozen=True)
class TransferCost:
    wire_bytes: int
    latency_ms: float
    energy_mj: float


def _link_energy_mj(link: Link, wire_bytes: int, wire_ms: float) -> float:
    if link.energy_per_bit_nj is not None:
        return wire_bytes * link.bits_per_byte * link.energy_per_bit_nj * MJ_PER_NJ
    return (link.active_power_w or 0.0) * wire_ms


def framed(link: Link, payload_bytes: int, messages: int) -> TransferCost:
    """Frames, per-frame overhead and gaps, bits per byte and per-message latency."""
    if payload_bytes <= 0:
        return TransferCost(wire_bytes=0, latency_ms=0.0, energy_mj=0.0)
    if link.frame_payload_bytes is None:
        frames = 0
    else:
        frames = math.ceil(payload_bytes / link.frame_payload_bytes)
    wire_bytes = payload_bytes + frames * link.frame_overhead_bytes
    wire_ms = (
        wire_bytes * link.bits_per_byte / link.bandwidth_bps * MS_PER_S
        + frames * link.frame_gap_us / US_PER_MS
    )
    return TransferCost(
        wire_bytes=wire_bytes,
        latency_ms=wire_ms + messages * link.message_latency_ms,
        energy_mj=_link_energy_mj(link, wire_bytes, wire_ms),
    )


def ideal(link: Link, payload_bytes: int, messages: int) -> TransferCost:
    """Bandwidth only: no framing, no gaps, no per-message latency (an optimistic bound)."""
    wire_ms = payload_bytes * BITS_PER_BYTE / link.bandwidth_bps * MS_PER_S
    return TransferCost(
        wire_bytes=payload_bytes,
        latency_ms=wire_ms,
        energy_mj=_link_energy_mj(link, payload_bytes, wire_ms),
    )


TransferModel = Callable[[Link, int, int], TransferCost]

TRANSFER_MODELS: Mapping[str, TransferModel] = MappingProxyType({"framed": framed, "ideal": ideal})


def encoding_dtype(link: Link, head_precision: str, tail_precision: str) -> str:
    """Dtype crossing activations travel in: the link's forced encoding, else what the head
    stage outputs, as the runner sends it: int8 from an int8 stage, float32 from an fp32 or
    fp16 one (fp16 stores only its weights as float16; its inputs and outputs stay float32).
    The consumer applies the hand-off on arrival, so a tail's precision changes nothing on the
    wire; a smaller dtype on the wire is link compression (:func:`compressed_dtype`). An
    ``encoding: fp32`` link is the fp32 compression level, which sends tensors as made (export
    asks no compression of it: an int8 tensor travels as int8), so it is priced as native.

    >>> from hwsched.hardware import load_link
    >>> encoding_dtype(load_link("gige"), "fp16", "int8"), encoding_dtype(load_link("gige"),
    ...                                                                    "int8", "fp32")
    ('float32', 'int8')
    """
    del tail_precision  # the tail converts on arrival (hwsched.handoff)
    if link.encoding not in (NATIVE_ENCODING, "fp32"):
        return PRECISION_DTYPES[link.encoding]
    return "int8" if head_precision == "int8" else "float32"


def tensor_bytes_as(tensor: Tensor, dtype: str) -> int:
    """Size of an activation tensor in ``dtype``; non-activation dtypes keep their size."""
    return tensor.bytes_as(dtype) if tensor.dtype in ACTIVATION_DTYPES else tensor.bytes


def crossing_bytes(tensors: Sequence[Tensor], dtype: str) -> int:
    """Payload bytes of a set of crossing tensors encoded in ``dtype``."""
    return sum(tensor_bytes_as(tensor, dtype) for tensor in tensors)


# -- link compression (hwsched.compression) ----------------------------------------------------
#: Link compression levels, weakest first, and the dtype each sends float activations in.
COMPRESSION_DTYPES: Mapping[str, str | None] = MappingProxyType(
    {"fp32": None, "fp16": "float16", "int8": "int8"})
#: Milliseconds to compress one MB (1e6 bytes) of activations on the sender and decompress them
#: on the receiver, both ends together. Measured with hwsched.compression's own functions on
#: the 2-core development machine (AMD EPYC, numpy, fastest of 30 runs of a 1 MB float32
#: tensor, three sessions: fp16 2.0–2.1 ms, int8 0.44–0.48 ms; numpy's float16 cast is not
#: vectorised, its int8 path is). An estimate for boards, whose cores are slower.
CONVERSION_MS_PER_MB: Mapping[str, float] = MappingProxyType(
    {"fp32": 0.0, "fp16": 2.1, "int8": 0.5})
BYTES_PER_MB = 1e6


def compressed_dtype(dtype: str, level: str) -> str:
    """The dtype activations encoded as ``dtype`` travel in at ``level``: the level's, when
    smaller; an int8 link is not compressed further.

    >>> compressed_dtype("float32", "fp16"), compressed_dtype("int8", "fp16")
    ('float16', 'int8')
    """
    target = COMPRESSION_DTYPES[level]
    if target is None or dtype not in ("float32", "float16", "float64"):
        return dtype
    return min((dtype, target), key=lambda d: DTYPE_BYTES[d])


def conversion_ms(tensors: Sequence[Tensor], dtype: str, level: str) -> float:
    """Compressing and decompressing crossing tensors encoded as ``dtype`` at ``level``
    (0 when the level changes nothing)."""
    if compressed_dtype(dtype, level) == dtype:
        return 0.0
    return crossing_bytes(tensors, dtype) / BYTES_PER_MB * CONVERSION_MS_PER_MB[level]
