"""Measured cost of one hop through the runtime's own transport on this machine.

Where a frame's time goes between "stage k finished computing it" and "stage k+1 starts on
it", and on which core. :func:`measure_hop_ends` runs the two ends of a hop as two processes,
each pinned to its own core as ``hwsched emulate`` pins stages, with the runner's own code:
the sending end encodes a frame (header + a copy of the tensor) and hands it to a ZeroMQ DEALER;
the receiving end's ROUTER takes it, decodes and checks it against the plan's spec, applies the
hand-off and acknowledges it. Frames go one at a time (window 1), so each one's CPU time is
counted on the core that spent it — ZeroMQ's I/O thread and the kernel's TCP work included,
since a process's CPU clock counts all its threads — and its wall time is the hop's latency.

:func:`measure_runtime_cost` fits, per end, ``ms = frame_ms + bytes * per_byte_ms`` through
several payload sizes measured alternately (drift on a shared machine hits all alike) and the
*wire* part, the wall time of a hop that neither core spends (wake-ups, the acknowledgement's
way back), as the rest; the planner charges them with :func:`hwsched.costs.runtime.handoff_cost`.
:func:`write_loopback_link` writes the wire part as a link descriptor, so the planner's link
for an emulation on this host is measured rather than a guessed Ethernet, and the cores' part
is not counted twice.

Where an 878 KB float32 hop's time went on the 2-core development machine (CPU ms per frame,
medians of 150 frames, two runs on a loaded machine; ``thread_time`` per step, the process
clock for the I/O thread): sending core — the interpreter's output copy 0.08 (inside the
stage's busy time), encode (tensor bytes + frame: two copies) 0.15, ``send`` 0.05, the
acknowledgement 0.09, ZeroMQ's I/O thread and the kernel's TCP work 0.23–0.28; receiving
core — I/O thread 0.23–0.30, copy out of ZeroMQ 0.08–0.12 (now read in place), decode 0.07–0.09,
the interpreter's input copy 0.07–0.10 (busy time), acknowledgement 0.05. Before the runners
kept their freed memory (:func:`hwsched.runtime.process.keep_freed_memory`) every 878 KB
block was a fresh ``mmap``: 396 page faults per frame on the sending core, which then spent
1.26–1.71 ms instead of 0.61–0.66, and the receiving core 0.89–1.46 instead of 0.51–0.69. A
quantizing hand-off (float32 into an int8 stage) adds 1.2 ms on the receiving core at that
size, a requantizing one 0.9 ms (:mod:`hwsched.handoff`); neither is in this measurement.

A paced hop (frames 20 ms apart, as a pipeline fed one frame at a time) is mostly cold code:
instrumented ends on the development machine took, 1 KB / 884 KB, encode 0.11 / 0.30 ms,
handing to ZeroMQ 0.12 / 0.19, wire and the receiving side's wake-ups 0.27 / 0.50, receive
and decode 0.26 / 0.27 — each step about ten times its back-to-back time, and spinning 1 ms
before encoding did not change it (evicted caches, not a slow wake-up). So every bit of
per-frame work counts: a send no longer copies the first frame to stamp it (a fresh message
is stamped in place, a fan-out's downstreams share it), data frames are checked against a
template per hop instead of parsed field by field, an empty receive raises nothing, sends and
receives skip pyzmq's per-part checks, and loops keep their poller. Interleaved A/B against
the runner before (``--gap-ms 20``, four ABBA rounds on a loaded machine, medians of 8
runs each): one_way 884 KB 1.57 → 1.17 ms, 1 KB 0.88 → 0.71 ms; CPU per 884 KB frame, sending
core 0.58 → 0.47 ms, receiving 0.49 → 0.43. Rounds in plain alternation (old first) while
the load rose showed less: 0 to 0.2 ms saved, and in one round 0.2 ms lost.

    python -m hwsched.runtime.hopcost [--sizes 4096,262144,1048576] [--frames 40] [--gap-ms 50]
                                      [--same-core]

prints the fitted cost as JSON (what ``analyze --refine`` measures before it re-ranks);
``--same-core`` adds its ``same_core`` section, the hop measured again with both ends on the
sending core (as :func:`measure_runtime_cost_with_same_core`, what ``profile --hop-cost``
writes), which ``analyze --runtime-cost`` charges a stage-graph hop whose two ends share one
CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hwsched.costs.runtime import RuntimeCost
from hwsched.errors import TransportError
from hwsched.units import MS_PER_S

FLOAT32_BYTES = 4
#: Longest wait for one frame or its acknowledgement (a lost acknowledgement is resent after
#: the runner's resend timeout, 1 s).
STEP_TIMEOUT_S = 5.0
#: Longest a whole measurement may take before its processes are ended.
RUN_TIMEOUT_S = 300.0
SMALL_BYTES = 4 * 1024
LARGE_BYTES = 1024 * 1024
DEFAULT_SIZES = (SMALL_BYTES, 256 * 1024, LARGE_BYTES)
DEFAULT_FRAMES = 40
DEFAULT_REPEATS = 3
WARMUP_FRAMES = 5
#: Cache sweeping beside each end (see :func:`_evict_caches`): twice a 2 MiB L2, lowest priority.
EVICT_BUFFER_BYTES = 4 << 20
EVICT_NICE = 19
#: Fastest a loopback link descriptor may claim (bits/s) when the wire part is lost in noise.
MAX_LOOPBACK_BPS = 1e12


@dataclass(frozen=True)
class HopSample:
    """Medians per frame of one payload size: CPU ms on each end's core and wall ms."""

    payload_bytes: int
    sender_ms: float
    receiver_ms: float
    wall_ms: float
    #: Median ms from the sender starting to encode a frame to the receiver having decoded and
    #: handed it off (no acknowledgement): a frame's own way through the hop.
    one_way_ms: float | None = None

    @property
    def wire_ms(self) -> float:
        """Wall time of the hop that neither end's core spends: of a frame's one-way trip when
        it was measured, else of the acknowledged round."""
        wall = self.wall_ms if self.one_way_ms is None else self.one_way_ms
        return max(wall - self.sender_ms - self.receiver_ms, 0.0)


