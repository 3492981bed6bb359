"""Hardware descriptors: platforms (boards) and links, loaded from YAML and validated.

The descriptors live in the top-level ``hardware/`` directory (``platforms/*.yaml`` and
``links/*.yaml``); the schema is documented in ``hardware/README.md``. Every number in a
descriptor is a mapping ``{value: ..., source: "..."}`` or ``{value: ..., estimate: "..."}`` so a
report can always say where a figure came from. Loading turns a file into a frozen
:class:`Platform` or :class:`Link` with plain numbers in SI-ish units named in the fields.

Wherever a name is accepted, a path to a user's own descriptor file is accepted too:

>>> load_platform("rpi4").compute_gops["fp32"]
14.0
>>> load_link("gige").bandwidth_bps
1000000000.0

Extra descriptor directories can be added with the ``HWSCHED_HARDWARE_PATH`` environment variable
(``os.pathsep``-separated); they are searched before the built-in directory.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from hwsched.errors import DescriptorError, UnknownNameError
from hwsched.ir import OpKind
from hwsched.units import MW_PER_W

#: The schema tag every descriptor carries in its ``schema`` field.
SCHEMA = "hwsched-hardware/1"
#: Built-in descriptors: ``<repo>/hardware``.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "hardware"
#: Environment variable with extra descriptor directories.
PATH_ENV = "HWSCHED_HARDWARE_PATH"

#: Precision names a descriptor may use, and the tensor dtype each one stores values in.
PRECISION_DTYPES: Mapping[str, str] = MappingProxyType(
    {"fp32": "float32", "fp16": "float16", "int8": "int8"}
)
#: Bytes in one mebibyte (descriptor memory sizes are in MiB).
BYTES_PER_MIB = 1024 * 1024
#: Key of the fallback entry of ``op_efficiency``.
DEFAULT_EFFICIENCY_KEY = "default"
#: Values of a link's ``encoding`` field besides the precisions: send tensors as they are.
NATIVE_ENCODING = "native"

#: Largest descriptor file read: the built-in ones are under 4 KiB; YAML parsing is slow.
MAX_DESCRIPTOR_BYTES = 256 * 1024
#: Longest text field (description, a source note); a report shows them on one line.
MAX_TEXT_CHARS = 1000
#: What a board or link name may be: it becomes part of file names (``stage0_<name>.tflite``).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")

#: Keys a descriptor may hold (a nested dict is a section; None is a leaf). ``compute_gops``
#: and ``op_efficiency`` are checked against precisions and op kinds instead.
_QUANTITY = None
PLATFORM_KEYS: Mapping[str, Any] = MappingProxyType({
    "schema": None, "kind": None, "name": None, "description": None,
    "precisions": {"default": None, "compute_gops": None},
    "op_efficiency": None, "ops": None, "ops_source": None,
    "memory": {"bandwidth_gbps": _QUANTITY, "ram_mib": _QUANTITY, "flash_mib": _QUANTITY,
               "param_cache_mib": _QUANTITY, "offchip_bandwidth_gbps": _QUANTITY},
    "overhead": {"layer_ms": _QUANTITY, "invoke_ms": _QUANTITY},
    "power": {"active_w": _QUANTITY, "idle_w": _QUANTITY},
    # the engine that runs the stages; its keys are checked by _platform_runtime
    "runtime": None,
})
LINK_KEYS: Mapping[str, Any] = MappingProxyType({
    "schema": None, "kind": None, "name": None, "description": None,
    "bandwidth_bps": _QUANTITY, "bits_per_byte": _QUANTITY, "message_latency_ms": _QUANTITY,
    "encoding": None,
    "frame": {"payload_bytes": _QUANTITY, "overhead_bytes": _QUANTITY, "gap_us": _QUANTITY},
    "power": {"active_w": _QUANTITY, "energy_per_bit_nj": _QUANTITY},
})

#: Deepest bracket nesting read in a descriptor (they nest 3 levels).
MAX_YAML_DEPTH = 32
_BRACKETS = re.compile(r"[\[\]{}]")

#: libyaml's loader when available: descriptors load ~10x faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Engines a platform's stages run on, and whether hwsched can run that engine itself (an
#: engine it cannot run is priced by the analysis but refused by ``export``/``emulate``).
ENGINES: Mapping[str, bool] = MappingProxyType({
    "litert-cpu": True, "litert-gpu": True, "edgetpu": True, "tflm": True, "tensorrt": False,
})
#: The LiteRT delegate an engine needs when the descriptor names none.
ENGINE_DELEGATES: Mapping[str, str] = MappingProxyType({"litert-gpu": "gpu", "edgetpu": "edgetpu"})
#: Keys of a platform's ``runtime`` section.
RUNTIME_KEYS = ("engine", "delegate", "options", "export_with", "host")
_KIND_DIRS = {"platform": "platforms", "link": "links"}


@dataclass(frozen=True)
class RuntimeSpec:
    """The engine that runs a platform's stages, so a plan runs on what was priced.

    ``delegate`` is a LiteRT delegate (``gpu``, ``edgetpu`` or a library path) with its
    ``options``; ``export_with`` names the runnable descriptor to export to when this one's
    engine is one hwsched does not run (a Jetson GPU with TensorRT → its CPU descriptor);
    ``host`` names the descriptor of the CPU an accelerator is attached to (an Edge TPU's ops
    the compiler leaves on the CPU run there, see :mod:`hwsched.costs.edgetpu`).

    >>> RuntimeSpec("tensorrt", export_with="jetson_nano_cpu").runnable
    False
    """

    engine: str = "litert-cpu"
    delegate: str | None = None
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    export_with: str | None = None
    host: str | None = None

    @property
    def runnable(self) -> bool:
        return ENGINES[self.engine]


@dataclass(frozen=True)
class Platform:
    """A board that runs one stage. Compute rates are sustained GOP/s per precision."""

    name: str
    description: str
    path: str
    default_precision: str
    compute_gops: Mapping[str, float]
    #: Fraction of the precision's rate an op kind reaches; missing kinds use ``default``.
    op_efficiency: Mapping[str, float]
    #: Op kinds the platform can run; None means every op kind.
    supported_ops: frozenset[OpKind] | None
    memory_bandwidth_gbps: float
    ram_bytes: int
    #: Weights are stored here instead of RAM when present (MCUs).
    flash_bytes: int | None
    #: On-chip parameter cache (Edge TPU); weights beyond it stream in every inference.
    param_cache_bytes: int | None
    offchip_bandwidth_gbps: float | None
    layer_overhead_ms: float
    invoke_overhead_ms: float
    active_power_w: float
    idle_power_w: float
    #: ``field path -> "source: ..."`` or ``"estimate: ..."`` for every number.
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The engine that runs this platform's stages (LiteRT on the CPU when not given).
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.compute_gops)

    def efficiency(self, op: OpKind) -> float:
        return self.op_efficiency.get(op.value, self.op_efficiency[DEFAULT_EFFICIENCY_KEY])

    def supports(self, op: OpKind) -> bool:
        return self.supported_ops is None or op in self.supported_ops


@dataclass(frozen=True)
class Link:
    """A point-to-point link between two consecutive stages."""

    name: str
    description: str
    path: str
    bandwidth_bps: float
    bits_per_byte: float
    #: Payload bytes per frame; None when the link is a raw byte stream.
    frame_payload_bytes: int | None
    frame_overhead_bytes: int
    #: Idle time on the medium per frame (e.g. BLE inter-frame spaces and ACK).
    frame_gap_us: float
    message_latency_ms: float
    #: ``native`` or a precision name that crossing tensors are encoded in.
    encoding: str
    #: Power of both ends while transferring (one of this or energy_per_bit_nj is set).
    active_power_w: float | None
    energy_per_bit_nj: float | None
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


# -- reading one file ------------------------------------------------------------------------
class _Reader:
    """Field access on one parsed descriptor, with errors that name the file and field."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path, self.data = path, data
        self.sources: dict[str, str] = {}

    def fail(self, field_path: str, problem: str) -> DescriptorError:
        return DescriptorError(f"{self.path}: field {field_path!r}: {problem}")

    def get(self, field_path: str, required: bool = True) -> Any:
        node: Any = self.data
        walked: list[str] = []
        for key in field_path.split("."):
            if not isinstance(node, Mapping):
                raise self.fail(".".join(walked), "must be a mapping")
            walked.append(key)
            if node.get(key) is None:  # a key left empty in YAML is as good as absent
                if required:
                    raise self.fail(field_path, "is missing")
                return None
            node = node[key]
        return node

    def text(self, field_path: str, required: bool = True, default: str = "") -> str:
        value = self.get(field_path, required)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field_path, f"must be a non-empty string, got {_short(value)}")
        if len(value) > MAX_TEXT_CHARS or "\n" in value.strip():
            raise self.fail(field_path, f"must be one line of at most {MAX_TEXT_CHARS} characters")
        return value

    def name(self) -> str:
        """The ``name`` field, which becomes part of file names: an identifier."""
        value = self.text("name")
        try:
            return check_name(value, "field 'name'")
        except DescriptorError as error:
            raise DescriptorError(f"{self.path}: {error}") from None

    def whole(self, field_path: str, required: bool = True, positive: bool = True) -> int | None:
        """A quantity that counts things (bytes per frame): a whole number."""
        value = self.number(field_path, required, positive=positive)
        if value is not None and not value.is_integer():
            raise self.fail(field_path, f"value must be a whole number, got {value!r}")
        return None if value is None else int(value)

    def check_keys(self, schema: Mapping[str, Any], prefix: str = "") -> None:
        """Every key is one the schema knows; a misspelt one (``flash_mb``) would otherwise
        be ignored and its number silently replaced by a default or an error elsewhere."""
        node = self.get(prefix, required=False) if prefix else self.data
        if not isinstance(node, Mapping):
            return  # a wrong type is reported by the field's own reader
        for key in node:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in schema:
                close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (
                    f"; valid: {', '.join(schema)}")
                raise self.fail(path, f"unknown key{hint}")
            if isinstance(schema[key], Mapping):
                self.check_keys(schema[key], path)

    def number(
        self, field_path: str, required: bool = True, minimum: float = 0.0, positive: bool = True
    ) -> float | None:
        """A ``{value, source|estimate}`` quantity; records its provenance in ``sources``."""
        node = self.get(field_path, required)
        if node is None:
            return None
        if not isinstance(node, Mapping) or "value" not in node:
            raise self.fail(field_path, "must be a mapping {value: NUMBER, source: TEXT}")
        value = node["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field_path, f"value must be a number, got {_short(value)}")
        if not _finite(value):
            raise self.fail(field_path, f"value must be finite, got {_short(value)}")
        if value < minimum or (positive and value <= 0):
            bound = "> 0" if positive else f">= {minimum}"
            raise self.fail(field_path, f"value must be {bound}, got {value!r}")
        provenance = [key for key in ("source", "estimate") if key in node]
        if len(provenance) != 1:
            raise self.fail(
                field_path, "needs exactly one of 'source: <public figure>' or 'estimate: <why>'"
            )
        note = node[provenance[0]]
        if not isinstance(note, str) or not note.strip() or len(note) > MAX_TEXT_CHARS:
            raise self.fail(field_path, f"{provenance[0]!r} must be a non-empty string of at "
                            f"most {MAX_TEXT_CHARS} characters")
        unknown = sorted(set(node) - {"value", "source", "estimate"})
        if unknown:
            raise self.fail(field_path, f"unknown keys {unknown}")
        self.sources[field_path] = f"{provenance[0]}: {note}"
        return float(value)


def _finite(value: float) -> bool:
    """``math.isfinite`` that says False, not OverflowError, for a 400-digit YAML integer."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _short(value: Any) -> str:
    """``repr`` of a bad value, cut to fit in a one-line error."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def check_name(name: str, what: str = "name") -> str:
    """A board, link or descriptor name: letters, digits, ``_``, ``-``, ``.``; not ``.`` or
    ``..``. Names become file names, so a separator would let a name write anywhere.

    >>> check_name("jetson_orin_nano")
    'jetson_orin_nano'
    >>> check_name("x/../../escaped")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hwsched.errors.DescriptorError: name 'x/../../escaped' must be 1-64 letters, digits, ...
    """
    if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise DescriptorError(
            f"{what} {_short(name)} must be 1-64 letters, digits, '_', '-' or '.' "
            "(not '.' or '..')"
        )
    return name


def _parse_yaml(path: Path) -> Mapping[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_DESCRIPTOR_BYTES:
            raise DescriptorError(
                f"{path}: descriptor is {size:,} bytes; at most {MAX_DESCRIPTOR_BYTES:,} are read"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DescriptorError(f"{path}: cannot read descriptor: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DescriptorError(f"{path}: not a text (UTF-8) YAML file") from None
    depth = max(accumulate(1 if c in "[{" else -1 for c in _BRACKETS.findall(text)), default=0)
    if depth > MAX_YAML_DEPTH:
        raise DescriptorError(f"{path}: nested {depth} levels deep; at most {MAX_YAML_DEPTH}")
    # libyaml recurses in C and crashes the process on deep block nesting; a user's file goes
    # through the Python parser, whose recursion ends in a RecursionError
    trusted = path.resolve().is_relative_to(BUILTIN_DIR)
    try:
        data = yaml.load(text, Loader=_YAML_LOADER if trusted else yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise DescriptorError(f"{path}: not valid YAML: {error}".splitlines()[0]) from None
    except RecursionError:
        raise DescriptorError(f"{path}: YAML nested too deeply") from None
    if not isinstance(data, Mapping):
        raise DescriptorError(f"{path}: a descriptor must be a YAML mapping")
    return data


def _check_header(reader: _Reader, kind: str) -> None:
    schema = reader.get("schema")
    if schema != SCHEMA:
        raise reader.fail("schema", f"must be {SCHEMA!r}, got {schema!r}")
    found = reader.get("kind")
    if found != kind:
        raise reader.fail("kind", f"must be {kind!r} here, got {found!r}")


def _mib(reader: _Reader, field_path: str, required: bool = True) -> int | None:
    value = reader.number(field_path, required)
    return None if value is None else int(value * BYTES_PER_MIB)


def _platform_precisions(reader: _Reader) -> tuple[str, dict[str, float]]:
    table = reader.get("precisions.compute_gops")
    if not isinstance(table, Mapping) or not table:
        raise reader.fail("precisions.compute_gops", "must map precisions to GOP/s quantities")
    gops: dict[str, float] = {}
    for precision in table:
        if not isinstance(precision, str) or precision not in PRECISION_DTYPES:
            raise reader.fail(
                f"precisions.compute_gops.{precision}",
                f"unknown precision; valid: {', '.join(PRECISION_DTYPES)}",
            )
        gops[precision] = reader.number(f"precisions.compute_gops.{precision}")  # type: ignore[assignment]
    default = reader.text("precisions.default")
    if default not in gops:
        raise reader.fail(
            "precisions.default", f"{default!r} has no compute_gops entry; valid: {', '.join(gops)}"
        )
    return default, gops


def _platform_efficiency(reader: _Reader) -> dict[str, float]:
    table = reader.get("op_efficiency")
    if not isinstance(table, Mapping) or DEFAULT_EFFICIENCY_KEY not in table:
        raise reader.fail("op_efficiency", "must be a mapping with a 'default' entry")
    valid = {op.value for op in OpKind} | {DEFAULT_EFFICIENCY_KEY}
    efficiency: dict[str, float] = {}
    for key in table:
        if not isinstance(key, str) or key not in valid:
            raise reader.fail(f"op_efficiency.{key}", f"unknown op kind; valid: {sorted(valid)}")
        value = reader.number(f"op_efficiency.{key}")
        if value is not None and value > 1:
            raise reader.fail(f"op_efficiency.{key}", f"value must be <= 1, got {value}")
        efficiency[key] = value  # type: ignore[assignment]
    return efficiency


def _platform_ops(reader: _Reader) -> frozenset[OpKind] | None:
    ops = reader.get("ops")
    if ops == "all":
        return None
    if not isinstance(ops, list) or not ops:
        raise reader.fail("ops", "must be 'all' or a list of op kinds")
    valid = {op.value: op for op in OpKind}
    for name in ops:
        if not isinstance(name, str) or name not in valid:
            raise reader.fail("ops", f"unknown op kind {_short(name)}; valid: {', '.join(valid)}")
    if OpKind.INPUT.value not in ops:
        raise reader.fail("ops", "must include 'input'")
    reader.text("ops_source")
    return frozenset(valid[name] for name in ops)


def _platform_runtime(reader: _Reader) -> RuntimeSpec:
    """The ``runtime`` section: engine, delegate, options, export_with (all but engine
    optional); a missing section means LiteRT on the CPU."""
    section = reader.get("runtime", required=False)
    if section is None:
        return RuntimeSpec()
    if not isinstance(section, Mapping):
        raise reader.fail("runtime", "must be a mapping {engine: ..., delegate: ..., options: ...}")
    for key in section:
        if key not in RUNTIME_KEYS:
            raise reader.fail(f"runtime.{key}", f"unknown key; valid: {', '.join(RUNTIME_KEYS)}")
    engine = reader.text("runtime.engine")
    if engine not in ENGINES:
        valid = ", ".join(ENGINES)
        raise reader.fail("runtime.engine", f"unknown engine {engine!r}; valid: {valid}")
    options = reader.get("runtime.options", required=False) or {}
    if not isinstance(options, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
        for k, v in options.items()
    ):
        raise reader.fail("runtime.options", "must map option names to strings or numbers")
    export_with = reader.text("runtime.export_with", required=False, default="") or None
    return RuntimeSpec(
        engine=engine,
        delegate=reader.text("runtime.delegate", required=False, default="")
        or ENGINE_DELEGATES.get(engine),
        options=MappingProxyType({k: str(v) for k, v in options.items()}),
        export_with=export_with,
        host=reader.text("runtime.host", required=False, default="") or None,
    )


def parse_platform(path: Path, data: Mapping[str, Any]) -> Platform:
    """Validate one parsed platform descriptor."""
    reader = _Reader(path, data)
    _check_header(reader, "platform")
    reader.check_keys(PLATFORM_KEYS)
    default_precision, gops = _platform_precisions(reader)
    param_cache = _mib(reader, "memory.param_cache_mib", required=False)
    offchip = reader.number("memory.offchip_bandwidth_gbps", required=param_cache is not None)
    platform = Platform(
        name=reader.name(),
        description=reader.text("description"),
        path=str(path),
        default_precision=default_precision,
        compute_gops=MappingProxyType(gops),
        op_efficiency=MappingProxyType(_platform_efficiency(reader)),
        supported_ops=_platform_ops(reader),
        memory_bandwidth_gbps=reader.number("memory.bandwidth_gbps"),  # type: ignore[arg-type]
        ram_bytes=_mib(reader, "memory.ram_mib"),  # type: ignore[arg-type]
        flash_bytes=_mib(reader, "memory.flash_mib", required=False),
        param_cache_bytes=param_cache,
        offchip_bandwidth_gbps=offchip,
        layer_overhead_ms=reader.number("overhead.layer_ms", positive=False),  # type: ignore[arg-type]
        invoke_overhead_ms=reader.number("overhead.invoke_ms", positive=False),  # type: ignore[arg-type]
        active_power_w=reader.number("power.active_w"),  # type: ignore[arg-type]
        idle_power_w=reader.number("power.idle_w", positive=False),  # type: ignore[arg-type]
        sources=MappingProxyType(dict(reader.sources)),
        runtime=_platform_runtime(reader),
    )
    if platform.idle_power_w > platform.active_power_w:
        raise reader.fail("power.idle_w", "must not exceed power.active_w")
    return platform


def parse_link(path: Path, data: Mapping[str, Any]) -> Link:
    """Validate one parsed link descriptor."""
    reader = _Reader(path, data)
    _check_header(reader, "link")
    reader.check_keys(LINK_KEYS)
    framed = reader.get("frame", required=False) is not None
    payload = reader.whole("frame.payload_bytes") if framed else None
    encoding = reader.text("encoding", required=False, default=NATIVE_ENCODING)
    if encoding != NATIVE_ENCODING and encoding not in PRECISION_DTYPES:
        valid = [NATIVE_ENCODING, *PRECISION_DTYPES]
        raise reader.fail("encoding", f"unknown encoding {encoding!r}; valid: {', '.join(valid)}")
    power = reader.get("power")
    if not isinstance(power, Mapping) or len({"active_w", "energy_per_bit_nj"} & set(power)) != 1:
        raise reader.fail("power", "needs exactly one of 'active_w' or 'energy_per_bit_nj'")
    bits = reader.number("bits_per_byte", required=False)
    return Link(
        name=reader.name(),
        description=reader.text("description"),
        path=str(path),
        bandwidth_bps=reader.number("bandwidth_bps"),  # type: ignore[arg-type]
        bits_per_byte=8.0 if bits is None else bits,
        frame_payload_bytes=None if payload is None else int(payload),
        frame_overhead_bytes=(reader.whole("frame.overhead_bytes", positive=False) or 0)
        if framed
        else 0,
        frame_gap_us=(reader.number("frame.gap_us", required=False, positive=False) or 0.0)
        if framed
        else 0.0,
        message_latency_ms=reader.number("message_latency_ms", positive=False),  # type: ignore[arg-type]
        encoding=encoding,
        active_power_w=reader.number("power.active_w", required=False),
        energy_per_bit_nj=reader.number("power.energy_per_bit_nj", required=False),
        sources=MappingProxyType(dict(reader.sources)),
    )


_D = TypeVar("_D", "Platform", "Link")


# -- registry --------------------------------------------------------------------------------
def search_dirs() -> tuple[Path, ...]:
    """Descriptor directories, user ones (``HWSCHED_HARDWARE_PATH``) first."""
    extra = [Path(p) for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    return (*extra, BUILTIN_DIR)


def _registry(kind: str) -> dict[str, Path]:
    """``name -> file`` for one kind; an earlier directory wins a name clash."""
    found: dict[str, Path] = {}
    for base in search_dirs():
        for path in sorted((base / _KIND_DIRS[kind]).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def platform_names() -> tuple[str, ...]:
    return tuple(_registry("platform"))


def link_names() -> tuple[str, ...]:
    return tuple(_registry("link"))


def _resolve(kind: str, name_or_path: str | os.PathLike[str]) -> Path:
    text = os.fspath(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or os.sep in text or candidate.is_file():
        if not candidate.is_file():
            raise DescriptorError(f"{candidate}: {kind} descriptor file does not exist")
        return candidate
    registry = _registry(kind)
    if text not in registry:
        raise UnknownNameError(kind, text, tuple(registry))
    return registry[text]


def load_platform(name_or_path: str | os.PathLike[str] | Platform) -> Platform:
    """A platform by registry name or descriptor path (a :class:`Platform` passes through)."""
    if isinstance(name_or_path, Platform):
        return name_or_path
    path = _resolve("platform", name_or_path)
    return _check_name(path, name_or_path, parse_platform(path, _parse_yaml(path)))


def load_link(name_or_path: str | os.PathLike[str] | Link) -> Link:
    """A link by registry name or descriptor path (a :class:`Link` passes through)."""
    if isinstance(name_or_path, Link):
        return name_or_path
    path = _resolve("link", name_or_path)
    return _check_name(path, name_or_path, parse_link(path, _parse_yaml(path)))


#: ``rpi4*3`` in a board list stands for three identical boards.
REPEAT_MARK = "*"


def parse_board_list(text: str) -> tuple[str, ...]:
    """``"rpi4*2,jetson_nano"`` -> ``("rpi4", "rpi4", "jetson_nano")``: one entry per board,
    repeats written out; every name (or descriptor file) is checked to load, so a typo fails
    here, before a model is built.

    >>> parse_board_list("rpi4*2, jetson_nano")
    ('rpi4', 'rpi4', 'jetson_nano')
    """
    boards: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        name, mark, count_text = item.rpartition(REPEAT_MARK)
        if not mark:
            name, count_text = item, "1"
        name = name.strip()
        if not name:
            raise DescriptorError(f"board list {text!r}: empty board name in {item!r}")
        try:
            count = int(count_text)
        except ValueError:
            count = 0
        if count < 1:
            raise DescriptorError(
                f"board list {text!r}: {item!r} repeats a board {count_text.strip()!r} times; "
                f"write NAME{REPEAT_MARK}N with a whole number N >= 1"
            )
        boards.extend([name] * count)
    for name in dict.fromkeys(boards):
        load_platform(name)
    return tuple(boards)


def _check_name(path: Path, requested: object, descriptor: _D) -> _D:
    """A registry file must be named after its descriptor, or lookups by name would lie."""
    if os.fspath(requested) == path.stem and descriptor.name != path.stem:  # type: ignore[arg-type]
        raise DescriptorError(
            f"{path}: field 'name': is {descriptor.name!r} but the file is named {path.stem!r}"
        )
    return descriptor


def runnable_platform(name_or_path: str | os.PathLike[str] | Platform, role: str) -> Platform:
    """The descriptor a stage on this platform is exported with: the platform itself when
    hwsched runs its engine, else the runnable descriptor its ``runtime.export_with`` names
    (the Jetson GPU descriptors price TensorRT; their CPU descriptors are the default for
    export). A platform with neither is refused in one line naming the engine."""
    platform = load_platform(name_or_path)
    spec = platform.runtime
    if spec.runnable:
        return platform
    if spec.export_with is None:
        raise DescriptorError(
            f"{role}: {platform.name} prices engine {spec.engine!r}, which hwsched does not run, "
            "and names no runnable descriptor to export to (runtime.export_with)"
        )
    target = load_platform(spec.export_with)
    if not target.runtime.runnable:
        raise DescriptorError(f"{platform.path}: field 'runtime.export_with': "
                              f"{target.name!r} is not runnable either")
    return target


def load_host(platform: Platform) -> Platform | None:
    """The descriptor ``runtime.host`` names (the CPU an accelerator is attached to), or None;
    a name that is no platform is one line naming the field, found before anything is built."""
    if platform.runtime.host is None:
        return None
    try:
        return load_platform(platform.runtime.host)
    except (UnknownNameError, DescriptorError) as error:
        raise DescriptorError(f"{platform.path}: field 'runtime.host': {error}") from None


def load_descriptor(name_or_path: str | os.PathLike[str]) -> Platform | Link:
    """A platform or link: a file is parsed by its ``kind``; a name is looked up in both."""
    text = os.fspath(name_or_path)
    if Path(text).is_file() or text.endswith((".yaml", ".yml")):
        path = _resolve("platform", text)
        data = _parse_yaml(path)
        if data.get("kind") == "link":
            return parse_link(path, data)
        return parse_platform(path, data)
    if text in _registry("platform"):
        return load_platform(text)
    if text in _registry("link"):
        return load_link(text)
    raise UnknownNameError("platform or link", text, (*platform_names(), *link_names()))


def descriptor_to_dict(descriptor: Platform | Link) -> dict[str, Any]:
    """A JSON-ready view of a loaded descriptor (numbers in the units of the field names)."""
    out: dict[str, Any] = {}
    for name in descriptor.__dataclass_fields__:
        value = getattr(descriptor, name)
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, RuntimeSpec):
            value = {"engine": value.engine, "delegate": value.delegate,
                     "options": dict(value.options), "export_with": value.export_with,
                     "runnable": value.runnable}
        elif isinstance(value, frozenset):
            value = sorted(op.value for op in value)
        out[name] = value
    out["kind"] = "platform" if isinstance(descriptor, Platform) else "link"
    return out


def with_measured_power(
    platform: Platform, active_power_mw: float, idle_power_mw: float, source: str
) -> Platform:
    """A copy of ``platform`` whose active and idle power come from a measurement.

    Used with calibrations from ``hwsched power calibrate`` so that the energy the analysis
    predicts rests on measured watts; ``source`` (e.g. the power log) replaces the descriptor's
    citation for both fields.
    """
    if active_power_mw <= 0 or idle_power_mw < 0 or idle_power_mw > active_power_mw:
        raise DescriptorError(
            f"{source}: measured power of {platform.name!r} must satisfy "
            f"0 <= idle ({idle_power_mw} mW) <= active ({active_power_mw} mW)"
        )
    sources = dict(platform.sources)
    sources["power.active_w"] = f"source: measured, {source}"
    sources["power.idle_w"] = f"source: measured, {source}"
    return replace(
        platform,
        active_power_w=active_power_mw / MW_PER_W,
        idle_power_w=idle_power_mw / MW_PER_W,
        sources=MappingProxyType(sources),
    )
