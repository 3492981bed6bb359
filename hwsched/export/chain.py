"""Run exported stages one after another, exactly as the plan says (the oracle's left side).

Each stage input is fed from its ``source``: a model input (quantized if the stage wants int8)
or the raw output of the stage before, passed through the link's hand-off action (``none``
passes the bytes unchanged), after the trip over the link when the link compresses
(:func:`hwsched.compression.through_link`: the runner's rounding, in the proof too). The final
outputs come back as float32, keyed by IR tensor name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hwsched.compression import chain_link_specs, through_link
from hwsched.deployment import LinkPlan, Requantization, StagePlan, TensorSpec
from hwsched.export.litert import StageProgram
from hwsched.handoff import (
    apply_handoff,
    check_handoffs,
    from_float,
    link_steps,
    step_into,
    to_float,
)

#: Called with (stage index, {IR tensor name: raw value it received}) for every stage input.
Tap = Callable[[int, Mapping[str, np.ndarray]], None]


@dataclass(frozen=True)
class Chain:
    """Loaded stages and the links between them."""

    stages: tuple[StagePlan, ...]
    links: tuple[LinkPlan, ...]
    programs: tuple[StageProgram, ...]
    _steps: dict[tuple[int, str], Requantization] = field(default_factory=dict, repr=False)
    _wire: dict[tuple[int, str], tuple[TensorSpec, TensorSpec]] = field(default_factory=dict,
                                                                         repr=False)

    def __post_init__(self) -> None:
        self._steps.update(link_steps(self.links))
        self._wire.update(chain_link_specs(self.stages, self.links))

    def step(self, stage: int, tensor: str) -> Requantization:
        return step_into(self._steps, stage, tensor)

    def __call__(
        self, model_inputs: Mapping[str, np.ndarray], tap: Tap | None = None
    ) -> dict[str, np.ndarray]:
        """Float model outputs (IR names) for float model inputs (IR names)."""
        produced: dict[str, np.ndarray] = {}
        for stage, program in zip(self.stages, self.programs, strict=True):
            received = {spec.name: self._input(stage.index, spec, model_inputs, produced)
                        for spec in stage.inputs}
            if tap is not None:
                tap(stage.index, received)
            outputs = program({spec.tflite_name or spec.name: received[spec.name]
                               for spec in stage.inputs})
            produced = {spec.name: outputs[spec.tflite_name or spec.name]
                        for spec in stage.outputs}
        last = self.stages[-1]
        return {spec.name: to_float(produced[spec.name], spec) for spec in last.outputs}

    def _input(
        self,
        stage: int,
        spec: TensorSpec,
        model_inputs: Mapping[str, np.ndarray],
        produced: Mapping[str, np.ndarray],
    ) -> np.ndarray:
        if spec.source is None or spec.source.is_model_input:
            return from_float(model_inputs[spec.name], spec)
        value = produced[spec.name]
        if (stage, spec.name) in self._wire:
            value = through_link(value, *self._wire[(stage, spec.name)])
        return apply_handoff(value, self.step(stage, spec.name), spec.dtype)


def load_chain(
    stages: Sequence[StagePlan], links: Sequence[LinkPlan], files: Sequence[bytes]
) -> Chain:
    check_handoffs(stages, links)
    return Chain(tuple(stages), tuple(links), stage_programs(stages, files))


def stage_programs(
    stages: Sequence[StagePlan], files: Sequence[bytes]
) -> tuple[StageProgram, ...]:
    """One LiteRT program per stage file, labelled with its stage for error lines."""
    return tuple(
        StageProgram(data, label=f"stage {stage.index} ({stage.file})")
        for stage, data in zip(stages, files, strict=True)
    )
