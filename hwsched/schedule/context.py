"""The scheduling context: the boards, their cost tables and every matrix the searches read,
each built once and cached under a typed key.

Boards may repeat a platform (a cluster of identical boards): tables, energy coefficients and
stage matrices are built once per platform *kind* (descriptor name), never per board, and
activation peak matrices once per precision.

With a runner cost (``CostOptions.runtime``, :mod:`hwsched.costs.runtime`) every stage matrix
also holds its core's share of the hand-offs (:mod:`hwsched.schedule.handoff`), so the
searches optimise with it charged: exactly in :meth:`Context.matrices` (a fixed order of
boards, where the bytes into each stage are the previous board's), and in
:meth:`Context.stage_matrix` with the bytes into a stage taken in its own precision (exact
when the boards share one; the assignment searches use it). Evaluated candidates are charged
exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hwsched.costs import DEFAULT_MODELS, get_model
from hwsched.costs.energy import EnergyCoefficients
from hwsched.costs.profile import Profile
from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import ProfileError, ScheduleError, UnknownNameError
from hwsched.hardware import PRECISION_DTYPES, Link, Platform, load_link
from hwsched.ir import LayerGraph
from hwsched.schedule.handoff import handoff_vectors, with_runtime_cost
from hwsched.schedule.records import Candidate, LinkResult, StageResult
from hwsched.schedule.tables import (
    INF,
    LinkTable,
    PlatformTable,
    build_link_table,
    build_platform_table,
    peak_matrix,
)

#: Separates a platform name from the instance number in a board label (``rpi4#2``).
BOARD_SEPARATOR = "#"


def board_labels(names: Sequence[str]) -> tuple[str, ...]:
    """Board labels of platforms in order: ``name`` for a platform given once, ``name#i``
    (1-based) for repeated ones.

    >>> board_labels(["rpi4", "jetson_nano", "rpi4"])
    ('rpi4#1', 'jetson_nano', 'rpi4#2')
    """
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        repeated = list(names).count(name) > 1
        labels.append(f"{name}{BOARD_SEPARATOR}{seen[name]}" if repeated else name)
    return tuple(labels)


@dataclass(frozen=True)
class CostOptions:
    """How stages and links are costed: the options ``rank_splits`` and ``evaluate`` share."""

    profile: Profile | Sequence[Profile] | None = None
    max_crossing: int | None = None
    precision: str | Mapping[str, str] | None = None
    latency_model: str | None = None
    memory_model: str | None = None
    transfer_model: str | None = None
    energy_model: str | None = None
    #: Link compression levels the search may use per link (hwsched.compression), weakest
    #: first; ("fp32",): tensors travel as made.
    compression: tuple[str, ...] = ("fp32",)
    #: The runner's per-frame hand-off cost, charged on the cores it runs on (None: not).
    runtime: RuntimeCost | None = None


def compression_levels(levels: Sequence[str]) -> tuple[str, ...]:
    """Levels in weakest-first order without repeats; an unknown one lists the valid ones.

    >>> compression_levels(["int8", "fp32", "int8"])
    ('fp32', 'int8')
    """
    from hwsched.costs.transfer import COMPRESSION_DTYPES

    for level in levels:
        if level not in COMPRESSION_DTYPES:
            raise UnknownNameError("compression level", level, tuple(COMPRESSION_DTYPES))
    if not levels:
        raise ScheduleError("give at least one compression level (fp32: as made)")
    return tuple(level for level in COMPRESSION_DTYPES if level in levels)


@dataclass(frozen=True)
class Boards:
    """The boards given, in order, and the distinct platforms (kinds) among them.

    >>> from hwsched.hardware import load_platform
    >>> b = Boards.of([load_platform(n) for n in ("rpi4", "jetson_nano", "rpi4")])
    >>> b.labels
    ('rpi4#1', 'jetson_nano', 'rpi4#2')
    >>> b.counts, b.labels_for(["rpi4", "rpi4"])
    ({'rpi4': 2, 'jetson_nano': 1}, ('rpi4#1', 'rpi4#2'))
    """

    kinds: Mapping[str, Platform]
    names: tuple[str, ...]

    @classmethod
    def of(cls, platforms: Sequence[Platform]) -> Boards:
        kinds: dict[str, Platform] = {}
        for platform in platforms:
            known = kinds.setdefault(platform.name, platform)
            if known != platform:
                raise ScheduleError(
                    f"two different descriptors are both named {platform.name!r} "
                    f"({known.path or 'in memory'}, {platform.path or 'in memory'}); "
                    "boards that share a name must be identical"
                )
        return cls(kinds, tuple(p.name for p in platforms))

    @property
    def counts(self) -> dict[str, int]:
        return {name: self.names.count(name) for name in self.kinds}

    @property
    def labels(self) -> tuple[str, ...]:
        """``name`` for a platform given once, ``name#i`` (1-based) for repeated ones."""
        return board_labels(self.names)

    def labels_for(self, order: Sequence[str]) -> tuple[str, ...]:
        """Board labels of a stage order: the i-th stage on a platform takes that platform's
        i-th board in the given order."""
        free: dict[str, list[str]] = {}
        for name, label in zip(self.names, self.labels, strict=True):
            free.setdefault(name, []).append(label)
        taken = {name: iter(labels) for name, labels in free.items()}
        return tuple(next(taken[name]) for name in order)


