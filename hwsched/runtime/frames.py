"""Frames: one tensor on the wire, as a fixed header plus the raw bytes. Never pickle.

Layout (little endian)::

    magic "HWSF" | version u8 | kind u8 | part u16 | parts u16 | seq u64 | origin_s f64 |
    dtype u8 | ndim u8 | has_quant u8 | pad u8 | scale f64 | zero_point i32 |
    name_len u16 | payload_len u32 | alternative u16 | sent_s f64 |
    name (utf-8) | dims u32 × ndim | payload

A *message* is the list of frames of one sequence number: ``parts`` data frames (one per
tensor crossing the hop), or one ``ACK``/``END``/``SWITCH`` control frame, or one ``REPORT``
frame whose payload is a fixed :data:`REPORT` record, or one ``PROBE`` frame (version 3, see
below). ``origin_s`` is the host ``time.time()``
at which the source first sent the frame, for end-to-end latency; ``sent_s`` is when this hop's
sender last put the message on the wire (:func:`restamp`), for the receiver's bandwidth
measurement. ``alternative`` is the split of an adaptive plan the frame runs on (0 for a fixed
plan): a receiver checks the frame against the tensors *that* alternative sends on the hop.

:func:`decode_message` checks every header field against the tensors the plan says cross this
hop (name, dtype, shape, quantization, byte count) and the size limits *before* any array is
made; a frame that fails raises :class:`FrameError`, which the runner logs and drops.

Version 3 adds one kind, ``PROBE`` (an active capacity probe of the hop, see
:mod:`hwsched.runtime.probe`), and changes nothing else: every other frame is still written as
version 2, so a version-2 runner reads them as before and only drops the probes it does not
know (their sender then gets no answer and measures nothing). A probe frame's ``part`` is its
phase: an *announce* (payload: the fixed :data:`PROBE_ANNOUNCE` record — messages in the
train, their bytes, how long the receiver should wait for them), the receiver's *ready*
(empty), and the train's *padding* messages (``payload_len`` zero bytes, no tensor). ``seq`` is
the probe's id, never a frame's sequence number: a probe is answered and measured inside the
reliable layer and never reaches a model or a sink.

>>> import numpy as np
>>> from hwsched.deployment import TensorSpec
>>> spec = TensorSpec("x", (1, 2), "float32")
>>> wire = encode_data(7, 0.0, {"x": np.array([[1, 2]], np.float32)}, {"x": spec})
>>> msg = decode_message(wire, {"x": spec})
>>> msg.kind, msg.seq, msg.tensors["x"].tolist()
('data', 7, [[1.0, 2.0]])
>>> other = TensorSpec("y", (1, 3), "float32")
>>> wire = encode_data(8, 0.0, {"y": np.zeros((1, 3), np.float32)}, {"y": other}, alternative=1)
>>> decode_message(wire, {"x": spec}, alternatives={0: {"x": spec}, 1: {"y": other}}).alternative
1
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
#: 2: ``alternative`` and ``sent_s`` in the header, ``REPORT`` and ``SWITCH`` messages.
#: 3: ``PROBE`` messages (only they are written as version 3).
VERSION = 3
#: Versions this runner reads; a frame is written with the oldest version that has its kind.
VERSIONS = (2, 3)
KIND_DATA, KIND_ACK, KIND_END, KIND_REPORT, KIND_SWITCH, KIND_PROBE = 1, 2, 3, 4, 5, 6
KIND_NAMES = {KIND_DATA: "data", KIND_ACK: "ack", KIND_END: "end", KIND_REPORT: "report",
              KIND_SWITCH: "switch", KIND_PROBE: "probe"}
#: The version that introduced each kind newer than version 2.
KIND_VERSIONS = {KIND_PROBE: 3}
#: A probe frame's phase (its ``part`` field).
PROBE_ANNOUNCE_PHASE, PROBE_READY_PHASE, PROBE_PADDING_PHASE = 0, 1, 2
PROBE_PHASES = {PROBE_ANNOUNCE_PHASE: "announce", PROBE_READY_PHASE: "ready",
                PROBE_PADDING_PHASE: "padding"}
#: An announce's payload: messages in the train u32 | their wire bytes u64 | wait_s f64.
PROBE_ANNOUNCE = struct.Struct("<IQd")
#: Most messages one probe train may announce, and longest a receiver may be asked to wait.
MAX_PROBE_MESSAGES = 4096
MAX_PROBE_WAIT_S = 10.0
HEADER = struct.Struct("<4sBBHHQdBBBBdiHIHd")
HEADER_BYTES = HEADER.size
#: Where ``sent_s`` sits in the header (the last field), for :func:`restamp`.
SENT_S_OFFSET = HEADER_BYTES - 8
_STAMP = struct.Struct("<d")
#: A report's payload: stage u16 | hop u16 | bandwidth_mbps f64 | busy_ms f64 |
#: bandwidth_at_least_mbps f64 (NaN: unknown).
REPORT = struct.Struct("<HHddd")
#: Largest alternative id a frame may name (the header field is a u16).
MAX_ALTERNATIVE = 0xFFFF
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
class Report:
    """What a receiving role measured, sent upstream hop by hop to the source (best effort):
    its incoming ``hop``'s bandwidth — measured while the link was saturated or by a capacity
    probe, and a lower bound from since then (see :class:`~hwsched.runtime.reliable.HopMeter`,
    :mod:`hwsched.runtime.probe`) — and its own busy time
    per frame on ``alternative`` (None: not measured yet; a sink computes nothing)."""

    stage: int
    hop: int
    bandwidth_mbps: float | None
    busy_ms: float | None
    alternative: int = 0
    measured_s: float = 0.0
    bandwidth_at_least_mbps: float | None = None

    @property
    def best_mbps(self) -> float | None:
        """What is known of the link's rate: the larger of the two (either may be None)."""
        known = [v for v in (self.bandwidth_mbps, self.bandwidth_at_least_mbps) if v is not None]
        return max(known, default=None)


