"""Runners as real processes: the 3-stage emulation equals the unsplit model, a stage killed
with SIGKILL mid-stream and restarted loses and duplicates nothing, a link that drops for 1.5 s
mid-stream (a loopback relay that loses a message and refuses reconnections) loses and
duplicates nothing either, CurveZMQ runners refuse unknown keys, malformed frames are rejected
while the runner keeps serving, and the runner never imports TensorFlow."""

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
from waiting import ready_address, wait_until

from hwsched.deployment import load_plan
from hwsched.runtime.emulate import EmulationConfig, emulate
from hwsched.runtime.frames import KIND_DATA, encode_data
from hwsched.runtime.routing import hop_specs

FRAMES = 40
#: Cuts of residual_se_model: inside the residual block (2 tensors cross) and inside the
#: squeeze-excite branch (2 tensors cross).
CUTS = (6, 10)
#: A runner ends itself after this (a safety net against orphans); waits use it as their limit.
RUN_TIMEOUT_S = 90
HANDSHAKE_TIMEOUT_S = 30


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
    # each runner's CPU per frame is there, no more than its one pinned CPU could spend in
    # the run's wall time (every thread of it shares that CPU), and a stage's runtime share
    # is part of its total
    wall_ms_per_frame = result.wall_s * 1e3 / FRAMES
    for stage in result.stages:
        assert len(stage.cpus) == 1
        assert 0 < stage.runtime_cpu_ms_per_frame <= stage.cpu_ms_per_frame, stage
        assert stage.cpu_ms_per_frame <= 1.05 * wall_ms_per_frame, (stage, result.wall_s)
    for role_ms in (result.source_cpu_ms_per_frame, result.sink_cpu_ms_per_frame):
        assert 0 < role_ms <= 1.05 * wall_ms_per_frame, (role_ms, result.wall_s)


# -- runner processes --------------------------------------------------------------------------
#: Every runner listens on a port the OS chooses when it binds, and tells it in its ready file;
#: probing for a free port first and passing it on leaves a window for another process to take.
LISTEN_ANY = "tcp://127.0.0.1:0"


class Runners:
    """hwsched-runner children of one test; all are ended in :meth:`close`. Start them
    downstream first: a runner's ``--next`` is the address its downstream reported."""

    def __init__(self, plan_dir: Path, work: Path) -> None:
        self.plan_dir, self.work = plan_dir, work
        self.children: list[subprocess.Popen] = []

    def address(self, name: str) -> str:
        """Where runner ``name`` listens, once it is ready."""
        return ready_address(self.work / f"{name}.ready")

    def url(self, hop: int) -> str:
        """The listening address of hop ``hop``'s receiver: stage ``hop``, or the sink."""
        return self.address("sink" if hop == 3 else f"stage{hop}")

    def start(self, *args: str, name: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "hwsched.runtime.cli", str(self.plan_dir), *args,
             "--stats", str(self.work / f"{name}.json"),
             "--ready", str(self.work / f"{name}.ready"),
             "--max-runtime", str(RUN_TIMEOUT_S), "--resend-after", "0.3", "-v"],
            stdout=subprocess.DEVNULL, stderr=(self.work / f"{name}.log").open("wb"))
        self.children.append(child)
        return child

    def sink(self, *extra: str) -> subprocess.Popen:
        return self.start("--sink", "--listen", LISTEN_ANY, "--outputs",
                          str(self.work / "out.npz"), *extra, name="sink")

    def stage(self, k: int, name: str | None = None, next_url: str | None = None,
              listen: str = LISTEN_ANY, extra: tuple[str, ...] = ()) -> subprocess.Popen:
        name = name or f"stage{k}"
        args = ["--stage", str(k), "--listen", listen, "--next", next_url or self.url(k + 1),
                "--events", str(self.work / f"{name}.jsonl"), *extra]
        return self.start(*args, name=name)

    def wait_ready(self, *names: str) -> None:
        wait_until(lambda: all((self.work / f"{n}.ready").exists() for n in names),
                   what=f"{', '.join(names)} to be ready")

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")

    def stats(self, name: str) -> dict:
        return json.loads((self.work / f"{name}.json").read_text())

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None and os.environ.get("HWSCHED_DEBUG_HANG"):
                child.send_signal(signal.SIGUSR1)  # dumps its stacks into its log
                time.sleep(0.5)  # a debugging aid only: give it time to write them
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


