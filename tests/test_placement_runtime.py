"""A stage-graph plan running as real processes: fan-out from stage 0 to both branches, fan-in
at the join, every frame once, in order, equal to the whole model — also after the branch
stage is killed with SIGKILL mid-stream and restarted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hwsched.cli import main
from tests.placement_models import BRANCH_PARALLEL_MAPPING

FRAMES = 30
RUN_TIMEOUT_S = 30
MAPPING = BRANCH_PARALLEL_MAPPING


@pytest.fixture(scope="module")
def dag_plan(tmp_path_factory):
    from hwsched.export.graph import export_placement
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model
    from hwsched.mapping import parse_mapping, resolve_mapping
    from tests.placement_models import two_branch_model

    model = two_branch_model(size=8, channels=8)
    graph, binding = read_keras_model(model, "two_branch", source="two_branch_model")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    plan_dir = tmp_path_factory.mktemp("dagplan")
    placement = resolve_mapping(parse_mapping(MAPPING, "mapping"), graph)
    export_placement(loaded, placement, plan_dir, link="gige", samples=2, cache=False)
    x = np.random.default_rng(3).random((FRAMES, 8, 8, 3), dtype=np.float32)
    np.save(plan_dir / "x.npy", x)
    reference = np.stack([np.asarray(model(x[i:i + 1])) for i in range(FRAMES)])
    return plan_dir, reference


def test_emulating_a_stage_graph_equals_the_model(dag_plan, tmp_path):
    plan_dir, reference = dag_plan
    out, record = tmp_path / "out.npz", tmp_path / "run.json"
    argv = ["emulate", str(plan_dir), "--frames", str(FRAMES), "--data",
            str(plan_dir / "x.npy"), "--outputs", str(out), "--json", str(record)]
    assert main(argv) == 0
    outputs = np.load(out)["logits"]
    assert outputs.shape == reference.shape
    np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-5)
    run = json.loads(record.read_text())
    cpus = sorted(os.sched_getaffinity(0))
    assert [tuple(s["cpus"]) for s in run["stages"]] == [
        (cpus[0],), (cpus[0],), (cpus[1 % len(cpus)],), (cpus[0],)]
    names = [h["name"] for h in run["hops"]]
    assert names == ["source→stage0", "stage0→stage1", "stage0→stage2", "stage1→stage3",
                     "stage2→stage3", "stage3→sink"]
    assert all(h["payload_bytes_per_frame"] > 0 for h in run["hops"])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Runners:
    def __init__(self, plan_dir: Path, work: Path) -> None:
        self.plan_dir, self.work = plan_dir, work
        self.children: dict[str, subprocess.Popen] = {}
        self.urls = {key: f"tcp://127.0.0.1:{_port()}" for key in
                     ("source->0", "0->1", "0->2", "1->3", "2->3", "sink")}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "hwsched.runtime.cli", str(self.plan_dir), *args,
             "--stats", str(self.work / f"{name}.json"),
             "--ready", str(self.work / f"{name}.ready"),
             "--max-runtime", str(RUN_TIMEOUT_S), "--resend-after", "0.3", "-v"],
            stdout=subprocess.DEVNULL, stderr=(self.work / f"{name}.log").open("wb"))
        self.children[name] = child
        return child

    def stage(self, k: int, name: str) -> subprocess.Popen:
        ins = {0: ["source"], 1: ["0"], 2: ["0"], 3: ["1", "2"]}[k]
        outs = {0: ["1", "2"], 1: ["3"], 2: ["3"], 3: ["sink"]}[k]
        wiring = [f for u in ins for f in ("--listen-from", f"{u}={self.urls[f'{u}->{k}']}")]
        wiring += [f for d in outs for f in (
            "--next-to", f"{d}={self.urls['sink'] if d == 'sink' else self.urls[f'{k}->{d}']}")]
        return self.start(name, "--stage", str(k), *wiring, "--events",
                          str(self.work / f"{name}.jsonl"))

    def wait_ready(self, *names: str) -> None:
        limit = time.monotonic() + 60
        while not all((self.work / f"{n}.ready").exists() for n in names):
            assert time.monotonic() < limit, f"not ready: {names}"
            time.sleep(0.05)

    def close(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)


def _events(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigkill_of_a_branch_stage_loses_and_duplicates_nothing(dag_plan, tmp_path):
    plan_dir, reference = dag_plan
    runners = _Runners(plan_dir, tmp_path)
    try:
        sink = runners.start("sink", "--sink", "--listen", runners.urls["sink"], "--outputs",
                             str(tmp_path / "out.npz"))
        for k in (3, 2, 1, 0):
            runners.stage(k, f"stage{k}")
        runners.wait_ready("sink", "stage0", "stage1", "stage2", "stage3")
        source = runners.start("source", "--source", "--next", runners.urls["source->0"],
                               "--frames", str(FRAMES), "--data", str(plan_dir / "x.npy"),
                               "--rate", "30")
        limit = time.monotonic() + RUN_TIMEOUT_S
        while _events(tmp_path / "stage2.jsonl") < 6:  # mid-stream
            assert time.monotonic() < limit and source.poll() is None
            time.sleep(0.02)
        runners.children["stage2"].send_signal(signal.SIGKILL)
        runners.children["stage2"].wait(timeout=5)
        done_before_kill = _events(tmp_path / "stage2.jsonl")
        # frames pile up unacknowledged at stage 0 while the branch is down; stage 3 waits
        limit = time.monotonic() + RUN_TIMEOUT_S
        while _events(tmp_path / "stage1.jsonl") < done_before_kill + 3:
            assert time.monotonic() < limit
            time.sleep(0.02)
        runners.stage(2, "stage2b")
        assert source.wait(timeout=RUN_TIMEOUT_S) == 0
        assert sink.wait(timeout=RUN_TIMEOUT_S) == 0
        for child in runners.children.values():
            child.wait(timeout=RUN_TIMEOUT_S)
    finally:
        runners.close()
    result = json.loads((tmp_path / "sink.json").read_text())
    assert result["complete"] and result["in_order"]
    assert result["sequence"] == list(range(FRAMES))
    outputs = np.load(tmp_path / "out.npz")["logits"]
    np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-5)
    assert 0 < done_before_kill < FRAMES
    before, after = _frames(tmp_path / "stage2.jsonl"), _frames(tmp_path / "stage2b.jsonl")
    assert before | after == set(range(FRAMES))
    # frames stage 0 computed while the branch was down were held and reached the new one
    assert set(range(done_before_kill, done_before_kill + 3)) <= after
    stage0 = json.loads((tmp_path / "stage0.json").read_text())
    assert stage0["edges_out"]["1"]["acked"] >= FRAMES  # the other branch kept its stream


def _frames(path: Path) -> set[int]:
    return {json.loads(line)["frame"] for line in path.read_text().splitlines() if line}


def test_the_graph_runner_never_imports_tensorflow(dag_plan):
    code = (
        "import sys\n"
        "import hwsched.runtime.cli, hwsched.runtime.graph_stage, hwsched.runtime.graph_emulate\n"
        "from hwsched.runtime.graph_stage import GraphStageModel\n"
        "from hwsched.deployment import load_plan\n"
        "from pathlib import Path\n"
        f"p = Path({str(dag_plan[0])!r})\n"
        "GraphStageModel(load_plan(p), p, 3)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')\n"
        "       or m.startswith('hwsched.export.api')]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_branch_point_encodes_its_tensor_once_for_both_branches(dag_plan):
    from hwsched.deployment import load_plan
    from hwsched.runtime.frames import decode_message
    from hwsched.runtime.graph_stage import GraphStageModel

    plan_dir, _ = dag_plan
    plan = load_plan(plan_dir)
    model = GraphStageModel(plan, plan_dir, 0)
    assert set(model.out_specs) == {1, 2}  # the stem's output goes to both branches
    stem = np.random.default_rng(0).random((1, 8, 8, 8), dtype=np.float32)
    name = next(iter(model.out_specs[1]))
    messages = model.encoded(7, 1.5, {name: stem})
    assert messages[1] is messages[2]  # one encoding (two copies of the tensor), not two
    for key in (1, 2):
        decoded = decode_message(messages[key], model.out_specs[key])
        assert decoded.seq == 7
        np.testing.assert_array_equal(decoded.tensors[name], stem)


def test_a_fan_out_sends_to_other_boards_before_its_own(dag_plan):
    from hwsched.deployment import load_plan
    from hwsched.runtime.graph_stage import SINK, GraphStageModel, fan_out_order

    plan_dir, _ = dag_plan
    plan = load_plan(plan_dir)
    boards = [s.board for s in plan.stages]
    assert boards[0] == boards[1] != boards[2]  # the mapping: stage 1 beside stage 0
    # stage 2, on the other board, is not left waiting while stage 1 takes the shared core
    assert fan_out_order(plan, 0) == (2, 1)
    assert list(GraphStageModel(plan, plan_dir, 0).out_specs) == [2, 1]
    assert fan_out_order(plan, 3) == (SINK,)
