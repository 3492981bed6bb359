"""The hand-off cost: what moving one frame's tensors from one stage to the next costs.

A pipeline stage's core does more per frame than run its model. Handing ``B`` bytes from one
stage to the next costs, per frame (:func:`handoff_cost`)::

    sender_ms(B)   = sender_frame_ms   + B * sender_per_byte_ms     on the sending core
    receiver_ms(B) = receiver_frame_ms + B * receiver_per_byte_ms   on the receiving core
    wire_ms(B)     = wire_frame_ms     + B * wire_per_byte_ms       on neither

The sending core encodes the frame (a header and a copy of the tensor) and its ZeroMQ I/O
thread and the kernel push it through TCP; the receiving core's I/O thread takes it in, then
the runner decodes and checks it, converts the hand-off and acknowledges it. Every runner
process is pinned to its stage's core, its I/O thread too, so none of this overlaps that
core's compute: it adds to it. Only the wire part — wake-ups, the acknowledgement's way back —
passes while both cores do other work. Hence, per frame:

* the **period** (1 / throughput) is the busiest core's compute plus its shares of every hop
  it touches (:meth:`RuntimeCost.stage_ms`): stage ``k`` of ``n`` pays ``receiver(B_k) +
  sender(B_k+1)``; the emulation's source shares the first stage's core and the sink the last
  one's, so the first core also pays ``sender(B_0)`` and the last ``receiver(B_n)``, where
  ``B_0`` is the model input, ``B_n`` its output and ``B_k`` the bytes crossing cut ``k``;
* a frame's **latency** crosses every hop whole: ``sender + wire + receiver``
  (:attr:`HandoffCost.latency_ms`).

The terms are measured on the machine at hand by :mod:`hwsched.runtime.hopcost` (the two ends
as two processes on two cores, several payload sizes); a plan for real boards would measure
them there. A cost given only as ``frame_ms``/``per_byte_ms`` (the older symmetric form, one
hop end) charges both ends alike and no wire.

A hop whose two ends share one CPU (two stage-graph stages pinned to one core, or the source or
sink and a one-CPU first or last stage) is slower on its way: the two runners and their ZeroMQ
I/O threads take turns on the core instead of overlapping on two. ``profile --hop-cost``
measures that hop too (back to back; ``python -m hwsched.runtime.hopcost --gap-ms 50
--same-core`` measures it paced, for one frame's latency) and writes it as the cost's optional
``same_core`` section (:attr:`RuntimeCost.same_core`); a file without it prices every hop
across two cores, as before. Not priced on one core yet: a chain's source and sink hops and
those of a stage-graph stage without cores, which ``emulate`` runs on one core (the source
pinned to stage 0's CPU, the sink to the last stage's); and a one-core hop's ends — only the
section's wire part is used, its measured sender and receiver costs are not (each end is
charged the cross-core cost on its core).

>>> cost = RuntimeCost.asymmetric(sender=(0.1, 2e-6), receiver=(0.05, 1e-6), wire=(0.2, 0.0))
>>> h = handoff_cost(100_000, cost)
>>> round(h.sender_ms, 6), round(h.receiver_ms, 6), round(h.wire_ms, 6), round(h.latency_ms, 6)
(0.3, 0.15, 0.2, 0.65)
>>> round(cost.stage_ms(0, 100_000, first=False, last=False), 6)   # receives 0 B, sends 100 kB
0.35
>>> symmetric = RuntimeCost(frame_ms=0.05, per_byte_ms=1e-6)
>>> round(symmetric.stage_ms(600_000, 100_000, first=True, last=False), 6)  # 0.65+0.65+0.15
1.45
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hwsched.errors import ProfileError

#: The optional per-end and wire terms of a :class:`RuntimeCost`, as JSON fields.
SPLIT_FIELDS = ("sender_frame_ms", "sender_per_byte_ms", "receiver_frame_ms",
                "receiver_per_byte_ms", "wire_frame_ms", "wire_per_byte_ms")


@dataclass(frozen=True)
class HandoffCost:
    """One frame's hand-off of some bytes: CPU ms on the sending core and on the receiving
    core, and the ms in between that neither core spends."""

    sender_ms: float
    receiver_ms: float
    wire_ms: float

    @property
    def latency_ms(self) -> float:
        """What the hop adds to a frame's latency: all of it, one part after the other."""
        return self.sender_ms + self.wire_ms + self.receiver_ms


