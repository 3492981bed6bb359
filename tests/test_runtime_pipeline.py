"""Runners as real processes: the 3-stage emulation equals the unsplit model, a stage killed
with SIGKILL mid-stream and restarted loses and duplicates nothing, malformed frames are
rejected while the runner keeps serving, and the runner never imports TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from hwsched.plan import load_plan
from hwsched.runtime.emulate import EmulationConfig, emulate
from hwsched.runtime.frames import KIND_DATA, encode_data
from hwsched.runtime.routing import hop_specs

FRAMES = 40
#: Cuts of residual_se_model: inside the residual block (2 tensors cross) and inside the
#: squeeze-excite branch (2 tensors cross).
CUTS = (6, 10)
RUN_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A 3-stage fp32 export of the residual/SE model, inputs and the unsplit outputs."""
    from kerasmodels import residual_se_model

    from hwsched.export import export
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    model = residual_se_model()
    graph, binding = read_keras_model(model, "res_se", source="residual_se_model")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    plan_dir = tmp_path_factory.mktemp("plan")
    export(loaded, ["rpi4"] * 3, plan_dir, cut_positions=CUTS, precisions="fp32", cache=False,
           samples=2)
    x = np.random.default_rng(7).random((FRAMES, 8, 8, 3), dtype=np.float32)
    np.save(plan_dir / "x.npy", x)
    reference = np.stack([np.asarray(model(x[i:i + 1])) for i in range(FRAMES)])
    return plan_dir, reference


def test_three_stage_emulation_equals_unsplit_model(pipeline):
    plan_dir, reference = pipeline
    result = emulate(plan_dir, EmulationConfig(frames=FRAMES, data=str(plan_dir / "x.npy")))
    assert result.complete and result.in_order and result.frames == FRAMES
    outputs = result.outputs["logits"]
    assert outputs.shape == reference.shape
    np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-5)
    assert len({s.cpus for s in result.stages}) == min(3, len(os.sched_getaffinity(0)))
    assert [h.payload_bytes_per_frame for h in result.hops] == [768, 4096, 2056, 40]
    assert result.throughput_ips > 0 and result.latency_ms["p99"] >= result.latency_ms["p50"]
    record = result.to_dict()
    assert {"throughput_ips", "predicted_throughput_ips", "stages", "latency_ms"} <= set(record)
    assert all("busy_ms" in s for s in record["stages"])


# -- runner processes --------------------------------------------------------------------------
def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runners:
    """hwsched-runner children of one test; all are ended in :meth:`close`."""

    def __init__(self, plan_dir: Path, work: Path) -> None:
        self.plan_dir, self.work = plan_dir, work
        self.children: list[subprocess.Popen] = []
        self.ports = [_port() for _ in range(4)]

    def url(self, hop: int) -> str:
        return f"tcp://127.0.0.1:{self.ports[hop]}"

    def start(self, *args: str, name: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "hwsched.runtime.cli", str(self.plan_dir), *args,
             "--stats", str(self.work / f"{name}.json"),
             "--ready", str(self.work / f"{name}.ready"),
             "--max-runtime", str(RUN_TIMEOUT_S), "--resend-after", "0.3", "-v"],
            stdout=subprocess.DEVNULL, stderr=(self.work / f"{name}.log").open("wb"))
        self.children.append(child)
        return child

    def stage(self, k: int, name: str | None = None, **extra: str) -> subprocess.Popen:
        name = name or f"stage{k}"
        args = ["--stage", str(k), "--listen", self.url(k), "--next", self.url(k + 1),
                "--events", str(self.work / f"{name}.jsonl")]
        return self.start(*args, name=name)

    def wait_ready(self, *names: str) -> None:
        limit = time.monotonic() + 30
        while not all((self.work / f"{n}.ready").exists() for n in names):
            assert time.monotonic() < limit, f"not ready: {names}"
            time.sleep(0.05)

    def stats(self, name: str) -> dict:
        return json.loads((self.work / f"{name}.json").read_text())

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None and os.environ.get("HWSCHED_DEBUG_HANG"):
                child.send_signal(signal.SIGUSR1)
                time.sleep(0.5)
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)


@pytest.fixture
def runners(pipeline, tmp_path):
    group = Runners(pipeline[0], tmp_path)
    yield group
    group.close()