@dataclass(frozen=True)
class Probe:
    """A probe message's phase (``announce``, ``ready``, ``padding``); an announce also says
    how many padding messages follow, their wire bytes in all, and how long to wait for them."""

    phase: str
    messages: int = 0
    train_bytes: int = 0
    wait_s: float = 0.0


@dataclass(frozen=True)
class Message:
    """A decoded message: ``tensors`` maps IR tensor names to arrays (data messages only),
    ``report`` is set on report messages, ``alternative`` names the split a data message runs
    on (or, on a switch message, the split to switch to)."""

    kind: str
    seq: int
    origin_s: float
    tensors: Mapping[str, np.ndarray]
    payload_bytes: int
    alternative: int = 0
    sent_s: float = 0.0
    report: Report | None = None
    probe: Probe | None = None


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
            name: bytes = b"", payload_len: int = 0, alternative: int = 0) -> bytes:
    scale, zero_point = quant if quant is not None else (0.0, 0)
    return HEADER.pack(
        MAGIC, KIND_VERSIONS.get(kind, 2), kind, part, parts, seq, origin_s,
        DTYPE_CODES[dtype] if dtype else 0, ndim, quant is not None, 0, scale, zero_point,
        len(name), payload_len, alternative, 0.0,
    )


def encode_control(kind: int, seq: int, origin_s: float = 0.0,
                   alternative: int = 0) -> list[bytes]:
    """An ``ACK``, ``END`` or ``SWITCH`` message (one frame without a tensor)."""
    return [_header(kind, seq, origin_s, alternative=alternative)]


def encode_report(seq: int, report: Report) -> list[bytes]:
    """A ``REPORT`` message: one frame whose payload is the fixed :data:`REPORT` record."""
    def number(value: float | None) -> float:
        return math.nan if value is None else value

    payload = REPORT.pack(report.stage, report.hop, number(report.bandwidth_mbps),
                          number(report.busy_ms), number(report.bandwidth_at_least_mbps))
    return [_header(KIND_REPORT, seq, report.measured_s, payload_len=len(payload),
                    alternative=report.alternative) + payload]


def encode_probe_announce(probe_id: int, messages: int, train_bytes: int,
                          wait_s: float) -> list[bytes]:
    """A probe's announce: ``messages`` padding messages of ``train_bytes`` wire bytes in all
    follow the receiver's ready; it waits for them at most ``wait_s``."""
    payload = PROBE_ANNOUNCE.pack(messages, train_bytes, wait_s)
    return [_header(KIND_PROBE, probe_id, 0.0, part=PROBE_ANNOUNCE_PHASE,
                    payload_len=len(payload)) + payload]


def encode_probe_ready(probe_id: int) -> list[bytes]:
    """The receiver's answer to an announce: it is idle and timing, send the train."""
    return [_header(KIND_PROBE, probe_id, 0.0, part=PROBE_READY_PHASE)]


