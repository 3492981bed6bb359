"""Convert a stage's Keras model to TFLite in fp32, fp16 or full-integer int8 (batch 1).

- ``fp32``: plain conversion.
- ``fp16``: weights stored as float16 (``Optimize.DEFAULT`` + ``supported_types=[float16]``);
  inputs and outputs stay float32.
- ``int8``: full-integer quantization with int8 inputs and outputs, calibrated on a
  representative dataset of dicts keyed by signature input name (TFLite orders the inputs of a
  multi-input model by name, so a positional list would feed the wrong tensors).

The converter prints hundreds of lines from C++ and Python under Keras 3; everything it writes
to the stdout/stderr file descriptors is captured and only shown when conversion fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hwsched.deployment import PRECISIONS
from hwsched.errors import ExportError

#: Lines of captured converter output quoted in an error message.
ERROR_TAIL_LINES = 3


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Send fd 1 and fd 2 to a temporary file; the yielded list gets its text on exit.

    Python-level redirection is not enough: MLIR and the calibrator print from C++.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    text: list[str] = []
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def convert_stage(
    model: Any,
    precision: str,
    representative: Sequence[Mapping[str, Any]] | None = None,
    label: str = "stage",
) -> bytes:
    """The ``.tflite`` flatbuffer of a Keras stage model in ``precision``."""
    if precision not in PRECISIONS:
        valid = ", ".join(PRECISIONS)
        raise ExportError(f"{label}: unknown precision {precision!r}; valid: {valid}")
    if precision == "int8" and not representative:
        raise ExportError(f"{label}: int8 conversion needs calibration samples")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        samples = list(representative or ())
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with captured_output() as log:
        try:
            data = converter.convert()
        except Exception as error:  # the converter raises many kinds (ConverterError, …)
            failure = error
        else:
            failure = None
    if failure is not None:
        lines = [line.strip() for line in "".join(log).splitlines() if line.strip()]
        tail = " | ".join(lines[-ERROR_TAIL_LINES:])
        first = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
        raise ExportError(
            f"{label}: TFLite conversion to {precision} failed: {first}"
            + (f" (converter said: {tail})" if tail else "")
        )
    return bytes(data)
