"""Routing: which tensors cross each hop of the pipeline, with the spec they travel in.

Hop ``0`` runs from the source to stage 0, hop ``k`` from stage ``k-1`` to stage ``k``, and hop
``n`` (n stages) from the last stage to the sink. A tensor travels as its *producer* made it
(the model input spec, or the producing stage's output spec); a stage that needs it in another
precision applies the plan's hand-off step for it on arrival (:mod:`hwsched.handoff`, the module
export's proof uses), and a stage that does not consume a tensor a later stage needs forwards its
bytes unchanged. Tensors are matched by name, never position.

A link that compresses (``links[k].compression``, :mod:`hwsched.compression`) makes its hop
carry the *wire* specs (float16, or int8 codes of the link's calibrated grid): transport size
limits and frame checks use them. The sender packs a hop's tensors into them and the receiver
unpacks them back into the producer's specs (:func:`hop_codec`), before any hand-off step.
"""

from __future__ import annotations

from hwsched.compression import HopCodec, link_wire_specs
from hwsched.deployment import Plan, TensorSpec
from hwsched.errors import PlanError
from hwsched.handoff import check_handoffs


def model_input_specs(plan: Plan) -> dict[str, TensorSpec]:
    """Every model input any stage reads, keyed by tensor name, as the first reader lists it."""
    specs: dict[str, TensorSpec] = {}
    for stage in plan.stages:
        for spec in stage.inputs:
            if spec.source is not None and spec.source.is_model_input:
                specs.setdefault(wire_name(spec), spec)
    if not specs:
        raise PlanError("plan has no model input (no stage input with a model-input source)")
    return specs


def wire_name(spec: TensorSpec) -> str:
    """The name a stage input travels under: its source tensor."""
    return spec.source.tensor if spec.source is not None else spec.name


def producer_spec(plan: Plan, name: str, before_stage: int) -> TensorSpec:
    """The spec of tensor ``name`` as produced upstream of ``before_stage``."""
    for stage in reversed(plan.stages[:before_stage]):
        for spec in stage.outputs:
            if spec.name == name:
                return spec
    inputs = model_input_specs(plan)
    if name in inputs:
        return inputs[name]
    raise PlanError(f"tensor {name!r} reaches stage {before_stage} but no earlier stage makes it")


def hop_specs(plan: Plan, hop: int) -> dict[str, TensorSpec]:
    """Tensors crossing hop ``hop`` as they travel (compressed where the link says), in a
    deterministic order, keyed by name."""
    return hop_codec(plan, hop).wire


def hop_codec(plan: Plan, hop: int) -> HopCodec:
    """The producer specs and the wire specs of the tensors crossing hop ``hop``."""
    n = len(plan.stages)
    if not 0 <= hop <= n:
        raise PlanError(f"hop {hop} does not exist (0..{n})")
    if hop == 0:
        made = model_input_specs(plan)
        return HopCodec(made, made)
    if hop == n:
        made = {spec.name: spec for spec in plan.stages[-1].outputs}
        return HopCodec(made, made)
    link = next((x for x in plan.links if x.from_stage == hop - 1 and x.to_stage == hop), None)
    names = list(link.tensors) if link is not None else _needed_after(plan, hop)
    made = {name: producer_spec(plan, name, hop) for name in names}
    from_stages = {o.name for s in plan.stages[:hop] for o in s.outputs}
    model_inputs = [name for name in names if name not in from_stages]
    return HopCodec(made, link_wire_specs(link, made, model_inputs))


def _needed_after(plan: Plan, hop: int) -> list[str]:
    """Without a link entry: every tensor a stage at or after ``hop`` reads from before it."""
    names: list[str] = []
    for stage in plan.stages[hop:]:
        for spec in stage.inputs:
            produced_here = any(
                o.name == wire_name(spec) for s in plan.stages[hop : stage.index] for o in s.outputs
            )
            if not produced_here and wire_name(spec) not in names:
                names.append(wire_name(spec))
    return names


def check_routes(plan: Plan) -> None:
    """Every stage input arrives on the stage's incoming hop, every tensor a later stage needs
    is made or forwarded, and every link's hand-off steps are the ones the specs call for;
    checked before a stage loads its model, so a broken plan fails with one line, not mid-run."""
    check_handoffs(plan.stages, plan.links)
    for stage in plan.stages:
        arriving = hop_specs(plan, stage.index)
        missing = [wire_name(s) for s in stage.inputs if wire_name(s) not in arriving]
        if missing:
            raise PlanError(
                f"stage {stage.index} reads {missing} but the link into it does not carry them"
            )
        for name in hop_specs(plan, stage.index + 1):
            produced = any(o.name == name for o in stage.outputs)
            if not produced and name not in arriving:
                raise PlanError(
                    f"stage {stage.index} must send {name!r} on but neither makes nor receives it"
                )