def encode_probe_padding(probe_id: int, payload_bytes: int) -> list[bytes]:
    """One message of a probe train: a header and ``payload_bytes`` zero bytes."""
    return [_header(KIND_PROBE, probe_id, 0.0, part=PROBE_PADDING_PHASE,
                    payload_len=payload_bytes) + bytes(payload_bytes)]


def restamp(parts: Sequence[bytes], sent_s: float) -> list[bytes]:
    """The message with ``sent_s`` set in its first frame's header (a sender calls this each
    time it puts the message on the wire; the receiver reads the first frame's stamp). A copy
    of the first frame: for a message some transport may still hold (a resend, a probe train's
    next message); a fresh one is stamped in place (:func:`stamp_for_send`)."""
    first = memoryview(parts[0])
    stamped = b"".join((first[:SENT_S_OFFSET], _STAMP.pack(sent_s),
                        first[SENT_S_OFFSET + 8:]))
    return [stamped, *parts[1:]]


#: How much earlier than its own first send a downstream's copy of a shared encoding may be
#: stamped (:func:`stamp_for_send`): a fan-out's sends follow one another, but each may find
#: the core taken by its transport's I/O thread writing the last one (~0.5 ms per 884 KB on a
#: loaded core). An earlier stamp only lowers the rate a message gives the receiver's meter
#: (:class:`hwsched.runtime.reliable.HopMeter`), never raises it.
SHARED_STAMP_S = 0.005


class Encoded(list):
    """A data message as :func:`encode_data` made it. ``fresh``: no transport holds its frames
    yet, so a sender may stamp the first one in place; ``stamp_s``: the stamp written there."""

    fresh = True
    stamp_s: float | None = None


def stamp_for_send(parts: Sequence[bytes], sent_s: float,
                   first_send: bool = True) -> tuple[Sequence[bytes], bool]:
    """``parts`` stamped with ``sent_s`` for a send, and whether they were stamped in place.

    In place when nobody else holds them yet (an :class:`Encoded` message's first send); as
    they are for this sender's ``first_send`` of an encoding another downstream stamped at
    most :data:`SHARED_STAMP_S` earlier (a stage's fan-out); else :func:`restamp`'s copy (a
    resend).
    The copy is the first frame, a whole tensor: ~0.2 ms per 884 KB on the sending core, on
    every frame's way. Only a fresh message may be written: ZeroMQ sends frames of 64 KB or
    more from the caller's buffer, so once a transport took a message its bytes may still be
    on their way (a sender whose send failed makes it fresh again: the transport took nothing).

    >>> import numpy as np
    >>> from hwsched.deployment import TensorSpec
    >>> specs = {"x": TensorSpec("x", (2,), "float32")}
    >>> wire = encode_data(1, 0.0, {"x": np.zeros(2, np.float32)}, specs)
    >>> first, in_place = stamp_for_send(wire, 5.0)
    >>> first is wire, in_place, stamp_for_send(wire, 5.0005)[0] is wire
    (True, True, True)
    >>> stamp_for_send(wire, 5.0005, first_send=False)[0] is wire  # a resend: a copy
    False
    """
    if isinstance(parts, Encoded) and isinstance(parts[0], bytearray):
        if parts.fresh:
            _STAMP.pack_into(parts[0], SENT_S_OFFSET, sent_s)
            parts.fresh, parts.stamp_s = False, sent_s
            return parts, True
        if (first_send and parts.stamp_s is not None
                and 0.0 <= sent_s - parts.stamp_s <= SHARED_STAMP_S):
            return parts, False
    return restamp(parts, sent_s), False


def unstamp(parts: Sequence[bytes]) -> None:
    """Make a message :func:`stamp_for_send` stamped in place fresh again: its send failed, so
    no transport holds it."""
    if isinstance(parts, Encoded):
        parts.fresh, parts.stamp_s = True, None


def _flat_bytes(array: np.ndarray) -> memoryview:
    """The array's bytes without a copy (a C-contiguous array of any rank, 0-d included: a
    0-d memoryview cannot be cast)."""
    return memoryview(array if array.ndim else array.reshape(1)).cast("B")