def _wait_mid_stream(runners: Runners, source: subprocess.Popen) -> None:
    wait_until(lambda: _events(runners.work / "stage1.jsonl") >= 8 or source.poll() is not None,
               what="stage 1 to compute 8 frames")
    assert source.poll() is None, "the source ended before the stream was half way"


def test_sigkill_and_restart_loses_and_duplicates_nothing(pipeline, runners):
    plan_dir, reference = pipeline
    sink = runners.sink()
    for k in (2, 1, 0):
        runners.stage(k)
    runners.wait_ready("sink", "stage0", "stage1", "stage2")
    source = runners.start("--source", "--next", runners.url(0), "--frames", str(FRAMES),
                           "--data", str(plan_dir / "x.npy"), "--rate", "40", name="source")
    _wait_mid_stream(runners, source)
    stage1_address = runners.url(1)
    runners.children[2].send_signal(signal.SIGKILL)  # stage 1
    runners.children[2].wait(timeout=RUN_TIMEOUT_S)
    done_before_kill = _events(runners.work / "stage1.jsonl")
    # frames pile up unacknowledged upstream while stage 1 is down: stage 0 holds them
    # without an acknowledgement, so the source resends them
    wait_until(lambda: "resent frame" in runners.log("source"),
               what="the source to resend a frame stage 0 cannot hand on")
    runners.stage(1, name="stage1b", listen=stage1_address)  # the same address again
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


#: The link stage 0 → stage 1 is down this long, mid-stream (longer than the resend timeout).
OUTAGE_S = 1.5


def _stage_starts(path: Path) -> list[tuple[int, float]]:
    return [(e["frame"], e["start_s"]) for e in map(json.loads, path.read_text().splitlines())]


def test_link_drop_resumes_with_every_frame_once_in_order(pipeline, runners):
    """Stage 0 reaches stage 1 through a loopback relay; mid-stream the relay discards a
    message in flight, aborts the TCP connection and refuses reconnections for 1.5 s."""
    from tcprelay import Relay

    plan_dir, reference = pipeline
    sink = runners.sink()
    runners.stage(2)
    runners.stage(1)
    relay = Relay(int(runners.url(1).rpartition(":")[2])).start()
    try:
        runners.stage(0, next_url=relay.url)
        runners.wait_ready("sink", "stage0", "stage1", "stage2")
        source = runners.start("--source", "--next", runners.url(0), "--frames", str(FRAMES),
                               "--data", str(plan_dir / "x.npy"), "--rate", "40", name="source")
        _wait_mid_stream(runners, source)
        relay.cut(OUTAGE_S)
        assert source.wait(timeout=RUN_TIMEOUT_S) == 0
        assert sink.wait(timeout=RUN_TIMEOUT_S) == 0
        for child in runners.children:
            child.wait(timeout=RUN_TIMEOUT_S)
    finally:
        relay.close()
    result = runners.stats("sink")
    assert result["complete"] and result["in_order"]
    assert result["sequence"] == list(range(FRAMES))  # every frame exactly once, in order
    np.testing.assert_allclose(np.load(runners.work / "out.npz")["logits"], reference,
                               rtol=1e-4, atol=1e-5)
    # the link really was down: connections aborted, reconnections refused; stage 1 computed
    # frames before the cut and after the link came back (events, not a timing window: how
    # long stage 1 takes to finish what it held at the cut depends on the machine's load)
    assert relay.counters.aborted >= 1 and relay.counters.refused >= 1
    assert relay.cut_at_s is not None and relay.resumed_at_s is not None
    starts = [t for _, t in _stage_starts(runners.work / "stage1.jsonl")]
    assert [t for t in starts if t < relay.cut_at_s]
    assert [t for t in starts if t >= relay.resumed_at_s]
    assert sorted(f for f, _ in _stage_starts(runners.work / "stage1.jsonl")) == list(
        range(FRAMES))  # stage 1 computed each frame once: resends were de-duplicated
    assert runners.stats("stage0")["downstream"]["resent"] > 0  # lost frames were sent again


def _curve_dirs(root: Path, chain: list[str]) -> dict[str, Path]:
    """Per role: its keypair, the public key of its upstream (authorized) and downstream."""
    import shutil

    from hwsched.runtime.transport import make_curve_keys

    store = root / "all"
    secrets = make_curve_keys(store, [*chain, "intruder"])
    dirs = {"intruder": secrets["intruder"]}
    for i, role in enumerate(chain):
        directory = root / role
        (directory / "authorized").mkdir(parents=True)
        shutil.copy(secrets[role], directory / "self.key_secret")
        if i > 0:
            shutil.copy(store / f"{chain[i - 1]}.key", directory / "authorized")
        if i < len(chain) - 1:
            shutil.copy(store / f"{chain[i + 1]}.key", directory / "next.key")
        dirs[role] = directory
    return dirs


