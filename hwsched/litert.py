"""LiteRT access shared by export (verification) and the runtime (stages, profiling).

``ai-edge-litert`` is the default; ``tflite-runtime``, which some boards carry (it needs
numpy < 2), is the fallback. No TensorFlow is imported here.

XNNPACK, LiteRT's default CPU delegate, refuses some int8 graphs at prepare time (e.g. when a
requantization scale falls outside the range its kernels support), and which graphs depends on
calibration. Such a model still runs on LiteRT's builtin kernels, so :func:`open_interpreter`
retries without the default delegates instead of failing, and logs that it did.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hwsched.errors import HwschedError

log = logging.getLogger(__name__)


def _runtime() -> Any:
    try:
        from ai_edge_litert import interpreter as module
    except ImportError:
        try:
            from tflite_runtime import interpreter as module
        except ImportError:
            raise HwschedError(
                "no TFLite runtime: pip install ai-edge-litert (or tflite-runtime with numpy<2)"
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