# -- the two ends, each its own process --------------------------------------------------------
def _specs(payload_bytes: int):
    from hwsched.deployment import TensorSpec

    return {"x": TensorSpec("x", (1, max(payload_bytes // FLOAT32_BYTES, 1)), "float32")}


def _await(step, channels, what: str):
    from hwsched.runtime.transport import wait_readable

    limit = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < limit:
        done = step()
        if done:
            return done
        wait_readable(channels, 0.01)
    raise TransportError(f"hop measurement: no {what} within {STEP_TIMEOUT_S:g} s")


def _send_end(urls: Sequence[str], sizes: Sequence[int], frames: int, repeats: int,
              gap_s: float = 0.0) -> dict:
    """Per size, per frame: CPU ms from encoding to the acknowledgement, and wall ms; with
    ``gap_s``, the ends idle that long between frames (see :func:`measure_hop_ends`)."""
    import numpy as np

    from hwsched.runtime.frames import encode_data
    from hwsched.runtime.reliable import Sender
    from hwsched.runtime.transport import open_channel

    rng = np.random.default_rng(0)
    hops = []
    for url, size in zip(urls, sizes, strict=True):
        specs = _specs(size)
        channel = open_channel(url, listen=False, specs=specs)
        hops.append((Sender(channel, window=1), specs,
                     rng.random(specs["x"].shape, dtype=np.float32)))
    cpu: dict[int, list[float]] = {s: [] for s in sizes}
    wall: dict[int, list[float]] = {s: [] for s in sizes}
    seq = 0
    try:
        for _ in range(repeats):
            for (sender, specs, tensor), size in zip(hops, sizes, strict=True):
                for i in range(WARMUP_FRAMES + frames):
                    cpu_ms, wall_ms = _one_frame(sender, specs, tensor, seq, encode_data)
                    seq += 1
                    if gap_s:
                        time.sleep(gap_s)  # pacing, as a source at a low rate: cores go idle
                    if i >= WARMUP_FRAMES:
                        cpu[size].append(cpu_ms)
                        wall[size].append(wall_ms)
    finally:
        for sender, _, _ in hops:
            sender.channel.close()
    return {"cpu_ms": {str(s): v for s, v in cpu.items()},
            "wall_ms": {str(s): v for s, v in wall.items()}}


def _one_frame(sender, specs, tensor, seq: int, encode_data) -> tuple[float, float]:
    # the interpreter's copy of a stage's output is part of the stage's busy time, not here
    cpu_start, start = time.process_time(), time.perf_counter()
    sender.send(seq, encode_data(seq, time.time(), {"x": tensor}, specs))

    def acked() -> bool:
        sender.service()
        return seq in sender.acks()

    _await(acked, [sender.channel], f"acknowledgement of frame {seq}")
    return ((time.process_time() - cpu_start) * MS_PER_S,
            (time.perf_counter() - start) * MS_PER_S)


def _receive_end(sizes: Sequence[int], announce) -> dict:
    """Serve one ROUTER per size until stdin closes; per size, per frame: CPU ms from the last
    frame's acknowledgement to this one's (the I/O thread's reception, decode, hand-off, ack)."""
    from hwsched.handoff import apply_handoff, handoff
    from hwsched.runtime.reliable import Receiver
    from hwsched.runtime.transport import Waiter, open_channel

    hops = []
    for size in sizes:
        specs = _specs(size)
        channel = open_channel("tcp://127.0.0.1:0", listen=True, specs=specs)
        hops.append((Receiver(channel, specs, window=1), specs["x"], size))
    channels = [receiver.channel for receiver, _, _ in hops]
    announce([channel.bound_url for channel in channels])
    waiter = Waiter(channels)
    cpu: dict[int, list[float]] = {s: [] for s in sizes}
    one_way: dict[int, list[float]] = {s: [] for s in sizes}
    last = time.process_time()
    stdin_open = True
    try:
        while stdin_open:
            waiter.wait(0.05)
            for receiver, spec, size in hops:
                for message in receiver.messages():
                    apply_handoff(message.tensors["x"], handoff(spec, spec), spec.dtype)
                    one_way[size].append((time.time() - message.origin_s) * MS_PER_S)
                    receiver.done(message.seq)
                    now = time.process_time()
                    cpu[size].append((now - last) * MS_PER_S)
                    last = now
            stdin_open = not _stdin_closed()
    finally:
        for channel in channels:
            channel.close()
    return {"cpu_ms": {str(s): v for s, v in cpu.items()},
            "one_way_ms": {str(s): v for s, v in one_way.items()}}


def _stdin_closed() -> bool:
    import select

    readable, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(readable) and not sys.stdin.readline()


def _evict_caches() -> dict:
    """A stage's stand-in while its core is not handing frames off: sweep a buffer larger
    than the core's cache until stdin closes, at the lowest priority, so each hand-off finds
    its code and data evicted as it does between two frames of a model (a tight loop of
    hand-offs alone keeps them cached and measures too little)."""
    import numpy as np

    os.nice(EVICT_NICE)
    buffer = np.zeros(EVICT_BUFFER_BYTES, dtype=np.uint8)
    sweeps = 0
    while not _stdin_closed():
        buffer += 1
        sweeps += 1
    return {"sweeps": sweeps}


def _end_main(args: argparse.Namespace) -> int:
    from hwsched.runtime.process import keep_freed_memory, pin_to_cpus

    pin_to_cpus([args.cpu])
    keep_freed_memory()  # as every runner does
    sizes = list(args.sizes)
    if args.end == "evict":
        result = _evict_caches()
    elif args.end == "receive":
        def announce(urls: list[str]) -> None:
            print(json.dumps(urls), flush=True)

        result = _receive_end(sizes, announce)
    else:
        result = _send_end(json.loads(args.urls), sizes, args.frames, args.repeats,
                           args.gap_ms / MS_PER_S)
    print(json.dumps(result), flush=True)
    return 0


# -- the measurement ----------------------------------------------------------------------------
def hop_cpus() -> tuple[int, int]:
    """The two cores a hop's ends run on: the first two this process may use (one core: both)."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], cpus[1 % len(cpus)]


def hop_placement(cpus: tuple[int, int] | None = None) -> str:
    """Where a hop measured on ``cpus`` (default :func:`hop_cpus`) runs its ends, for a cost's
    source: from the cores it resolves to, since a process allowed one CPU gets it twice.

    >>> hop_placement((3, 3)), hop_placement((0, 1))
    ('on one core', 'on two cores')
    """
    send_cpu, receive_cpu = cpus or hop_cpus()
    return "on one core" if send_cpu == receive_cpu else "on two cores"


def _end_command(end: str, cpu: int, sizes: Sequence[int], *extra: str) -> list[str]:
    return [sys.executable, "-m", "hwsched.runtime.hopcost", "--end", end, "--cpu", str(cpu),
            "--sizes", ",".join(map(str, sizes)), *extra]


def _json_line(text: str, who: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise TransportError(f"hop measurement: the {who} end said {text.strip()[:200]!r}, "
                             "not its measurement") from None


def measure_hop_ends(sizes: Sequence[int] = DEFAULT_SIZES, frames: int = DEFAULT_FRAMES,
                     repeats: int = DEFAULT_REPEATS, cpus: tuple[int, int] | None = None,
                     busy_cores: bool = True, gap_s: float = 0.0) -> list[HopSample]:
    """One :class:`HopSample` per payload size (median over ``repeats`` × ``frames`` frames,
    the sizes taken in turn ``repeats`` times), each end in its own process on its own core;
    with ``busy_cores`` each core also sweeps its cache between hand-offs, as a stage's model
    does (see :func:`_evict_caches`).

    ``gap_s`` > 0 measures a hop as a pipeline fed one frame at a time meets it: the ends idle
    ``gap_s`` between frames (no cache sweeping: idle cores, as in such a pipeline). Each hop
    then also wakes its threads from sleep (the sending runner's ZeroMQ I/O thread, the
    receiving one's, the receiving runner), which a back-to-back measurement never pays: on
    the 2-core development machine a 4 KB frame's one-way trip took ~0.6 ms paced at 50 ms
    against ~0.1 ms back to back, an 884 KB one's 1.4 ms against 0.7 ms."""
    send_cpu, receive_cpu = cpus or hop_cpus()
    with contextlib.ExitStack() as running:
        if busy_cores and not gap_s:
            running.enter_context(sweeping_caches((send_cpu, receive_cpu)))
        receiver = running.enter_context(_ended(_start_end("receive", receive_cpu, sizes)))
        urls = _json_line(receiver.stdout.readline(), "receiving")  # type: ignore[union-attr]
        sender = subprocess.run(
            _end_command("send", send_cpu, sizes, "--urls", json.dumps(urls), "--frames",
                         str(frames), "--repeats", str(repeats), "--gap-ms",
                         str(gap_s * MS_PER_S)),
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        if sender.returncode != 0:
            last = (sender.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise TransportError(f"hop measurement: the sending end failed: {last}")
        receiver.stdin.close()  # type: ignore[union-attr]
        received = _json_line(receiver.stdout.readline(), "receiving")  # type: ignore[union-attr]
    sent = _json_line(sender.stdout.strip().splitlines()[-1], "sending")
    return [_sample(size, sent, received, frames, paced=gap_s > 0)  # type: ignore[arg-type]
            for size in sizes]


@contextlib.contextmanager
def sweeping_caches(cpus: Sequence[int]) -> Iterator[None]:
    """Each of ``cpus`` sweeps its cache at the lowest priority while the block runs, as a
    stage's model does between the runners' turns on its core (:func:`_evict_caches`)."""
    with contextlib.ExitStack() as running:
        for cpu in sorted(set(cpus)):
            running.enter_context(_ended(_start_end("evict", cpu, [SMALL_BYTES])))
        yield


def _start_end(end: str, cpu: int, sizes: Sequence[int]) -> subprocess.Popen:
    return subprocess.Popen(_end_command(end, cpu, sizes), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _ended(process: subprocess.Popen):
    """The process, told to stop (stdin closed) and waited for on the way out; killed if it
    does not stop within the run's timeout."""
    try:
        yield process
    finally:
        with contextlib.suppress(OSError, ValueError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _sample(size: int, sent: dict, received: dict, frames: int, paced: bool = False
            ) -> HopSample:
    """Medians of one size; the receiving end drops the first frames of each round of a size,
    as the sending end does (its warm-up). ``paced``: keep the one-way trip (the wire part's
    basis then)."""
    round_frames = WARMUP_FRAMES + frames
    def warm(values: list[float]) -> list[float]:
        return [ms for i, ms in enumerate(values) if i % round_frames >= WARMUP_FRAMES] or values

    one_way = received.get("one_way_ms", {}).get(str(size)) if paced else None
    return HopSample(size, statistics.median(sent["cpu_ms"][str(size)]),
                     statistics.median(warm(received["cpu_ms"][str(size)])),
                     statistics.median(sent["wall_ms"][str(size)]),
                     statistics.median(warm(one_way)) if one_way else None)


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of ``y = intercept + slope * x``, both >= 0 (a cost
    never falls with more bytes; noise that says so is clamped).

    >>> fit_line([(0, 1.0), (10, 2.0), (20, 3.0)])
    (1.0, 0.1)
    >>> fit_line([(0, 2.0), (10, 1.0)])
    (1.5, 0.0)
    """
    xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    slope = max(slope, 0.0)
    intercept = max(mean_y - slope * mean_x, 0.0)
    return round(intercept, 12), round(slope, 12)


def runtime_cost_from_samples(samples: Sequence[HopSample], where: str = "on two cores"
                              ) -> RuntimeCost:
    """Each end's and the wire's per-frame and per-byte terms, fitted through the samples
    (``where`` the ends ran, for the cost's source)."""
    if len({s.payload_bytes for s in samples}) < 2:
        raise TransportError("a hop cost needs samples of at least two payload sizes")
    fits = {part: fit_line([(s.payload_bytes, getattr(s, f"{part}_ms")) for s in samples])
            for part in ("sender", "receiver", "wire")}
    described = ", ".join(f"{s.payload_bytes} B: send {s.sender_ms:.4f} / receive "
                          f"{s.receiver_ms:.4f} CPU ms, {s.wall_ms:.4f} ms wall" for s in samples)
    return RuntimeCost.asymmetric(
        sender=fits["sender"], receiver=fits["receiver"], wire=fits["wire"],
        source=f"measured by hwsched.runtime.hopcost (two processes {where}, medians per "
               f"acknowledged frame): {described}")


def measure_runtime_cost(sizes: Sequence[int] = DEFAULT_SIZES, frames: int = DEFAULT_FRAMES,
                         repeats: int = DEFAULT_REPEATS, gap_s: float = 0.0,
                         cpus: tuple[int, int] | None = None,
                         runners: bool = False,
                         runner_evict_bytes: int | None = None) -> RuntimeCost:
    """The runner's hand-off cost on this host: sending core, receiving core and wire, each
    ``frame_ms + bytes * per_byte_ms`` (see the module doc).

    With ``gap_s`` the wire part is a paced frame's: each core's share is measured back to
    back (what a hop costs a busy core, also between paced frames: :func:`paced_samples`), the
    wire as the rest of a paced frame's one-way trip, its wake-ups. ``cpus``: the sending
    and receiving ends' cores (default :func:`hop_cpus`; one core twice: a hop between two
    stages pinned to one core, whose ends take turns on it). ``runners`` adds what a runner's
    own loop costs per frame beyond a bare hop end (:mod:`hwsched.runtime.runnercost`: the
    real source, stage loop and sink streaming beside a stand-in model that sweeps
    ``runner_evict_bytes``, default twice the last-level cache); off by default: on the EPYC
    VM of 2026-11-30 it measured what each pipeline core spent above the bare hop ends,
    while with a stand-in that left the shared L3 warm it had measured 0-0.2 ms (see that
    module)."""
    where = hop_placement(cpus)
    if gap_s:
        cost = runtime_cost_from_samples(paced_samples(sizes, frames, repeats, gap_s,
                                                       cpus=cpus), where)
    else:
        cost = runtime_cost_from_samples(measure_hop_ends(sizes, frames, repeats, cpus=cpus),
                                         where)
    return with_measured_runners(cost, sizes, cpus, runner_evict_bytes) if runners else cost


def with_measured_runners(cost: RuntimeCost, sizes: Sequence[int],
                          cpus: tuple[int, int] | None = None,
                          evict_bytes: int | None = None) -> RuntimeCost:
    """``cost`` plus each runner's own loop per frame, measured here
    (:func:`hwsched.runtime.runnercost.with_runner_terms`); ``evict_bytes``: what the
    stand-in model sweeps a frame (default
    :func:`~hwsched.runtime.runnercost.default_evict_bytes`: twice the last-level cache)."""
    from hwsched.runtime.runnercost import measure_runner_frames, with_runner_terms

    return with_runner_terms(cost, measure_runner_frames(sizes, cpus=cpus,
                                                         evict_bytes=evict_bytes))


def measure_runtime_cost_with_same_core(sizes: Sequence[int] = DEFAULT_SIZES,
                                        frames: int = DEFAULT_FRAMES,
                                        repeats: int = DEFAULT_REPEATS, gap_s: float = 0.0,
                                        cpus: tuple[int, int] | None = None) -> RuntimeCost:
    """:func:`measure_runtime_cost` across the two cores, then the same hop with both ends on
    the sending core as its ``same_core`` section (what ``profile --hop-cost`` writes): the
    price of a hop between two stages pinned to one CPU, whose ends take turns on it. A host
    that gives this process one CPU measured the first hop there already and reuses it."""
    send_cpu, receive_cpu = cpus or hop_cpus()
    across = measure_runtime_cost(sizes, frames, repeats, gap_s, cpus=(send_cpu, receive_cpu))
    if send_cpu == receive_cpu:
        return replace(across, same_core=across)
    return replace(across, same_core=measure_runtime_cost(sizes, frames, repeats, gap_s,
                                                          cpus=(send_cpu, send_cpu)))


def runtime_cost_with_same_core(across: Sequence[HopSample],
                                same_core: Sequence[HopSample] | None,
                                where: str = "on two cores") -> RuntimeCost:
    """The cost fitted through ``across`` (measured ``where``: two cores unless the host gave
    one), with ``same_core`` (both ends on one core) fitted as its ``same_core`` section when
    measured.

    >>> def hop(size, ms):
    ...     return HopSample(size, sender_ms=ms, receiver_ms=ms, wall_ms=3 * ms)
    >>> cost = runtime_cost_with_same_core([hop(0, 0.1), hop(1000, 0.2)],
    ...                                    [hop(0, 0.3), hop(1000, 0.5)])
    >>> cost.wire_ms(1000), cost.same_core.wire_ms(1000)
    (0.2, 0.5)
    >>> runtime_cost_with_same_core([hop(0, 0.1), hop(1000, 0.2)], None).same_core is None
    True
    """
    cost = runtime_cost_from_samples(across, where)
    if same_core is None:
        return cost
    return replace(cost, same_core=runtime_cost_from_samples(same_core, "on one core"))


def paced_samples(sizes: Sequence[int], frames: int, repeats: int, gap_s: float,
                  busy_cores: bool = True, cpus: tuple[int, int] | None = None
                  ) -> list[HopSample]:
    """Per size, the cores' CPU ms measured back to back (``busy_cores``: each core sweeping
    its cache meanwhile, see :func:`measure_hop_ends`) and the one-way trip of frames
    ``gap_s`` apart. Paced, each end's CPU clock also counts its measuring loop's idle wake-ups
    and the acknowledgement's handling, which are on no frame's way; the wall time between
    the cores' shares is what pacing adds to a frame's latency."""
    busy = measure_hop_ends(sizes, frames, repeats, cpus=cpus, busy_cores=busy_cores)
    paced = measure_hop_ends(sizes, frames, repeats, cpus=cpus, gap_s=gap_s)
    return [replace(b, one_way_ms=p.one_way_ms) for b, p in zip(busy, paced, strict=True)]


def measure_hop_ms(payload_bytes: int, frames: int = 50, warmup: int = 5) -> float:
    """Median wall ms per acknowledged frame of ``payload_bytes`` (encode, send, receive,
    decode, acknowledge), the two ends on two cores."""
    del warmup  # each end warms up with WARMUP_FRAMES frames
    return measure_hop_ends([payload_bytes], frames, repeats=1)[0].wall_ms


def write_loopback_link(path: Path, name: str = "host_loopback",
                        cost: RuntimeCost | None = None) -> Path:
    """A link descriptor for this host's loopback: the *wire* part of a hop measured through
    the runtime's transport (what neither core spends; the cores' part is the runtime cost)."""
    import yaml

    from hwsched.hardware import load_link

    cost = cost or measure_runtime_cost()
    wire_per_byte_ms = max(cost.wire_per_byte_ms, 8 * MS_PER_S / MAX_LOOPBACK_BPS)
    how = f"derived: the wire part of a hop; {cost.source}"
    data = {
        "schema": "hwsched-hardware/1", "kind": "link", "name": name,
        "description": "this host's loopback through the runtime's ZeroMQ transport, measured "
                       "(the time between the two cores' shares of a hop)",
        "bandwidth_bps": {"value": 8 / wire_per_byte_ms * MS_PER_S, "source": how},
        "bits_per_byte": {"value": 8, "source": "bytes are counted, not line bits"},
        "message_latency_ms": {"value": cost.wire_frame_ms, "source": how},
        "power": {"active_w": {"value": 0.001, "estimate": "loopback has no link hardware; "
                                         "a token figure (energy is not measured here)"}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_link(path)  # validate what was written
    return path


def _sizes(text: str) -> tuple[int, ...]:
    """``--sizes``: checked before minutes of measuring, not after.

    >>> _sizes("1024,65536")
    (1024, 65536)
    """
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of byte counts") from None
    if any(size < 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: payload sizes are bytes, each >= 0")
    return sizes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    from hwsched.runtime.cli import number_argument

    parser = argparse.ArgumentParser(prog="python -m hwsched.runtime.hopcost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=_sizes, default=DEFAULT_SIZES,
                        help="payload bytes, comma-separated (at least two)")
    parser.add_argument("--frames", type=_positive, default=DEFAULT_FRAMES)
    parser.add_argument("--repeats", type=_positive, default=DEFAULT_REPEATS)
    parser.add_argument("--idle-cores", action="store_true",
                        help="measure without sweeping each core's cache between hand-offs "
                             "(with --gap-ms: the cores' back-to-back shares; the paced "
                             "frames never sweep)")
    parser.add_argument("--gap-ms", type=number_argument(float, 0.0, strict=False), default=0.0,
                        help="idle this long between frames (a pipeline fed one frame at a "
                             "time); the wire part is then a frame's one-way trip's")
    parser.add_argument("--same-core", action="store_true",
                        help="then measure the same hop with both ends on the sending core: the "
                             "cost's same_core section, for stages sharing a CPU ('profile "
                             "--hop-cost' always measures it)")
    parser.add_argument("--runners", action="store_true",
                        help="add what each runner's own loop costs per frame beyond a bare "
                             "hop end, measured streaming the real source, stage loop and "
                             "sink (hwsched.runtime.runnercost)")
    parser.add_argument("--runner-evict-mib", type=_positive, metavar="MIB",
                        help="with --runners: what the stage's stand-in model sweeps a frame "
                             "(default: twice the last-level cache, which a model's pass "
                             "evicts, and the runners' code and data with it)")
    parser.add_argument("--end", choices=("send", "receive", "evict"), help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.end:  # one end of a measurement: any sizes (measure_hop_ms times a single one)
        return _end_main(args)
    if args.runner_evict_mib and not args.runners:
        parser.error("argument --runner-evict-mib: only with --runners")
    if len(set(args.sizes)) < 2:  # the fit needs two sizes: say so before minutes of measuring
        parser.error(f"argument --sizes: {','.join(map(str, args.sizes))!r}: give at least two "
                     "different payload sizes in bytes")
    send_cpu, receive_cpu = hop_cpus()
    samples = _main_samples(args, (send_cpu, receive_cpu))
    same_core = None
    if args.same_core:  # one CPU only: the hop above was on it already
        same_core = (samples if send_cpu == receive_cpu
                     else _main_samples(args, (send_cpu, send_cpu)))
    cost = runtime_cost_with_same_core(samples, same_core,
                                       hop_placement((send_cpu, receive_cpu)))
    if args.runners:
        evict = args.runner_evict_mib << 20 if args.runner_evict_mib else None
        cost = with_measured_runners(cost, list(args.sizes), (send_cpu, receive_cpu), evict)
    document = {"samples": _sample_records(samples), "runtime_cost": cost.to_dict()}
    if same_core is not None:
        document["same_core_samples"] = _sample_records(same_core)
    print(json.dumps(document, indent=2))
    return 0


def _main_samples(args: argparse.Namespace, cpus: tuple[int, int]) -> list[HopSample]:
    gap_s = args.gap_ms / MS_PER_S
    if gap_s:
        return paced_samples(list(args.sizes), args.frames, args.repeats, gap_s,
                             busy_cores=not args.idle_cores, cpus=cpus)
    return measure_hop_ends(list(args.sizes), args.frames, args.repeats, cpus=cpus,
                            busy_cores=not args.idle_cores)


def _sample_records(samples: Sequence[HopSample]) -> list[dict]:
    return [vars(s) | {"wire_ms": s.wire_ms} for s in samples]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
