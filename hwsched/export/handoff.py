"""What happens to a crossing tensor between two stages, and how to apply it (numpy only).

The producer's output spec and the consumer's input spec decide the action:

- ``none``: same dtype and, for integer tensors, the same scale and zero point: the raw bytes
  pass unchanged (the common int8 → int8 case after calibrating on upstream activations);
- ``requantize``: both quantized with different parameters:
  ``q2 = round((q1 - z1) * s1 / s2) + z2``;
- ``quantize``: a float producer feeding an int8 consumer;
- ``dequantize``: an int8 producer feeding a float consumer.

TFLite rounds half away from zero, and so does :func:`quantize`.

>>> from hwsched.deployment import Quantization, TensorSpec
>>> a = TensorSpec("t", (1, 2), "int8", Quantization(0.5, 0))
>>> b = TensorSpec("t", (1, 2), "int8", Quantization(0.25, -1))
>>> r = handoff(a, b)
>>> r.action, apply_handoff(np.array([3, -2], dtype=np.int8), r).tolist()
('requantize', [5, -5])
"""

from __future__ import annotations

import numpy as np

from hwsched.deployment import Quantization, Requantization, TensorSpec

#: Integer dtypes a quantized tensor may have, with their value ranges.
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def handoff(producer: TensorSpec, consumer: TensorSpec) -> Requantization:
    """The action that turns the producer's output into the consumer's input."""
    pq, cq = producer.quantization, consumer.quantization
    if pq is not None and cq is not None:
        same = pq == cq and producer.dtype == consumer.dtype
        action = "none" if same else "requantize"
    elif pq is None and cq is not None:
        action = "quantize"
    elif pq is not None and cq is None:
        action = "dequantize"
    else:
        action = "none" if producer.dtype == consumer.dtype else "cast"
    return Requantization(producer.name, pq, cq, action)


def quantize(values: np.ndarray, q: Quantization, dtype: str = "int8") -> np.ndarray:
    low, high = INT_RANGES[dtype]
    scaled = np.asarray(values, dtype=np.float64) / q.scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + q.zero_point, low, high).astype(dtype)


def dequantize(values: np.ndarray, q: Quantization) -> np.ndarray:
    return ((np.asarray(values, dtype=np.float64) - q.zero_point) * q.scale).astype(np.float32)


def apply_handoff(
    values: np.ndarray, step: Requantization, to_dtype: str = "int8"
) -> np.ndarray:
    """The consumer's input from the producer's output (``values`` as the producer made it)."""
    if step.action == "none":
        return values
    if step.action == "dequantize":
        assert step.from_quantization is not None
        return dequantize(values, step.from_quantization)
    if step.action == "quantize":
        assert step.to_quantization is not None
        return quantize(values, step.to_quantization, to_dtype)
    if step.action == "requantize":
        assert step.from_quantization is not None and step.to_quantization is not None
        return quantize(dequantize(values, step.from_quantization), step.to_quantization, to_dtype)
    if step.action == "cast":
        return np.asarray(values).astype(to_dtype)
    raise ValueError(f"unknown hand-off action {step.action!r}")


def to_float(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A stage output as float32 (dequantized when it is quantized)."""
    if spec.quantization is not None:
        return dequantize(values, spec.quantization)
    return np.asarray(values, dtype=np.float32)


def from_float(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A float value as the stage input ``spec`` expects it (quantized when it is)."""
    if spec.quantization is not None:
        return quantize(values, spec.quantization, spec.dtype)
    return np.asarray(values).astype(spec.dtype)
