"""The analysis document (``hwsched analyze --json``) as one typed record.

The fields are the writers' (:func:`hwsched.report.analysis.analysis_to_dict`, then
:meth:`hwsched.schedule.Ranking.to_dict` without ``model``, then ``hardware`` and, when
measured, ``accuracy``), and every record keeps the order its keys were read in, so
``AnalysisDocument.from_dict(d).to_dict()`` writes ``d`` back byte for byte; keys a record does
not declare (a field a newer writer added) are kept in its ``extra``, in place. ``analyze``
writes through this record, and ``report`` and ``export --analysis`` read through it.
Descriptor sections (``hardware``) and measured accuracy results stay free-form objects: they
are written and read by :mod:`hwsched.hardware` and :mod:`hwsched.export.accuracy`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hwsched.documents import ANALYSIS, document_from_dict, document_to_dict
from hwsched.documents.fields import NOT_JSON, OMIT_DEFAULT, record_to_dict
from hwsched.errors import DocumentError


def _extra() -> Any:
    """Keys a newer writer added that this record does not declare (kept, written back)."""
    return field(default_factory=dict, repr=False, compare=False)


def _key_order() -> Any:
    """The order the keys were read in (written back in it; not itself written)."""
    return field(default=(), repr=False, compare=False, metadata=NOT_JSON)


def _optional(default: Any = None) -> Any:
    """A field only some writers or options add (left out of the JSON while absent)."""
    return field(default=default, metadata=OMIT_DEFAULT)


@dataclass(frozen=True, kw_only=True)
class TensorEntry:
    name: str
    producer: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class LayerEntry:
    name: str
    op: str
    source_op: str
    #: Names of the producing layers.
    inputs: tuple[str, ...]
    input_tensors: tuple[str, ...]
    outputs: tuple[TensorEntry, ...]
    params: int
    weight_bytes: int
    macs: int
    flops: int
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class CutPointEntry:
    #: The head is the first ``head_layers`` layers; this is the cut *position*.
    head_layers: int
    after: str
    crossing: tuple[TensorEntry, ...]
    transfer_bytes: int
    single_tensor: bool
    head_macs: int
    tail_macs: int
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class CutRanking:
    method: str
    max_crossing: int | None
    head_layers: tuple[int, ...]
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class StageEntry:
    platform: str
    #: The board's own name when boards repeat (``rpi4#2``); else the platform's.
    board: str | None = _optional()
    precision: str
    first_layer: str
    last_layer: str
    layers: int
    macs: int
    weights_bytes: int
    peak_activation_bytes: int
    memory_bytes: int
    latency_ms: float
    energy_mj: float
    fits_memory: bool
    reasons: tuple[str, ...]
    #: Where ``latency_ms`` came from (``roofline``, ``profile``, ``measured``).
    latency_source: str | None = _optional()
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class LinkEntry:
    link: str
    cut_position: int
    dtype: str
    messages: int
    transfer_bytes: int
    wire_bytes: int
    latency_ms: float
    energy_mj: float
    #: How the crossing tensors travel (``analyze --compress``): fp32 = as made, fp16, int8.
    compression: str = "fp32"
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class CandidateEntry:
    """One ranked split (or, as :class:`BaselineEntry`, one board alone)."""

    rank: int
    cut_positions: tuple[int, ...]
    stages: tuple[StageEntry, ...]
    links: tuple[LinkEntry, ...]
    latency_ms: float
    throughput_ips: float
    period_ms: float
    energy_mj: float
    feasible: bool
    pareto: bool
    reasons: tuple[str, ...]
    #: Measured top-1 accuracy of this split in these precisions (``analyze --accuracy``).
    accuracy: float | None = _optional()
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(stage.platform for stage in self.stages)

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(stage.precision for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return record_to_dict(self)


@dataclass(frozen=True, kw_only=True)
class BaselineEntry(CandidateEntry):
    """The whole model on one board (``rank`` 0, no cuts)."""

    platform: str


@dataclass(frozen=True, kw_only=True)
class GraphBoardEntry:
    name: str
    platform: str
    cores: tuple[int, ...] | None
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class GraphStageEntry:
    """A stage of a stage-graph candidate: a board (and core set) and any set of layers."""

    index: int
    board: str
    platform: str
    cores: tuple[int, ...] | None
    #: Layer names, in topological order.
    layers: tuple[str, ...]
    precision: str
    latency_ms: float
    fits_memory: bool
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()


@dataclass(frozen=True, kw_only=True)
class GraphCandidateEntry:
    """A stage-graph candidate (``analyze --placement graph``), ranked among the chain splits in
    ``candidates``: its ``placement`` is ``"graph"``, its stages name their layers and board, and
    ``edges`` are ``{from, to, tensors}`` (plus their costs), read by :meth:`edge_list`."""

    rank: int
    placement: str
    boards: tuple[GraphBoardEntry, ...]
    stages: tuple[GraphStageEntry, ...]
    edges: tuple[Mapping[str, Any], ...]
    latency_ms: float
    throughput_ips: float
    period_ms: float
    energy_mj: float
    feasible: bool
    reasons: tuple[str, ...]
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(stage.platform for stage in self.stages)

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(stage.precision for stage in self.stages)

    def edge_list(self, where: str = "analysis") -> tuple[tuple[int, int, tuple[str, ...]], ...]:
        """``(from, to, tensors)`` of every edge; a malformed one is an error naming it."""
        out = []
        for i, edge in enumerate(self.edges):
            ends = [edge.get(key) for key in ("from", "to")]
            tensors = edge.get("tensors")
            ok = all(isinstance(e, int) and not isinstance(e, bool)
                     and 0 <= e < len(self.stages) for e in ends)
            if not ok or not isinstance(tensors, list) or not all(
                    isinstance(t, str) for t in tensors):
                raise DocumentError(
                    f"{where}: field 'candidates[rank {self.rank}].edges[{i}]' must be "
                    "{from: stage, to: stage, tensors: [names]}"
                )
            out.append((ends[0], ends[1], tuple(tensors)))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return record_to_dict(self)


@dataclass(frozen=True, kw_only=True)
class TiledCandidateEntry:
    """A fused-tile candidate (``analyze --tiles``), ranked among the others in ``candidates``:
    its ``placement`` is ``"tiles"``, ``boards`` are in its order (the root first), ``tiles``
    lists each split segment (run, kind, every tile's board, ``rows``, ``cols``, ``halo``), and
    ``export_tiles``/``export_platforms`` are the ``export --tiles``/``--platforms`` values
    that write it."""

    rank: int
    placement: str
    boards: tuple[str, ...]
    platforms: tuple[str, ...]
    precision: str | None
    latency_ms: float
    throughput_ips: float
    period_ms: float
    energy_mj: float
    feasible: bool
    reasons: tuple[str, ...]
    tiles: tuple[Mapping[str, Any], ...]
    export_tiles: str
    export_platforms: tuple[str, ...]
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()

    def to_dict(self) -> dict[str, Any]:
        return record_to_dict(self)


@dataclass(frozen=True, kw_only=True)
class AnalysisDocument:
    """Everything ``hwsched analyze`` found: the model, its cut points, the ranking."""

    hwsched_version: str
    model: str
    source: str
    total_params: int
    total_macs: int
    unscored_layers: tuple[str, ...]
    layers: tuple[LayerEntry, ...]
    cut_points: tuple[CutPointEntry, ...]
    cut_ranking: CutRanking
    objective: str
    assign: str
    platforms: tuple[str, ...]
    link: str
    precisions: Mapping[str, str]
    cost_models: Mapping[str, str]
    #: Chain splits; with ``--placement graph`` also stage-graph candidates, ranked together
    #: (every entry then has ``placement``: ``chain`` or ``graph``).
    #: With ``--tiles`` also fused-tile candidates (``placement``: ``tiles``).
    candidates: tuple[GraphCandidateEntry | TiledCandidateEntry | CandidateEntry, ...]
    baselines: tuple[BaselineEntry, ...]
    speedup: float | None
    best_baseline: str | None
    estimated_layers: Mapping[str, tuple[str, ...]]
    #: Every board given, in order, and the ones rank 1 leaves idle, and why.
    boards: tuple[str, ...] | None = _optional()
    stages_mode: int | str | None = _optional()
    idle_boards: tuple[str, ...] | None = _optional()
    idle_reason: str | None = _optional()
    best_by_stage_count: tuple[Mapping[str, Any], ...] | None = _optional()
    notes: tuple[str, ...] | None = _optional()
    #: The platform and link descriptors, keyed by name (:func:`report.facts.hardware_section`).
    hardware: Mapping[str, Any] | None = _optional()
    #: The link compression levels the ranking could use and why others were left out.
    compression: Mapping[str, Any] | None = _optional()
    #: Whether the candidates' times hold the runner's hand-off cost (``--runtime-cost``):
    #: ``{charged, file, sha256, cost}``; absent in analyses made before it was recorded.
    runtime_cost: Mapping[str, Any] | None = _optional()
    #: Measured split accuracy (:func:`hwsched.export.accuracy.split_accuracy` results).
    accuracy: tuple[Mapping[str, Any], ...] | None = _optional()
    #: ``analyze --refine`` and ``--sweep-bandwidth`` results.
    refinement: Mapping[str, Any] | None = _optional()
    bandwidth_sweep: tuple[Mapping[str, Any], ...] | None = _optional()
    bandwidth_sweep_edge: Mapping[str, Any] | None = _optional()
    extra: Mapping[str, Any] = _extra()
    key_order: tuple[str, ...] = _key_order()

    JSON_KIND = ANALYSIS
    JSON_ERROR = DocumentError
    JSON_TITLE = "analysis"

    def to_dict(self) -> dict[str, Any]:
        return document_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "analysis") -> AnalysisDocument:
        return document_from_dict(cls, data, where)

    @property
    def chain_candidates(self) -> tuple[CandidateEntry, ...]:
        """The chain splits among ``candidates`` (what a reader of cut positions wants)."""
        return tuple(c for c in self.candidates if isinstance(c, CandidateEntry))

    def candidate(self, rank: int, where: str = "analysis"
                  ) -> CandidateEntry | GraphCandidateEntry | TiledCandidateEntry:
        """The listed candidate of this rank; an error lists the ranks there are."""
        for candidate in self.candidates:
            if candidate.rank == rank:
                return candidate
        ranks = _ranges([c.rank for c in self.candidates]) or "none"
        raise DocumentError(
            f"{where}: no candidate of rank {rank}; the analysis lists ranks {ranks} "
            "(re-run 'hwsched analyze' with a larger --top to list more)"
        )


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``.

    >>> _ranges([1, 2, 3, 7, 9, 10])
    '1-3, 7, 9-10'
    """
    runs: list[list[int]] = []
    for value in sorted(set(values)):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
