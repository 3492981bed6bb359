"""Exporting a stage graph: one TFLite per stage, edges in plan.json, and the proof (the stage
files run by hand in topological order equal the Keras model; fp32 to 1e-5 relative)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hwsched.cli import main
from hwsched.deployment import (
    LinkPlan,
    Plan,
    StagePlan,
    TensorSource,
    TensorSpec,
    load_plan,
    plan_from_dict,
    plan_to_dict,
)
from hwsched.export.verify import load_samples, verify_plan_dir
from tests.placement_models import BRANCH_PARALLEL_MAPPING

BRANCHES = BRANCH_PARALLEL_MAPPING


@pytest.fixture(scope="module")
def dag_export(tmp_path_factory):
    from tests.placement_models import two_branch_model

    root = tmp_path_factory.mktemp("dag")
    model = two_branch_model(size=8, channels=8)
    model.save(root / "m.keras")
    (root / "map.yaml").write_text(yaml.safe_dump(BRANCHES))
    argv = ["export", str(root / "m.keras"), "--mapping", str(root / "map.yaml"),
            "--out", str(root / "out"), "--samples", "8", "--no-cache"]
    assert main(argv) == 0
    return root, model


def _run_by_hand(plan_dir, plan, sample):
    """The test's own runner: LiteRT on each stage file, inputs taken from the stage their
    source names (all stages fp32, so no hand-off arithmetic)."""
    from ai_edge_litert.interpreter import Interpreter

    values: dict[tuple[int | None, str], np.ndarray] = {
        (None, name): value for name, value in sample.items()}
    for stage in plan.stages:
        runner = Interpreter(model_path=str(plan_dir / stage.file)).get_signature_runner()
        feeds = {spec.tflite_name: values[(spec.source.stage, spec.name)]
                 for spec in stage.inputs}
        result = runner(**feeds)
        for spec in stage.outputs:
            values[(stage.index, spec.name)] = result[spec.tflite_name]
    return {spec.name: values[(plan.stages[-1].index, spec.name)]
            for spec in plan.stages[-1].outputs}


def test_a_branch_parallel_mapping_exports_and_equals_the_model(dag_export):
    root, model = dag_export
    plan = load_plan(root / "out")
    assert [s.board for s in plan.stages] == ["pi_a", "pi_a", "pi_b", "pi_a"]
    assert [s.cores for s in plan.stages] == [(0,), (0,), (1,), (0,)]
    assert [(e.from_stage, e.to_stage, e.tensors) for e in plan.edges] == [
        (0, 1, ("stem",)), (0, 2, ("stem",)), (1, 3, ("a1",)), (2, 3, ("b1",))]
    assert [(lk.from_stage, lk.to_stage) for lk in plan.links] == [
        (e.from_stage, e.to_stage) for e in plan.edges]
    assert plan.stages[3].inputs[0].source == TensorSource("a1", 1)
    assert plan.verification.max_rel_diff <= 1e-5
    samples, _ = load_samples(root / "out" / "verification.npz")
    for sample in samples[:4]:
        want = np.asarray(model(sample["image"], training=False))
        got = _run_by_hand(root / "out", plan, sample)["logits"]
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))
    again = verify_plan_dir(root / "out")
    assert again.passed and again.max_rel_diff <= 1e-5
    raw = json.loads((root / "out" / "plan.json").read_text())
    assert raw["edges"][0] == {"from": 0, "to": 1, "tensors": ["stem"]}
    assert raw["stages"][2]["board"] == "pi_b" and raw["stages"][2]["cores"] == [1]


def test_an_output_made_early_is_relayed_to_the_last_stage(tmp_path):
    from hwsched.export.graph import export_placement
    from hwsched.load import load_model
    from hwsched.placement import Board, Stage, placement_from_stages
    from tests.kerasmodels import dag_model

    path = tmp_path / "two_out.keras"
    dag_model([[], [0], [1], [1], [2], [3]]).save(path)  # outputs n4 and n5
    loaded = load_model(str(path))
    g = loaded.graph
    where = {layer.name: i for i, layer in enumerate(g)}
    first = {i for name, i in where.items() if name in ("n0", "n1", "n2", "n4")}
    boards = (Board("a", "rpi4"), Board("b", "rpi4"))
    placement = placement_from_stages(g, boards, [Stage("a", first),
                                                  Stage("b", set(range(len(g))) - first)])
    plan = export_placement(loaded, placement, tmp_path / "out", link="gige", samples=4,
                            cache=False)
    assert {spec.name for spec in plan.stages[-1].outputs} == set(g.outputs)
    relayed = [t for e in plan.edges for t in e.tensors if g.tensor(t).producer == "n4"]
    assert relayed and plan.verification.max_rel_diff <= 1e-5


def test_memory_over_a_board_is_an_export_error_unless_forced(tmp_path, capsys):
    from tests.placement_models import two_branch_model

    two_branch_model(size=96, channels=64, depth=1).save(tmp_path / "big.keras")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({
        "boards": [{"name": "mcu", "platform": "stm32h7"}],
        "stages": [{"board": "mcu", "layers": ["rest"]}]}))
    argv = ["export", str(tmp_path / "big.keras"), "--mapping", str(tmp_path / "m.yaml"),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "board 'mcu'" in err and "pass --force" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_chain_plan_keeps_exactly_its_fields():
    spec = TensorSpec("x", (1, 4), "float32", source=TensorSource("x", None), tflite_name="x")
    stage = StagePlan(0, "rpi4", "stage0_rpi4.tflite", "0" * 64, "fp32", (spec,), (spec,))
    second = StagePlan(1, "rpi4", "stage1_rpi4.tflite", "1" * 64, "fp32",
                       (TensorSpec("x", (1, 4), "float32", source=TensorSource("x", 0),
                                   tflite_name="x"),), (spec,))
    plan = Plan("m", (stage, second), (LinkPlan(0, 1, "gige", ("x",), 16),), cut_positions=(1,))
    doc = plan_to_dict(plan)
    # nothing of a stage graph appears in a chain plan, and it reads back unchanged
    assert "edges" not in doc
    assert not {"board", "cores"} & set(doc["stages"][0])
    assert plan_from_dict(doc) == plan
    assert plan.upstream(1) == (0,) and plan.downstream(0) == (1,) and not plan.is_graph


def test_int8_stage_graph_hands_raw_bytes_along_every_edge(tmp_path):
    """Each int8 stage is calibrated on the float values that really reach it from whichever
    stage sends them, so producer and consumer agree on every edge's scale and zero point (up
    to float rounding: TF and TFLite compute the calibration activations apart)."""
    from hwsched.export.graph import export_placement
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model
    from hwsched.mapping import parse_mapping, resolve_mapping
    from tests.placement_models import two_branch_model

    model = two_branch_model(size=8, channels=8)
    graph, binding = read_keras_model(model, "two_branch", source="two_branch_model")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    placement = resolve_mapping(parse_mapping(BRANCHES, "mapping"), graph)
    plan = export_placement(loaded, placement, tmp_path / "out", link="gige", precisions="int8",
                            calibration="random:16", samples=8, cache=False)
    assert all(s.precision == "int8" for s in plan.stages)
    steps = [r for lk in plan.links for r in lk.requantize]
    assert len(steps) == 4
    for step in steps:
        a, b = step.from_quantization, step.to_quantization
        assert a.zero_point == b.zero_point and abs(a.scale / b.scale - 1) < 1e-6, step
    print(f"int8 stage graph: max relative difference {plan.verification.max_rel_diff:.4f}")
    assert plan.verification.max_rel_diff < 0.1