@dataclass(frozen=True)
class LinkKey:
    head_precision: str
    tail_precision: str


@dataclass(frozen=True)
class StageKey:
    platform: str
    #: Memory, op and precision limits ignored.
    relaxed: bool


@dataclass(eq=False)
class Context:
    """Everything precomputed once for one graph, set of boards, link and cost options."""

    graph: LayerGraph
    boards: Boards
    link: Link
    precisions: Mapping[str, str]
    tables: Mapping[str, PlatformTable]
    energy: Mapping[str, EnergyCoefficients]
    transfer_model: str | None
    max_crossing: int | None
    compression: tuple[str, ...] = ("fp32",)
    runtime: RuntimeCost | None = None
    _links: dict[LinkKey, LinkTable] = field(default_factory=dict)
    #: Activation peak matrices by the precision the live profile was computed in.
    _peaks: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)
    _stages: dict[StageKey, np.ndarray] = field(default_factory=dict)
    #: Charged stage matrices by (producer precision, platform, consumer precision, relaxed):
    #: the hand-off share depends on a neighbour only through the bytes it sends or takes.
    _charged_stages: dict[tuple[str, str, str, bool], np.ndarray] = field(default_factory=dict)

    def link_table(self, head: str, tail: str) -> LinkTable:
        key = LinkKey(self.precisions[head], self.precisions[tail])
        if key not in self._links:
            self._links[key] = build_link_table(
                self.graph,
                self.link,
                key.head_precision,
                key.tail_precision,
                transfer_model=self.transfer_model,
                max_crossing=self.max_crossing,
                levels=self.compression,
                runtime=self.runtime,
            )
        return self._links[key]

    def stage_matrix(self, name: str, relaxed: bool) -> np.ndarray:
        """``[a, b]`` -> latency of layers ``[a, b)`` on platform ``name``, with the runner's
        hand-off share when a runtime cost is set (bytes into the stage in its own precision);
        ``inf`` where the stage is infeasible unless ``relaxed``."""
        if self.runtime is None:
            return self._compute_matrix(name, relaxed)
        return self._charged(name, name, name, relaxed)

    def _compute_matrix(self, name: str, relaxed: bool) -> np.ndarray:
        table = self.tables[name]
        if relaxed:
            return table.latency_matrix()
        key = StageKey(name, relaxed)
        if key not in self._stages:
            # TFLite Micro tables have their own live profile (aligned, folded, scratch)
            live_precision = (table.latencies.precision, table.arena_tail is not None)
            if live_precision not in self._peaks:
                self._peaks[live_precision] = peak_matrix(table.live)
            feasible = table.feasible_matrix(self._peaks[live_precision])
            self._stages[key] = np.where(feasible, table.latency_matrix(), INF)
        return self._stages[key]

    def _charged(self, producer: str, name: str, consumer: str, relaxed: bool) -> np.ndarray:
        """The stage matrix of ``name`` plus the hand-off share of a stage fed by
        ``producer`` and feeding ``consumer``; one per distinct pair of neighbour precisions
        (64 identical boards share one matrix, not 64)."""
        assert self.runtime is not None
        key = (self.precisions[producer], name, self.precisions[consumer], relaxed)
        if key not in self._charged_stages:
            into, _ = handoff_vectors(self.graph, self.link_table(producer, name).payload_bytes,
                                      self.runtime)
            _, out_of = handoff_vectors(
                self.graph, self.link_table(name, consumer).payload_bytes, self.runtime)
            base = self._compute_matrix(name, relaxed)
            self._charged_stages[key] = base + into[:, None] + out_of[None, :]
        return self._charged_stages[key]

    def matrices(self, order: Sequence[str], relaxed: bool):
        """Stage matrices and link latency vectors of one order of platforms."""
        if self.runtime is None:
            stages = [self.stage_matrix(name, relaxed) for name in order]
        else:  # the bytes into each stage as the board before it sends them
            last = len(order) - 1
            stages = [self._charged(order[k - 1] if k else name, name,
                                    order[k + 1] if k < last else name, relaxed)
                      for k, name in enumerate(order)]
        links = [self.link_table(h, t).latency_ms for h, t in itertools.pairwise(order)]
        return stages, links

    def evaluate(self, order: Sequence[str], cuts: Sequence[int]) -> Candidate:
        bounds = (0, *cuts, len(self.graph))
        costs = [
            self.tables[name].stage(a, b)
            for name, (a, b) in zip(order, itertools.pairwise(bounds), strict=True)
        ]
        pairs = zip(itertools.pairwise(order), cuts, strict=True)
        links = [self._link_result(h, t, c) for (h, t), c in pairs]
        period = max([c.latency_ms for c in costs] + [lk.latency_ms for lk in links])
        latency = sum(c.latency_ms for c in costs) + sum(lk.latency_ms for lk in links)
        labels = self.boards.labels_for(order)
        stages = tuple(
            StageResult(
                cost=cost,
                first_layer=self.graph.layers[cost.first].name,
                last_layer=self.graph.layers[cost.stop - 1].name,
                energy_mj=self.energy[name].busy_w * cost.latency_ms
                + self.energy[name].period_w * period,
                board=label,
            )
            for name, cost, label in zip(order, costs, labels, strict=True)
        )
        energy = sum(s.energy_mj for s in stages) + sum(lk.energy_mj for lk in links)
        candidate = Candidate(tuple(cuts), stages, tuple(links), latency, period, energy)
        if self.runtime is None:
            return candidate
        return self._rebalanced_energy(with_runtime_cost(self.graph, candidate, self.runtime),
                                       order)

    def _rebalanced_energy(self, candidate: Candidate, order: Sequence[str]) -> Candidate:
        """Energy again from the charged stage times and period (the hand-off is busy time)."""
        stages = tuple(
            replace(s, energy_mj=self.energy[name].busy_w * s.cost.latency_ms
                    + self.energy[name].period_w * candidate.period_ms)
            for name, s in zip(order, candidate.stages, strict=True))
        energy = sum(s.energy_mj for s in stages) + sum(lk.energy_mj for lk in candidate.links)
        return replace(candidate, stages=stages, energy_mj=energy)

    def _link_result(self, head: str, tail: str, position: int) -> LinkResult:
        table = self.link_table(head, tail)
        cost = table.costs[position]
        assert cost is not None  # every position 1..L-1 is a cut
        messages = int(table.messages[position])
        reasons = ()
        if self.max_crossing is not None and messages > self.max_crossing:
            reasons = (
                f"cut {position} sends {messages} tensors > max_crossing {self.max_crossing}",
            )
        return LinkResult(
            link=self.link.name,
            cut_position=position,
            dtype=table.dtypes[position] if table.dtypes else table.dtype,
            messages=messages,
            transfer_bytes=int(table.payload_bytes[position]),
            wire_bytes=cost.wire_bytes,
            latency_ms=cost.latency_ms,
            energy_mj=cost.energy_mj,
            reasons=reasons,
            compression=table.levels[position] if table.levels else "fp32",
        )


