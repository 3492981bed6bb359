"""Run one ``.tflite`` stage with LiteRT through its signature runner, by tensor name.

``ai_edge_litert`` is the default runtime; ``tflite_runtime`` (which boards may carry) is the
fallback. Inputs and outputs are looked up in the ``serving_default`` signature (or the only
one), so multi-input stages never depend on TFLite's name-sorted tensor order. Stages run on
LiteRT's builtin kernels here (see :func:`hwsched.litert.open_interpreter`): this module serves
proofs and accuracy measurements, where the split and its reference must run the same kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsched.deployment import Quantization, TensorSpec
from hwsched.errors import ExportError
from hwsched.litert import flatten_message, open_interpreter

#: numpy dtype name -> IR dtype name, for the dtypes a signature may carry.
_DTYPE_NAMES = {"float32": "float32", "float16": "float16", "int8": "int8", "uint8": "uint8",
                "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool"}


@dataclass(frozen=True)
class SignatureIO:
    """A stage's inputs and outputs as read from its signature (names are signature names)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class StageProgram:
    """One loaded stage: call it with ``{signature name: array}``, get the same back."""

    def __init__(self, data: bytes, label: str = "stage") -> None:
        self.label = label
        try:
            self.interpreter = open_interpreter(content=data, threads=1, delegates=False)
        except (ValueError, RuntimeError) as error:
            raise ExportError(
                f"{label}: LiteRT cannot load the model ({flatten_message(error)})"
            ) from None
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ExportError(f"{label}: the model has no signature; cannot map tensors by name")
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        self.runner = self.interpreter.get_signature_runner(key)
        self.io = SignatureIO(
            inputs=_specs(self.runner.get_input_details()),
            outputs=_specs(self.runner.get_output_details()),
        )

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {spec.name for spec in self.io.inputs}
        if set(feeds) != expected:
            raise ExportError(
                f"{self.label}: inputs {sorted(feeds)} do not match the signature's "
                f"{sorted(expected)}"
            )
        outputs = self.runner(**{name: np.ascontiguousarray(v) for name, v in feeds.items()})
        # copies: the runner's arrays are views into the interpreter's arena
        return {name: np.array(value) for name, value in outputs.items()}


def _specs(details: Mapping[str, Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
    specs = []
    for name in sorted(details):
        detail = details[name]
        dtype = _DTYPE_NAMES.get(np.dtype(detail["dtype"]).name)
        if dtype is None:
            raise ExportError(f"signature tensor {name!r} has unsupported dtype {detail['dtype']}")
        scale, zero_point = detail.get("quantization", (0.0, 0))
        quantization = Quantization(float(scale), int(zero_point)) if scale else None
        specs.append(TensorSpec(name=name, shape=tuple(int(d) for d in detail["shape"]),
                                dtype=dtype, quantization=quantization, tflite_name=name))
    return tuple(specs)


def read_signature(data: bytes, label: str = "stage") -> SignatureIO:
    return StageProgram(data, label).io
