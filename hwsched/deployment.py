"""The deployment plan (``plan.json``): what export writes and the runtime reads.

A plan lists one stage per platform: its ``.tflite`` file (with sha256), precision, and its
inputs and outputs *by name* — never by position, since TFLite reorders multi-input tensors by
name. Every stage input names its ``source``: a model input, or an output of an upstream stage.
``links`` say which tensors cross between consecutive stages and whether they must be
requantized on the way. ``verification`` records the proof that the chained stages compute what
the whole model computes.

The JSON form is a contract (issue 4): ``model``, ``stages`` (each ``index``, ``platform``,
``file``, ``sha256``, ``precision``, ``inputs``, ``outputs`` as lists of ``{name, shape, dtype,
quantization: {scale, zero_point} | null, source}``), ``links`` and ``verification``
(``max_abs_diff``, ``top1_agreement``, ``samples``, ``reference``). Fields may be added, never
renamed. This module is pure Python + hashlib: the on-board runner imports it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsched.documents import PLAN, FieldReader, check_kind
from hwsched.errors import PlanError

PLAN_FILE = "plan.json"
PLAN_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
#: How a link's crossing tensors travel (hwsched/compression.py): as made, fp16, int8 codes.
COMPRESSION_LEVELS = ("fp32", "fp16", "int8")
#: How a crossing tensor goes from its producer's encoding to its consumer's.
HANDOFF_ACTIONS = ("none", "cast", "quantize", "dequantize", "requantize")
#: dtypes that can carry a (scale, zero_point) quantization.
QUANTIZED_DTYPES = ("int8", "uint8", "int16", "int32")
#: Largest plan.json read; an exported plan of a 1,000-layer model is well under 1 MiB.
MAX_PLAN_BYTES = 16 * 1024 * 1024
#: Largest tensor a plan may declare (elements), rank, and zero point magnitude: beyond them a
#: runner would fail allocating or overflow a C integer instead of refusing the plan.
MAX_TENSOR_ELEMENTS = 2**31 - 1
MAX_TENSOR_RANK = 8
ZERO_POINT_RANGE = (-(2**31), 2**31 - 1)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSource:
    """Where a stage input comes from: a model input (``stage is None``) or a stage output."""

    tensor: str
    stage: int | None = None

    @property
    def is_model_input(self) -> bool:
        return self.stage is None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a stage. ``name`` is the IR tensor name; ``tflite_name`` is the
    name of the tensor in the stage's signature (what the runner passes to LiteRT)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None = None
    source: TensorSource | None = None
    tflite_name: str | None = None


@dataclass(frozen=True)
class StagePlan:
    index: int
    platform: str
    file: str
    sha256: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    first_layer: str = ""
    last_layer: str = ""
    #: Optional extra artefacts (e.g. a TFLite Micro C array source), relative to the plan dir.
    extra_files: tuple[str, ...] = ()
    #: The board that runs the stage (stage-graph plans only; a chain plan leaves it None).
    board: str | None = None
    #: The CPU cores the stage is pinned to, if the placement gives them.
    cores: tuple[int, ...] | None = None
    #: The engine that runs the stage (the platform descriptor's ``runtime.engine``).
    engine: str = "litert-cpu"
    #: The descriptor the stage was exported with when ``platform`` prices an engine hwsched
    #: does not run (a Jetson's TensorRT GPU → its CPU descriptor); None: ``platform`` itself.
    runtime_platform: str | None = None
    #: LiteRT delegate the runner loads (``edgetpu``, ``gpu``, a library path) and its options.
    delegate: str | None = None
    delegate_options: Mapping[str, str] = field(default_factory=dict)
    #: TFLite Micro stages: the arena TFLM's recording allocator measured, in bytes.
    arena_bytes: int | None = None
    #: Edge TPU stages: ``compiled`` (bool), ``reason`` when not, else the compiler's report.
    edgetpu: Mapping[str, Any] | None = None
    #: The stage checked on its own engine against LiteRT (TFLM: engine, reference, samples,
    #: max_abs_diff, max_quant_steps).
    engine_verification: Mapping[str, Any] | None = None
    #: The stage keeps state (resource variables) from frame to frame: its interpreter must
    #: live across frames, and a restart begins again from the initial state.
    stateful: bool = False


@dataclass(frozen=True)
class Requantization:
    """A crossing tensor whose producer and consumer quantize differently."""

    tensor: str
    from_quantization: Quantization | None
    to_quantization: Quantization | None
    #: One of :data:`HANDOFF_ACTIONS`: "none" (raw bytes pass unchanged), "cast" (same values,
    #: other float/int type), "quantize", "dequantize" or "requantize".
    action: str


@dataclass(frozen=True)
class LinkPlan:
    from_stage: int
    to_stage: int
    link: str
    tensors: tuple[str, ...]
    transfer_bytes: int
    requantize: tuple[Requantization, ...] = ()
    #: Activation compression on the wire (:mod:`hwsched.compression`): "fp32" = as the
    #: producing stage makes them (plans from before it), "fp16" or "int8".
    compression: str = "fp32"
    #: int8 compression: the grid each compressed float tensor travels in, calibrated at export.
    compression_quantization: Mapping[str, Quantization] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgePlan:
    """Tensors one stage sends another in a stage-graph plan (any two stages, not only
    neighbours); the hand-off of each tensor is in the ``links`` entry of the same pair."""

    from_stage: int
    to_stage: int
    tensors: tuple[str, ...]
    #: Per tensor, the region of it the edge carries (per-axis ``[start, stop)``), or None for
    #: the whole tensor; empty when no tensor of the edge is a region (fused tiles, issue 14).
    regions: tuple[tuple[tuple[int, int], ...] | None, ...] = ()

    def region(self, tensor: str) -> tuple[tuple[int, int], ...] | None:
        """The region of ``tensor`` this edge carries, None for the whole tensor."""
        if not self.regions:
            return None
        return self.regions[self.tensors.index(tensor)]


@dataclass(frozen=True)
class Verification:
    max_abs_diff: float
    top1_agreement: float
    samples: int
    reference: str
    max_rel_diff: float | None = None
    passed: bool = True
    #: Accuracy on labeled data, when measured: {"split": …, "reference": …} (top-1 fractions).
    accuracy: Mapping[str, Any] | None = None
    #: Link compression (``export --compress``): the top-1 accuracy measured at each level, the
    #: drop from the uncompressed chain, the level chosen and the output tolerance it implies.
    compression: Mapping[str, Any] | None = None
    #: Stateful plans: the chain against the whole model frame after frame, state carried, per
    #: engine ({"litert": {"frames", "max_abs_diff", "first_divergent_frame"}, "tflm": …}).
    sequence: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Alternative:
    """One split of an adaptive plan: a complete chain plan of its own (same model, same stage
    count and boards, its own stage files — shared by name with other alternatives where the
    sha256 is equal) and the link bandwidth range where the analysis found it best.

    JSON: ``{"id", "cut_positions", "bandwidth_mbps_low", "bandwidth_mbps_high",
    "plan": {… a plan document without alternatives …}}``. How its crossing tensors travel
    (activation compression) is in its plan's links."""

    id: int
    cut_positions: tuple[int, ...]
    #: Where this split wins: ``low <= bandwidth < high`` (Mbit/s; ``high`` may be inf → null).
    bandwidth_mbps_low: float
    bandwidth_mbps_high: float
    plan: Plan


