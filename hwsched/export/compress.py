"""``export --compress fp16|int8|auto``: compress a chain's links, measured and bounded.

The steps, each a function below:

1. calibrate an int8 grid for every float tensor crossing a link, on the calibration inputs
   int8 stages are calibrated on (:mod:`hwsched.export.data`), from the values the uncompressed
   chain really hands across (a tensor whose consumer is an int8 stage takes that stage's own
   grid: the consumer quantizes it to that grid anyway, so compressing to it adds no error);
2. measure the chain's top-1 accuracy on labeled data (digits by default for digits models,
   ``--dataset`` otherwise) with every link uncompressed and at each level asked for;
3. choose: the level given, or with ``auto`` the strongest whose accuracy drop from the
   uncompressed chain is within ``--max-accuracy-drop`` percentage points; a level beyond the
   allowed drop is refused (one line) unless ``--force``;
4. record the level and grids on each link (``transfer_bytes`` becomes the bytes on the wire)
   and the measurement in ``verification.compression``.

The drop is measured against the *uncompressed* split (same stages, same precisions), so it is
what compression costs, not what the stages' own precision costs (``--accuracy`` says that).
The proof of a compressed plan compares the chain, links compressed, with the whole model at
the level's output tolerance (:data:`hwsched.compression.OUTPUT_TOLERANCE`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwsched.compression import (
    LEVELS,
    OUTPUT_TOLERANCE,
    compresses,
    link_wire_specs,
    strongest,
)
from hwsched.deployment import LinkPlan, Quantization, StagePlan, TensorSpec, Verification
from hwsched.errors import ExportError, VerificationError
from hwsched.export.chain import Chain, load_chain
from hwsched.export.data import Sample, SampleSource, labeled_dataset, parse_source
from hwsched.handoff import to_float
from hwsched.ir import LayerGraph
from hwsched.progress import Progress, silent

AUTO = "auto"
#: ``--compress`` values.
CHOICES = (*LEVELS, AUTO)
#: Default ``--max-accuracy-drop``, in percentage points of top-1 accuracy.
DEFAULT_MAX_ACCURACY_DROP_PP = 0.5
PP_PER_FRACTION = 100.0


@dataclass(frozen=True)
class CompressRequest:
    """What ``--compress`` asks for."""

    level: str
    max_accuracy_drop_pp: float = DEFAULT_MAX_ACCURACY_DROP_PP
    force: bool = False
    #: Labeled data for the accuracy measurement (``--dataset``); None: the calibration source.
    dataset: str | None = None
    #: Measure top-1 per level and hold the drop to the limit; False when the level is not a
    #: choice (a link descriptor's forced ``encoding``): the outputs' tolerance still holds.
    measure_accuracy: bool = True


def check_request(request: CompressRequest) -> CompressRequest:
    """Cheap checks, before any model is loaded."""
    if request.level not in CHOICES:
        raise ExportError(f"--compress {request.level!r}: valid: {', '.join(CHOICES)}")
    drop = request.max_accuracy_drop_pp
    if not (np.isfinite(drop) and drop >= 0):
        raise ExportError(f"--max-accuracy-drop {drop}: must be a number of percentage points "
                          ">= 0")
    return request


def compress_links(
    graph: LayerGraph,
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    stage_bytes: Sequence[bytes],
    request: CompressRequest,
    calibration: Sequence[Sample],
    source: SampleSource,
    report: Progress = silent,
) -> tuple[tuple[LinkPlan, ...], dict[str, Any]]:
    """The chain's links at the chosen level and the measurement behind the choice."""
    if not links or request.level == "fp32":
        return tuple(links), {"chosen": "fp32", "levels": {}}
    report(f"calibrating link compression on {len(calibration)} samples")
    grids = calibrate_links(stages, links, stage_bytes, calibration)
    if not request.measure_accuracy:
        return at_level(graph, stages, links, request.level, grids), {
            "requested": request.level, "chosen": request.level, "forced": True, "levels": {},
            "output_tolerance": OUTPUT_TOLERANCE[request.level]}
    wanted = LEVELS if request.level == AUTO else ("fp32", request.level)
    dataset = request.dataset or source.label
    measured = {
        level: _chain_top1(graph, stages, at_level(graph, stages, links, level, grids),
                           stage_bytes, dataset, report)
        for level in wanted
    }
    base = measured["fp32"]
    levels = {level: {"top1": top1, "drop_pp": (base - top1) * PP_PER_FRACTION}
              for level, top1 in measured.items()}
    chosen = _choose(request, levels)
    _note_int8_links(stages, links, chosen, report)
    record = {
        "dataset": "digits:test" if dataset == "digits" else dataset,
        "samples": len(labeled_dataset(graph, parse_source(dataset))),
        "requested": request.level,
        "chosen": chosen,
        "max_accuracy_drop_pp": request.max_accuracy_drop_pp,
        "forced": request.force and levels[chosen]["drop_pp"] > request.max_accuracy_drop_pp,
        "levels": levels,
        "output_tolerance": OUTPUT_TOLERANCE[chosen],
    }
    return at_level(graph, stages, links, chosen, grids), record


