"""Export a stage-graph placement: one TFLite model per stage, ``plan.json`` with ``edges``,
and the proof that running the stages in topological order computes the whole model.

The steps mirror :func:`hwsched.export.api.export`: check the placement and its memory (an error
unless ``force``), slice the stages (:func:`graph_slices`), build every stage (Keras replay of
an arbitrary layer set, or a flatbuffer split of a ``.tflite``), read their signatures into the
plan with each input's ``source`` stage, one ``links`` entry per edge with the hand-off of every
tensor, verify, and write the directory atomically.

Plan shape (what the runtime relies on): stage 0 holds every model input layer (the source feeds
only stage 0), and the last stage delivers every model output (an output made elsewhere is
relayed to it along an extra edge), so a sink reads only the last stage, as for a chain.
Regions on edges (tiles) are not exported yet and raise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import (
    EdgePlan,
    LinkPlan,
    Plan,
    StagePlan,
    TensorSource,
    Verification,
)
from hwsched.errors import ExportError, PlanError
from hwsched.export.chain import Chain, Tap, stage_programs
from hwsched.handoff import apply_handoff, check_handoffs, from_float, handoff, to_float
from hwsched.ir import Layer, LayerGraph, OpKind
from hwsched.placement import Placement, check_placement

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GraphStageSlice:
    """A stage of any layer set (the interface of :class:`~hwsched.export.stages.StageSlice`
    that the stage builders use)."""

    index: int
    positions: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def start(self) -> int:
        return self.positions[0]

    @property
    def end(self) -> int:
        return self.positions[-1] + 1

    def layers(self, graph: LayerGraph) -> tuple[Layer, ...]:
        return tuple(graph.layers[p] for p in self.positions
                     if graph.layers[p].op is not OpKind.INPUT)

    def first_layer(self, graph: LayerGraph) -> str:
        own = self.layers(graph)
        return own[0].name if own else ""

    def last_layer(self, graph: LayerGraph) -> str:
        own = self.layers(graph)
        return own[-1].name if own else ""


def graph_slices(
    graph: LayerGraph, placement: Placement
) -> tuple[tuple[GraphStageSlice, ...], tuple[EdgePlan, ...]]:
    """Each stage's layers, inputs and outputs (production order), and the plan's edges
    (the placement's, plus the relays of model outputs to the last stage)."""
    check_placement(graph, placement)
    _check_exportable(graph, placement)
    last = len(placement.stages) - 1
    flows: dict[tuple[int, int], list[str]] = {}
    for edge in placement.edges:
        flows.setdefault((edge.source, edge.target), []).extend(edge.tensor_names)
    for out in graph.outputs:
        if placement.sink[out] != last:
            flows.setdefault((placement.sink[out], last), []).append(out)
    order = {t: graph.position(graph.tensor(t).producer) for t in graph.tensors}
    edges = tuple(
        EdgePlan(a, b, tuple(sorted(dict.fromkeys(names), key=order.__getitem__)))
        for (a, b), names in sorted(flows.items())
    )
    model_inputs = tuple(t.name for layer in graph.input_layers for t in layer.outputs)
    slices = []
    for index, stage in enumerate(placement.stages):
        received = [t for e in edges if e.to_stage == index for t in e.tensors]
        inputs = (model_inputs if index == 0 else ()) + tuple(
            sorted(dict.fromkeys(received), key=order.__getitem__))
        sent = [t for e in edges if e.from_stage == index for t in e.tensors]
        outputs = tuple(sorted(dict.fromkeys(sent), key=order.__getitem__))
        if index == last:
            outputs = tuple(graph.outputs)
        slices.append(GraphStageSlice(index, stage.positions, inputs, outputs))
    return tuple(slices), edges


def _check_exportable(graph: LayerGraph, placement: Placement) -> None:
    inputs = {graph.position(layer.name) for layer in graph.input_layers}
    if not inputs <= placement.stages[0].layers:
        stray = min(inputs - placement.stages[0].layers)
        raise ExportError(
            f"model input {graph.layers[stray].name!r} is not in the first stage "
            f"({placement.stage_label(0)}); put every input layer in one stage"
        )
    if any(t.region is not None for e in placement.edges for t in e.tensors):
        raise ExportError("edges carrying tensor regions (tiles) cannot be exported yet")


# -- plan records ---------------------------------------------------------------------------------
def graph_stage_record(record: StagePlan, placement: Placement, edges: Sequence[EdgePlan]
                       ) -> StagePlan:
    """A stage record whose inputs name the stage that sends each tensor, with its board."""
    sender = {t: e.from_stage for e in edges if e.to_stage == record.index for t in e.tensors}
    inputs = tuple(
        replace(spec, source=TensorSource(spec.name, sender.get(spec.name)))
        for spec in record.inputs
    )
    stage = placement.stages[record.index]
    cores = stage.cores if stage.cores is not None else placement.board(stage.board).cores
    return replace(record, inputs=inputs, board=stage.board, cores=cores)


def graph_link_records(
    graph: LayerGraph, stages: Sequence[StagePlan], edges: Sequence[EdgePlan], link: str
) -> tuple[LinkPlan, ...]:
    """One link record per edge, with every tensor's hand-off (producer spec -> consumer's)."""
    links = []
    for edge in edges:
        produced = {spec.name: spec for spec in stages[edge.from_stage].outputs}
        wanted = {spec.name: spec for spec in stages[edge.to_stage].inputs}
        links.append(LinkPlan(
            from_stage=edge.from_stage,
            to_stage=edge.to_stage,
            link=link,
            tensors=edge.tensors,
            transfer_bytes=sum(graph.tensor(t).bytes_as(produced[t].dtype) for t in edge.tensors),
            requantize=tuple(handoff(produced[t], wanted[t]) for t in edge.tensors),
        ))
    return tuple(links)


# -- running the stages in topological order -----------------------------------------------
@dataclass(frozen=True)
class GraphChain(Chain):
    """Stages run in index (= topological) order; each input is taken from the stage its
    ``source`` names, through that edge's hand-off. Edges carrying regions (fused tiles) are
    applied as the runner applies them (:mod:`hwsched.tiles.regions_np`): the sender slices,
    the receiver stitches the pieces of every edge into it, each piece handed off on its own."""

    edges: tuple[EdgePlan, ...] = ()

    def __call__(
        self, model_inputs: Mapping[str, np.ndarray], tap: Tap | None = None
    ) -> dict[str, np.ndarray]:
        produced: dict[tuple[int, str], np.ndarray] = {}
        for stage, program in zip(self.stages, self.programs, strict=True):
            received = {spec.name: self._from(stage.index, spec, model_inputs, produced)
                        for spec in stage.inputs}
            if tap is not None:
                tap(stage.index, received)
            outputs = program({spec.tflite_name or spec.name: received[spec.name]
                               for spec in stage.inputs})
            for spec in stage.outputs:
                produced[(stage.index, spec.name)] = outputs[spec.tflite_name or spec.name]
        last = self.stages[-1]
        return {spec.name: to_float(produced[(last.index, spec.name)], spec)
                for spec in last.outputs}

    def _from(self, stage: int, spec, model_inputs, produced) -> np.ndarray:
        if spec.source is None or spec.source.is_model_input:
            return from_float(model_inputs[spec.name], spec)
        regional = [e for e in self.edges if e.to_stage == stage and spec.name in e.tensors
                    and e.regions]
        if regional:
            return self._stitched(stage, spec, regional, produced)
        key = (spec.source.stage, spec.name)
        if key not in produced:
            raise PlanError(
                f"plan: stage {stage} reads {spec.name!r} from stage {spec.source.stage}, "
                "which does not output it before"
            )
        return apply_handoff(produced[key], self.step(stage, spec.name), spec.dtype)


    def _stitched(self, stage: int, spec, edges, produced) -> np.ndarray:
        from hwsched.handoff import convert
        from hwsched.tiles.regions_np import incoming, outgoing

        pieces = []
        for edge in edges:
            made = next(o for o in self.stages[edge.from_stage].outputs if o.name == spec.name)
            region = edge.region(spec.name)
            value = outgoing(produced[(edge.from_stage, spec.name)], region)
            pieces.append((region, convert(value, made, spec)))
        return incoming(spec.shape, pieces, f"stage {stage}, tensor {spec.name!r}")


def load_graph_chain(
    stages: Sequence[StagePlan], links: Sequence[LinkPlan], files: Sequence[bytes],
    edges: Sequence[EdgePlan] = (),
) -> GraphChain:
    check_handoffs(stages, links)
    return GraphChain(tuple(stages), tuple(links), stage_programs(stages, files),
                      edges=tuple(edges))


# -- the export ----------------------------------------------------------------------------------
def export_placement(
    model: Any,
    placement: Placement,
    out_dir: Path,
    *,
    link: str,
    precisions: Sequence[str] | str | None = None,
    calibration: str | None = None,
    calibration_samples: int = 100,
    samples: int = 32,
    weights: str | None = None,
    cache: bool = True,
    force: bool = False,
    progress: Progress | None = None,
    analysis: Mapping[str, Any] | None = None,
    prediction: Mapping[str, Any] | None = None,
) -> Plan:
    """Export ``placement`` of ``model`` (a name, a file or a loaded model) into ``out_dir``;
    ``analysis`` (``{file, sha256, rank}``: the analysis candidate it came from) is recorded as
    ``prediction.analysis``, as for a chain. ``prediction``: the plan's prediction instead of
    the default cost model's (an analysis candidate's own figures, priced with its profiles
    and hand-off charge); memory over a board's limit is refused all the same."""
    from hwsched.export import api
    from hwsched.export.cache import StageCache
    from hwsched.export.data import default_source, model_input_samples, parse_source
    from hwsched.export.litert import read_signature
    from hwsched.export.stages import signature_names
    from hwsched.load import LoadedModel, load_model

    report = progress or (lambda _message: None)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, weights, report)
    graph = loaded.graph
    slices, edges = graph_slices(graph, placement)
    predicted = _predict(graph, placement, link, force)
    prediction = dict(predicted if prediction is None else prediction)
    if analysis is not None:
        prediction["analysis"] = dict(analysis)
    platforms = tuple(placement.board(s.board).platform for s in placement.stages)
    chosen = api.stage_precisions(loaded, platforms, precisions)
    source = parse_source(calibration) if calibration else default_source(graph)
    names = signature_names(list(graph.tensors))
    stage_bytes = api.build_stages(loaded, slices, chosen, names, source, calibration_samples,
                                   StageCache(enabled=cache), report)
    stages = tuple(
        graph_stage_record(api.stage_record(graph, api.StageFiles(
            s, platform, precision, data, read_signature(data, f"stage {s.index}")), names),
            placement, edges)
        for s, platform, precision, data in zip(slices, platforms, chosen, stage_bytes,
                                                strict=True)
    )
    links = graph_link_records(graph, stages, edges, link)
    verify_inputs = model_input_samples(graph, source, samples, calibration=False)
    report(f"verifying the stage graph on {len(verify_inputs)} samples")
    verification, reference_outputs = _verify(loaded, stages, links, stage_bytes, verify_inputs)
    plan = Plan(model=graph.name, stages=stages, links=links, verification=verification,
                source=loaded.source, prediction=prediction, edges=edges)
    report(f"writing {out_dir}")
    return api._write(out_dir, plan, stage_bytes, False, verify_inputs, reference_outputs)


def _predict(graph: LayerGraph, placement: Placement, link: str, force: bool) -> dict[str, Any]:
    """The cost model's prediction; memory over a board's limit is an error unless forced."""
    from hwsched.costs.placement import PlacementCoster

    cost = PlacementCoster(graph, placement.boards, link).evaluate(placement)
    if cost.reasons and not force:
        raise ExportError(f"{cost.reasons[0]}; pass --force to export anyway")
    return {"placement": "graph", "link": link, "latency_ms": cost.latency_ms,
            "period_ms": cost.period_ms, "throughput_ips": cost.throughput_ips,
            "energy_mj": cost.energy_mj, "feasible": cost.feasible,
            "stages": [{"board": s.board, "latency_ms": s.compute_ms} for s in cost.stages]}


def _verify(loaded, stages, links, stage_bytes, samples) -> tuple[Verification, dict]:
    from hwsched.export.reference import reference_for
    from hwsched.export.verify import compare, require_passed

    chain = load_graph_chain(stages, links, stage_bytes)
    reference, label, exact_possible = reference_for(loaded)
    exact = exact_possible or all(s.precision == "fp32" for s in stages)
    verification, outputs = compare(chain, reference, samples, label, exact)
    require_passed(verification)
    return verification, outputs
