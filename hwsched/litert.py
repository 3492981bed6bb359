"""LiteRT access shared by export (verification) and the runtime (stages, profiling).

``ai-edge-litert`` is the default; ``tflite-runtime``, which some boards carry (it needs
numpy < 2), is the fallback. No TensorFlow is imported here.

XNNPACK, LiteRT's default CPU delegate, refuses some int8 graphs at prepare time (e.g. when a
requantization scale falls outside the range its kernels support), and which graphs depends on
calibration. Such a model still runs on LiteRT's builtin kernels, so :func:`open_interpreter`
retries without the default delegates instead of failing, and logs that it did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hwsched.errors import DependencyError

log = logging.getLogger(__name__)


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


def open_interpreter(
    path: str | Path | None = None,
    content: bytes | None = None,
    threads: int = 1,
    delegates: bool = True,
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