def encode_data(
    seq: int, origin_s: float, arrays: Mapping[str, np.ndarray],
    specs: Mapping[str, TensorSpec], alternative: int = 0,
) -> Encoded:
    """One frame per tensor, in the order of ``specs`` (the tensors ``alternative`` sends on
    this hop); arrays must match their spec. Each frame is one ``bytearray`` holding the only
    copy of its tensor made here (so a sender can stamp it in place: :func:`stamp_for_send`).

    A scalar (0-d) tensor is a frame of rank 0:

    >>> from hwsched.deployment import TensorSpec
    >>> spec = {"s": TensorSpec("s", (), "float32")}
    >>> decode_message(encode_data(0, 0.0, {"s": np.float32(2.5)}, spec), spec).tensors["s"]
    array(2.5, dtype=float32)
    """
    frames = Encoded()
    for part, (name, spec) in enumerate(specs.items()):
        array = np.asarray(arrays[name])
        if array.dtype != np.dtype(spec.dtype) or tuple(array.shape) != tuple(spec.shape):
            raise FrameError(
                f"tensor {name!r}: array is {array.dtype}{list(array.shape)}, "
                f"the plan says {spec.dtype}{list(spec.shape)}"
            )
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        quant = None if spec.quantization is None else (
            spec.quantization.scale, spec.quantization.zero_point)
        raw_name = name.encode("utf-8")
        header = _header(KIND_DATA, seq, origin_s, part, len(specs), spec.dtype,
                         array.ndim, quant, raw_name, array.nbytes, alternative)
        dims = struct.pack(f"<{array.ndim}I", *array.shape)
        frames.append(bytearray().join((header, raw_name, dims, _flat_bytes(array))))
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
    alternative: int
    sent_s: float


def _read_header(frame: bytes | memoryview) -> _Header:
    if len(frame) < HEADER_BYTES:
        raise FrameError(f"frame of {len(frame)} B is shorter than the {HEADER_BYTES} B header")
    (magic, version, kind, part, parts, seq, origin_s, dtype_code, ndim, has_quant, _pad,
     scale, zero_point, name_len, payload_len, alternative, sent_s) = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise FrameError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})")
    if version not in VERSIONS:
        raise FrameError(f"frame version {version}, this runner speaks {VERSIONS}")
    if kind not in KIND_NAMES:
        raise FrameError(f"unknown frame kind {kind}")
    if version < KIND_VERSIONS.get(kind, 2):
        raise FrameError(f"a {KIND_NAMES[kind]} frame of version {version}: the kind came with "
                         f"version {KIND_VERSIONS[kind]}")
    if name_len > MAX_NAME_BYTES or ndim > MAX_NDIM:
        raise FrameError(f"header announces a {name_len} B name and {ndim} dims: too large")
    if not math.isfinite(sent_s):
        raise FrameError(f"send stamp {sent_s} is not a time")
    return _Header(kind, part, parts, seq, origin_s, dtype_code, ndim, bool(has_quant), scale,
                   zero_point, name_len, payload_len, alternative, sent_s)


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
    alternatives: Mapping[int, Mapping[str, TensorSpec]] | None = None,
) -> Message:
    """Decode and validate one message; ``specs`` are the tensors expected on this hop, or,
    for an adaptive plan, ``alternatives`` maps each alternative to its tensors on this hop
    (a data frame is checked against the alternative it names; ``specs`` is then unused)."""
    by_alt = {0: specs} if alternatives is None else alternatives
    if not frames:
        raise FrameError("empty message")
    # Count and total size before any header is parsed: a flood of tiny frames costs nothing.
    counts = sorted({1, *(len(s) for s in by_alt.values())})
    if len(frames) not in counts:
        carried = " or ".join(str(c) for c in sorted({len(s) for s in by_alt.values()}))
        raise FrameError(f"message of {len(frames)} frames; this hop carries {carried} "
                         "tensor(s) per data message and one frame per control message")
    limit = max(counts) * frame_bytes_bound(max_payload_bytes)
    if sum(len(f) for f in frames) > limit:
        raise FrameError(f"message of {sum(len(f) for f in frames)} B exceeds {limit} B")
    headers = [_read_header(f) for f in frames]
    first = headers[0]
    if any(h.seq != first.seq or h.kind != first.kind or h.alternative != first.alternative
           for h in headers):
        raise FrameError("frames of one message disagree on sequence number, kind or "
                         "alternative")
    if first.kind == KIND_PROBE:
        return _decode_probe(frames, first, max_payload_bytes)
    if first.kind != KIND_DATA:
        return _decode_control(frames, first)
    specs = by_alt.get(first.alternative)
    if specs is None:
        raise FrameError(f"frame {first.seq} names alternative {first.alternative}; this plan "
                         f"has {sorted(by_alt)}")
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
    return Message("data", first.seq, first.origin_s, tensors, payload, first.alternative,
                   first.sent_s)


