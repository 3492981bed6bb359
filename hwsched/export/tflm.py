"""MCU stages proven on TensorFlow Lite Micro: same outputs as LiteRT, measured arena, fits.

For every stage whose platform's engine is ``tflm`` (and every stage when ``--micro`` sources
are written), export runs the verification samples through the LiteRT chain, taps what each
such stage receives, and feeds exactly that to the stage on LiteRT (builtin kernels) and on TFLM.
The outputs must agree to within :data:`MAX_QUANT_STEPS` quantization steps for int8 (TFLM's
reference kernels and LiteRT's round alike but not always identically) and to float rounding
otherwise. The arena TFLM's recording allocator reports after the first inference is the stage's
``arena_bytes``; a stage whose arena does not fit the board's RAM, or whose flatbuffer does not
fit its flash (its RAM too, on a board without flash), is refused with both numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hwsched.deployment import LinkPlan, StagePlan
from hwsched.errors import EngineError, VerificationError
from hwsched.export.chain import load_chain
from hwsched.hardware import Platform, load_platform
from hwsched.tflm import MicroModel, subgraph_order

#: Largest disagreement between TFLM and LiteRT on an int8/uint8 output, in quantization steps:
#: the kernels round each requantization separately (digits_cnn's int8 MUL output after the
#: squeeze-excite branch differs by 2 steps on some inputs).
MAX_QUANT_STEPS = 2
#: A stateful stage keeps each engine's own rounding in its state: every variable carries the
#: last frames' difference into this frame, one more step each (measured: a stage holding two
#: int8 rings of sums differed by up to 3 steps over 32 frames, never growing).
STATE_QUANT_STEPS_PER_VARIABLE = 1


def quant_steps_allowed(data: bytes) -> int:
    """The int8 disagreement allowed between TFLM and LiteRT on a stage's outputs."""
    from hwsched.export.tflite_split import resource_variables

    return MAX_QUANT_STEPS + STATE_QUANT_STEPS_PER_VARIABLE * len(resource_variables(data))


#: Largest relative disagreement on a float output.
MAX_FLOAT_REL_DIFF = 1e-4


def is_micro_stage(stage: StagePlan) -> bool:
    return stage.engine == "tflm"


def check_micro_stages(
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    stage_bytes: Sequence[bytes],
    samples: Sequence[Mapping[str, np.ndarray]],
    platforms: Sequence[str | Platform],
    every_stage: bool = False,
) -> tuple[StagePlan, ...]:
    """``stages`` with ``arena_bytes`` and ``engine_verification`` set on each TFLM stage."""
    chosen = [s.index for s in stages if every_stage or is_micro_stage(s)]
    if not chosen:
        return tuple(stages)
    received = _tap_stage_inputs(stages, links, stage_bytes, samples, chosen)
    result = list(stages)
    for index in chosen:
        stage, data = stages[index], stage_bytes[index]
        where = f"stage {index} ({stage.platform})"
        model = MicroModel(data, where)
        check = _compare(stage, data, model, received[index], where)
        arena = model.arena().total_bytes
        check_fits(load_platform(platforms[index]), where, arena, len(data))
        result[index] = replace(stage, arena_bytes=arena, engine_verification=check)
    return tuple(result)


def _tap_stage_inputs(
    stages: Sequence[StagePlan], links: Sequence[LinkPlan], stage_bytes: Sequence[bytes],
    samples: Sequence[Mapping[str, np.ndarray]], chosen: Sequence[int],
) -> dict[int, list[dict[str, np.ndarray]]]:
    """What each chosen stage receives from the LiteRT chain, sample by sample."""
    chain = load_chain(stages, links, stage_bytes)
    received: dict[int, list[dict[str, np.ndarray]]] = {index: [] for index in chosen}

    def tap(index: int, values: Mapping[str, np.ndarray]) -> None:
        if index in received:
            received[index].append({name: np.array(v) for name, v in values.items()})

    for sample in samples:
        chain(sample, tap)
    return received