def build_context(
    graph: LayerGraph, loaded: Sequence[Platform], link: str | Link, options: CostOptions
) -> tuple[Context, dict[str, str]]:
    """The context and the latency model used per platform; tables once per platform kind."""
    boards = Boards.of(loaded)
    _check_profiles_match(options.profile, list(boards.kinds))
    precisions = _resolve_precisions(tuple(boards.kinds.values()), options.precision)
    energy_fn = get_model("energy", options.energy_model)
    tables = {}
    for name, platform in boards.kinds.items():
        own_profile = profile_for(name, options.profile)
        tables[name] = build_platform_table(
            graph,
            platform,
            precisions[name],
            latency_model=options.latency_model or ("measured" if own_profile else None),
            memory_model=options.memory_model,
            profile=own_profile,
        )
    ctx = Context(
        graph=graph,
        boards=boards,
        link=load_link(link),
        precisions=precisions,
        tables=tables,
        energy={name: energy_fn(p) for name, p in boards.kinds.items()},
        transfer_model=options.transfer_model,
        max_crossing=options.max_crossing,
        compression=compression_levels(options.compression),
        runtime=options.runtime,
    )
    return ctx, {name: t.latencies.model for name, t in tables.items()}


def cost_model_names(models_used: Mapping[str, str], options: CostOptions) -> dict[str, str]:
    return {
        **{f"latency:{n}": m for n, m in models_used.items()},
        "memory": options.memory_model or DEFAULT_MODELS["memory"],
        "transfer": options.transfer_model or DEFAULT_MODELS["transfer"],
        "energy": options.energy_model or DEFAULT_MODELS["energy"],
    }