@dataclass(frozen=True)
class RuntimeCost:
    """The runner's hand-off cost per frame, linear in the bytes of a hop (module doc).

    ``frame_ms``/``per_byte_ms`` are one hop end's terms, the mean of the two ends when they
    were measured apart; the ``sender_*``/``receiver_*``/``wire_*`` terms, when given, are
    what the cost is charged with."""

    frame_ms: float
    per_byte_ms: float
    #: How the terms were obtained.
    source: str = ""
    sender_frame_ms: float | None = None
    sender_per_byte_ms: float | None = None
    receiver_frame_ms: float | None = None
    receiver_per_byte_ms: float | None = None
    wire_frame_ms: float = 0.0
    wire_per_byte_ms: float = 0.0
    #: The same hop measured with both ends on one core (JSON ``same_core``), for the hops
    #: whose ends share one CPU (:class:`hwsched.costs.placement.PlacementCoster`'s
    #: ``same_core_runtime``); None: not measured, every hop priced across two cores.
    same_core: RuntimeCost | None = None
    #: Of the per-frame terms above, what a runner's own loop adds to a bare hop end, sending
    #: and receiving (:mod:`hwsched.runtime.runnercost`; already in ``sender_frame_ms`` and
    #: ``receiver_frame_ms``, recorded apart to say so); None: not measured.
    runner_sender_frame_ms: float | None = None
    runner_receiver_frame_ms: float | None = None

    @classmethod
    def asymmetric(cls, sender: tuple[float, float], receiver: tuple[float, float],
                   wire: tuple[float, float] = (0.0, 0.0), source: str = "") -> RuntimeCost:
        """From ``(frame_ms, per_byte_ms)`` of each end and of the wire."""
        return cls(frame_ms=(sender[0] + receiver[0]) / 2,
                   per_byte_ms=(sender[1] + receiver[1]) / 2, source=source,
                   sender_frame_ms=sender[0], sender_per_byte_ms=sender[1],
                   receiver_frame_ms=receiver[0], receiver_per_byte_ms=receiver[1],
                   wire_frame_ms=wire[0], wire_per_byte_ms=wire[1])

    def sender_ms(self, payload_bytes: float) -> float:
        """CPU ms the sending core spends on one frame of ``payload_bytes``."""
        return _term(self.sender_frame_ms, self.frame_ms) + payload_bytes * _term(
            self.sender_per_byte_ms, self.per_byte_ms)

    def receiver_ms(self, payload_bytes: float) -> float:
        """CPU ms the receiving core spends on one frame of ``payload_bytes``."""
        return _term(self.receiver_frame_ms, self.frame_ms) + payload_bytes * _term(
            self.receiver_per_byte_ms, self.per_byte_ms)

    def wire_ms(self, payload_bytes: float) -> float:
        return self.wire_frame_ms + payload_bytes * self.wire_per_byte_ms

    def end_ms(self, payload_bytes: float) -> float:
        """One hop end, the mean of the two (the symmetric form's term)."""
        return (self.sender_ms(payload_bytes) + self.receiver_ms(payload_bytes)) / 2

    def handoff(self, payload_bytes: float) -> HandoffCost:
        return HandoffCost(self.sender_ms(payload_bytes), self.receiver_ms(payload_bytes),
                           self.wire_ms(payload_bytes))

    def core_ms(self, received_bytes: list[float] | tuple[float, ...],
                sent_bytes: list[float] | tuple[float, ...]) -> float:
        """Hand-off ms on one core per frame: the receiving end of every hop into it and the
        sending end of every hop out of it (a stage-graph stage may have several of each)."""
        return (sum(self.receiver_ms(b) for b in received_bytes)
                + sum(self.sender_ms(b) for b in sent_bytes))

    def stage_ms(self, in_bytes: float, out_bytes: float, first: bool, last: bool) -> float:
        """Hand-off ms on a chain stage's core per frame; the first core also runs the source
        (it sends the model input), the last the sink (it receives the output)."""
        received = [in_bytes, *([out_bytes] if last else [])]
        sent = [out_bytes, *([in_bytes] if first else [])]
        return self.core_ms(received, sent)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``same_core`` only when measured, so a cost without it writes the
        fields it always wrote.

        >>> across = RuntimeCost(frame_ms=0.1, per_byte_ms=0.0)
        >>> "same_core" in across.to_dict()
        False
        >>> with_one = replace(across, same_core=RuntimeCost(frame_ms=0.3, per_byte_ms=0.0))
        >>> with_one.to_dict()["same_core"]["frame_ms"]
        0.3
        """
        measured_apart = ("runner_sender_frame_ms", "runner_receiver_frame_ms")
        data = {name: value for name, value in asdict(replace(self, same_core=None)).items()
                if name != "same_core" and (value is not None or name not in measured_apart)}
        if self.same_core is not None:
            data["same_core"] = self.same_core.to_dict()
        return data


def _term(split: float | None, symmetric: float) -> float:
    return symmetric if split is None else split


def handoff_cost(payload_bytes: float, cost: RuntimeCost) -> HandoffCost:
    """What handing ``payload_bytes`` from one stage to the next costs per frame, by core.

    A hop of 0 bytes still costs the per-frame terms (header, message, acknowledgement).

    >>> h = handoff_cost(0, RuntimeCost(frame_ms=0.04, per_byte_ms=1e-6))
    >>> h.sender_ms, h.receiver_ms, h.wire_ms
    (0.04, 0.04, 0.0)
    """
    if payload_bytes < 0:
        raise ProfileError(f"a hand-off of {payload_bytes} bytes: bytes must be >= 0")
    return cost.handoff(payload_bytes)


def _number(data: dict, name: str, where: str, default: float | None = None,
            required: bool = False) -> float | None:
    value = data.get(name, default)
    if value is None and not required:
        return None
    # json reads NaN and Infinity, and NaN < 0 is false: a finite check, not only a sign one
    if not isinstance(value, int | float) or isinstance(value, bool) \
            or not math.isfinite(value) or value < 0:
        raise ProfileError(f"{where}: field {name!r} must be a number >= 0, got {value!r}")
    return float(value)


def runtime_cost_from_dict(data: Any, where: str = "runtime cost") -> RuntimeCost:
    """Read a :class:`RuntimeCost` back; names the field at fault."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected an object with frame_ms and per_byte_ms")
    values = {name: _number(data, name, where, required=True)
              for name in ("frame_ms", "per_byte_ms")}
    for name in SPLIT_FIELDS:
        values[name] = _number(data, name, where, 0.0 if name.startswith("wire") else None)
    same_core = _same_core_from_dict(data.get("same_core"), f"{where}: same_core")
    for name in ("runner_sender_frame_ms", "runner_receiver_frame_ms"):
        values[name] = _number(data, name, where)
    return RuntimeCost(**values, source=str(data.get("source", where)),  # type: ignore[arg-type]
                       same_core=same_core)


def _same_core_from_dict(data: Any, where: str) -> RuntimeCost | None:
    """The optional ``same_core`` section: absent (or null) in files from before it was
    measured, which then price every hop across two cores; else a cost of its own, checked
    field by field like the file's, with no ``same_core`` inside it."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected an object with frame_ms and per_byte_ms (the "
                           f"hop measured with both ends on one core), got {data!r}")
    if data.get("same_core") is not None:
        raise ProfileError(f"{where}: field 'same_core' inside same_core: a hop on one core "
                           "has no same-core cost of its own; remove it")
    return runtime_cost_from_dict(data, where)


def load_runtime_cost(path: Path) -> RuntimeCost:
    """A cost as ``profile --hop-cost`` writes it, or as ``python -m hwsched.runtime.hopcost``
    prints it (its ``samples`` beside the fitted ``runtime_cost``: the only way to a paced
    cost, ``--gap-ms``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ProfileError(f"{path}: cannot read a runtime cost: {error}") from None
    if isinstance(data, dict) and "frame_ms" not in data and "runtime_cost" in data:
        return runtime_cost_from_dict(data["runtime_cost"], f"{path}: runtime_cost")
    return runtime_cost_from_dict(data, str(path))
