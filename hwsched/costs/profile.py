"""Measured profiles: segment (or layer) times measured on one platform.

A profile is a JSON file the runtime writes after timing sub-models on a board::

    {
      "model": "efficientnet_b0",        # LayerGraph.name the layer names refer to
      "platform": "rpi4",                 # descriptor name the times were measured on
      "precision": "fp32",                # optional: the precision the segments ran in
      "threads": 4,                        # optional: informational
      "segments": [                        # consecutive ranges of the topological order
        {"first_layer": "input_1", "last_layer": "block1a_project_bn", "latency_ms": 3.1},
        {"first_layer": "block2a_expand_conv", "last_layer": "predictions", "latency_ms": 9.4}
      ],
      "layers": [                          # optional: single layers timed on their own
        {"name": "top_conv", "latency_ms": 0.8}
      ]
    }

``latency_ms`` of a segment is the wall time of one invocation of the segment's sub-model
(median over runs), *including* the platform's per-invocation overhead. Segments may not
overlap each other or the timed layers; layers covered by neither keep their roofline estimate
and are listed as estimated. At least one of ``segments`` and ``layers`` must be non-empty.

A paced profile (``hwsched profile --gap-ms MS --pacing-variants``) may also record, per segment,
``back_to_back_ms`` (the same segment timed back to back) and ``co_run_ms`` (paced, while a
copy runs on every other core), and ``whole_back_to_back_ms`` beside ``whole_latency_ms``:

* every paced invocation pays for waking after idle; a stage is ONE invocation, so summing
  the paced segments it is made of charges that wake once per segment. :attr:`Profile.wake_ms`
  is the part every timed invocation paid (the least paced-minus-back-to-back excess, the
  whole model's included); :meth:`Profile.settled` takes it off every segment so that
  :class:`hwsched.costs.placement.PlacementCoster` adds it back once per stage;
* :meth:`Profile.co_running` is the profile of the segments' co-run times, for the part of a
  stage that computes while a stage on another core of the chip computes too.

A profile without these fields prices exactly as before (:attr:`Profile.wake_ms` is None).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwsched.documents.profile import ProfileDocument
from hwsched.errors import ProfileError
from hwsched.ir import LayerGraph


@dataclass(frozen=True)
class Segment:
    first_layer: str
    last_layer: str
    latency_ms: float
    #: The same segment timed back to back (a paced profile records it; None: not timed).
    back_to_back_ms: float | None = None
    #: Paced, while a copy runs on every other core (None: not timed).
    co_run_ms: float | None = None


@dataclass(frozen=True)
class Profile:
    model: str
    platform: str
    segments: tuple[Segment, ...]
    #: ``(layer name, latency_ms)`` of individually timed layers.
    layers: tuple[tuple[str, float], ...] = ()
    precision: str | None = None
    threads: int | None = None
    source: str = ""
    #: Idle ms before each timed invocation (0: back to back; None: not recorded).
    gap_ms: float | None = None
    #: The whole model in one invocation, as timed (paced when ``gap_ms``) and back to back.
    whole_latency_ms: float | None = None
    whole_back_to_back_ms: float | None = None

    @property
    def wake_ms(self) -> float | None:
        """What waking after idle costs every paced invocation: the least excess of a paced
        time over the same invocation back to back (segments and the whole model), >= 0; None
        unless every segment was also timed back to back (older profiles: priced as before).

        >>> Profile("m", "host", (Segment("a", "b", 3.0, 2.5), Segment("c", "d", 1.0, 0.6)),
        ...         whole_latency_ms=4.1, whole_back_to_back_ms=3.2).wake_ms
        0.4
        """
        if not self.segments or any(s.back_to_back_ms is None for s in self.segments):
            return None
        excess = [s.latency_ms - s.back_to_back_ms for s in self.segments]
        if self.whole_latency_ms is not None and self.whole_back_to_back_ms is not None:
            excess.append(self.whole_latency_ms - self.whole_back_to_back_ms)
        return round(max(min(excess), 0.0), 12)

    def settled(self) -> Profile:
        """This profile with :attr:`wake_ms` taken off every timed invocation (never below
        0), for a coster that charges it once per stage; itself when there is no wake."""
        wake = self.wake_ms
        if not wake:
            return self
        return replace(
            self,
            segments=tuple(replace(s, latency_ms=max(s.latency_ms - wake, 0.0))
                           for s in self.segments),
            layers=tuple((name, max(ms - wake, 0.0)) for name, ms in self.layers),
        )

    @property
    def invocation_overhead_ms(self) -> float | None:
        """What one more invocation costs beyond its layers, as measured here: the overhead
        ``O`` that, taken off every timed piece (segment or layer; never below 0) and charged
        once, makes the pieces cost the whole model in one invocation, all :meth:`settled`
        (the wake, charged once per stage on its own, taken off): ``sum(max(p - O, 0)) + O =
        whole``. Without a piece shorter than ``O`` that is the pieces' excess over the whole
        model per extra invocation (the profile's own ``invoke_overhead_ms`` when it was not
        paced with variants); a piece shorter than that average is not charged below 0, so
        ``O`` is solved for. >= 0, and at most the second-longest piece (where one piece
        alone outlasts the whole model nothing fits). None without the whole model's time or
        with fewer than two pieces. The pieces must cover the model (``hwsched profile``'s
        do), as the whole model's time does.

        As a descriptor's ``overhead.invoke_ms`` (``hwsched profile --descriptor``) it is taken
        off every piece and charged once per stage, so one stage of every layer costs the
        whole model as timed and each further stage one more invocation (and one wake):

        >>> paced = Profile("m", "host", (Segment("a", "b", 3.0, 2.5), Segment("c", "d", 1.6,
        ...                 1.2)), whole_latency_ms=4.0, whole_back_to_back_ms=3.6)
        >>> paced.wake_ms, round(paced.invocation_overhead_ms, 6)
        (0.4, 0.2)
        >>> round(Profile("m", "host", (Segment("a", "b", 3.0), Segment("c", "d", 2.0),
        ...       Segment("e", "f", 2.5)), whole_latency_ms=6.5).invocation_overhead_ms, 6)
        0.5
        >>> short = Profile("m", "host", (Segment("a", "b", 10.0), Segment("c", "d", 10.0),
        ...                 Segment("e", "f", 0.3)), whole_latency_ms=18.0)
        >>> round(short.invocation_overhead_ms, 6)  # the average, 1.15, would leave 18.85
        2.0
        """
        pieces = len(self.segments) + len(self.layers)
        if self.whole_latency_ms is None or pieces < 2:
            return None
        settled = self.settled()
        times = sorted((*(s.latency_ms for s in settled.segments),
                        *(ms for _, ms in settled.layers)), reverse=True)
        whole = max(self.whole_latency_ms - (self.wake_ms or 0.0), 0.0)
        return round(_overhead_solving(times, whole), 12)

    def co_running(self) -> Profile | None:
        """The profile of the segments' co-run times (:meth:`settled` the same way, by this
        profile's wake), or None unless every segment has one."""
        if not self.segments or any(s.co_run_ms is None for s in self.segments):
            return None
        wake = self.wake_ms or 0.0
        return replace(
            self,
            segments=tuple(replace(s, latency_ms=max(s.co_run_ms - wake, 0.0))
                           for s in self.segments),
            layers=tuple((name, max(ms - wake, 0.0)) for name, ms in self.layers),
        )

    def segment_positions(self, graph: LayerGraph) -> tuple[tuple[int, int, float], ...]:
        """``(first, last, latency_ms)`` per segment and timed layer, validated against the
        graph and sorted by position."""
        self._check_model(graph)
        spans = [
            (
                self._position(graph, s.first_layer, "first_layer"),
                self._position(graph, s.last_layer, "last_layer"),
                s.latency_ms,
            )
            for s in self.segments
        ]
        spans += [(self._position(graph, name, "name"),) * 2 + (ms,) for name, ms in self.layers]
        spans.sort()
        for first, last, _ in spans:
            if last < first:
                raise ProfileError(
                    f"{self.source}: segment {graph.layers[first].name!r}.."
                    f"{graph.layers[last].name!r} ends before it starts in the topological order"
                )
        for (_, prev_last, _), (first, _, _) in itertools.pairwise(spans):
            if first <= prev_last:
                raise ProfileError(
                    f"{self.source}: segments overlap at layer {graph.layers[first].name!r}"
                )
        return tuple(spans)

    def _check_model(self, graph: LayerGraph) -> None:
        if self.model != graph.name:
            raise ProfileError(
                f"{self.source}: profile is for model {self.model!r}, not {graph.name!r}"
            )

    def _position(self, graph: LayerGraph, name: str, field: str) -> int:
        if name not in {layer.name for layer in graph.layers}:
            raise ProfileError(f"{self.source}: {field} {name!r} is not a layer of {graph.name!r}")
        return graph.position(name)