def _handshake(url: str, secret_file: Path | None, server_key: Path, parts: list[list[bytes]]
               ) -> zmq.Event:
    """Connect a client (CurveZMQ with ``secret_file``'s keypair, or plain when None), queue
    ``parts`` and return how its handshake with the server ended."""
    import zmq.auth
    from zmq.utils.monitor import recv_monitor_message

    client = zmq.Context.instance().socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    if secret_file is not None:
        client.curve_publickey, client.curve_secretkey = zmq.auth.load_certificate(
            str(secret_file))
        client.curve_serverkey = zmq.auth.load_certificate(str(server_key))[0]
    monitor = client.get_monitor_socket()
    ended = {zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
             zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
    try:
        client.connect(url)
        for message in parts:
            client.send_multipart(message)
        limit = time.monotonic() + HANDSHAKE_TIMEOUT_S
        while time.monotonic() < limit:
            if monitor.poll(100):
                event = recv_monitor_message(monitor)["event"]
                if event in ended:
                    return zmq.Event(event)
        raise AssertionError(f"the handshake neither succeeded nor failed in "
                             f"{HANDSHAKE_TIMEOUT_S} s")
    finally:
        client.disable_monitor()
        monitor.close(0)
        client.close(0)


def test_curve_keys_accept_known_peers_and_reject_unknown_ones(pipeline, runners, tmp_path):
    plan_dir, reference = pipeline
    chain = ["source", "stage0", "stage1", "stage2", "sink"]
    keys = _curve_dirs(tmp_path / "keys", chain)
    runners.sink("--curve-keys", str(keys["sink"]))
    for k in (2, 1, 0):
        runners.stage(k, extra=("--curve-keys", str(keys[f"stage{k}"])))
    runners.wait_ready("sink", "stage0", "stage1", "stage2")
    specs = hop_specs(load_plan(plan_dir), 1)
    zeros = {n: np.zeros(s.shape, s.dtype) for n, s in specs.items()}
    # well-formed frames stage 1 would compute if it accepted them: a wrong frame 0 and an
    # extra frame past the end of the stream
    forged = [encode_data(0, time.time(), zeros, specs), encode_data(FRAMES + 5, 0.0, zeros,
                                                                     specs)]
    server_key = keys["stage1"] / "self.key_secret"
    assert _handshake(runners.url(1), keys["intruder"], server_key, forged) == (
        zmq.EVENT_HANDSHAKE_FAILED_AUTH)  # a valid CurveZMQ client, but not an authorized key
    assert _handshake(runners.url(1), None, server_key, forged) != zmq.EVENT_HANDSHAKE_SUCCEEDED
    # the known upstream's key is accepted (this client sends nothing)
    assert _handshake(runners.url(1), keys["stage0"] / "self.key_secret", server_key,
                      []) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    source = runners.start("--source", "--next", runners.url(0), "--frames", str(FRAMES),
                           "--data", str(plan_dir / "x.npy"), "--curve-keys",
                           str(keys["source"]), name="source")
    assert source.wait(timeout=RUN_TIMEOUT_S) == 0
    for child in runners.children:
        child.wait(timeout=RUN_TIMEOUT_S)
    assert runners.stats("sink")["sequence"] == list(range(FRAMES))
    np.testing.assert_allclose(np.load(runners.work / "out.npz")["logits"], reference,
                               rtol=1e-4, atol=1e-5)  # the forged frame 0 never got in
    computed = sorted(f for f, _ in _stage_starts(runners.work / "stage1.jsonl"))
    assert computed == list(range(FRAMES))  # frame FRAMES + 5 was never processed
    assert runners.stats("stage1")["upstream"]["rejected"] == 0  # refused before any frame


def test_malformed_frames_are_rejected_and_the_runner_keeps_serving(pipeline, runners):
    plan_dir, reference = pipeline
    runners.sink()
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
        # closing drops what is still queued (LINGER 0): first see all four rejected
        # repeated warnings are logged at the 1st, 2nd, 4th… occurrence, with the count
        wait_until(lambda: "(4 times so far" in runners.log("stage1"),
                   what="stage 1 to reject the four malformed frames")
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
        "from hwsched.deployment import load_plan\n"
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
