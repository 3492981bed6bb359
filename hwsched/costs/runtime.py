"""The runner's own per-frame cost: what a frame costs a core besides the stage's model.

A pipeline core does more per frame than invoke its model: it receives and decodes the frame
(and converts the hand-off), encodes and sends the results, and answers acknowledgements; the
emulation's source shares the first stage's core (it encodes and sends the input) and the sink
the last stage's (it receives and decodes the output). Each *end* of a hop costs its core::

    end_ms(B) = frame_ms + B * per_byte_ms          (B: payload bytes of the hop)

so a hop is charged on both cores it touches, and stage ``k`` of ``n`` keeps its core busy for::

    busy_k + end(B_k) + end(B_k+1)  [+ end(B_0) on the first core: the source]
                                    [+ end(B_n) on the last core: the sink]

where ``B_0`` is the model input, ``B_n`` its output and ``B_k`` the bytes crossing cut ``k``.
The two terms are measured on this host's loopback (:mod:`hwsched.runtime.hopcost`: CPU time
of encode, send, receive, decode and acknowledge, halved per end). It applies to the set-up it
was measured on: a plan for real boards would measure it on them.

>>> cost = RuntimeCost(frame_ms=0.05, per_byte_ms=1e-6)
>>> round(cost.end_ms(100_000), 6)
0.15
>>> round(cost.stage_ms(600_000, 100_000, first=True, last=False), 6)   # 0.65 + 0.15 + 0.65
1.45
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hwsched.errors import ProfileError


@dataclass(frozen=True)
class RuntimeCost:
    """CPU time one hop end costs its core per frame: ``frame_ms + bytes * per_byte_ms``."""

    frame_ms: float
    per_byte_ms: float
    #: How the two terms were obtained.
    source: str = ""

    def end_ms(self, payload_bytes: float) -> float:
        return self.frame_ms + payload_bytes * self.per_byte_ms

    def stage_ms(self, in_bytes: float, out_bytes: float, first: bool, last: bool) -> float:
        """Runtime time on a stage's core per frame (see the module doc)."""
        extra = (self.end_ms(in_bytes) if first else 0.0) + (
            self.end_ms(out_bytes) if last else 0.0)
        return self.end_ms(in_bytes) + self.end_ms(out_bytes) + extra

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_cost_from_dict(data: Any, where: str = "runtime cost") -> RuntimeCost:
    """Read a :class:`RuntimeCost` back; names the field at fault."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected an object with frame_ms and per_byte_ms")
    values = {}
    for name in ("frame_ms", "per_byte_ms"):
        value = data.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ProfileError(f"{where}: field {name!r} must be a number >= 0, got {value!r}")
        values[name] = float(value)
    return RuntimeCost(**values, source=str(data.get("source", where)))


def load_runtime_cost(path: Path) -> RuntimeCost:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ProfileError(f"{path}: cannot read a runtime cost: {error}") from None
    return runtime_cost_from_dict(data, str(path))