def _events(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigkill_and_restart_loses_and_duplicates_nothing(pipeline, runners):
    plan_dir, reference = pipeline
    sink = runners.start("--sink", "--listen", runners.url(3), "--outputs",
                         str(runners.work / "out.npz"), name="sink")
    for k in (2, 1, 0):
        runners.stage(k)
    runners.wait_ready("sink", "stage0", "stage1", "stage2")
    source = runners.start("--source", "--next", runners.url(0), "--frames", str(FRAMES),
                           "--data", str(plan_dir / "x.npy"), "--rate", "40", name="source")
    limit = time.monotonic() + 20
    while _events(runners.work / "stage1.jsonl") < 8:  # mid-stream
        assert time.monotonic() < limit and source.poll() is None
        time.sleep(0.02)
    runners.children[2].send_signal(signal.SIGKILL)  # stage 1
    runners.children[2].wait(timeout=5)
    done_before_kill = _events(runners.work / "stage1.jsonl")
    time.sleep(0.5)  # frames pile up unacknowledged upstream while stage 1 is down
    runners.stage(1, name="stage1b")
    assert source.wait(timeout=RUN_TIMEOUT_S) == 0
    assert sink.wait(timeout=RUN_TIMEOUT_S) == 0
    for child in runners.children:
        child.wait(timeout=RUN_TIMEOUT_S)  # stages write their stats as they exit
    result = runners.stats("sink")
    assert result["complete"] and result["in_order"]
    assert result["sequence"] == list(range(FRAMES))  # every frame exactly once, in order
    outputs = np.load(runners.work / "out.npz")["logits"]
    np.testing.assert_allclose(outputs, reference, rtol=1e-4, atol=1e-5)
    assert 0 < done_before_kill < FRAMES
    assert _events(runners.work / "stage1b.jsonl") > 0  # the restarted stage did real work
    resent = sum(runners.stats(n)["downstream"]["resent"] for n in ("source", "stage0"))
    assert resent > 0  # frames held while stage 1 was down were sent again


def test_malformed_frames_are_rejected_and_the_runner_keeps_serving(pipeline, runners):
    plan_dir, reference = pipeline
    runners.start("--sink", "--listen", runners.url(3), "--outputs",
                  str(runners.work / "out.npz"), name="sink")
    for k in (2, 1, 0):
        runners.stage(k)
    runners.wait_ready("sink", "stage0", "stage1", "stage2")
    plan = load_plan(plan_dir)
    specs = hop_specs(plan, 1)
    good = encode_data(0, time.time(), {n: np.zeros(s.shape, s.dtype) for n, s in specs.items()},
                       specs)
    attacker = zmq.Context.instance().socket(zmq.DEALER)
    attacker.setsockopt(zmq.LINGER, 0)
    attacker.connect(runners.url(1))
    try:
        attacker.send_multipart([b"not a frame"])
        attacker.send_multipart([good[0][:-8] + good[0][-4:], good[1]])  # truncated payload
        wrong = bytearray(good[0])
        wrong[5] = KIND_DATA + 40  # unknown kind
        attacker.send_multipart([bytes(wrong), good[1]])
        attacker.send_multipart([good[1], good[0]])  # parts swapped
        time.sleep(0.3)
    finally:
        attacker.close()
    source = runners.start("--source", "--next", runners.url(0), "--frames", str(FRAMES),
                           "--data", str(plan_dir / "x.npy"), name="source")
    assert source.wait(timeout=RUN_TIMEOUT_S) == 0
    for child in runners.children:
        child.wait(timeout=RUN_TIMEOUT_S)
    assert runners.stats("stage1")["upstream"]["rejected"] == 4
    assert "rejected a frame" in (runners.work / "stage1.log").read_text()
    result = runners.stats("sink")
    assert result["sequence"] == list(range(FRAMES))
    np.testing.assert_allclose(np.load(runners.work / "out.npz")["logits"], reference,
                               rtol=1e-4, atol=1e-5)


def test_sha256_mismatch_refuses_to_start(pipeline, tmp_path):
    import shutil

    plan_dir = tmp_path / "plan"
    shutil.copytree(pipeline[0], plan_dir)
    (plan_dir / load_plan(plan_dir).stages[1].file).write_bytes(b"tampered")
    done = subprocess.run([sys.executable, "-m", "hwsched.runtime.cli", str(plan_dir),
                           "--stage", "1", "--listen", "tcp://127.0.0.1:1", "--next",
                           "tcp://127.0.0.1:2"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "sha256" in done.stderr


def test_runner_never_imports_tensorflow(pipeline):
    code = (
        "import sys\n"
        "import hwsched.runtime.cli, hwsched.runtime.stage, hwsched.runtime.source\n"
        "import hwsched.runtime.sink, hwsched.runtime.emulate\n"
        "from hwsched.runtime.interpreter import StageModel\n"
        "from hwsched.plan import load_plan\n"
        "from pathlib import Path\n"
        f"p = Path({str(pipeline[0])!r})\n"
        "StageModel(load_plan(p), p, 1)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
