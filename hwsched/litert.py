"""LiteRT access shared by export (verification) and the runtime (stages, profiling).

``ai-edge-litert`` is the default; ``tflite-runtime``, which some boards carry (it needs
numpy < 2), is the fallback. No TensorFlow is imported here.

XNNPACK, LiteRT's default CPU delegate, refuses some int8 graphs at prepare time (e.g. when a
requantization scale falls outside the range its kernels support), and which graphs depends on
calibration. Such a model still runs on LiteRT's builtin kernels, so :func:`open_interpreter`
retries without the default delegates instead of failing, and logs that it did.

An accelerator delegate (:class:`DelegateSpec`: ``edgetpu``, ``gpu`` or a library path, with
``key=value`` options) is loaded with ``load_delegate``. A library that is missing or is not a
delegate, or a delegate that takes none of the graph, raises :class:`DelegateError` in one
line; a delegate that takes only part of it logs a warning naming the ops left on the CPU, since
the stage then runs, only slower than priced. ``HWSCHED_DELEGATE`` (set by ``emulate`` and
``profile --delegate``) is the default for every interpreter opened with delegates on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hwsched.errors import DelegateError, DependencyError

log = logging.getLogger(__name__)

#: Environment variable with a delegate spec every interpreter uses unless given another.
DELEGATE_ENV = "HWSCHED_DELEGATE"
#: A delegate spec meaning "no delegate: LiteRT's CPU kernels".
NO_DELEGATE = "none"
#: Libraries of the delegates known by name (Linux names, as the vendors ship them).
DELEGATE_LIBRARIES: Mapping[str, str] = MappingProxyType({
    "edgetpu": "libedgetpu.so.1",
    "gpu": "libtensorflowlite_gpu_delegate.so",
})


@dataclass(frozen=True)
class DelegateSpec:
    """A LiteRT delegate: its name as given, the library to load and its options.

    >>> DelegateSpec.parse("edgetpu:device=usb").library
    'libedgetpu.so.1'
    >>> dict(DelegateSpec.parse("/opt/libmy.so:a=1,b=x").options)
    {'a': '1', 'b': 'x'}
    """

    name: str
    library: str
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, text: str) -> DelegateSpec:
        """``NAME|PATH[:key=value,…]``; raises :class:`DelegateError` on a malformed spec."""
        head, _, tail = text.partition(":")
        if not head:
            raise DelegateError(f"delegate {text!r}: give edgetpu, gpu or a library path")
        options: dict[str, str] = {}
        for item in filter(None, tail.split(",")):
            key, equals, value = item.partition("=")
            if not equals or not key:
                raise DelegateError(f"delegate {text!r}: option {item!r} is not key=value")
            options[key] = value
        return cls(head, DELEGATE_LIBRARIES.get(head, head), MappingProxyType(options))

    @classmethod
    def of(cls, name: str | None, options: Mapping[str, str] | None = None) -> DelegateSpec | None:
        """The spec for a plan's ``delegate``/``delegate_options`` (None: no delegate)."""
        if name is None or name == NO_DELEGATE:
            return None
        spec = cls.parse(name)
        return cls(spec.name, spec.library, MappingProxyType({**spec.options, **(options or {})}))

    def text(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}:{extra}" if extra else self.name


def env_delegate() -> DelegateSpec | None:
    """The delegate named by ``HWSCHED_DELEGATE``, if any."""
    text = os.environ.get(DELEGATE_ENV, "").strip()
    return None if not text or text == NO_DELEGATE else DelegateSpec.parse(text)


def _runtime() -> Any:
    try:
        from ai_edge_litert import interpreter as module
    except ImportError:
        try:
            from tflite_runtime import interpreter as module
        except ImportError:
            raise DependencyError(
                "no TFLite runtime: pip install 'hwsched[runner]' (ai-edge-litert), or "
                "tflite-runtime with numpy<2"
            ) from None
    return module


def interpreter_class() -> Any:
    return _runtime().Interpreter


def runtime_label() -> str:
    """Which interpreter this process runs stages on, for the runner's log and ready line."""
    module = _runtime()
    package = "ai-edge-litert" if module.__name__.startswith("ai_edge_litert") else "tflite-runtime"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"LiteRT ({package} {version(package)})"
    except PackageNotFoundError:
        return f"LiteRT ({package})"