#: Where a data frame's header holds the fields a message sets (``seq``, ``origin_s``): every
#: other byte of the header, name and dims follows from the plan's tensor (:class:`HopDecoder`).
SEQ_OFFSET = struct.calcsize("<4sBBHH")
ORIGIN_END = SEQ_OFFSET + 16
_SEQ_ORIGIN = struct.Struct("<Qd")
#: Where the ``alternative`` field sits (a u16 just before ``sent_s``).
ALTERNATIVE_OFFSET = SENT_S_OFFSET - 2


@dataclass(frozen=True)
class _FrameTemplate:
    """What a data frame of one tensor must hold, ``seq``, ``origin_s`` and ``sent_s`` aside."""

    name: str
    spec: TensorSpec
    head: bytes  # magic .. parts
    middle: bytes  # dtype .. alternative
    tail: bytes  # name and dims
    frame_bytes: int


class HopDecoder:
    """:func:`decode_message` for one hop, with a fast path for the data messages
    :func:`encode_data` writes: the plan fixes every byte of a frame's header, name and dims
    but ``seq``, ``origin_s`` and ``sent_s``, so checking a frame is comparing three slices
    with a template made once, instead of parsing and checking each field (cold, as a paced
    stage's code is after each idle wait, that parsing cost ~0.15 ms per message). Anything
    else — a control message, a frame that differs from the template anywhere — takes
    :func:`decode_message`, which accepts or refuses it with its precise reason: the fast
    path only ever accepts what :func:`decode_message` accepts, and decodes it alike.

    >>> import numpy as np
    >>> from hwsched.deployment import TensorSpec
    >>> specs = {"x": TensorSpec("x", (1, 2), "float32")}
    >>> message = HopDecoder(specs).decode(encode_data(3, 1.5, {"x": np.ones((1, 2), np.float32)},
    ...                                                specs))
    >>> message.seq, message.origin_s, message.tensors["x"].tolist()
    (3, 1.5, [[1.0, 1.0]])
    """

    def __init__(self, specs: Mapping[str, TensorSpec],
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 alternatives: Mapping[int, Mapping[str, TensorSpec]] | None = None) -> None:
        self.specs, self.max_payload_bytes = specs, max_payload_bytes
        self.alternatives = alternatives
        by_alt = {0: specs} if alternatives is None else alternatives
        self.templates = {alt: templates for alt, specs_ in by_alt.items()
                          if (templates := _templates(specs_, alt, max_payload_bytes))}
        self.payload_bytes = {alt: sum(spec_bytes(t.spec) for t in templates)
                              for alt, templates in self.templates.items()}

    def decode(self, frames: Sequence[bytes | memoryview]) -> Message:
        message = self._fast(frames)
        if message is not None:
            return message
        return decode_message(frames, self.specs, self.max_payload_bytes, self.alternatives)

    def _fast(self, frames: Sequence[bytes | memoryview]) -> Message | None:
        """The data message, or None when any byte differs from the templates."""
        if not frames or len(frames[0]) < HEADER_BYTES:
            return None
        (alternative,) = struct.unpack_from("<H", frames[0], ALTERNATIVE_OFFSET)
        templates = self.templates.get(alternative)
        if templates is None or len(templates) != len(frames):
            return None
        seq, origin_s = _SEQ_ORIGIN.unpack_from(frames[0], SEQ_OFFSET)
        (sent_s,) = _STAMP.unpack_from(frames[0], SENT_S_OFFSET)
        tensors = {}
        for frame, template in zip(frames, templates, strict=True):
            view = memoryview(frame)
            if (len(view) != template.frame_bytes
                    or view[:SEQ_OFFSET] != template.head
                    or view[ORIGIN_END:SENT_S_OFFSET] != template.middle
                    or view[HEADER_BYTES:HEADER_BYTES + len(template.tail)] != template.tail
                    or _SEQ_ORIGIN.unpack_from(view, SEQ_OFFSET)[0] != seq
                    or not math.isfinite(_STAMP.unpack_from(view, SENT_S_OFFSET)[0])):
                return None
            payload = view[HEADER_BYTES + len(template.tail):]
            tensors[template.name] = np.frombuffer(payload, dtype=template.spec.dtype).reshape(
                template.spec.shape)
        return Message("data", seq, origin_s, tensors, self.payload_bytes[alternative],
                       alternative, sent_s)