def _resolve_precisions(
    platforms: Sequence[Platform], precision: str | Mapping[str, str] | None
) -> dict[str, str]:
    given = [precision] if isinstance(precision, str) else list((precision or {}).values())
    for name in given:
        if name not in PRECISION_DTYPES:
            raise UnknownNameError("precision", name, tuple(PRECISION_DTYPES))
    chosen = {}
    for platform in platforms:
        if precision is None:
            chosen[platform.name] = platform.default_precision
        elif isinstance(precision, str):
            chosen[platform.name] = precision
        else:
            chosen[platform.name] = precision.get(platform.name, platform.default_precision)
    return chosen


def _as_list(profile: Profile | Sequence[Profile] | None) -> list[Profile]:
    return [] if profile is None else [profile] if isinstance(profile, Profile) else list(profile)


def profile_for(name: str, profile: Profile | Sequence[Profile] | None) -> Profile | None:
    """The one profile of ``profile`` measured on platform ``name`` (None: none); two are an
    error naming both files."""
    matches = [p for p in _as_list(profile) if p.platform == name]
    if len(matches) > 1:
        raise ProfileError(
            f"{len(matches)} profiles are for platform {name!r} "
            f"({', '.join(p.source for p in matches)}); give one per platform"
        )
    return matches[0] if matches else None


def _check_profiles_match(profile: Profile | Sequence[Profile] | None, names: list[str]) -> None:
    for p in _as_list(profile):
        if p.platform not in names:
            raise ProfileError(
                f"{p.source}: profile is for platform {p.platform!r}, which is not among the "
                f"platforms {', '.join(names)}"
            )
