"""Frames: one tensor on the wire, as a fixed header plus the raw bytes. Never pickle.

Layout (little endian)::

    magic "HWSF" | version u8 | kind u8 | part u16 | parts u16 | seq u64 | origin_s f64 |
    dtype u8 | ndim u8 | has_quant u8 | pad u8 | scale f64 | zero_point i32 |
    name_len u16 | payload_len u32 | name (utf-8) | dims u32 × ndim | payload

A *message* is the list of frames of one sequence number: ``parts`` data frames (one per
tensor crossing the hop), or one ``ACK``/``END`` control frame. ``origin_s`` is the host
``time.time()`` at which the source first sent the frame, for end-to-end latency.

:func:`decode_message` checks every header field against the tensors the plan says cross this
hop (name, dtype, shape, quantization, byte count) and the size limits *before* any array is
made; a frame that fails raises :class:`FrameError`, which the runner logs and drops.

>>> import numpy as np
>>> from hwsched.deployment import TensorSpec
>>> spec = TensorSpec("x", (1, 2), "float32")
>>> wire = encode_data(7, 0.0, {"x": np.array([[1, 2]], np.float32)}, {"x": spec})
>>> msg = decode_message(wire, {"x": spec})
>>> msg.kind, msg.seq, msg.tensors["x"].tolist()
('data', 7, [[1.0, 2.0]])
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwsched.deployment import TensorSpec
from hwsched.errors import TransportError
from hwsched.runtime.framing import packet_bytes

MAGIC = b"HWSF"
VERSION = 1
KIND_DATA, KIND_ACK, KIND_END = 1, 2, 3
KIND_NAMES = {KIND_DATA: "data", KIND_ACK: "ack", KIND_END: "end"}
HEADER = struct.Struct("<4sBBHHQdBBBBdiHI")
HEADER_BYTES = HEADER.size
#: Longest tensor name and rank a header may announce: bounds header parsing.
MAX_NAME_BYTES = 512
MAX_NDIM = 8
#: Default cap on one frame's payload when the plan gives no tighter bound.
DEFAULT_MAX_PAYLOAD_BYTES = 64 << 20
#: Relative tolerance when comparing a header's quantization scale with the plan's.
SCALE_RTOL = 1e-6

#: Wire codes of the dtypes a frame may carry (fixed: never reorder).
DTYPE_CODES: Mapping[str, int] = {
    "float32": 1, "float16": 2, "int8": 3, "uint8": 4, "int16": 5, "int32": 6, "int64": 7,
    "float64": 8, "bool": 9,
}
CODE_DTYPES = {code: name for name, code in DTYPE_CODES.items()}


class FrameError(TransportError):
    """A frame or message that does not match the plan or the wire format."""


@dataclass(frozen=True)
class Message:
    """A decoded message: ``tensors`` maps IR tensor names to arrays (data messages only)."""

    kind: str
    seq: int
    origin_s: float
    tensors: Mapping[str, np.ndarray]
    payload_bytes: int


def spec_bytes(spec: TensorSpec) -> int:
    return math.prod(spec.shape) * np.dtype(spec.dtype).itemsize


def frame_bytes_bound(payload_bytes: int) -> int:
    """Largest frame carrying ``payload_bytes``: the header with its longest name and rank."""
    return HEADER_BYTES + MAX_NAME_BYTES + 4 * MAX_NDIM + payload_bytes


def max_frame_bytes(specs: Mapping[str, TensorSpec]) -> int:
    """Largest frame the plan allows on a hop: the header bounds plus the largest payload."""
    return frame_bytes_bound(max((spec_bytes(s) for s in specs.values()), default=0))


def max_message_bytes(specs: Mapping[str, TensorSpec]) -> int:
    """Largest serial packet (before stuffing) of one message on a hop: every frame of a data
    message (or the one control frame) in the packet's part table, plus its CRC."""
    frames = [frame_bytes_bound(spec_bytes(s)) for s in specs.values()] or [frame_bytes_bound(0)]
    return packet_bytes(frames)


# -- encoding ----------------------------------------------------------------------------------
def _header(kind: int, seq: int, origin_s: float, part: int = 0, parts: int = 1,
            dtype: str | None = None, ndim: int = 0, quant: tuple[float, int] | None = None,
            name: bytes = b"", payload_len: int = 0) -> bytes:
    scale, zero_point = quant if quant is not None else (0.0, 0)
    return HEADER.pack(
        MAGIC, VERSION, kind, part, parts, seq, origin_s,
        DTYPE_CODES[dtype] if dtype else 0, ndim, quant is not None, 0, scale, zero_point,
        len(name), payload_len,
    )


def encode_control(kind: int, seq: int, origin_s: float = 0.0) -> list[bytes]:
    """An ``ACK`` or ``END`` message (one frame without a tensor)."""
    return [_header(kind, seq, origin_s)]


def encode_data(
    seq: int, origin_s: float, arrays: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpec]
) -> list[bytes]:
    """One frame per tensor, in the order of ``specs``; arrays must match their spec."""
    frames = []
    for part, (name, spec) in enumerate(specs.items()):
        array = np.ascontiguousarray(arrays[name])
        if array.dtype != np.dtype(spec.dtype) or tuple(array.shape) != tuple(spec.shape):
            raise FrameError(
                f"tensor {name!r}: array is {array.dtype}{list(array.shape)}, "
                f"the plan says {spec.dtype}{list(spec.shape)}"
            )
        quant = None if spec.quantization is None else (
            spec.quantization.scale, spec.quantization.zero_point)
        raw_name = name.encode("utf-8")
        header = _header(KIND_DATA, seq, origin_s, part, len(specs), spec.dtype,
                         array.ndim, quant, raw_name, array.nbytes)
        dims = struct.pack(f"<{array.ndim}I", *array.shape)
        frames.append(b"".join((header, raw_name, dims, array.tobytes())))
    return frames


