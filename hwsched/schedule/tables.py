"""Prefix tables that make any stage or link cost O(1), and the stage-cost matrices the solver
reads.

For a platform at a precision, with ``lat``/``wts`` the prefix sums of per-layer latency and
weight bytes and ``live`` the activation profile, the stage of layers ``[a, b)`` costs::

    latency_ms  = lat[b] - lat[a] + invoke_overhead_ms + wake_ms + param_stream_ms(wts[b] - wts[a])
    weights     = wts[b] - wts[a]
    peak        = max(live[a:b])                 (range max: tabulated once per precision)
    feasible    = precision supported, no unsupported op in [a, b), weights + peak fit memory

``wake_ms`` is a paced profile's wake (:attr:`hwsched.costs.profile.Profile.wake_ms`, 0
without one): taken off every timed segment and paid once per stage, as the placement coster
and the graph search charge it, so chain and graph candidates are ranked on one basis.

Boundary positions run from 0 to ``len(graph)``; cut position ``c`` (a ``head_layers`` value)
separates layers ``[.., c)`` from ``[c, ..)``. Matrices are indexed ``[a, b]`` and hold ``inf``
where ``b <= a``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from hwsched.costs import get_model
from hwsched.costs.latency import BYTES_PER_GB, LayerLatencies, param_stream_ms
from hwsched.costs.memory import TflmTail, memory_fit, tflm_activations, weight_bytes
from hwsched.costs.profile import Profile
from hwsched.costs.runtime import RuntimeCost
from hwsched.costs.transfer import (
    TransferCost,
    compressed_dtype,
    conversion_ms,
    crossing_bytes,
    encoding_dtype,
)
from hwsched.cuts import enumerate_cuts
from hwsched.hardware import NATIVE_ENCODING, Link, Platform
from hwsched.ir import LayerGraph
from hwsched.units import MS_PER_S

INF = float("inf")


@dataclass(frozen=True)
class StageCost:
    """Everything the plan reports about one stage."""

    platform: str
    precision: str
    first: int
    stop: int
    macs: int
    weights_bytes: int
    peak_activation_bytes: int
    latency_ms: float
    fits_memory: bool
    reasons: tuple[str, ...]

    @property
    def memory_bytes(self) -> int:
        return self.weights_bytes + self.peak_activation_bytes

    @property
    def feasible(self) -> bool:
        return not self.reasons


@dataclass(eq=False)
class PlatformTable:
    """Prefix sums of one platform at one precision over one graph."""

    graph: LayerGraph
    platform: Platform
    precision: str
    latencies: LayerLatencies
    lat_prefix: np.ndarray
    weight_prefix: np.ndarray
    mac_prefix: np.ndarray
    live: np.ndarray
    unsupported: np.ndarray  # bool per layer
    unsupported_prefix: np.ndarray
    #: Why every stage on this platform is infeasible (e.g. an unsupported precision).
    blanket_reason: str | None
    _latency: np.ndarray | None = None
    #: TFLite Micro platforms: the arena's persistent tail per stage, added to the peak.
    arena_tail: TflmTail | None = None
    #: A paced profile's wake (:attr:`hwsched.costs.profile.Profile.wake_ms`): taken off its
    #: segments and charged once per stage, like the invoke overhead (0: none recorded).
    wake_ms: float = 0.0

    @property
    def stage_overhead_ms(self) -> float:
        """What every stage pays once, whatever its layers: one invocation and one wake."""
        return self.platform.invoke_overhead_ms + self.wake_ms

    @property
    def _streams_weights(self) -> bool:
        """Whether to add the time to stream weights beyond an on-chip parameter cache: not
        when the latency model says its times already contain it (a measurement does)."""
        return not self.latencies.includes_param_streaming

    # -- one stage ---------------------------------------------------------------------------
    def stage(self, first: int, stop: int) -> StageCost:
        weights = int(self.weight_prefix[stop] - self.weight_prefix[first])
        peak = int(self.live[first:stop].max())
        if self.arena_tail is not None:
            peak += self.arena_tail.bytes(first, stop)
        latency = (
            float(self.lat_prefix[stop] - self.lat_prefix[first])
            + self.stage_overhead_ms
            + (param_stream_ms(self.platform, weights) if self._streams_weights else 0.0)
        )
        reasons: list[str] = []
        if self.blanket_reason:
            reasons.append(self.blanket_reason)
        bad = np.flatnonzero(self.unsupported[first:stop])
        if bad.size:
            layer = self.graph.layers[first + int(bad[0])]
            reasons.append(
                f"{self.platform.name} cannot run op {layer.op.value!r} "
                f"(layer {layer.name!r}; {bad.size} unsupported layer(s) in the stage)"
            )
        misfit = memory_fit(self.platform, weights, peak)
        if misfit:
            reasons.append(misfit)
        return StageCost(
            platform=self.platform.name,
            precision=self.precision,
            first=first,
            stop=stop,
            macs=int(self.mac_prefix[stop] - self.mac_prefix[first]),
            weights_bytes=weights,
            peak_activation_bytes=peak,
            latency_ms=latency,
            fits_memory=misfit is None,
            reasons=tuple(reasons),
        )

    # -- all stages at once ------------------------------------------------------------------
    def latency_matrix(self) -> np.ndarray:
        """``[a, b]`` -> stage latency, ignoring feasibility; ``inf`` where ``b <= a``."""
        if self._latency is None:
            lat = np.subtract.outer(-self.lat_prefix, -self.lat_prefix)  # lat[b] - lat[a]
            lat += self.stage_overhead_ms
            cache, offchip = self.platform.param_cache_bytes, self.platform.offchip_bandwidth_gbps
            if cache is not None and offchip and self._streams_weights:
                weights = np.subtract.outer(-self.weight_prefix, -self.weight_prefix)
                spill = np.maximum(weights - cache, 0)
                lat += spill / (offchip * BYTES_PER_GB) * MS_PER_S
            np.putmask(lat, _lower(len(self.lat_prefix)), INF)
            self._latency = lat
        return self._latency

    def feasible_matrix(self, peak: np.ndarray) -> np.ndarray:
        """``[a, b]`` -> whether the stage fits memory, ops and precision, given ``peak``
        (:func:`peak_matrix` of :attr:`live`). Not cached here: the caller that built ``peak``
        caches the result (see ``schedule.context``)."""
        size = len(self.lat_prefix)
        if self.blanket_reason:
            return np.zeros((size, size), dtype=bool)
        if self.arena_tail is not None:
            peak = peak + self.arena_tail.matrix()
        weights = self.weight_prefix[None, :] - self.weight_prefix[:, None]
        ops_ok = (self.unsupported_prefix[None, :] - self.unsupported_prefix[:, None]) == 0
        if self.platform.flash_bytes is not None:
            fits = (weights <= self.platform.flash_bytes) & (peak <= self.platform.ram_bytes)
        else:
            fits = weights + peak <= self.platform.ram_bytes
        fits &= ops_ok
        np.putmask(fits, _lower(size), False)
        return fits


@functools.lru_cache(maxsize=4)
def _lower(size: int) -> np.ndarray:
    """Mask of the entries ``[a, b]`` with ``b <= a`` (not a stage)."""
    return np.tril(np.ones((size, size), dtype=bool))


def peak_matrix(live: np.ndarray) -> np.ndarray:
    """``[a, b]`` -> ``max(live[a:b])`` for ``b > a`` (0 elsewhere)."""
    size = len(live) + 1
    peaks = np.zeros((size, size), dtype=np.int64)
    for first in range(len(live)):
        peaks[first, first + 1 :] = np.maximum.accumulate(live[first:])
    return peaks


def build_platform_table(
    graph: LayerGraph,
    platform: Platform,
    precision: str,
    *,
    latency_model: str | None = None,
    memory_model: str | None = None,
    profile: Profile | None = None,
) -> PlatformTable:
    """Prefix tables of one platform; an unsupported precision makes every stage infeasible
    (costs then use the platform's default precision so relaxed rankings stay meaningful)."""
    blanket = None
    cost_precision = precision
    if precision not in platform.compute_gops:
        blanket = (
            f"{platform.name} does not run {precision} "
            f"(supported: {', '.join(platform.precisions)})"
        )
        cost_precision = platform.default_precision
    wake_ms = 0.0
    if profile is not None and (latency_model or "measured") == "measured":
        wake_ms = profile.wake_ms or 0.0  # charged once per stage, as the placement coster does
        profile = profile.settled()
    latencies = get_model("latency", latency_model)(graph, platform, cost_precision, profile)
    tflm = platform.runtime.engine == "tflm" and memory_model is None
    live = (tflm_activations(graph, cost_precision) if tflm  # what TFLM really allocates
            else get_model("memory", memory_model)(graph, cost_precision)).live_bytes
    unsupported = np.array([not platform.supports(layer.op) for layer in graph], dtype=bool)
    macs = np.array([layer.macs or 0 for layer in graph], dtype=np.int64)
    return PlatformTable(
        graph=graph,
        platform=platform,
        precision=precision,
        latencies=latencies,
        lat_prefix=_prefix(latencies.latency_ms),
        weight_prefix=_prefix(weight_bytes(graph, cost_precision)),
        mac_prefix=_prefix(macs),
        live=live,
        unsupported=unsupported,
        unsupported_prefix=_prefix(unsupported.astype(np.int64)),
        blanket_reason=blanket,
        arena_tail=TflmTail.of(graph, cost_precision) if tflm else None,
        wake_ms=wake_ms,
    )


def _prefix(values: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(values)))


