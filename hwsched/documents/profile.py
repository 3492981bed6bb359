"""The measured-profile document (``hwsched profile``, read by ``analyze --profile``).

``model``, ``platform`` and the timed ``segments`` and/or ``layers`` are what a profile means
(:mod:`hwsched.costs.profile` says how they are used, and accepts a hand-written profile with
only those); everything else is what ``hwsched profile`` records about how it measured, in the
order it writes it. Keys this record does not declare are kept in ``extra``, in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hwsched.documents import PROFILE, document_from_dict, document_to_dict
from hwsched.documents.fields import NOT_JSON, OMIT_DEFAULT
from hwsched.errors import ProfileError


def _optional(default: Any = None) -> Any:
    return field(default=default, metadata=OMIT_DEFAULT)


def _extra() -> Any:
    """Keys a newer writer added that this record does not declare (kept, written back)."""
    return field(default_factory=dict, repr=False, compare=False)


def _key_order() -> Any:
    """The order the keys were read in (written back in it; not itself written)."""
    return field(default=(), repr=False, compare=False, metadata=NOT_JSON)


@dataclass(frozen=True)
class SegmentTimingEntry:
    """Consecutive layers ``first_layer..last_layer`` timed as one sub-model."""

    first_layer: str
    last_layer: str
    #: Median wall time of one invocation, per-invocation overhead included.
    latency_ms: float
    runs: int | None = _optional()
    iqr_ms: float | None = _optional()
    #: ``[start, stop)`` positions in the topological order.
    positions: tuple[int, ...] | None = _optional()
    #: In a paced profile: the same segment timed back to back (no idle before each
    #: invocation), so paced minus this is what waking after idle costs one invocation.
    back_to_back_ms: float | None = _optional()
    #: Paced, while a copy of it runs on every other core (invoked together): the segment's
    #: time when another stage of the same chip computes at the same moment.
    co_run_ms: float | None = _optional()
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True)
class LayerTimingEntry:
    name: str
    latency_ms: float
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True)
class ProfileDocument:
    model: str
    platform: str
    precision: str | None = _optional()
    threads: int | None = _optional()
    segments: tuple[SegmentTimingEntry, ...] = _optional(())
    layers: tuple[LayerTimingEntry, ...] = _optional(())
    total_latency_ms: float | None = _optional()
    warmup: int | None = _optional()
    runs: int | None = _optional()
    machine: Mapping[str, str] | None = _optional()
    tool: str | None = _optional()
    co_run: bool | None = _optional()
    #: The whole model in one invocation (when it was cut into several segments).
    whole_latency_ms: float | None = _optional()
    invoke_overhead_ms: float | None = _optional()
    #: Idle ms before each timed invocation (0: back to back; > 0: paced, as a pipeline fed
    #: one frame at a time computes, and slower). Absent in profiles written before it.
    gap_ms: float | None = _optional()
    #: The whole model timed back to back beside a paced ``whole_latency_ms``.
    whole_back_to_back_ms: float | None = _optional()
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()

    JSON_KIND = PROFILE
    JSON_ERROR = ProfileError
    JSON_TITLE = "profile"

    def to_dict(self) -> dict[str, Any]:
        return document_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile") -> ProfileDocument:
        return document_from_dict(cls, data, where)