def _templates(specs: Mapping[str, TensorSpec], alternative: int,
               max_payload_bytes: int) -> tuple[_FrameTemplate, ...]:
    """One template per tensor of a data message on ``alternative`` (none when the plan's own
    tensors break a limit :func:`decode_message` enforces: it then says which)."""
    templates = []
    for part, (name, spec) in enumerate(specs.items()):
        raw_name = name.encode("utf-8")
        quant = None if spec.quantization is None else (
            spec.quantization.scale, spec.quantization.zero_point)
        if (spec_bytes(spec) > max_payload_bytes or len(raw_name) > MAX_NAME_BYTES
                or len(spec.shape) > MAX_NDIM or spec.dtype not in DTYPE_CODES
                or (quant is not None and not math.isfinite(quant[0]))):
            return ()
        try:
            header = _header(KIND_DATA, 0, 0.0, part, len(specs), spec.dtype, len(spec.shape),
                             quant, raw_name, spec_bytes(spec), alternative)
            tail = raw_name + struct.pack(f"<{len(spec.shape)}I", *spec.shape)
        except struct.error:  # a field the header cannot hold: no frame could match it
            return ()
        templates.append(_FrameTemplate(name, spec, header[:SEQ_OFFSET],
                                        header[ORIGIN_END:SENT_S_OFFSET], tail,
                                        HEADER_BYTES + len(tail) + spec_bytes(spec)))
    return tuple(templates)


def _decode_control(frames: Sequence[bytes | memoryview], header: _Header) -> Message:
    """A control message: one frame, empty except a report's fixed record."""
    kind = KIND_NAMES[header.kind]
    body = REPORT.size if header.kind == KIND_REPORT else 0
    if (len(frames) != 1 or header.payload_len != body or header.name_len or header.ndim
            or len(frames[0]) != HEADER_BYTES + body):
        raise FrameError(f"{kind} message must be one frame with a {body} B body")
    report = None
    if header.kind == KIND_REPORT:
        stage, hop, *values = REPORT.unpack_from(frames[0], HEADER_BYTES)
        if not all(math.isnan(v) or (math.isfinite(v) and v >= 0) for v in values):
            raise FrameError(f"report of stage {stage}: bandwidth or busy time {values} is not "
                             "a measurement")
        mbps, busy, least = (None if math.isnan(v) else v for v in values)
        report = Report(stage, hop, mbps, busy, header.alternative, header.origin_s, least)
    return Message(kind, header.seq, header.origin_s, {}, 0, header.alternative,
                   header.sent_s, report)


def _decode_probe(frames: Sequence[bytes | memoryview], header: _Header,
                  max_payload_bytes: int) -> Message:
    """A probe message: one frame; an announce's record checked, padding bounded like a
    tensor's payload (its bytes are never looked at)."""
    phase = PROBE_PHASES.get(header.part)
    if phase is None:
        raise FrameError(f"probe {header.seq}: unknown phase {header.part}")
    body = {"announce": PROBE_ANNOUNCE.size, "ready": 0}.get(phase, header.payload_len)
    if (len(frames) != 1 or header.payload_len != body or header.name_len or header.ndim
            or len(frames[0]) != HEADER_BYTES + body):
        raise FrameError(f"probe {phase} message must be one frame with a {body} B body")
    if body > max_payload_bytes:
        raise FrameError(f"probe padding of {body} B exceeds {max_payload_bytes} B")
    probe = Probe(phase)
    if phase == "announce":
        messages, train_bytes, wait_s = PROBE_ANNOUNCE.unpack_from(frames[0], HEADER_BYTES)
        if not (0 < messages <= MAX_PROBE_MESSAGES and 0 < wait_s <= MAX_PROBE_WAIT_S):
            raise FrameError(f"probe {header.seq}: announces {messages} messages and a wait of "
                             f"{wait_s} s (at most {MAX_PROBE_MESSAGES} and "
                             f"{MAX_PROBE_WAIT_S:g} s)")
        probe = Probe(phase, messages, train_bytes, wait_s)
    return Message("probe", header.seq, header.origin_s, {}, 0, 0, header.sent_s, None, probe)
