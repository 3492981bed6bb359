"""Measured cost of one hop through the runtime's own transport on this machine's loopback.

:func:`measure_hop_ms` sends frames of one float32 tensor from a :class:`Sender` (ZeroMQ
DEALER) to a :class:`Receiver` (ROUTER bound on 127.0.0.1) in this process, one at a time, each
acknowledged: framing, the ZeroMQ copies, the TCP loopback, decoding and the acknowledgement —
what a frame costs between two runners on one host; :func:`measure_runtime_cost` fits the CPU
time it takes (per frame and per byte) for the planner's runtime-cost term
(:mod:`hwsched.costs.runtime`). :func:`write_loopback_link` fits
``ms = message_ms + bytes / rate`` through two sizes and writes it as a link descriptor, so the
planner's link cost for an emulation on this host is measured rather than a guessed Ethernet.
"""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path

import numpy as np

from hwsched.costs.runtime import RuntimeCost
from hwsched.deployment import TensorSpec
from hwsched.errors import TransportError
from hwsched.runtime.frames import encode_data
from hwsched.runtime.reliable import Receiver, Sender
from hwsched.runtime.transport import open_channel, wait_readable
from hwsched.units import MS_PER_S

FLOAT32_BYTES = 4
#: Longest wait for one frame or its acknowledgement.
STEP_TIMEOUT_S = 2.0
SMALL_BYTES = 4 * 1024
LARGE_BYTES = 1024 * 1024
#: A hop has a sending and a receiving end, each on its own core in a pipeline.
HOP_ENDS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _await(step, channels, what: str):
    limit = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < limit:
        done = step()
        if done:
            return done
        wait_readable(channels, 0.01)
    raise TransportError(f"loopback hop: no {what} within {STEP_TIMEOUT_S:g} s")


def _pump(sender: Sender, receiver: Receiver) -> list:
    sender.service()  # the first frames wait until the connection is up
    return receiver.messages()


def measure_hop_ms(payload_bytes: int, frames: int = 50, warmup: int = 5) -> float:
    """Median ms per frame of ``payload_bytes`` through encode, send, receive, decode, ack."""
    return _hop_run(payload_bytes, frames, warmup)[0]


def measure_hop_cpu_ms(payload_bytes: int, frames: int = 50, warmup: int = 5) -> float:
    """CPU ms per frame (this process, all threads: both ends of the hop and ZeroMQ's I/O
    thread) of ``payload_bytes`` through encode, send, receive, decode, acknowledge."""
    return _hop_run(payload_bytes, frames, warmup)[1]


def _hop_run(payload_bytes: int, frames: int, warmup: int) -> tuple[float, float]:
    """``(median wall ms, mean CPU ms)`` per acknowledged frame over ``frames`` frames."""
    spec = TensorSpec("x", (1, max(payload_bytes // FLOAT32_BYTES, 1)), "float32")
    specs = {"x": spec}
    tensor = np.random.default_rng(0).random(spec.shape, dtype=np.float32)
    url = f"tcp://127.0.0.1:{_free_port()}"
    inbound = open_channel(url, listen=True, specs=specs)
    outbound = open_channel(url, listen=False, specs=specs)
    sender, receiver = Sender(outbound, window=1), Receiver(inbound, specs)
    times = []
    try:
        for seq in range(warmup + frames):
            if seq == warmup:
                cpu_start = time.process_time()
            start = time.perf_counter()
            sender.send(seq, encode_data(seq, time.time(), {"x": tensor}, specs))
            for message in _await(lambda: _pump(sender, receiver), [inbound], "frame"):
                receiver.done(message.seq)
            _await(sender.acks, [outbound], "acknowledgement")
            times.append(time.perf_counter() - start)
        cpu_ms = (time.process_time() - cpu_start) * MS_PER_S / max(frames, 1)
    finally:
        outbound.close()
        inbound.close()
    return statistics.median(times[warmup:]) * MS_PER_S, cpu_ms


def measure_runtime_cost(small_bytes: int = SMALL_BYTES, large_bytes: int = LARGE_BYTES,
                         frames: int = 50, repeats: int = 3) -> RuntimeCost:
    """The runner's per-frame CPU cost of one hop end, fitted through two payload sizes on
    this host's loopback: the hop's CPU time (both ends in this process) is halved per end.
    Sizes are measured alternately ``repeats`` times and medians taken, so drift hits both."""
    small, large = [], []
    for _ in range(repeats):
        small.append(measure_hop_cpu_ms(small_bytes, frames))
        large.append(measure_hop_cpu_ms(large_bytes, frames))
    small_ms, large_ms = statistics.median(small), statistics.median(large)
    per_byte_ms = max(large_ms - small_ms, 0.0) / (large_bytes - small_bytes)
    frame_ms = max(small_ms - small_bytes * per_byte_ms, 0.0)
    how = (f"measured by hwsched.runtime.hopcost: CPU per acknowledged loopback frame "
           f"{small_bytes} B: {small_ms:.4f} ms, {large_bytes} B: {large_ms:.4f} ms, halved "
           "per hop end")
    return RuntimeCost(frame_ms=frame_ms / HOP_ENDS, per_byte_ms=per_byte_ms / HOP_ENDS,
                       source=how)


def write_loopback_link(path: Path, name: str = "host_loopback") -> Path:
    """A link descriptor measured through the runtime's transport on this host's loopback."""
    import yaml

    from hwsched.hardware import load_link

    small_ms, large_ms = measure_hop_ms(SMALL_BYTES), measure_hop_ms(LARGE_BYTES)
    per_byte_ms = max(large_ms - small_ms, 1e-6) / (LARGE_BYTES - SMALL_BYTES)
    message_ms = max(small_ms - SMALL_BYTES * per_byte_ms, 0.0)
    how = (f"derived: measured by hwsched.runtime.hopcost ({SMALL_BYTES} B: {small_ms:.3f} ms, "
           f"{LARGE_BYTES} B: {large_ms:.3f} ms per acknowledged frame)")
    data = {
        "schema": "hwsched-hardware/1", "kind": "link", "name": name,
        "description": "this host's loopback through the runtime's ZeroMQ transport, measured",
        "bandwidth_bps": {"value": 8 / per_byte_ms * MS_PER_S, "source": how},
        "bits_per_byte": {"value": 8, "source": "bytes are counted, not line bits"},
        "message_latency_ms": {"value": message_ms, "source": how},
        "power": {"active_w": {"value": 0.001, "estimate": "loopback has no link hardware; "
                                         "a token figure (energy is not measured here)"}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_link(path)  # validate what was written
    return path
