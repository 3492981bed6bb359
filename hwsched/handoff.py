"""The hand-off between stages: what happens to a crossing tensor, and how to apply it.

One module, numpy only, used by export (the chain that proves a split) and by the runtime (the
stages that run it): both apply the plan's own hand-off steps, so a stage on a board is fed
exactly the bytes the proof fed it.

The producer's output spec and the consumer's input spec decide the action:

- ``none``: same dtype and, for integer tensors, the same zero point and the same scale to
  float32 precision: the raw bytes pass unchanged (the common int8 → int8 case after calibrating
  on upstream activations, where the two calibrations may land one float32 ulp apart; reading a
  code with a scale that differs by a few ulps moves its value by under 1e-5 of a step);
- ``requantize``: both quantized with different parameters:
  ``q2 = round((q1 - z1) * s1 / s2) + z2``;
- ``quantize``: a float producer feeding an int8 consumer;
- ``dequantize``: an int8 producer feeding a float consumer;
- ``cast``: two float (or unquantized integer) types.

TFLite rounds half away from zero, and so does :func:`quantize`.

>>> from hwsched.deployment import Quantization, TensorSpec
>>> a = TensorSpec("t", (1, 2), "int8", Quantization(0.5, 0))
>>> b = TensorSpec("t", (1, 2), "int8", Quantization(0.25, -1))
>>> r = handoff(a, b)
>>> r.action, apply_handoff(np.array([3, -2], dtype=np.int8), r).tolist()
('requantize', [5, -5])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hwsched.deployment import LinkPlan, Quantization, Requantization, StagePlan, TensorSpec
from hwsched.errors import PlanError

#: Integer dtypes a quantized tensor may have, with their value ranges.
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}

#: (consumer stage index, IR tensor name) → the plan's hand-off step for that tensor.
LinkSteps = Mapping[tuple[int, str], Requantization]


def handoff(producer: TensorSpec, consumer: TensorSpec) -> Requantization:
    """The action that turns the producer's output into the consumer's input."""
    pq, cq = producer.quantization, consumer.quantization
    if pq is not None and cq is not None:
        same = _same_grid(pq, cq) and producer.dtype == consumer.dtype
        action = "none" if same else "requantize"
    elif pq is None and cq is not None:
        action = "quantize"
    elif pq is not None and cq is None:
        action = "dequantize"
    else:
        action = "none" if producer.dtype == consumer.dtype else "cast"
    return Requantization(producer.name, pq, cq, action)


#: Scales that differ by less than this (relative) are the same grid: a few float32 ulps.
SAME_SCALE_RTOL = 1e-6


def _same_grid(a: Quantization, b: Quantization) -> bool:
    """Whether codes of ``a`` mean the same values under ``b`` (to float32 precision).

    >>> one_ulp_apart = Quantization(0.0148168196901679, -128), Quantization(0.0148168206214, -128)
    >>> _same_grid(*one_ulp_apart)
    True
    >>> _same_grid(Quantization(0.5, 0), Quantization(0.5, 1))
    False
    """
    return a.zero_point == b.zero_point and abs(a.scale - b.scale) <= SAME_SCALE_RTOL * abs(b.scale)


def quantize(values: np.ndarray, q: Quantization, dtype: str = "int8") -> np.ndarray:
    """Round half away from zero as ``trunc(x + copysign(0.5, x))`` — the same float64 value
    as ``sign(x) * floor(|x| + 0.5)`` (negation is exact) — in place in one buffer: a stage
    converts its whole input every frame, and each temporary of a large tensor costs more than
    the arithmetic."""
    low, high = INT_RANGES[dtype]
    scaled = np.array(values, dtype=np.float64)  # a copy of its own, also of a float64 input
    scaled /= q.scale
    scaled += np.copysign(0.5, scaled)
    np.trunc(scaled, out=scaled)
    scaled += q.zero_point
    np.clip(scaled, low, high, out=scaled)
    return scaled.astype(dtype)


def dequantize(values: np.ndarray, q: Quantization) -> np.ndarray:
    return ((np.asarray(values, dtype=np.float64) - q.zero_point) * q.scale).astype(np.float32)


def _requantize(values: np.ndarray, step: Requantization, to_dtype: str) -> np.ndarray:
    """One-byte codes through a table of all 256 codes converted (the same results, for a
    third of the arithmetic's time on a 220 K element tensor here); wider ones by arithmetic."""
    source, target = step.from_quantization, step.to_quantization
    assert source is not None and target is not None
    values = np.asarray(values)
    if values.dtype.kind in "iu" and values.dtype.itemsize == 1:
        codes = np.arange(256, dtype=np.uint8).view(values.dtype)
        return quantize(dequantize(codes, source), target, to_dtype)[values.view(np.uint8)]
    return quantize(dequantize(values, source), target, to_dtype)


def apply_handoff(
    values: np.ndarray, step: Requantization, to_dtype: str = "int8"
) -> np.ndarray:
    """The consumer's input from the producer's output (``values`` as the producer made it)."""
    if step.action == "none":
        return values
    if step.action == "dequantize":
        assert step.from_quantization is not None
        dequantized = dequantize(values, step.from_quantization)
        # a float consumer may take another float type; an integer to_dtype is the default
        return dequantized.astype(to_dtype) if np.dtype(to_dtype).kind == "f" else dequantized
    if step.action == "quantize":
        assert step.to_quantization is not None
        return quantize(values, step.to_quantization, to_dtype)
    if step.action == "requantize":
        return _requantize(values, step, to_dtype)
    if step.action == "cast":
        return np.asarray(values).astype(to_dtype)
    raise PlanError(f"hand-off of tensor {step.tensor!r}: unknown action {step.action!r}")


def convert(values: np.ndarray, wire: TensorSpec, target: TensorSpec) -> np.ndarray:
    """A tensor made as ``wire`` says, as ``target`` wants it (for tensors no link step
    covers: model inputs, which the source and the chain feed from float data).

    Equal specs pass the very same array (raw int8 bytes with matching scale and zero point).
    """
    return apply_handoff(values, handoff(wire, target), target.dtype)


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


def link_steps(links: Sequence[LinkPlan]) -> dict[tuple[int, str], Requantization]:
    """Every hand-off step of the plan's links, keyed by (consumer stage, tensor)."""
    return {(link.to_stage, step.tensor): step for link in links for step in link.requantize}


def step_into(steps: LinkSteps, stage: int, tensor: str) -> Requantization:
    """The plan's step for ``tensor`` entering ``stage``; a plan without one is refused."""
    try:
        return steps[(stage, tensor)]
    except KeyError:
        raise PlanError(
            f"plan: link into stage {stage} has no hand-off entry for tensor {tensor!r}; "
            "re-export the plan"
        ) from None


def check_handoffs(stages: Sequence[StagePlan], links: Sequence[LinkPlan]) -> None:
    """Every tensor a stage reads from an upstream stage has a link step, and that step is the
    one the two specs call for: a plan whose steps and stage files disagree is refused before a
    frame runs, instead of being run one way by the proof and another way on the boards."""
    steps = link_steps(links)
    outputs = {(s.index, o.name): o for s in stages for o in s.outputs}
    for stage in stages:
        for spec in stage.inputs:
            if spec.source is None or spec.source.is_model_input:
                continue
            step = step_into(steps, stage.index, spec.name)
            producer = outputs.get((spec.source.stage, spec.source.tensor))
            if producer is None:
                raise PlanError(
                    f"plan: stage {stage.index} reads {spec.name!r} from stage "
                    f"{spec.source.stage}, which has no such output"
                )
            expected = handoff(producer, spec)
            if not _agrees(step, expected):
                raise PlanError(
                    f"plan: link into stage {stage.index}, tensor {spec.name!r}: hand-off "
                    f"{step.action!r} does not match the stage specs, which call for "
                    f"{expected.action!r}; re-export the plan"
                )


def _agrees(step: Requantization, expected: Requantization) -> bool:
    """Whether a plan's recorded step is the one the specs call for. A ``requantize`` between
    two grids that are the same to float32 precision is what plans exported before such grids
    became ``none`` record; it maps every code to itself, so those plans stay valid."""
    quantizations = (step.from_quantization, step.to_quantization)
    same = quantizations == (expected.from_quantization, expected.to_quantization)
    old_same_grid = step.action == "requantize" and expected.action == "none"
    return same and (step.action == expected.action or old_same_grid)
