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
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsched.documents import PLAN, FieldReader, check_kind
from hwsched.errors import PlanError

PLAN_FILE = "plan.json"
PLAN_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
#: How a crossing tensor goes from its producer's encoding to its consumer's.
HANDOFF_ACTIONS = ("none", "cast", "quantize", "dequantize", "requantize")
#: dtypes that can carry a (scale, zero_point) quantization.
QUANTIZED_DTYPES = ("int8", "uint8", "int16", "int32")


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
    }


def plan_from_dict(data: Mapping[str, Any], where: str = PLAN_FILE) -> Plan:
    check_kind(data, PLAN, FieldReader(where, PlanError))  # e.g. an analysis given as a plan
    reader = _Reader(where)
    stages = tuple(
        reader.stage(s, f"stages[{i}]") for i, s in enumerate(reader.items(data, "stages"))
    )
    if not stages:
        raise PlanError(f"{where}: 'stages' is empty")
    if [s.index for s in stages] != list(range(len(stages))):
        raise PlanError(f"{where}: stage indexes must be 0..{len(stages) - 1} in order")
    verification = data.get("verification")
    return Plan(
        model=reader.text(data, "model"),
        stages=stages,
        links=tuple(
            reader.link(x, f"links[{i}]") for i, x in enumerate(reader.items(data, "links"))
        ),
        verification=None if verification is None else reader.verification(verification),
        source=str(data.get("source", "")),
        cut_positions=reader.cut_positions(data),
        prediction=reader.mapping(data, "prediction"),
    )


def save_plan(plan: Plan, directory: Path) -> Path:
    from hwsched.fileio import write_json

    return write_json(directory / PLAN_FILE, plan_to_dict(plan))