@dataclass(frozen=True)
class Plan:
    model: str
    stages: tuple[StagePlan, ...]
    links: tuple[LinkPlan, ...]
    verification: Verification | None = None
    source: str = ""
    cut_positions: tuple[int, ...] = ()
    #: What the analysis predicted for this split (throughput_ips, latency_ms, …), if known.
    prediction: Mapping[str, Any] = field(default_factory=dict)
    #: Stage-graph plans: every stage-to-stage edge; empty for a chain (stage k feeds k + 1).
    edges: tuple[EdgePlan, ...] = ()
    #: Adaptive plans (``export --adaptive K``): the splits a runner may switch between while
    #: streaming; alternative 0 is this plan's own split. Empty for a fixed plan.
    alternatives: tuple[Alternative, ...] = ()
    #: Fused-tile runs (``export --tiles``): per run its layers, scatter and gather stages and
    #: each tile's stage, rows, cols and halo; the edges' regions are what the runner applies.
    tiles: tuple[Mapping[str, Any], ...] = ()

    @property
    def is_graph(self) -> bool:
        return bool(self.edges)

    def upstream(self, index: int) -> tuple[int, ...]:
        """Stages that send to stage ``index`` (for a chain: the one before it)."""
        if not self.edges:
            return () if index == 0 else (index - 1,)
        return tuple(dict.fromkeys(e.from_stage for e in self.edges if e.to_stage == index))

    def downstream(self, index: int) -> tuple[int, ...]:
        """Stages that stage ``index`` sends to (for a chain: the one after it)."""
        if not self.edges:
            return () if index == len(self.stages) - 1 else (index + 1,)
        return tuple(dict.fromkeys(e.to_stage for e in self.edges if e.from_stage == index))

    def stage(self, index: int) -> StagePlan:
        for stage in self.stages:
            if stage.index == index:
                return stage
        raise PlanError(f"plan has no stage {index} (stages: 0..{len(self.stages) - 1})")

    @property
    def model_inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(t for t in self.stages[0].inputs if t.source and t.source.is_model_input)


# -- (de)serialization -------------------------------------------------------------------------
def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "kind": PLAN,
        "format_version": PLAN_FORMAT_VERSION,
        "model": plan.model,
        "source": plan.source,
        "cut_positions": list(plan.cut_positions),
        "stages": [_stage_to_dict(s) for s in plan.stages],
        "links": [_link_to_dict(link) for link in plan.links],
        "verification": None if plan.verification is None else _verification_to_dict(
            plan.verification
        ),
        "prediction": dict(plan.prediction),
        **({"edges": [_edge_to_dict(e) for e in plan.edges]} if plan.edges else {}),
        **({"alternatives": [_alternative_to_dict(a) for a in plan.alternatives]}
           if plan.alternatives else {}),
        **({"tiles": [dict(run) for run in plan.tiles]} if plan.tiles else {}),
    }