def _compare(stage: StagePlan, data: bytes, model: MicroModel,
             received: Sequence[Mapping[str, np.ndarray]], where: str) -> dict[str, Any]:
    from hwsched.export.litert import StageProgram

    litert = StageProgram(data, label=where)
    in_order, out_order = subgraph_order(data)
    by_signature = {spec.tflite_name: spec for spec in (*stage.inputs, *stage.outputs)}
    worst_steps, worst_abs = 0.0, 0.0
    for values in received:
        feeds = {sig: values[by_signature[sig].name] for sig in in_order}
        expected = litert(feeds)
        got = model.run([feeds[sig] for sig in in_order])
        for sig, value in zip(out_order, got, strict=True):
            steps, diff = _difference(by_signature[sig], expected[sig], value)
            worst_steps, worst_abs = max(worst_steps, steps), max(worst_abs, diff)
    check = {"engine": "tflm", "reference": "litert", "samples": len(received),
             "max_abs_diff": worst_abs, "max_quant_steps": worst_steps}
    quantized = any(spec.quantization for spec in stage.outputs)
    if (quantized and worst_steps > quant_steps_allowed(data)) or (
            not quantized and worst_steps > MAX_FLOAT_REL_DIFF):
        raise VerificationError(
            f"{where}: TensorFlow Lite Micro's outputs differ from LiteRT's by {worst_steps:g} "
            f"{'quantization steps' if quantized else '(relative)'} on the same inputs")
    return check


def _difference(spec: Any, expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(difference in quantization steps, or relative for floats; absolute difference)."""
    if expected.shape != got.shape:
        raise VerificationError(f"tensor {spec.name!r}: TFLite Micro returned shape "
                                f"{got.shape}, LiteRT {expected.shape}")
    diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    if spec.quantization is not None:
        return worst, worst * spec.quantization.scale
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    return (worst / scale if scale else worst), worst


def check_fits(platform: Platform, where: str, arena_bytes: int, model_bytes: int) -> None:
    """The measured arena in RAM and the model (weights) in flash, or both in RAM."""
    if platform.flash_bytes is not None:
        if model_bytes > platform.flash_bytes:
            raise EngineError(f"{where}: model {model_bytes:,} B exceeds {platform.name} flash "
                              f"{platform.flash_bytes:,} B")
        if arena_bytes > platform.ram_bytes:
            raise EngineError(f"{where}: TFLite Micro arena {arena_bytes:,} B (measured) exceeds "
                              f"{platform.name} RAM {platform.ram_bytes:,} B")
        return
    if arena_bytes + model_bytes > platform.ram_bytes:
        raise EngineError(f"{where}: TFLite Micro arena {arena_bytes:,} B (measured) + model "
                          f"{model_bytes:,} B exceed {platform.name} RAM {platform.ram_bytes:,} B")


# -- stateful plans: the whole chain on TFLM, and the whole model on TFLM --------------------
class MicroProgram:
    """A stage on TFLM behind :class:`~hwsched.export.litert.StageProgram`'s call (signature
    names in, signature names out), so a :class:`~hwsched.export.chain.Chain` can run every
    stage on TFLM. One TFLM interpreter for the program's life: resource variables persist."""

    def __init__(self, data: bytes, label: str) -> None:
        from hwsched.tflm import MicroSignatureRunner

        self.runner = MicroSignatureRunner(data, label)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner(**feeds)


def micro_chain(stages: Sequence[StagePlan], links: Sequence[LinkPlan],
                stage_bytes: Sequence[bytes]) -> Any:
    """The plan's chain with every stage on TensorFlow Lite Micro."""
    from hwsched.export.chain import Chain
    from hwsched.handoff import check_handoffs

    check_handoffs(stages, links)
    programs = tuple(MicroProgram(data, f"stage {stage.index} ({stage.file})")
                     for stage, data in zip(stages, stage_bytes, strict=True))
    return Chain(tuple(stages), tuple(links), programs)  # type: ignore[arg-type]


def micro_reference(loaded: Any) -> Any:
    """The unsplit ``.tflite`` on TFLM, on float model inputs (IR names), float outputs: TFLM
    takes tensors by position, and the reader keeps the subgraph's input and output order."""
    from hwsched.deployment import Quantization
    from hwsched.handoff import dequantize, quantize

    graph = loaded.graph
    model = MicroModel(loaded.tflite_bytes, f"{loaded.source} (whole model)")
    inputs = [graph.tensor(t.name) for layer in graph.input_layers for t in layer.outputs]
    outputs = [graph.tensor(name) for name in graph.outputs]

    def reference(sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = []
        for tensor in inputs:
            value = sample[tensor.name]
            if tensor.quantization is not None:
                value = quantize(value, Quantization(*tensor.quantization), tensor.dtype)
            feeds.append(np.asarray(value).astype(tensor.dtype))
        result = {}
        for tensor, raw in zip(outputs, model.run(feeds), strict=True):
            if tensor.quantization is not None:
                raw = dequantize(raw, Quantization(*tensor.quantization))
            result[tensor.name] = np.asarray(raw, np.float32)
        return result

    return reference