def open_interpreter(
    path: str | Path | None = None,
    content: bytes | None = None,
    threads: int = 1,
    delegates: bool = True,
    delegate: DelegateSpec | None = None,
) -> Any:
    """An Interpreter with its tensors allocated; without XNNPACK if XNNPACK refuses the graph.

    ``delegates=False`` always uses LiteRT's builtin reference kernels: proofs of equivalence
    use it so that a split and its reference run the same kernels (XNNPACK and the builtin int8
    kernels may round one quantization step apart). Raises ``ValueError``/``RuntimeError`` from
    LiteRT when the model cannot run at all.
    """
    module = _runtime()
    kwargs = {"model_path": None if path is None else str(path), "model_content": content,
              "num_threads": threads}
    if not delegates:
        return _builtin_kernels(module, kwargs)
    delegate = delegate or env_delegate()
    if delegate is not None:
        return _with_delegate(module, kwargs, delegate, str(path or "the model"))
    interpreter = module.Interpreter(**kwargs)
    try:
        interpreter.allocate_tensors()
        return interpreter
    except RuntimeError as error:
        if "XNNPACK" not in str(error) or not hasattr(module, "OpResolverType"):
            raise
        log.warning("XNNPACK cannot prepare %s (%s); running on builtin kernels",
                    path or "the model", str(error).splitlines()[0])
    return _builtin_kernels(module, kwargs)