def _overhead_solving(times: list[float], whole: float) -> float:
    """The ``O >= 0`` with ``sum(max(t - O, 0) for t in times) + O == whole`` (``times``
    sorted longest first, at least two): with ``m`` pieces longer than ``O`` the left side is
    ``sum(times[:m]) - (m - 1) * O``, falling as ``O`` grows, so walk ``m`` down from all of
    them. 0 when the pieces sum to no more than ``whole``; the second-longest piece when the
    longest alone outlasts ``whole``.

    >>> _overhead_solving([10.0, 10.0, 0.3], 18.0), _overhead_solving([3.0, 1.0], 5.0)
    (2.0, 0.0)
    >>> _overhead_solving([5.0, 2.0], 4.0)
    2.0
    """
    total = sum(times)
    if total <= whole:
        return 0.0
    for m in range(len(times), 1, -1):
        floor = times[m] if m < len(times) else 0.0
        overhead = (sum(times[:m]) - whole) / (m - 1)
        if overhead <= times[m - 1]:
            return max(overhead, floor)
    return times[1]


def parse_profile(data: Any, source: str = "<profile>") -> Profile:
    """Validate a parsed profile (:class:`hwsched.documents.profile.ProfileDocument`); errors
    name the source and field."""
    document = ProfileDocument.from_dict(data, source)
    for i, segment in enumerate(document.segments):
        _check_latency(segment.latency_ms, f"{source}: segments[{i}]")
    for i, layer in enumerate(document.layers):
        _check_latency(layer.latency_ms, f"{source}: layers[{i}]")
    for i, segment in enumerate(document.segments):
        for name in ("back_to_back_ms", "co_run_ms"):
            _check_optional_ms(getattr(segment, name), f"{source}: segments[{i}]", name)
    for name in ("whole_latency_ms", "whole_back_to_back_ms"):
        _check_optional_ms(getattr(document, name), source, name)
    if not document.segments and not document.layers:
        raise ProfileError(f"{source}: needs a non-empty 'segments' or 'layers' list")
    if document.gap_ms is not None and document.gap_ms < 0:  # no idle lasts less than nothing
        raise ProfileError(f"{source}: field 'gap_ms' must be >= 0, got {document.gap_ms:g}")
    return Profile(
        model=document.model,
        platform=document.platform,
        segments=tuple(
            Segment(s.first_layer, s.last_layer, float(s.latency_ms),
                    _float_or_none(s.back_to_back_ms), _float_or_none(s.co_run_ms))
            for s in document.segments
        ),
        layers=tuple((layer.name, float(layer.latency_ms)) for layer in document.layers),
        precision=document.precision,
        threads=document.threads,
        source=source,
        gap_ms=document.gap_ms,
        whole_latency_ms=_float_or_none(document.whole_latency_ms),
        whole_back_to_back_ms=_float_or_none(document.whole_back_to_back_ms),
    )


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _check_optional_ms(value: float | None, where: str, name: str) -> None:
    """An optional time must be a finite number >= 0 when present (it prices stages)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ProfileError(f"{where}: field {name!r} must be a finite number >= 0, got {value}")


def _check_latency(value: float, where: str) -> None:
    if value < 0:
        raise ProfileError(f"{where}: field 'latency_ms' must be >= 0, got {value}")


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Read and validate a profile JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ProfileError(f"{path}: cannot read profile: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not a text (UTF-8) JSON file") from None
    from hwsched.fileio import check_json_depth

    check_json_depth(text, str(path), ProfileError)
    try:
        data = json.loads(text)
    except ValueError as error:  # JSONDecodeError, or an integer of over 4,300 digits
        raise ProfileError(f"{path}: not valid JSON: {error}") from None
    return parse_profile(data, str(path))
