"""One stage's model on LiteRT: load (after the sha256 check), map tensors by name, invoke.

LiteRT comes from ``ai-edge-litert`` or, on boards where only it installs, ``tflite-runtime``
(which needs numpy < 2). The signature runner takes and returns tensors by signature name
(``TensorSpec.tflite_name``); positions are never used, since TFLite orders inputs by name.

A stage runs on the delegate its plan names (``delegate``/``delegate_options``, from the
platform descriptor's ``runtime`` section) unless the runner's ``--delegate`` overrides it
(``none``: LiteRT's CPU kernels). A stage whose engine hwsched does not run is refused before
anything loads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import Plan, Requantization, StagePlan, TensorSpec, check_stage_file
from hwsched.errors import HwschedError, PlanError
from hwsched.handoff import apply_handoff, handoff, link_steps, step_into
from hwsched.litert import DELEGATE_ENV, DelegateSpec, open_interpreter, runtime_label
from hwsched.runtime.routing import check_routes, hop_specs, wire_name

#: Says which interpreter a stage loaded; the runner shows it at INFO level even without -v.
log = logging.getLogger(__name__)


def load_signature_runner(path: Path | None = None, content: bytes | None = None,
                          threads: int = 1, *, name: str | None = None,
                          error: type[HwschedError] = PlanError,
                          delegate: DelegateSpec | None = None) -> Any:
    """The model's one signature runner; a model LiteRT cannot load, or one without exactly
    one signature, raises ``error`` naming ``name`` (default: ``path``)."""
    where = name or str(path or "model")
    try:
        interpreter = open_interpreter(path=path, content=content, threads=threads,
                                       delegate=delegate)
        return interpreter.get_signature_runner()
    except (ValueError, RuntimeError) as failure:
        first_line = str(failure).strip().splitlines()[0] if str(failure).strip() else failure
        raise error(f"{where}: LiteRT cannot run the model (it needs exactly one signature): "
                    f"{first_line}") from None


def check_engine(stage: StagePlan) -> None:
    """A stage whose engine hwsched does not run (TensorRT) is refused in one line."""
    from hwsched.hardware import ENGINES

    if not ENGINES.get(stage.engine, False):
        raise PlanError(f"stage {stage.index} ({stage.platform}): engine {stage.engine!r} is not "
                        "one hwsched runs; re-export the stage to a LiteRT descriptor")


def _micro_ready(index: int) -> bool:
    """Whether TFLite Micro can run an MCU stage here; without it LiteRT runs it, said once."""
    from hwsched.tflm import micro_available

    if micro_available():
        return True
    log.warning("stage %d: TFLite Micro stage runs on LiteRT here (pip install tflite-micro "
                "to run it on TFLM)", index)
    return False


def stage_delegate(stage: StagePlan, override: str | None) -> DelegateSpec | None:
    """The delegate a stage runs on: the runner's ``--delegate`` (or ``HWSCHED_DELEGATE``,
    which ``emulate --delegate`` sets for its runners) if given, else the plan's."""
    override = override or os.environ.get(DELEGATE_ENV) or None
    if override is not None:
        return DelegateSpec.of(override)
    return DelegateSpec.of(stage.delegate, stage.delegate_options)


def _signature_name(spec: TensorSpec, names: list[str], role: str, stage: int) -> str:
    if spec.tflite_name in names:
        return spec.tflite_name  # type: ignore[return-value]
    if spec.tflite_name is None and spec.name in names:
        return spec.name
    if spec.tflite_name is None and len(names) == 1:
        return names[0]
    raise PlanError(
        f"stage {stage}: {role} {spec.name!r} (tflite_name {spec.tflite_name!r}) is not in the "
        f"stage file's signature {names}; re-export the plan"
    )


class StageModel:
    """A loaded stage: ``run(arrived)`` takes the tensors of its incoming hop and returns the
    tensors of its outgoing hop (own outputs plus forwarded ones)."""

    def __init__(self, plan: Plan, plan_dir: Path, index: int, threads: int = 1,
                 delegate: str | None = None) -> None:
        check_routes(plan)  # before the model loads: a broken plan fails in one line
        self.stage: StagePlan = plan.stage(index)
        #: Interpreter threads: with more than one, the model's CPU is not the invoking
        #: thread's alone (:func:`hwsched.runtime.process.model_cpu_clock`).
        self.threads = threads
        check_engine(self.stage)
        self.delegate = stage_delegate(self.stage, delegate)
        path = check_stage_file(plan_dir, self.stage)
        #: Which interpreter and delegate run the stage, for the runner's log.
        self.label = runtime_label() + (f" with delegate {self.delegate.text()}"
                                        if self.delegate else " on the CPU")
        if self.stage.engine == "tflm" and self.delegate is None and _micro_ready(index):
            from hwsched.tflm import MicroSignatureRunner, micro_label

            self.runner = MicroSignatureRunner(path.read_bytes(), f"stage {index}",
                                               self.stage.arena_bytes)
            arena = self.stage.arena_bytes
            self.label = micro_label() + (f" in the {arena} B arena measured at export"
                                          if arena else "")
        else:
            self.runner = load_signature_runner(path, threads=threads, delegate=self.delegate)
        log.info("stage %d (%s): loaded %s on %s", index, self.stage.platform, self.stage.file,
                 self.label)
        self.in_specs = hop_specs(plan, index)
        self.out_specs = hop_specs(plan, index + 1)
        inputs = list(self.runner.get_input_details())
        outputs = list(self.runner.get_output_details())
        self.feeds = [(_signature_name(s, inputs, "input", index), wire_name(s), s,
                       self._step(plan, s)) for s in self.stage.inputs]
        self.fetches = {s.name: _signature_name(s, outputs, "output", index)
                        for s in self.stage.outputs}

    def _step(self, plan: Plan, spec: TensorSpec) -> Requantization:
        """The plan's hand-off for a tensor from the stage before; model inputs have no link,
        and arrive as the source made them (the first reader's spec)."""
        if spec.source is None or spec.source.is_model_input:
            return handoff(self.in_specs[wire_name(spec)], spec)
        return step_into(link_steps(plan.links), self.stage.index, spec.name)

    def run(self, arrived: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {
            sig: apply_handoff(arrived[name], step, spec.dtype)
            for sig, name, spec, step in self.feeds
        }
        results = self.runner(**feeds)
        produced = {name: results[sig] for name, sig in self.fetches.items()}
        return {
            name: produced[name] if name in produced else arrived[name]
            for name in self.out_specs
        }