@dataclass(frozen=True, eq=False)
class LinkTable:
    """Transfer cost at every cut position for one (head precision, tail precision) pair;
    with several compression levels, each position's cheapest (its level and wire dtype)."""

    link: Link
    dtype: str
    payload_bytes: np.ndarray  # per boundary position 0..L (0 at the ends)
    messages: np.ndarray
    costs: tuple[TransferCost | None, ...]
    latency_ms: np.ndarray  # inf at positions that are not cuts or exceed max_crossing
    energy_mj: np.ndarray
    #: Per position: the compression level chosen and the dtype the tensors travel in.
    levels: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()


def build_link_table(
    graph: LayerGraph,
    link: Link,
    head_precision: str,
    tail_precision: str,
    *,
    transfer_model: str | None = None,
    max_crossing: int | None = None,
    levels: tuple[str, ...] = ("fp32",),
    runtime: RuntimeCost | None = None,
) -> LinkTable:
    """``levels``: the compression levels the link may use (:mod:`hwsched.compression`); each
    position takes the one with the lowest latency (transfer plus conversion), the weakest
    on ties. Every objective is monotone in each link's latency and a link's level does not
    change any other cost, so choosing per position is exact. With a ``runtime`` cost the
    level also sets the bytes both cores hand off, so the hop is chosen whole (link plus the
    sending and receiving ends): exact for latency, where all three add up; for throughput
    and energy the cheapest hop, which a bottleneck link may not prefer."""
    model = get_model("transfer", transfer_model)
    dtype, levels = wire_levels(link, head_precision, tail_precision, levels)
    size = len(graph) + 1
    payload = np.zeros(size, dtype=np.int64)
    messages = np.zeros(size, dtype=np.int64)
    latency = np.full(size, INF)
    energy = np.full(size, INF)
    costs: list[TransferCost | None] = [None] * size
    chosen, dtypes = ["fp32"] * size, [dtype] * size
    model_inputs = frozenset(t.name for layer in graph.input_layers for t in layer.outputs)
    for cut in enumerate_cuts(graph):
        position = cut.head_layers
        level, wire, cost = _cheapest(model, link, cut.crossing, dtype, levels, model_inputs,
                                      runtime)
        payload[position] = _level_bytes(cut.crossing, dtype, wire, model_inputs)
        messages[position] = len(cut.crossing)
        costs[position], chosen[position], dtypes[position] = cost, level, wire
        energy[position] = cost.energy_mj
        if max_crossing is None or len(cut.crossing) <= max_crossing:
            latency[position] = cost.latency_ms
    return LinkTable(link, dtype, payload, messages, tuple(costs), latency, energy,
                     tuple(chosen), tuple(dtypes))