def load_plan(directory: Path) -> Plan:
    """Read ``DIR/plan.json`` (or a plan file path) with errors naming the file and field."""
    path = directory if directory.suffix == ".json" else directory / PLAN_FILE
    if not path.is_file():
        raise PlanError(f"{path}: no such file (export a plan with 'hwsched export')")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: top level must be an object")
    return plan_from_dict(data, where=str(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_stage_file(plan_dir: Path, stage: StagePlan) -> Path:
    """The stage's file path, after checking that its sha256 matches the plan."""
    path = plan_dir / stage.file
    if not path.is_file():
        raise PlanError(f"{path}: stage {stage.index} file is missing")
    actual = file_sha256(path)
    if actual != stage.sha256:
        raise PlanError(
            f"{path}: sha256 {actual[:12]}… does not match the plan's {stage.sha256[:12]}… "
            f"(stage {stage.index}); re-export or copy the right file"
        )
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
        "engine": s.engine,
        "runtime_platform": s.runtime_platform,
        "delegate": s.delegate,
        "delegate_options": dict(s.delegate_options),
        "arena_bytes": s.arena_bytes,
        "edgetpu": None if s.edgetpu is None else dict(s.edgetpu),
        "engine_verification": None if s.engine_verification is None else dict(
            s.engine_verification),
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
    }


class _Reader(FieldReader):
    """Field access with errors that name the file and the field path (the documents' shared
    :class:`~hwsched.documents.fields.FieldReader`; ``path`` here ends with its dot)."""

    def __init__(self, where: str) -> None:
        super().__init__(where, PlanError)

    def _get(self, data: Any, key: str, path: str) -> Any:
        return self.get(data, key, path.removesuffix("."))

    def text(self, data: Any, key: str, path: str = "") -> str:
        value = self._get(data, key, path)
        if not isinstance(value, str):
            raise PlanError(f"{self.where}: field '{path}{key}' must be a string")
        return value

    def choice(self, data: Any, key: str, path: str, valid: tuple[str, ...]) -> str:
        value = self.text(data, key, path + ".")
        if value not in valid:
            raise PlanError(
                f"{self.where}: field '{path}.{key}' is {value!r}; valid: {', '.join(valid)}"
            )
        return value

    def integer(self, data: Any, key: str, path: str = "") -> int:
        value = self._get(data, key, path)
        if not isinstance(value, int) or isinstance(value, bool):
            raise PlanError(f"{self.where}: field '{path}{key}' must be an integer")
        return value

    def items(self, data: Any, key: str, path: str = "") -> list[Any]:
        value = self._get(data, key, path)
        if not isinstance(value, list):
            raise PlanError(f"{self.where}: field '{path}{key}' must be a list")
        return value

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

    def quantization(self, data: Any, path: str) -> Quantization | None:
        if data is None:
            return None
        try:
            return Quantization(float(data["scale"]), int(data["zero_point"]))
        except (KeyError, TypeError, ValueError):
            raise PlanError(
                f"{self.where}: field '{path}' must be {{scale, zero_point}} or null"
            ) from None

    def tensor(self, data: Any, path: str) -> TensorSpec:
        shape = self.items(data, "shape", path + ".")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise PlanError(f"{self.where}: field '{path}.shape' must list non-negative ints")
        source = data.get("source")
        if source is not None:
            if not isinstance(source, Mapping) or "tensor" not in source:
                raise PlanError(f"{self.where}: field '{path}.source' must be {{stage, tensor}}")
            source = TensorSource(str(source["tensor"]), source.get("stage"))
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
            shape=tuple(shape),
            dtype=dtype,
            quantization=quantization,
            source=source,
            tflite_name=data.get("tflite_name"),
        )

    def stage(self, data: Any, path: str) -> StagePlan:
        precision = self.choice(data, "precision", path, PRECISIONS)
        return StagePlan(
            index=self.integer(data, "index", path + "."),
            platform=self.text(data, "platform", path + "."),
            file=self.text(data, "file", path + "."),
            sha256=self.text(data, "sha256", path + "."),
            precision=precision,
            inputs=tuple(
                self.tensor(t, f"{path}.inputs[{i}]")
                for i, t in enumerate(self.items(data, "inputs", path + "."))
            ),
            outputs=tuple(
                self.tensor(t, f"{path}.outputs[{i}]")
                for i, t in enumerate(self.items(data, "outputs", path + "."))
            ),
            first_layer=str(data.get("first_layer", "")),
            last_layer=str(data.get("last_layer", "")),
            extra_files=tuple(data.get("extra_files", ())),
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
        return {"engine": engine, "runtime_platform": runtime_platform, "delegate": delegate,
                "delegate_options": dict(options),
                "arena_bytes": arena, "edgetpu": None if edgetpu is None else dict(edgetpu),
                "engine_verification": None if checked is None else dict(checked)}

    def link(self, data: Any, path: str) -> LinkPlan:
        if not isinstance(data, Mapping):
            raise PlanError(f"{self.where}: field '{path}' must be an object")
        requantize = tuple(
            self.requantization(r, f"{path}.requantize[{i}]")
            for i, r in enumerate(self.items(data, "requantize", path + ".") if "requantize"
                                  in data else [])
        )
        return LinkPlan(
            from_stage=self.integer(data, "from_stage", path + "."),
            to_stage=self.integer(data, "to_stage", path + "."),
            link=str(data.get("link", "")),
            tensors=tuple(self.items(data, "tensors", path + ".")),
            transfer_bytes=self.integer(data, "transfer_bytes", path + "."),
            requantize=requantize,
        )

    def requantization(self, data: Any, path: str) -> Requantization:
        action = self.choice(data, "action", path, HANDOFF_ACTIONS)
        return Requantization(
            tensor=self.text(data, "tensor", path + "."),
            from_quantization=self.quantization(data.get("from"), f"{path}.from"),
            to_quantization=self.quantization(data.get("to"), f"{path}.to"),
            action=action,
        )

    def verification(self, data: Any) -> Verification:
        try:
            return Verification(
                max_abs_diff=float(data["max_abs_diff"]),
                top1_agreement=float(data["top1_agreement"]),
                samples=int(data["samples"]),
                reference=str(data["reference"]),
                max_rel_diff=None if data.get("max_rel_diff") is None else float(
                    data["max_rel_diff"]
                ),
                passed=bool(data.get("passed", True)),
                accuracy=data.get("accuracy"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PlanError(f"{self.where}: field 'verification' is malformed ({error})") from None