def _alternative_to_dict(alt: Alternative) -> dict[str, Any]:
    high = alt.bandwidth_mbps_high
    return {"id": alt.id, "cut_positions": list(alt.cut_positions),
            "bandwidth_mbps_low": alt.bandwidth_mbps_low,
            "bandwidth_mbps_high": None if math.isinf(high) else high,
            "plan": plan_to_dict(alt.plan)}


def _edge_to_dict(edge: EdgePlan) -> dict[str, Any]:
    out: dict[str, Any] = {"from": edge.from_stage, "to": edge.to_stage,
                           "tensors": list(edge.tensors)}
    if edge.regions:
        out["regions"] = [None if r is None else [list(b) for b in r] for r in edge.regions]
    return out


def plan_from_dict(data: Mapping[str, Any], where: str = PLAN_FILE) -> Plan:
    check_kind(data, PLAN, FieldReader(where, PlanError))  # e.g. an analysis given as a plan
    reader = _Reader(where)
    _check_numbers(data, where)
    stages = tuple(
        reader.stage(s, f"stages[{i}]") for i, s in enumerate(reader.items(data, "stages"))
    )
    if not stages:
        raise PlanError(f"{where}: 'stages' is empty")
    if [s.index for s in stages] != list(range(len(stages))):
        raise PlanError(f"{where}: stage indexes must be 0..{len(stages) - 1} in order")
    _check_sources(stages, where)
    links = tuple(
        reader.link(item, f"links[{i}]", len(stages))
        for i, item in enumerate(reader.items(data, "links"))
    )
    edges = tuple(
        reader.edge(x, f"edges[{i}]", len(stages)) for i, x in enumerate(data.get("edges") or [])
    )
    if edges:
        _check_edges(stages, edges, where)
        _refuse_graph_compression(links, where)
    else:
        _check_links(stages, links, where)
        from hwsched.compression import check_link_compression

        check_link_compression(stages, links, where)
    verification = data.get("verification")
    model = reader.text(data, "model")
    alternatives = tuple(
        _read_alternative(reader, item, f"alternatives[{i}]", model, len(stages))
        for i, item in enumerate(reader.items(data, "alternatives") if "alternatives" in data
                                 else [])
    )
    if alternatives and [a.id for a in alternatives] != list(range(len(alternatives))):
        raise PlanError(f"{where}: field 'alternatives' ids must be 0..{len(alternatives) - 1}"
                        " in order")
    return Plan(
        model=model,
        stages=stages,
        links=links,
        verification=None if verification is None else reader.verification(verification),
        source=reader.text(data, "source") if "source" in data else "",
        cut_positions=reader.cut_positions(data),
        prediction=reader.prediction(data),
        edges=edges,
        alternatives=alternatives,
        tiles=_read_tiles(reader, data),
    )