# -- decoding ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Header:
    kind: int
    part: int
    parts: int
    seq: int
    origin_s: float
    dtype_code: int
    ndim: int
    has_quant: bool
    scale: float
    zero_point: int
    name_len: int
    payload_len: int


def _read_header(frame: bytes | memoryview) -> _Header:
    if len(frame) < HEADER_BYTES:
        raise FrameError(f"frame of {len(frame)} B is shorter than the {HEADER_BYTES} B header")
    (magic, version, kind, part, parts, seq, origin_s, dtype_code, ndim, has_quant, _pad,
     scale, zero_point, name_len, payload_len) = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise FrameError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise FrameError(f"frame version {version}, this runner speaks {VERSION}")
    if kind not in KIND_NAMES:
        raise FrameError(f"unknown frame kind {kind}")
    if name_len > MAX_NAME_BYTES or ndim > MAX_NDIM:
        raise FrameError(f"header announces a {name_len} B name and {ndim} dims: too large")
    return _Header(kind, part, parts, seq, origin_s, dtype_code, ndim, bool(has_quant), scale,
                   zero_point, name_len, payload_len)


def _check_against_spec(header: _Header, name: str, shape: tuple[int, ...],
                        spec: TensorSpec) -> None:
    dtype = CODE_DTYPES.get(header.dtype_code)
    if dtype != spec.dtype:
        raise FrameError(f"tensor {name!r}: dtype {dtype} but the plan says {spec.dtype}")
    if shape != tuple(spec.shape):
        raise FrameError(f"tensor {name!r}: shape {list(shape)}, the plan says {list(spec.shape)}")
    if header.payload_len != spec_bytes(spec):
        raise FrameError(
            f"tensor {name!r}: payload of {header.payload_len} B, the plan's tensor has "
            f"{spec_bytes(spec)} B"
        )
    q = spec.quantization
    if (q is None) != (not header.has_quant) or (q is not None and (
        q.zero_point != header.zero_point
        or not math.isclose(q.scale, header.scale, rel_tol=SCALE_RTOL)
    )):
        theirs = (header.scale, header.zero_point) if header.has_quant else None
        ours = None if q is None else (q.scale, q.zero_point)
        raise FrameError(f"tensor {name!r}: quantization {theirs}, the plan says {ours}")


def _decode_tensor(frame: bytes | memoryview, header: _Header,
                   specs: Mapping[str, TensorSpec]) -> tuple[str, np.ndarray]:
    view = memoryview(frame)
    name_end = HEADER_BYTES + header.name_len
    dims_end = name_end + 4 * header.ndim
    if len(view) < dims_end:
        raise FrameError("frame ends inside its name or shape")
    try:
        name = bytes(view[HEADER_BYTES:name_end]).decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("tensor name is not UTF-8") from None
    spec = specs.get(name)
    if spec is None:
        raise FrameError(f"tensor {name!r} does not cross this hop (expected: {sorted(specs)})")
    shape = struct.unpack_from(f"<{header.ndim}I", view, name_end)
    _check_against_spec(header, name, tuple(shape), spec)
    if len(view) - dims_end != header.payload_len:
        raise FrameError(
            f"tensor {name!r}: {len(view) - dims_end} B follow the header, "
            f"which announces {header.payload_len} B"
        )
    # Only now, with every field checked, is an array made (a view of the received bytes).
    array = np.frombuffer(view[dims_end:], dtype=spec.dtype).reshape(spec.shape)
    return name, array


def decode_message(
    frames: Sequence[bytes | memoryview],
    specs: Mapping[str, TensorSpec],
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> Message:
    """Decode and validate one message; ``specs`` are the tensors expected on this hop."""
    if not frames:
        raise FrameError("empty message")
    # Count and total size before any header is parsed: a flood of tiny frames costs nothing.
    if len(frames) not in (1, len(specs)):
        raise FrameError(f"message of {len(frames)} frames; this hop carries {len(specs)} "
                         "tensor(s) per data message and one frame per control message")
    limit = max(len(specs), 1) * frame_bytes_bound(max_payload_bytes)
    if sum(len(f) for f in frames) > limit:
        raise FrameError(f"message of {sum(len(f) for f in frames)} B exceeds {limit} B")
    headers = [_read_header(f) for f in frames]
    first = headers[0]
    if any(h.seq != first.seq or h.kind != first.kind for h in headers):
        raise FrameError("frames of one message disagree on sequence number or kind")
    if first.kind != KIND_DATA:
        if len(frames) != 1 or first.payload_len or first.name_len or first.ndim:
            raise FrameError(f"{KIND_NAMES[first.kind]} message must be one empty frame")
        return Message(KIND_NAMES[first.kind], first.seq, first.origin_s, {}, 0)
    if [h.part for h in headers] != list(range(len(frames))) or any(
        h.parts != len(specs) for h in headers
    ) or len(frames) != len(specs):
        raise FrameError(
            f"data message has {len(frames)} frame(s) numbered {[h.part for h in headers]}; "
            f"this hop carries {len(specs)} tensor(s)"
        )
    tensors: dict[str, np.ndarray] = {}
    for frame, header in zip(frames, headers, strict=True):
        if header.payload_len > max_payload_bytes:
            raise FrameError(f"payload of {header.payload_len} B exceeds {max_payload_bytes} B")
        name, array = _decode_tensor(frame, header, specs)
        if name in tensors:
            raise FrameError(f"tensor {name!r} appears twice in one message")
        tensors[name] = array
    payload = sum(h.payload_len for h in headers)
    return Message("data", first.seq, first.origin_s, tensors, payload)