def _builtin_kernels(module: Any, kwargs: dict[str, Any]) -> Any:
    if not hasattr(module, "OpResolverType"):  # old tflite-runtime: no choice to make
        interpreter = module.Interpreter(**kwargs)
    else:
        interpreter = module.Interpreter(
            **kwargs,
            experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    interpreter.allocate_tensors()
    return interpreter


def _with_delegate(module: Any, kwargs: dict[str, Any], spec: DelegateSpec, where: str) -> Any:
    loaded = load_delegate(spec)
    try:
        interpreter = module.Interpreter(**kwargs, experimental_delegates=[loaded])
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise DelegateError(f"{where}: delegate {spec.name!r} refuses the graph: "
                            f"{_first_line(error)}") from None
    ops = interpreter._get_ops_details()
    left = ops_left_on_cpu(ops)
    if len(left) == sum(op["op_name"] != "DELEGATE" for op in ops):
        raise DelegateError(f"{where}: delegate {spec.name!r} took none of the graph's ops "
                            f"({', '.join(sorted(set(left)))} would all run on the CPU)")
    if left:
        log.warning("%s: delegate %r left %d op(s) on the CPU: %s", where, spec.name, len(left),
                    ", ".join(left))
    return interpreter


def load_delegate(spec: DelegateSpec) -> Any:
    """The loaded delegate; a missing library or one that is no delegate is one line.

    The library is opened with ctypes first: LiteRT's own ``load_delegate`` on a library
    without the plugin entry points fails inside its destructor too, printing tracebacks.
    """
    import ctypes

    try:
        library = ctypes.CDLL(spec.library)
    except OSError as error:
        raise DelegateError(f"delegate {spec.name!r}: cannot load {spec.library} (is the "
                            f"library installed?): {_first_line(error)}") from None
    if not all(hasattr(library, symbol) for symbol in _PLUGIN_SYMBOLS):
        raise DelegateError(f"delegate {spec.name!r}: {spec.library} is not a LiteRT delegate "
                            f"(it lacks {' / '.join(_PLUGIN_SYMBOLS)})")
    try:
        return _runtime().load_delegate(spec.library, dict(spec.options))
    except (OSError, ValueError, RuntimeError) as error:
        raise DelegateError(f"delegate {spec.name!r}: {spec.library} refused the options "
                            f"{dict(spec.options)}: {_first_line(error)}") from None


#: Entry points every external LiteRT delegate library exports.
_PLUGIN_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")


def ops_left_on_cpu(ops: list[dict[str, Any]]) -> list[str]:
    """Names of the graph's ops that no ``DELEGATE`` node took, in graph order.

    LiteRT keeps the original nodes beside the delegate nodes that replace them; a delegate
    node lists only its partition's boundary tensors, so its ops are found by walking back from
    its outputs to its inputs over the original producers.

    >>> ops = [{"op_name": "MUL", "inputs": [0], "outputs": [1]},
    ...        {"op_name": "CUMSUM", "inputs": [1], "outputs": [2]},
    ...        {"op_name": "DELEGATE", "inputs": [0], "outputs": [1]}]
    >>> ops_left_on_cpu(ops)
    ['CUMSUM']
    """
    original = [(i, op) for i, op in enumerate(ops) if op["op_name"] != "DELEGATE"]
    producer = {int(t): i for i, op in original for t in op["outputs"]}
    taken: set[int] = set()
    for node in ops:
        if node["op_name"] != "DELEGATE":
            continue
        boundary = {int(t) for t in node["inputs"]}
        pending = [int(t) for t in node["outputs"]]
        while pending:
            tensor = pending.pop()
            index = producer.get(tensor)
            if tensor in boundary or index is None or index in taken:
                continue
            taken.add(index)
            pending.extend(int(t) for t in ops[index]["inputs"])
    return [op["op_name"] for i, op in original if i not in taken]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def flatten_message(error: BaseException | str) -> str:
    """LiteRT's messages span lines (a C++ location, then the reason); one line for a user.

    >>> flatten_message("tensorflow/lite/core/subgraph.cc:1: bad\\n\\nNode number 3 failed.\\n")
    'tensorflow/lite/core/subgraph.cc:1: bad; Node number 3 failed.'
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def signature_tensors(path: Path) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
    """``{"inputs"|"outputs": {signature name: (shape, dtype)}}`` of a stage file's one
    signature, read with LiteRT (no TensorFlow)."""
    from hwsched.errors import PlanError

    try:
        with captured_stderr() as said:
            runner = open_interpreter(path=path, delegates=False).get_signature_runner()
            details = {"inputs": runner.get_input_details(),
                       "outputs": runner.get_output_details()}
    except (ValueError, RuntimeError, UnicodeDecodeError) as error:
        detail = flatten_message("\n".join([str(error), *said]))
        raise PlanError(f"{path}: LiteRT cannot load the stage: {detail}") from None
    return {
        role: {name: (tuple(int(d) for d in item["shape"]), item["dtype"].__name__)
               for name, item in found.items()}
        for role, found in details.items()
    }


def check_stage_signature(path: Path, stage: Any) -> None:
    """The plan's inputs and outputs of ``stage`` (a :class:`~hwsched.deployment.StagePlan`)
    are the stage file's own: same names, shapes and dtypes. A plan that lies about them would
    otherwise pass ``verify`` and fail, or silently reshape, at run time."""
    from hwsched.errors import PlanError

    found = signature_tensors(path)
    for role in ("inputs", "outputs"):
        tensors = found[role]
        for spec in getattr(stage, role):
            name = _signature_name(spec, tuple(tensors))
            where = f"{path}: stage {stage.index} {role[:-1]} {spec.name!r}"
            if name is None:
                raise PlanError(f"{where} is not in the stage file's signature {sorted(tensors)}")
            shape, dtype = tensors[name]
            if (tuple(spec.shape), spec.dtype) != (shape, dtype):
                raise PlanError(
                    f"{where}: plan.json says {list(spec.shape)} {spec.dtype}, the stage file "
                    f"has {list(shape)} {dtype}; re-export the plan"
                )


def _signature_name(spec: Any, names: tuple[str, ...]) -> str | None:
    """The signature name a runner feeds ``spec`` by (the same rule as the runtime's)."""
    if spec.tflite_name in names:
        return spec.tflite_name
    if spec.tflite_name is None and spec.name in names:
        return spec.name
    if spec.tflite_name is None and len(names) == 1:
        return names[0]
    return None


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 (LiteRT's ``ERROR: …`` lines,
    TensorFlow's C++ log) while the block runs; the yielded list holds the text afterwards, so
    that a failure can quote it in one line instead of letting it spill onto the terminal."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def check_loadable(data: bytes, label: str, error: type[Exception]) -> None:
    """LiteRT accepts ``data`` (its flatbuffer verifier and model builder run); else one
    ``error`` quoting LiteRT's reason on one line."""
    try:
        with captured_stderr() as said:
            interpreter_class()(model_content=data)
    except (ValueError, RuntimeError) as failure:
        detail = flatten_message("\n".join([*said, str(failure)]))
        raise error(f"{label}: LiteRT cannot load the model: {detail}") from None