def _read_tiles(reader: _Reader, data: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """``tiles``: a list of objects (descriptive; the runner applies the edges' regions)."""
    items = reader.items(data, "tiles") if "tiles" in data else []
    if not all(isinstance(item, Mapping) for item in items):
        raise reader.fail("tiles", "must be a list of objects")
    return tuple(dict(item) for item in items)


def _read_alternative(reader: _Reader, data: Any, path: str, model: str,
                      stage_count: int) -> Alternative:
    """One entry of ``alternatives``: a nested chain plan of the same model and stage count."""
    if not isinstance(data, Mapping):
        raise reader.fail(path, "must be an object")
    inner = data.get("plan")
    if not isinstance(inner, Mapping):
        raise reader.fail(f"{path}.plan", "must be a plan object")
    if "alternatives" in inner:
        raise reader.fail(f"{path}.plan.alternatives", "is not allowed (one level only)")
    sub = plan_from_dict(inner, where=f"{reader.where}: {path}.plan")
    if sub.model != model:
        raise reader.fail(f"{path}.plan.model", f"is {sub.model!r}, but the plan is for "
                          f"{model!r} (alternatives of another model)")
    if len(sub.stages) != stage_count or sub.is_graph:
        raise reader.fail(f"{path}.plan.stages", f"has {len(sub.stages)} stages; every "
                          f"alternative is a chain of the plan's {stage_count} stages")
    low = reader.number(data, "bandwidth_mbps_low", path + ".", 0.0, math.inf)
    high_value = data.get("bandwidth_mbps_high")
    high = math.inf if high_value is None else reader.number(
        data, "bandwidth_mbps_high", path + ".", low, math.inf)
    return Alternative(
        id=reader.integer(data, "id", path + "."),
        cut_positions=tuple(reader.cut_positions(data)) if "cut_positions" in data
        else sub.cut_positions,
        bandwidth_mbps_low=low, bandwidth_mbps_high=high, plan=sub,
    )


def check_alternatives(plan: Plan, plan_dir: Path, tensors: bool = True) -> None:
    """Every alternative's stage files exist inside ``plan_dir`` with the sha256 the plan
    names, and files shared by name agree: a stale or conflicting alternative is one clear
    error before streaming starts, never a switch onto a wrong model mid-stream."""
    seen: dict[str, str] = {s.file: s.sha256 for s in plan.stages}
    for alt in plan.alternatives:
        for stage in alt.plan.stages:
            known = seen.setdefault(stage.file, stage.sha256)
            if known != stage.sha256:
                raise PlanError(
                    f"{plan_dir}: alternative {alt.id} stage {stage.index} names "
                    f"{stage.file!r} with sha256 {stage.sha256[:12]}…, another entry of the "
                    f"plan with {known[:12]}… (conflicting alternatives; re-export)")
            check_stage_file(plan_dir, stage, tensors=tensors)


def _check_numbers(data: Any, where: str) -> None:
    """Every number anywhere in the plan is finite and fits a float: ``1e999`` parses as inf
    and a 400-digit integer overflows the first ``float()`` a consumer calls on it."""
    for path, value in _walk(data):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise PlanError(f"{where}: field '{path}' is {value}, not a finite number")
        if isinstance(value, int) and abs(value) > 2**63:
            raise PlanError(f"{where}: field '{path}' is an integer too large to be meant")


def _walk(data: Any) -> Iterator[tuple[str, Any]]:
    """``(field path, value)`` for every value of a parsed JSON document, without recursion."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        yield path, value
        if isinstance(value, Mapping):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))


def _check_links(stages: tuple[StagePlan, ...], links: tuple[LinkPlan, ...],
                 where: str) -> None:
    """A link between consecutive stages carries every tensor a later stage reads from before
    it: the runner forwards exactly the link's tensors, so one left out never arrives."""
    for k, link in enumerate(links):
        if link.to_stage != link.from_stage + 1:
            raise PlanError(f"{where}: field 'links[{k}]' joins stage {link.from_stage} to "
                            f"{link.to_stage}; links join consecutive stages")
        missing = [name for name in _read_across(stages, link.to_stage)
                   if name not in link.tensors]
        if missing:
            raise PlanError(f"{where}: field 'links[{k}].tensors' lacks {missing[0]!r}, which "
                            f"stage {link.to_stage} or a later one reads")


def _refuse_graph_compression(links: tuple[LinkPlan, ...], where: str) -> None:
    """Stage-graph runners send tensors as made: a compressed link there would be ignored."""
    for k, link in enumerate(links):
        if link.compression != "fp32":
            raise PlanError(f"{where}: field 'links[{k}].compression' is {link.compression!r}; "
                            "stage-graph plans (with 'edges') send tensors uncompressed (fp32)")


def _check_edges(stages: tuple[StagePlan, ...], edges: tuple[EdgePlan, ...],
                 where: str) -> None:
    """In a stage graph a runner receives exactly what the edges into it carry: every input a
    stage reads from another stage must be on an edge from that stage."""
    carried = {(e.from_stage, e.to_stage): set(e.tensors) for e in edges}
    for stage in stages:
        for k, spec in enumerate(stage.inputs):
            source = spec.source
            if source is None or source.stage is None:
                continue
            if source.tensor not in carried.get((source.stage, stage.index), ()):
                raise PlanError(
                    f"{where}: field 'stages[{stage.index}].inputs[{k}]' reads "
                    f"{source.tensor!r} from stage {source.stage}, but no edge "
                    f"{source.stage}→{stage.index} carries it"
                )


def _read_across(stages: tuple[StagePlan, ...], hop: int) -> list[str]:
    """Names of tensors that stages at or after ``hop`` read from before ``hop``."""
    names: list[str] = []
    for stage in stages[hop:]:
        produced = {o.name for s in stages[hop:stage.index] for o in s.outputs}
        for spec in stage.inputs:
            name = spec.source.tensor if spec.source is not None else spec.name
            if name not in produced and name not in names:
                names.append(name)
    return names


def _check_sources(stages: tuple[StagePlan, ...], where: str) -> None:
    """A stage input comes from a model input or from an output of an *earlier* stage that
    really has that output: a runner looks the tensor up by this name in what arrives."""
    for stage in stages:
        for k, spec in enumerate(stage.inputs):
            field_path = f"{where}: field 'stages[{stage.index}].inputs[{k}].source"
            source = spec.source
            if source is None or source.stage is None:
                continue
            if not 0 <= source.stage < stage.index:
                raise PlanError(
                    f"{field_path}.stage' is {source.stage}; a stage reads only from stages "
                    "before it"
                )
            produced = {t.name for t in stages[source.stage].outputs}
            if source.tensor not in produced:
                raise PlanError(f"{field_path}.tensor' is {source.tensor!r}, which stage "
                                f"{source.stage} does not output ({', '.join(sorted(produced))})")


def save_plan(plan: Plan, directory: Path) -> Path:
    from hwsched.fileio import write_json

    return write_json(directory / PLAN_FILE, plan_to_dict(plan))


def load_plan(directory: Path) -> Plan:
    """Read ``DIR/plan.json`` (or a plan file path) with errors naming the file and field."""
    from hwsched.fileio import read_json

    directory = Path(directory)
    path = directory if directory.suffix == ".json" else directory / PLAN_FILE
    if not path.is_file():
        raise PlanError(f"{path}: no such file (export a plan with 'hwsched export')")
    data = read_json(path, PlanError, "plan", max_bytes=MAX_PLAN_BYTES)
    if not isinstance(data, dict):
        raise PlanError(f"{path}: top level must be an object")
    return plan_from_dict(data, where=str(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def contained_path(plan_dir: Path, relative: str, what: str) -> Path:
    """``plan_dir / relative``, proven to stay inside ``plan_dir`` after resolving ``..`` and
    symbolic links: a plan copied from elsewhere must not make a runner read (or a checksum
    vouch for) any other file on the board."""
    check_relative_name(relative, what)
    base = Path(plan_dir).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise PlanError(f"{plan_dir}: {what} {relative!r} resolves outside the plan directory")
    return path


def check_relative_name(relative: str, what: str) -> str:
    """A file name a plan may hold: relative, without ``..`` parts or NUL bytes.

    >>> check_relative_name("stage0_rpi4.tflite", "file")
    'stage0_rpi4.tflite'
    """
    parts = relative.replace("\\", "/").split("/")
    if (not relative or "\0" in relative or os.path.isabs(relative) or relative.startswith("/")
            or ".." in parts or re.match(r"^[A-Za-z]:", relative)):
        raise PlanError(
            f"{what} {relative!r} must be a file name relative to the plan directory"
        )
    return relative


def check_stage_file(plan_dir: Path, stage: StagePlan, tensors: bool = True) -> Path:
    """The stage's file path, after checking that it lies inside the plan directory, that its
    sha256 matches the plan and (``tensors``) that its signature has the plan's tensors."""
    path = contained_path(Path(plan_dir), stage.file, f"stage {stage.index} file")
    if not path.is_file():
        raise PlanError(f"{path}: stage {stage.index} file is missing")
    actual = file_sha256(path)
    if actual != stage.sha256:
        raise PlanError(
            f"{path}: sha256 {actual[:12]}… does not match the plan's {stage.sha256[:12]}… "
            f"(stage {stage.index}); re-export or copy the right file"
        )
    if tensors:
        from hwsched.litert import check_stage_signature

        check_stage_signature(path, stage)
    return path


# -- helpers -----------------------------------------------------------------------------------
def _quant_to_dict(q: Quantization | None) -> dict[str, Any] | None:
    return None if q is None else {"scale": q.scale, "zero_point": q.zero_point}


def _tensor_to_dict(t: TensorSpec) -> dict[str, Any]:
    source: str | dict[str, Any] | None = None
    if t.source is not None:
        source = {"stage": t.source.stage, "tensor": t.source.tensor,
                  "kind": "model_input" if t.source.is_model_input else "stage_output"}
    return {
        "name": t.name,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "quantization": _quant_to_dict(t.quantization),
        "source": source,
        "tflite_name": t.tflite_name,
    }


def _stage_to_dict(s: StagePlan) -> dict[str, Any]:
    return {
        "index": s.index,
        "platform": s.platform,
        "file": s.file,
        "sha256": s.sha256,
        "precision": s.precision,
        "first_layer": s.first_layer,
        "last_layer": s.last_layer,
        "inputs": [_tensor_to_dict(t) for t in s.inputs],
        "outputs": [_tensor_to_dict(t) for t in s.outputs],
        "extra_files": list(s.extra_files),
        **({"board": s.board} if s.board is not None else {}),
        **({"cores": list(s.cores)} if s.cores is not None else {}),
        "engine": s.engine,
        "runtime_platform": s.runtime_platform,
        "delegate": s.delegate,
        "delegate_options": dict(s.delegate_options),
        "arena_bytes": s.arena_bytes,
        "edgetpu": None if s.edgetpu is None else dict(s.edgetpu),
        "engine_verification": None if s.engine_verification is None else dict(
            s.engine_verification),
        "stateful": s.stateful,
    }


def _link_to_dict(link: LinkPlan) -> dict[str, Any]:
    return {
        "from_stage": link.from_stage,
        "to_stage": link.to_stage,
        "link": link.link,
        "tensors": list(link.tensors),
        "transfer_bytes": link.transfer_bytes,
        "requantize": [
            {"tensor": r.tensor, "action": r.action,
             "from": _quant_to_dict(r.from_quantization), "to": _quant_to_dict(r.to_quantization)}
            for r in link.requantize
        ],
        "compression": link.compression,
        **({"compression_quantization": {name: _quant_to_dict(q) for name, q
                                         in link.compression_quantization.items()}}
           if link.compression_quantization else {}),
    }


def _verification_to_dict(v: Verification) -> dict[str, Any]:
    return {
        "max_abs_diff": v.max_abs_diff,
        "max_rel_diff": v.max_rel_diff,
        "top1_agreement": v.top1_agreement,
        "samples": v.samples,
        "reference": v.reference,
        "passed": v.passed,
        "accuracy": None if v.accuracy is None else dict(v.accuracy),
        **({"compression": dict(v.compression)} if v.compression is not None else {}),
        **({"sequence": dict(v.sequence)} if v.sequence is not None else {}),
    }


class _Reader(FieldReader):
    """Field access with errors that name the file and the field path (the documents' shared
    :class:`~hwsched.documents.fields.FieldReader`; ``path`` here ends with its dot); every
    value is checked for type and range here, so nothing downstream meets a field it cannot
    use."""

    def __init__(self, where: str) -> None:
        super().__init__(where, PlanError)

    def fail(self, path: str, problem: str) -> PlanError:
        return PlanError(f"{self.where}: field '{path}' {problem}")

    def _get(self, data: Any, key: str, path: str) -> Any:
        return self.get(data, key, path.removesuffix("."))

    def text(self, data: Any, key: str, path: str = "") -> str:
        value = self._get(data, key, path)
        if not isinstance(value, str):
            raise self.fail(path + key, "must be a string")
        return value

    def optional_text(self, data: Mapping[str, Any], key: str, path: str) -> str | None:
        return None if data.get(key) is None else self.text(data, key, path)

    def choice(self, data: Any, key: str, path: str, valid: tuple[str, ...]) -> str:
        value = self.text(data, key, path + ".")
        if value not in valid:
            raise PlanError(
                f"{self.where}: field '{path}.{key}' is {value!r}; valid: {', '.join(valid)}"
            )
        return value

    def integer(self, data: Any, key: str, path: str = "", minimum: int = 0,
                maximum: int | None = None) -> int:
        value = self._get(data, key, path)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(path + key, "must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise self.fail(path + key, f"is {value}; must be {bound}")
        return value

    def number(self, data: Any, key: str, path: str, low: float, high: float) -> float:
        value = self._get(data, key, path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path + key, "must be a number")
        if not low <= value <= high:
            raise self.fail(path + key, f"is {value}; must be in [{low}, {high}]")
        return float(value)

    def items(self, data: Any, key: str, path: str = "") -> list[Any]:
        value = self._get(data, key, path)
        if not isinstance(value, list):
            raise self.fail(path + key, "must be a list")
        return value

    def names(self, data: Any, key: str, path: str) -> tuple[str, ...]:
        values = self.items(data, key, path)
        if not all(isinstance(v, str) for v in values):
            raise self.fail(path + key, "must list strings")
        return tuple(values)

    def cut_positions(self, data: Mapping[str, Any]) -> tuple[int, ...]:
        values = data.get("cut_positions", [])
        if not isinstance(values, list) or not all(
            isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in values
        ):
            raise PlanError(f"{self.where}: field 'cut_positions' must list positive integers")
        return tuple(values)

    def mapping(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key) or {}
        if not isinstance(value, Mapping):
            raise PlanError(f"{self.where}: field {key!r} must be an object")
        return dict(value)

    def prediction(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Free-form, but the fields emulate compares against must have the shapes it reads."""
        prediction = self.mapping(data, "prediction")
        for key in ("throughput_ips", "latency_ms"):
            if prediction.get(key) is not None:
                self.number(prediction, key, "prediction.", 0.0, math.inf)
        for key in ("stages", "links"):
            items = prediction.get(key)
            if items is not None and not (
                isinstance(items, list) and all(isinstance(i, Mapping) for i in items)
            ):
                raise self.fail(f"prediction.{key}", "must be a list of objects")
        return prediction

    def quantization(self, data: Any, path: str) -> Quantization | None:
        if data is None:
            return None
        if not isinstance(data, Mapping) or not {"scale", "zero_point"} <= set(data):
            raise self.fail(path, "must be {scale, zero_point} or null")
        scale = self.number(data, "scale", path + ".", 0.0, math.inf)
        if scale == 0:
            raise self.fail(f"{path}.scale", "is 0; a quantization scale must be positive")
        return Quantization(scale, self.integer(data, "zero_point", path + ".",
                                                *ZERO_POINT_RANGE))

    def shape(self, data: Any, path: str) -> tuple[int, ...]:
        dims = self.items(data, "shape", path + ".")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise self.fail(f"{path}.shape", "must list non-negative ints")
        if len(dims) > MAX_TENSOR_RANK or math.prod(dims) > MAX_TENSOR_ELEMENTS:
            raise self.fail(
                f"{path}.shape", f"{dims} is larger than any stage can hold (at most "
                f"{MAX_TENSOR_RANK} dimensions and {MAX_TENSOR_ELEMENTS:,} elements)"
            )
        return tuple(dims)

    def source(self, data: Mapping[str, Any], path: str) -> TensorSource | None:
        source = data.get("source")
        if source is None:
            return None
        if not isinstance(source, Mapping) or "tensor" not in source:
            raise self.fail(f"{path}.source", "must be {stage, tensor}")
        stage = source.get("stage")
        if stage is not None:
            stage = self.integer(source, "stage", f"{path}.source.")
        return TensorSource(self.text(source, "tensor", f"{path}.source."), stage)

    def tensor(self, data: Any, path: str) -> TensorSpec:
        shape = self.shape(data, path)
        source = self.source(data, path)
        dtype = self.text(data, "dtype", path + ".")
        from hwsched.ir import DTYPE_BYTES

        if dtype not in DTYPE_BYTES:
            raise PlanError(f"{self.where}: field '{path}.dtype' has unknown dtype {dtype!r}")
        quantization = self.quantization(data.get("quantization"), path + ".quantization")
        if quantization is not None and dtype not in QUANTIZED_DTYPES:
            raise PlanError(
                f"{self.where}: field '{path}.quantization' is set on a {dtype} tensor; only "
                f"{', '.join(QUANTIZED_DTYPES)} tensors are quantized"
            )
        return TensorSpec(
            name=self.text(data, "name", path + "."),
            shape=shape,
            dtype=dtype,
            quantization=quantization,
            source=source,
            tflite_name=self.optional_text(data, "tflite_name", path + "."),
        )

    def file_name(self, data: Any, key: str, path: str) -> str:
        return self.relative(self.text(data, key, path), path + key)

    def relative(self, name: str, path: str) -> str:
        try:
            return check_relative_name(name, f"field '{path}'")
        except PlanError as error:
            raise PlanError(f"{self.where}: {error}") from None

    def stage(self, data: Any, path: str) -> StagePlan:
        precision = self.choice(data, "precision", path, PRECISIONS)
        sha256 = self.text(data, "sha256", path + ".")
        if not _SHA256.fullmatch(sha256):
            raise self.fail(f"{path}.sha256", "must be 64 lowercase hex digits")
        extra = self.names(data, "extra_files", path + ".") if "extra_files" in data else ()
        for k, name in enumerate(extra):
            self.relative(name, f"{path}.extra_files[{k}]")
        return StagePlan(
            index=self.integer(data, "index", path + "."),
            platform=self.text(data, "platform", path + "."),
            file=self.file_name(data, "file", path + "."),
            sha256=sha256,
            precision=precision,
            inputs=tuple(
                self.tensor(t, f"{path}.inputs[{i}]")
                for i, t in enumerate(self.items(data, "inputs", path + "."))
            ),
            outputs=tuple(
                self.tensor(t, f"{path}.outputs[{i}]")
                for i, t in enumerate(self.items(data, "outputs", path + "."))
            ),
            first_layer=self.optional_text(data, "first_layer", path + ".") or "",
            last_layer=self.optional_text(data, "last_layer", path + ".") or "",
            extra_files=extra,
            board=None if data.get("board") is None else self.text(data, "board", path + "."),
            cores=self.cores(data, path),
            **self.engine_fields(data, path),
        )

    def engine_fields(self, data: Mapping[str, Any], path: str) -> dict[str, Any]:
        """The optional engine fields of a stage (absent in plans from before them)."""
        engine = data.get("engine") or "litert-cpu"
        delegate = data.get("delegate")
        options = data.get("delegate_options") or {}
        arena = data.get("arena_bytes")
        edgetpu = data.get("edgetpu")
        if not isinstance(engine, str) or not (delegate is None or isinstance(delegate, str)):
            raise PlanError(f"{self.where}: fields '{path}.engine'/'{path}.delegate' must be "
                            "strings")
        if not isinstance(options, Mapping) or not all(
            isinstance(v, str) for v in options.values()
        ):
            raise PlanError(f"{self.where}: field '{path}.delegate_options' must map names to "
                            "strings")
        if arena is not None and (not isinstance(arena, int) or isinstance(arena, bool)
                                  or arena <= 0):
            raise PlanError(f"{self.where}: field '{path}.arena_bytes' must be a positive "
                            "integer or null")
        checked = data.get("engine_verification")
        for key, value in (("edgetpu", edgetpu), ("engine_verification", checked)):
            if value is not None and not isinstance(value, Mapping):
                raise PlanError(f"{self.where}: field '{path}.{key}' must be an object or null")
        runtime_platform = data.get("runtime_platform")
        if not (runtime_platform is None or isinstance(runtime_platform, str)):
            raise PlanError(f"{self.where}: field '{path}.runtime_platform' must be a string")
        stateful = data.get("stateful", False)
        if not isinstance(stateful, bool):
            raise PlanError(f"{self.where}: field '{path}.stateful' must be true or false")
        return {"engine": engine, "runtime_platform": runtime_platform, "delegate": delegate,
                "delegate_options": dict(options), "stateful": stateful,
                "arena_bytes": arena, "edgetpu": None if edgetpu is None else dict(edgetpu),
                "engine_verification": None if checked is None else dict(checked)}

    def cores(self, data: Mapping[str, Any], path: str) -> tuple[int, ...] | None:
        value = data.get("cores")
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value
        ):
            raise PlanError(f"{self.where}: field '{path}.cores' must list core numbers >= 0")
        return tuple(value)

    def edge(self, data: Any, path: str, stage_count: int) -> EdgePlan:
        source = self.integer(data, "from", path + ".")
        target = self.integer(data, "to", path + ".")
        if not (0 <= source < target < stage_count):
            raise PlanError(
                f"{self.where}: field '{path}' goes from stage {source} to {target}; edges go "
                f"from an earlier to a later stage of 0..{stage_count - 1}"
            )
        tensors = self.items(data, "tensors", path + ".")
        if not tensors or not all(isinstance(t, str) for t in tensors):
            raise PlanError(f"{self.where}: field '{path}.tensors' must list tensor names")
        regions = self.regions(data, path, len(tensors)) if "regions" in data else ()
        return EdgePlan(source, target, tuple(tensors), regions)

    def regions(self, data: Mapping[str, Any], path: str, count: int
                ) -> tuple[tuple[tuple[int, int], ...] | None, ...]:
        """An edge's ``regions``: one per tensor, null or ``[[start, stop], …]`` per axis."""
        items = self.items(data, "regions", path + ".")
        if len(items) != count:
            raise self.fail(f"{path}.regions", f"has {len(items)} entries for {count} tensors")
        result = []
        for k, item in enumerate(items):
            if item is None:
                result.append(None)
                continue
            good = isinstance(item, list) and item and all(
                isinstance(b, list) and len(b) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in b) and 0 <= b[0] < b[1]
                for b in item)
            if not good:
                raise self.fail(f"{path}.regions[{k}]", "must be null or [[start, stop], …] "
                                "with 0 <= start < stop per axis")
            result.append(tuple((b[0], b[1]) for b in item))
        return tuple(result)

    def link(self, data: Any, path: str, stage_count: int) -> LinkPlan:
        if not isinstance(data, Mapping):
            raise PlanError(f"{self.where}: field '{path}' must be an object")
        requantize = tuple(
            self.requantization(r, f"{path}.requantize[{i}]")
            for i, r in enumerate(self.items(data, "requantize", path + ".") if "requantize"
                                  in data else [])
        )
        last = stage_count - 1
        return LinkPlan(
            from_stage=self.integer(data, "from_stage", path + ".", 0, last),
            to_stage=self.integer(data, "to_stage", path + ".", 0, last),
            link=self.optional_text(data, "link", path + ".") or "",
            tensors=self.names(data, "tensors", path + "."),
            transfer_bytes=self.integer(data, "transfer_bytes", path + "."),
            requantize=requantize,
            **self.compression(data, path),
        )

    def compression(self, data: Mapping[str, Any], path: str) -> dict[str, Any]:
        """A link's optional compression fields (absent in plans from before them: fp32)."""
        level = self.choice(data, "compression", path, COMPRESSION_LEVELS) \
            if data.get("compression") is not None else "fp32"
        grids = data.get("compression_quantization") or {}
        if not isinstance(grids, Mapping):
            raise self.fail(f"{path}.compression_quantization", "must map tensor names to "
                            "{scale, zero_point}")
        if grids and level != "int8":
            raise self.fail(f"{path}.compression_quantization", f"is set on a {level} link; "
                            "only int8 compression has a quantization")
        quantization = {}
        for name, value in grids.items():
            q = self.quantization(value, f"{path}.compression_quantization.{name}")
            if q is None or not -128 <= q.zero_point <= 127:
                raise self.fail(f"{path}.compression_quantization.{name}",
                                "must be {scale, zero_point} with an int8 zero point")
            quantization[name] = q
        return {"compression": level, "compression_quantization": quantization}

    def requantization(self, data: Any, path: str) -> Requantization:
        action = self.choice(data, "action", path, HANDOFF_ACTIONS)
        return Requantization(
            tensor=self.text(data, "tensor", path + "."),
            from_quantization=self.quantization(data.get("from"), f"{path}.from"),
            to_quantization=self.quantization(data.get("to"), f"{path}.to"),
            action=action,
        )

    def verification(self, data: Any) -> Verification:
        path = "verification."
        accuracy = data.get("accuracy") if isinstance(data, Mapping) else None
        if accuracy is not None and not isinstance(accuracy, Mapping):
            raise self.fail("verification.accuracy", "must be an object or null")
        passed = data.get("passed", True) if isinstance(data, Mapping) else True
        if not isinstance(passed, bool):
            raise self.fail("verification.passed", "must be true or false")
        rel = data.get("max_rel_diff") if isinstance(data, Mapping) else None
        sequence = data.get("sequence") if isinstance(data, Mapping) else None
        if sequence is not None and not isinstance(sequence, Mapping):
            raise self.fail("verification.sequence", "must be an object or null")
        return Verification(
            max_abs_diff=self.number(data, "max_abs_diff", path, 0.0, math.inf),
            top1_agreement=self.number(data, "top1_agreement", path, 0.0, 1.0),
            samples=self.integer(data, "samples", path, 0, 2**31 - 1),
            reference=self.text(data, "reference", path),
            max_rel_diff=None if rel is None else self.number(
                data, "max_rel_diff", path, 0.0, math.inf),
            passed=passed,
            accuracy=accuracy,
            compression=self.compression_record(data),
            sequence=sequence,
        )

    def compression_record(self, data: Any) -> dict[str, Any] | None:
        value = data.get("compression") if isinstance(data, Mapping) else None
        if value is not None and not isinstance(value, Mapping):
            raise self.fail("verification.compression", "must be an object or null")
        return None if value is None else dict(value)