def wire_levels(link: Link, head_precision: str, tail_precision: str,
                levels: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The dtype a link's tensors are made in and the levels it may send them at. A link whose
    descriptor forces an ``encoding`` (fp16, int8) is exported as that compression level and
    no other (``hwsched.export.api.link_encoding_request``): the runner converts what a stage
    made, int8 travelling as it is; so it is priced as that level, conversion included.

    >>> from hwsched.hardware import load_link
    >>> wire_levels(load_link("gige"), "int8", "fp32", ("fp32", "fp16"))
    ('int8', ('fp32', 'fp16'))
    """
    if link.encoding in (NATIVE_ENCODING, "fp32"):
        return encoding_dtype(link, head_precision, tail_precision), levels
    made = encoding_dtype(replace(link, encoding=NATIVE_ENCODING), head_precision,
                          tail_precision)
    return made, (link.encoding,)


def _level_bytes(crossing, dtype: str, wire: str, model_inputs: frozenset[str]) -> int:
    """Bytes of one cut's tensors at a level: a model input a stage forwards travels as the
    source made it (the runner compresses only what a stage made, hwsched.compression)."""
    return (crossing_bytes([t for t in crossing if t.name in model_inputs], dtype)
            + crossing_bytes([t for t in crossing if t.name not in model_inputs], wire))


def _cheapest(model, link: Link, crossing, dtype: str, levels: tuple[str, ...],
              model_inputs: frozenset[str] = frozenset(), runtime: RuntimeCost | None = None
              ) -> tuple[str, str, TransferCost]:
    """(level, wire dtype, cost) of the cheapest level for one cut; conversion time is
    charged to the link (the stages' own times stay the model's); with ``runtime`` the hop's
    two ends count too."""
    best: tuple[str, str, TransferCost] | None = None
    best_ms = INF
    made = [t for t in crossing if t.name not in model_inputs]
    for level in levels:
        wire = compressed_dtype(dtype, level)
        payload = _level_bytes(crossing, dtype, wire, model_inputs)
        sent = model(link, payload, len(crossing))
        cost = TransferCost(sent.wire_bytes, sent.latency_ms
                            + conversion_ms(made, dtype, level), sent.energy_mj)
        hop_ms = cost.latency_ms + (0.0 if runtime is None else
                                    runtime.sender_ms(payload) + runtime.receiver_ms(payload))
        if best is None or hop_ms < best_ms:
            best, best_ms = (level, wire, cost), hop_ms
    assert best is not None, "at least one compression level"
    return best