def _choose(request: CompressRequest, levels: Mapping[str, Mapping[str, float]]) -> str:
    """The level to record: ``auto``'s strongest within the drop, or the one given (refused
    beyond the drop unless forced)."""
    limit = request.max_accuracy_drop_pp
    if request.level == AUTO:
        return strongest(level for level, m in levels.items() if m["drop_pp"] <= limit)
    drop = levels[request.level]["drop_pp"]
    if drop > limit and not request.force:
        raise ExportError(
            f"--compress {request.level}: top-1 accuracy drops {drop:.2f} percentage points "
            f"({levels['fp32']['top1']:.2%} → {levels[request.level]['top1']:.2%}), beyond "
            f"--max-accuracy-drop {limit:g}; allow more, choose --compress auto, or --force")
    return request.level


def _note_int8_links(stages: Sequence[StagePlan], links: Sequence[LinkPlan], level: str,
                     report: Progress) -> None:
    """Say when a link has nothing to compress (its tensors are int8 already)."""
    if level == "fp32":
        return
    for link in links:
        made = {o.name: o for o in stages[link.from_stage].outputs}
        if not any(compresses(made[n], level) for n in link.tensors if n in made):
            report(f"link {link.from_stage}→{link.to_stage}: its tensors are "
                   f"{', '.join(sorted({made[n].dtype for n in link.tensors if n in made}))} "
                   f"already; {level} leaves them as they are")


# -- calibration -------------------------------------------------------------------------------
def calibrate_links(
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    stage_bytes: Sequence[bytes],
    samples: Sequence[Sample],
) -> dict[tuple[int, str], Quantization]:
    """(link index, tensor) → the int8 grid of every float tensor a link carries."""
    from hwsched.compression import calibrate

    chain = load_chain(stages, [replace(x, compression="fp32", compression_quantization={})
                                for x in links], stage_bytes)
    seen: dict[tuple[int, str], list[np.ndarray]] = {}

    def tap(stage: int, received: Mapping[str, np.ndarray]) -> None:
        for spec in _stage(stages, stage).inputs:
            if spec.source is not None and not spec.source.is_model_input:
                seen.setdefault((stage, spec.name), []).append(to_float(received[spec.name],
                                                                        spec))

    for sample in samples:
        chain(sample, tap)
    grids = {}
    for k, link in enumerate(links):
        consumers = {s.name: s for s in _stage(stages, link.to_stage).inputs}
        for name in link.tensors:
            consumer = consumers.get(name)
            if consumer is not None and consumer.dtype == "int8" and consumer.quantization:
                grids[(k, name)] = consumer.quantization
            elif (link.to_stage, name) in seen:
                grids[(k, name)] = calibrate(seen[(link.to_stage, name)])
    return grids


def _stage(stages: Sequence[StagePlan], index: int) -> StagePlan:
    return next(s for s in stages if s.index == index)


def at_level(
    graph: LayerGraph,
    stages: Sequence[StagePlan],
    links: Sequence[LinkPlan],
    level: str,
    grids: Mapping[tuple[int, str], Quantization],
) -> tuple[LinkPlan, ...]:
    """Every link at ``level``; ``transfer_bytes`` = the bytes its tensors take on the wire."""
    chosen = []
    for k, link in enumerate(links):
        made = {o.name: o for o in stages[link.from_stage].outputs if o.name in link.tensors}
        quantization = {name: grids[(k, name)] for name in made
                        if level == "int8" and compresses(made[name], level)}
        compressed = replace(link, compression=level, compression_quantization=quantization)
        wire = link_wire_specs(compressed, made)
        chosen.append(replace(compressed, transfer_bytes=_wire_bytes(graph, link, wire)))
    return tuple(chosen)


def _wire_bytes(graph: LayerGraph, link: LinkPlan, wire: Mapping[str, TensorSpec]) -> int:
    """As export counts a link's bytes (the IR tensor in the dtype it travels in)."""
    total = 0
    for name in link.tensors:
        tensor = graph.tensor(name)
        total += tensor.bytes_as(wire[name].dtype) if name in wire else tensor.bytes
    return total


# -- accuracy and the proof ----------------------------------------------------------------------
def _chain_top1(graph: LayerGraph, stages: Sequence[StagePlan], links: Sequence[LinkPlan],
                stage_bytes: Sequence[bytes], dataset: str, report: Progress) -> float:
    data = labeled_dataset(graph, parse_source(dataset))
    level = links[0].compression if links else "fp32"
    report(f"measuring top-1 accuracy with {level} links on {len(data)} images")
    chain: Chain = load_chain(stages, links, stage_bytes)
    name, output = graph.input_layers[0].outputs[0].name, graph.outputs[0]
    predictions = [int(np.argmax(chain({name: data.images[i:i + 1]})[output]))
                   for i in range(len(data))]
    return float(np.mean(np.array(predictions) == data.labels))


def links_level(links: Sequence[LinkPlan]) -> str:
    """The strongest compression of a plan's links (fp32 when none compresses)."""
    return strongest(link.compression for link in links)


def judge_compressed(verification: Verification, level: str) -> Verification:
    """The proof's verdict at a compressed level: outputs within the level's tolerance."""
    if level == "fp32":
        return verification
    within = (verification.max_rel_diff is not None
              and verification.max_rel_diff <= OUTPUT_TOLERANCE[level])
    return replace(verification, passed=bool(within and np.isfinite(verification.max_abs_diff)))


def require_compressed_passed(verification: Verification, level: str) -> None:
    if not verification.passed:
        raise VerificationError(
            f"chained stages with {level} links differ from {verification.reference}: max "
            f"relative difference {verification.max_rel_diff:.3g} > {OUTPUT_TOLERANCE[level]:g} "
            f"(the {level} tolerance; max abs {verification.max_abs_diff:.3g} over "
            f"{verification.samples} samples)")
