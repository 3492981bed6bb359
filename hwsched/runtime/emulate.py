"""Emulation: run a whole plan on this machine, every role in its own process, and measure it.

Source, stages and sink are separate ``hwsched-runner`` processes talking ZeroMQ TCP, stage
``k`` pinned to CPU ``k mod cores`` (its own core while there are enough); the source shares
stage 0's CPUs and the sink the last stage's (the camera and the consumer sit on those boards),
so their per-frame work loads the cores it would load on the boards. The source starts
only after every stage has loaded its model. With ``link_emulation`` each stage runs in its own
network namespace joined by veth pairs shaped to the plan's link (see
:mod:`hwsched.runtime.linkemu`; a stage graph: one namespace per board, a veth pair per pair
of boards, :mod:`hwsched.runtime.graph_emulate`), and the link's message latency is added by
the senders.

An adaptive plan (with ``alternatives``) runs with a controller beside the source unless
``adapt`` is off (then it stays on alternative 0, or follows a scripted ``switch_at``); the
result then adds the sink's delivery counts, the switches it saw and a timeline of measured
bandwidth, delivered throughput and the active split.

Throughput is measured at the sink over the steady state (after ``warmup`` frames): frames
delivered per second of delivery time. Stage busy time is the median time of one invocation
(input conversion + model + output gathering), from the stage's own clock.
"""

from __future__ import annotations

import json
import math
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import Plan, check_alternatives, check_stage_file, load_plan
from hwsched.documents import EMULATION, document_from_dict, document_to_dict
from hwsched.documents.fields import NOT_JSON
from hwsched.errors import DocumentError, TransportError
from hwsched.progress import Progress, silent
from hwsched.runtime.cpucap import StageCaps, stage_speeds
from hwsched.runtime.defaults import (
    DEFAULT_RESEND_AFTER_S,
    DEFAULT_STALL_TIMEOUT_S,
    DEFAULT_WINDOW,
)
from hwsched.runtime.linkemu import AppliedStep, BandwidthStep
from hwsched.units import MS_PER_S

#: Seconds to wait for every stage to load its model.
READY_TIMEOUT_S = 60.0
#: Upper bound on a run: generous per frame, plus start-up.
RUN_TIMEOUT_BASE_S = 60.0
RUN_TIMEOUT_PER_FRAME_S = 0.5
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class EmulationConfig:
    frames: int = 200
    data: str = "random"
    rate_hz: float | None = None
    threads: int = 1
    window: int = DEFAULT_WINDOW
    resend_after_s: float = DEFAULT_RESEND_AFTER_S
    link_emulation: bool = False
    #: Link descriptor for shaping; default: the plan's link name.
    link: str | None = None
    #: CPU set of each stage; default: stage k on core k mod cores.
    stage_cpus: tuple[tuple[int, ...], ...] | None = None
    warmup_frames: int | None = None
    power: bool = False
    keep_dir: Path | None = None
    #: Restart a stage that dies instead of ending the run (see :func:`_supervise`).
    restart: bool = False
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    #: Fraction of a core per stage (None: auto from the boards' speeds, () : uncapped).
    board_speed: tuple[float, ...] | None = ()
    #: Run the controller (adaptive plans): None = when the plan has alternatives.
    adapt: bool | None = None
    #: Scripted switches ``(seq, alternative)``: from frame seq on, run on that alternative.
    switch_at: tuple[tuple[int, int], ...] = ()
    #: The controller's hysteresis (see :func:`hwsched.runtime.controller.decide`).
    hold_s: float = 1.0
    margin: float = 0.1
    #: Changes of the shaped link's rate during the run (``--bandwidth-schedule``).
    bandwidth_schedule: tuple[BandwidthStep, ...] = ()
    #: The period a frame is expected to take (e.g. predicted over a slow shaped link): each
    #: child's time limit then allows ``frames`` of it, not only the per-frame default.
    expected_period_s: float | None = None


@dataclass(frozen=True)
class StageMeasure:
    index: int
    platform: str
    cpus: tuple[int, ...]
    frames: int
    busy_ms: float
    busy_ms_mean: float
    utilization: float
    predicted_ms: float | None
    #: Times the stage was restarted (``--restart``); its other figures are its last process's.
    restarts: int = 0
    #: Fraction of a core the stage was capped at (None: uncapped).
    board_speed: float | None = None
    #: TFLite Micro stages: the arena measured at export (plan.json), for the report.
    arena_bytes: int | None = None
    engine: str = "litert-cpu"
    #: The board instance (``rpi4#2`` when a platform repeats; the plan's ``board``).
    board: str | None = None
    #: The stage process's CPU per frame, all its threads (its ZeroMQ I/O thread too), and
    #: the part of it outside the model's invocations: what the runtime cost its core, beside
    #: the hand-off cost the plan charged (None: not measured, a file from before).
    cpu_ms_per_frame: float | None = None
    runtime_cpu_ms_per_frame: float | None = None


@dataclass(frozen=True)
class HopMeasure:
    """One hop: bytes per frame and time spent handing frames to the transport."""

    hop: int
    name: str
    payload_bytes_per_frame: float
    send_ms: float
    resent: int
    duplicates: int
    rejected: int
    predicted_ms: float | None
    #: The receiver's smoothed effective bandwidth of the hop at the end of the run.
    measured_bandwidth_mbps: float | None = None


@dataclass(frozen=True)
class SwitchMeasure:
    """One switch between alternatives as the sink saw it: from frame ``at_frame`` on, frames
    ran on the other split. ``at_s`` is when the source applied it (seconds from the source's
    start); the bandwidth is what the source knew then (the slowest inter-stage hop, and each
    hop), None when no measurement had arrived."""

    at_s: float
    at_frame: int
    from_alternative: int
    to_alternative: int
    from_cut_positions: tuple[int, ...]
    to_cut_positions: tuple[int, ...]
    measured_bandwidth_mbps: float | None
    hop_bandwidth_mbps: Mapping[str, float] = field(default_factory=dict)
    #: Who asked: "controller", "schedule" (``switch_at``), or None (the source did not say).
    by: str | None = None
    #: A controller's switch: whether it was a trial of a split priced from stale busy times
    #: (:func:`hwsched.runtime.controller.trial_candidate`); None when the controller did not
    #: ask for it or left no record.
    trial: bool | None = None


@dataclass(frozen=True)
class TimelineBucket:
    """One slice of the run (``TIMELINE_BUCKET_S``): the latest measured bandwidth of each hop,
    the frames per second delivered in it, and the alternative of the last frame delivered."""

    t_s: float
    hop_bandwidth_mbps: Mapping[str, float]
    throughput_ips: float
    alternative: int


@dataclass(frozen=True)
class EmulationResult:
    """What one emulation measured; its JSON form is the ``hwsched emulate --json`` document
    (:mod:`hwsched.documents`), written by :meth:`to_dict` and read back by :meth:`from_dict`.
    ``cut_positions`` and ``platforms`` say which split ran, so a report compares it with that
    candidate (None only in files written before they were recorded)."""

    model: str
    stages_count: int
    frames: int
    complete: bool
    in_order: bool
    throughput_ips: float
    predicted_throughput_ips: float | None
    latency_ms: Mapping[str, float]
    predicted_latency_ms: float | None
    #: Median end-to-end latency minus the stages' busy time: transport, queueing, waiting.
    transport_ms: float
    stages: tuple[StageMeasure, ...]
    hops: tuple[HopMeasure, ...]
    accuracy: float | None
    link_emulation: Mapping[str, Any] | None
    wall_s: float
    power: Mapping[str, Any] | None = None
    workdir: str | None = None
    outputs: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False, metadata=NOT_JSON)
    cut_positions: tuple[int, ...] | None = None
    platforms: tuple[str, ...] | None = None
    #: The plan's ``prediction.analysis`` (file, sha256, rank) when it was exported from one.
    analysis: Mapping[str, Any] | None = None
    #: Frames the source sent, and what the sink counted from what it delivered.
    frames_sent: int | None = None
    frames_delivered: int | None = None
    frames_duplicated: int | None = None
    frames_out_of_order: int | None = None
    #: Whether a controller chose the split (adaptive plans).
    adaptive: bool = False
    switches: tuple[SwitchMeasure, ...] = ()
    timeline: tuple[TimelineBucket, ...] = ()
    #: ``--bandwidth-schedule``: each change of the link's rate and when it took effect.
    bandwidth_schedule: tuple[AppliedStep, ...] | None = None
    #: The source's and the sink's CPU per frame (each process, all its threads): in an
    #: emulation they share the first and the last stage's cores (None: not measured).
    source_cpu_ms_per_frame: float | None = None
    sink_cpu_ms_per_frame: float | None = None
    #: Fields this reader does not declare (a newer or parallel writer's), kept so that a
    #: report or a rewrite sees them (see :mod:`hwsched.documents.fields`).
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    JSON_KIND = EMULATION
    JSON_ERROR = DocumentError
    JSON_TITLE = "emulation"
    JSON_DERIVED = ("throughput_error",)
    REQUIRED_WITH_KIND = ("cut_positions", "platforms")

    @property
    def throughput_error(self) -> float | None:
        """Measured over predicted throughput, minus one."""
        p = self.predicted_throughput_ips
        return None if not p else self.throughput_ips / p - 1.0

    def core_cpu_ms_per_frame(self) -> tuple[float | None, ...]:
        """A chain's CPU per frame on each stage's CPU set: every stage process pinned to
        that set (all its threads), plus the source on the first stage's set and the sink on
        the last's, as ``emulate`` pins them; None for a set where a part was not measured. The
        busiest set bounds the period from below (a period longer than every set's load is
        time lost waiting). Stages sharing a set (more stages than CPUs) each show its whole
        load.

        >>> def stage(k, cpus, ms):
        ...     return StageMeasure(k, "rpi4", cpus, 9, 1.0, 1.0, 0.5, None, cpu_ms_per_frame=ms)
        >>> def run(*stages):
        ...     return EmulationResult("m", len(stages), 9, True, True, 100.0, None, {}, None,
        ...                            0.0, stages, (), None, None, 1.0,
        ...                            source_cpu_ms_per_frame=0.5, sink_cpu_ms_per_frame=0.25)
        >>> run(stage(0, (0,), 2.0), stage(1, (1,), 2.0)).core_cpu_ms_per_frame()
        (2.5, 2.25)
        >>> run(stage(0, (0,), 2.0), stage(1, (1,), 2.0), stage(2, (0,), 1.0)
        ...     ).core_cpu_ms_per_frame()   # stage 2 and the sink beside stage 0 and the source
        (3.75, 2.0, 3.75)
        """
        if not self.stages:
            return ()
        loads: dict[tuple[int, ...], list[float | None]] = {}
        for stage in self.stages:
            loads.setdefault(tuple(stage.cpus), []).append(stage.cpu_ms_per_frame)
        loads[tuple(self.stages[0].cpus)].append(self.source_cpu_ms_per_frame)
        loads[tuple(self.stages[-1].cpus)].append(self.sink_cpu_ms_per_frame)
        totals = {cpus: None if None in parts else float(sum(p for p in parts if p is not None))
                  for cpus, parts in loads.items()}
        return tuple(totals[tuple(stage.cpus)] for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return document_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "emulation") -> EmulationResult:
        return document_from_dict(cls, data, where)


# -- processes ---------------------------------------------------------------------------------
#: Where the kernel takes connecting sockets' source ports from when it does not say.
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
#: Listening ports are drawn from this many ports just below the ephemeral range, and from
#: every port above it; never from the privileged ones.
PORT_SPAN = 12000
MIN_PORT = 1024
MAX_PORT = 65535
PORT_TRIES = 200


def _ephemeral_range(path: Path = EPHEMERAL_PORTS) -> tuple[int, int]:
    """The kernel's ephemeral range, first and last port (32768-60999 when it cannot be read).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "range").write_text("40000 60999")
    ...     _ephemeral_range(Path(d) / "range")
    11
    (40000, 60999)
    """
    try:
        low, high = (int(value) for value in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return low, high


def listening_ranges(low: int, high: int) -> tuple[range, ...]:
    """The ports a connecting socket never takes as its source: up to :data:`PORT_SPAN` just
    below the ephemeral range ``[low, high]``, and every port above it.

    >>> listening_ranges(32768, 60999)
    (range(20768, 32768), range(61000, 65536))
    >>> listening_ranges(1024, 65535)  # the whole unprivileged range is ephemeral
    ()
    """
    ranges = (range(max(MIN_PORT, low - PORT_SPAN), max(MIN_PORT, low)),
              range(max(MIN_PORT, high + 1), MAX_PORT + 1))
    return tuple(r for r in ranges if len(r))


def port_picker() -> Callable[[], int]:
    """A picker of distinct free ports on 127.0.0.1 for one run's listeners, taken outside the
    kernel's ephemeral range (:func:`listening_ranges`). A port the kernel handed out as free
    (``bind(0)``) comes from that range, and between the check and the runner's own bind any
    connecting socket may take it as its source port: a 28-stage tiled plan, whose runners
    open dozens of connections, failed to start on "Address already in use". Outside the
    range only another listener can take it.

    The draws come from the system's entropy, not the global :mod:`random` state: a caller
    that seeds it (``keras.utils.set_random_seed``, as the tile bench and tests do) would make
    every concurrent run draw the same ports. Ports above the range are drawn when none below
    is free (a range starting at 1024 leaves only those); only where the whole unprivileged
    range is ephemeral, or every draw is taken, is the kernel's choice taken, still distinct
    within the run (a closed port it handed out once it may hand out again)."""
    taken: set[int] = set()
    ranges = listening_ranges(*_ephemeral_range())
    draw = random.SystemRandom()

    def pick() -> int:
        for ports in ranges:  # below the range first, then above it
            for _ in range(PORT_TRIES):
                port = draw.choice(ports)
                if port not in taken and _bindable(port):
                    taken.add(port)
                    return port
        for _ in range(PORT_TRIES):  # no room outside the range: the kernel's choice
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in taken:
                taken.add(port)
                return port
        raise TransportError(f"no free port for the emulation's listeners after {PORT_TRIES} "
                             "tries, outside the kernel's ephemeral range and within it")

    return pick


def _bindable(port: int) -> bool:
    """Whether nothing holds ``port`` on 127.0.0.1 now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


#: How often the supervisor looks at its children and at the run's progress.
SUPERVISE_POLL_S = 0.05
#: Longest the supervisor sleeps while the run goes on, where it can wait on its children's
#: ends (Linux's pidfd): an end wakes it at once, and a stall is a matter of seconds. Its
#: 50 ms tick (an unpinned pass over every child and events file) ran 0.1-0.3 ms inside each
#: 17 ms branch compute of bench_placement's two-branch plan, on both cores (``perf sched``).
SUPERVISE_IDLE_S = 0.5
#: Times one stage is restarted before the run gives up on it.
MAX_RESTARTS = 3
#: Exit code of a runner that reported an error about its input (plan, stage file, data): a
#: restart would fail the same way.
INPUT_ERROR_EXIT_CODE = 2
#: Bytes read from the end of a child's log for its last line.
LOG_TAIL_BYTES = 4096
RUNNER_ERROR_PREFIX = "hwsched-runner: error: "


class _Processes:
    """Children started by the emulation; all are ended (and reaped) by :meth:`stop_all`.

    Each child writes to ``NAME.log`` in the work directory, appended to across restarts;
    :meth:`failure` turns the end of a child into one line that carries the child's own last
    line, since the work directory is deleted when the run ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.restarts: dict[str, int] = {}
        #: Children whose end does not end the run (the controller is advice only).
        self.optional: set[str] = set()
        #: Optional children that ended, with how (reported once).
        self.lost: dict[str, str] = {}
        #: Stage CPU caps: every stage process started (or restarted) is put under its cap.
        self.caps: StageCaps | None = None

    def start(self, name: str, argv: Sequence[str], prefix: Sequence[str] = ()) -> None:
        """Start child ``name`` and put it under its cap. Ctrl-C or SIGTERM arriving while it
        starts is held until the child is recorded and capped (then raised here: up to the
        few seconds a cap's filler may take to restart), so :meth:`stop_all` always knows it:
        arriving inside ``Popen``, after the fork, it used to leave that runner running on
        its own after ``emulate`` had ended."""
        self.commands[name] = (tuple(argv), tuple(prefix))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        with _stop_signals_held(), (self.workdir / f"{name}.log").open("ab") as log:
            self.children[name] = subprocess.Popen(
                [*prefix, sys.executable, "-m", "hwsched.runtime.cli", *argv],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
            if self.caps is not None and name.startswith("stage"):
                self.caps.attach([(int(name.removeprefix("stage")), self.children[name].pid)])

    def wait_for_exit(self, timeout_s: float) -> bool:
        """Sleep until a running child ends or ``timeout_s`` passes, and say whether a child's
        end woke it; without pidfds (not Linux >= 5.3) sleep :data:`SUPERVISE_POLL_S` and say
        False. ``poll``, not ``select``: a process holding many descriptors (a caller's own
        files and sockets) gets pidfds numbered 1024 and up, which ``select`` refuses."""
        pidfd_open = getattr(os, "pidfd_open", None)
        fds: list[int] = []
        try:
            for child in self.children.values():
                if pidfd_open is not None and child.poll() is None:
                    fds.append(pidfd_open(child.pid))
            if fds:
                return _any_readable(fds, timeout_s)
        except OSError:  # no pidfds here
            pass
        finally:
            for fd in fds:
                os.close(fd)
        time.sleep(SUPERVISE_POLL_S)
        return False

    def restart(self, name: str) -> None:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.start(name, *self.commands[name])

    def failed(self) -> list[str]:
        """Children that have ended with an error or by a signal (optional ones aside)."""
        return [name for name, child in self.children.items()
                if child.poll() is not None and child.returncode != 0
                and name not in self.optional]

    def ended(self) -> frozenset[str]:
        return frozenset(n for n, c in self.children.items() if c.poll() is not None)

    def all_succeeded(self) -> bool:
        return all(child.poll() == 0 for name, child in self.children.items()
                   if name not in self.optional)

    def newly_lost(self) -> list[str]:
        """Optional children that ended since the last call, each once."""
        names = [n for n in self.optional - set(self.lost)
                 if self.children[n].poll() is not None]
        for name in names:
            self.lost[name] = self.failure(name)
        return names

    def raise_failed(self) -> None:
        for name in self.failed():
            raise TransportError(self.failure(name))

    def failure(self, name: str) -> str:
        """How child ``name`` ended, in one line with its own last line (its error)."""
        code = self.children[name].returncode
        if code is not None and code < 0:  # a signal: the child had no chance to say why
            return f"emulation: {name} was killed by {_signal_name(-code)}"
        last = _last_line(self.workdir / f"{name}.log")
        return f"emulation: {name} exited with code {code}" + (f": {last}" if last else "")

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
                child.send_signal(signal.SIGCONT)  # a stopped child must run to handle it
        limit = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children.values():
            try:
                child.wait(timeout=max(limit - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held while the block runs, then delivered to the handlers they had,
    every one of them, in the order they came; the first exception a handler raises is raised
    after the last is delivered (and replaces one the block raised, kept as its context).
    Handlers are swapped with both signals blocked, so one arriving meanwhile is neither lost
    nor able to leave a holding handler behind. A signal ignored, or handled outside Python,
    is left alone; off the main thread (where handlers cannot be set) nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    numbers = {n for n in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(n) not in (signal.SIG_IGN, None)}
    pending: list[int] = []
    previous: dict[int, Any] = {}
    try:
        with _blocked(numbers):
            for number in sorted(numbers):
                previous[number] = signal.signal(number, lambda n, _f: pending.append(n))
        yield
    finally:
        with _blocked(numbers):
            for number, handler in previous.items():
                signal.signal(number, handler)
        raised: BaseException | None = None
        for number in pending:
            try:
                signal.raise_signal(number)
            except BaseException as error:  # re-raised once all are delivered
                raised = raised or error
        if raised is not None:
            raise raised


@contextmanager
def _blocked(numbers: set[int]) -> Iterator[None]:
    """``numbers`` blocked in this thread while the block runs (they wait, then arrive)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, numbers)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, numbers)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_line(log: Path) -> str:
    """The last non-blank line of a child's log, without the runner's ``error:`` prefix."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(log.stat().st_size - LOG_TAIL_BYTES, 0))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1].removeprefix(RUNNER_ERROR_PREFIX) if lines else ""


class _ProgressWatch:
    """When the run last moved: a stage computed a frame (its events file grew) or a child
    ended. A fixed deadline would have to allow for the slowest plan, rate and machine; a
    run that moves is never cut short, and one that stops is noticed after the stall
    timeout."""

    def __init__(self, workdir: Path, stages: int) -> None:
        self.events = [workdir / f"events{k}.jsonl" for k in range(stages)]
        self.state: tuple[Any, ...] | None = None
        self.since_s = time.monotonic()

    def idle_s(self, processes: _Processes) -> float:
        state = (tuple(_size(p) for p in self.events), processes.ended(),
                 _source_ready(processes))
        now = time.monotonic()
        if state != self.state:
            self.state, self.since_s = state, now
        return now - self.since_s

    def summary(self) -> str:
        counts = (_line_count(p) for p in self.events)
        return ", ".join(f"stage{k} computed {n} frames" for k, n in enumerate(counts))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _line_count(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def _source_ready(processes: _Processes) -> bool:
    """The source has loaded its data and connected: from now on frames can move."""
    return (processes.workdir / "source.ready").exists()


def _sink_done(processes: _Processes) -> bool:
    """The sink got every frame and the end of the stream, and exited cleanly."""
    sink = processes.children.get("sink")
    return sink is not None and sink.poll() == 0


def _stall_limit_s(processes: _Processes, config: EmulationConfig) -> float:
    """How long the run may now go without progress.

    A healthy run is quiet twice, and neither is a stall: while the source starts (a fresh
    interpreter loading its data, allowed as long as the other roles get to be ready), and
    after the sink is done, when every stage may wait :data:`~hwsched.runtime.stage.END_GRACE_S`
    for a lost acknowledgement and then answers late resends for one resend interval more
    (:data:`~hwsched.runtime.stage.END_LINGER_SLACK_S`) before it exits, plus the time a
    child is given to stop."""
    from hwsched.runtime.stage import END_GRACE_S, END_LINGER_SLACK_S

    # a lost frame or end-of-stream comes again only after one resend interval: a quiet spell
    # that short is the reliable delivery at work, not a stall
    limit_s = max(config.stall_timeout_s, 2 * config.resend_after_s) + (
        1.0 / config.rate_hz if config.rate_hz else 0.0)
    if not _source_ready(processes):
        return max(limit_s, READY_TIMEOUT_S)
    if _sink_done(processes):
        ending_s = config.resend_after_s + END_LINGER_SLACK_S + END_GRACE_S + STOP_TIMEOUT_S
        return max(limit_s, ending_s)
    return limit_s


def _any_readable(fds: Sequence[int], timeout_s: float) -> bool:
    """Whether one of ``fds`` became readable within ``timeout_s`` (any descriptor number)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return bool(poller.poll(math.ceil(timeout_s * MS_PER_S)))


def _may_restart(name: str, processes: _Processes, config: EmulationConfig) -> bool:
    """Only stages are restarted (a new source would send every frame again, a new sink would
    have lost what it delivered), not after an error about their input, not once the stream is
    complete (nothing would ever reach the new stage, which would wait in vain), and not
    forever."""
    return (config.restart and name.startswith("stage")
            and processes.children[name].returncode != INPUT_ERROR_EXIT_CODE
            and processes.restarts.get(name, 0) < MAX_RESTARTS and not _sink_done(processes))


def _supervise(processes: _Processes, config: EmulationConfig, stages: int,
               report: Progress, stateful: frozenset[str] = frozenset(),
               idle_s: float = SUPERVISE_IDLE_S) -> None:
    """Return once every child has exited cleanly; between looks, sleep until a child ends
    or ``idle_s`` passes.

    A child that exits with an error or dies ends the run at once, with its own last line; with
    ``config.restart`` a stage is restarted instead and the run goes on: its upstream resends
    every frame the dead stage held and receivers drop duplicates, so the sink still gets each
    frame once, in order. A run in which nothing moved for the stall timeout ends too."""
    watch = _ProgressWatch(processes.workdir, stages)
    while not processes.all_succeeded():
        for name in processes.newly_lost():
            report(f"{processes.lost[name].removeprefix('emulation: ')}; the pipeline stays "
                   "on its current split")
        for name in processes.failed():
            if not _may_restart(name, processes, config):
                raise TransportError(processes.failure(name) + _kept(config))
            report(f"restarting {name} ({processes.failure(name).removeprefix('emulation: ')})"
                   + (STATE_RESET_NOTE if name in stateful else ""))
            processes.restart(name)
        stall_s = _stall_limit_s(processes, config)
        if watch.idle_s(processes) > stall_s:
            running = sorted(set(processes.children) - processes.ended())
            raise TransportError(
                f"emulation: no progress for {stall_s:g} s ({watch.summary()}; still running: "
                f"{', '.join(running)}); raise --stall-timeout if the plan is this slow"
                + _kept(config))
        processes.wait_for_exit(idle_s)


#: Said when a stateful stage restarts: nothing resends its lost state.
STATE_RESET_NOTE = ("; warning: it is stateful, its resource variables start again from their "
                    "initial values, so its outputs from here on differ from an uninterrupted run")


def _kept(config: EmulationConfig) -> str:
    return "" if config.keep_dir is None else f" (logs kept in {config.keep_dir})"


def _check_power_with_restart(config: EmulationConfig) -> None:
    """The virtual meter follows the stage processes it started with: a restarted stage's CPU
    time would be left out of the energy without a word, so the two are not combined."""
    if config.power and config.restart:
        from hwsched.errors import PowerError

        raise PowerError("emulate: --power cannot follow a restarted stage (the virtual meter "
                         "watches the processes it started with); drop --restart or --power")


def _check_keep_dir(keep_dir: Path | None) -> None:
    """Before anything runs: the logs go into a directory, never over a file."""
    from hwsched.errors import OutputError

    if keep_dir is not None and keep_dir.exists() and not keep_dir.is_dir():
        raise OutputError(f"--keep {keep_dir}: exists and is not a directory")


def stage_cpu_sets(stages: int, given: Sequence[Sequence[int]] | None = None
                   ) -> tuple[tuple[int, ...], ...]:
    if given is not None:
        if len(given) != stages:
            raise TransportError(f"{len(given)} CPU sets given for {stages} stages")
        return tuple(tuple(c) for c in given)
    cores = sorted(os.sched_getaffinity(0))
    return tuple((cores[k % len(cores)],) for k in range(stages))


# -- the run -----------------------------------------------------------------------------------
def emulate(plan_dir: Path, config: EmulationConfig = EmulationConfig(),
            progress: Progress | None = None) -> EmulationResult:
    """Run the plan in ``plan_dir`` as a local pipeline and measure it."""
    report = progress or silent
    _check_power_with_restart(config)
    plan = load_plan(plan_dir)
    _check_schedule(plan, config)
    for stage in plan.stages:
        check_stage_file(plan_dir, stage)
    _check_adaptive(plan, plan_dir, config)
    _check_keep_dir(config.keep_dir)
    # root and controller checked; a board's stages share its cap
    caps = StageCaps(stage_speeds(plan, config.board_speed), [s.board for s in plan.stages])
    workdir = Path(tempfile.mkdtemp(prefix="hwsched-emulate-"))
    processes = _Processes(workdir)
    processes.caps = caps
    links = scheduler = None
    power_stops: list[Callable[[], Any]] = []
    started_s = time.time()
    try:
        if config.link_emulation:
            links = _create_links(plan, config)
        urls = _urls(plan, links)
        cpus = stage_cpu_sets(len(plan.stages), config.stage_cpus)
        if plan.is_graph:
            from hwsched.runtime.graph_emulate import graph_cpu_sets, graph_urls

            urls, cpus = graph_urls(plan, port_picker(), links), graph_cpu_sets(plan,
                                                                            config.stage_cpus)
        report("starting the sink and stages")
        _start_roles(plan_dir, plan, config, processes, urls, cpus, links)
        _wait_ready(workdir, plan, processes)
        steering = _start_controller(plan_dir, plan, config, processes, cpus, links)
        _start_power(config, processes, workdir, power_stops)
        scheduler = _start_schedule(links, config, workdir)
        report(f"streaming {config.frames} frames")
        processes.start("source", [str(plan_dir), "--source", "--next", urls["stage0"],
                                   *_common(config, workdir, "source"), "--frames",
                                   str(config.frames), "--data", config.data,
                                   "--cpus", ",".join(map(str, cpus[0])), *steering,
                                   *(["--rate", str(config.rate_hz)] if config.rate_hz else [])],
                        links.prefix(0) if links else ())
        _supervise(processes, config, len(plan.stages), report,
                   frozenset(f"stage{s.index}" for s in plan.stages if s.stateful))
        applied = scheduler.stop() if scheduler else None
        power = _finish_power(workdir, power_stops)
        report("summarising")
        result = _summarise(plan, config, workdir, cpus, links, time.time() - started_s, power,
                            processes.restarts)
        result = replace(result, adaptive="controller" in processes.children,
                         **_adaptive_summary(plan, workdir))
        return replace(result, stages=tuple(replace(s, board_speed=caps.speed(s.index))
                                            for s in result.stages), bandwidth_schedule=applied)
    finally:
        # each clean-up runs even when one before it raises: a cap that cannot be removed
        # must not leave the link namespaces or the work directory behind (ExitStack unwinds
        # in reverse order of registration; it re-raises the last failure, the earlier ones
        # chained as its __context__)
        with ExitStack() as cleanup:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
            if config.keep_dir is not None:
                cleanup.callback(shutil.copytree, workdir, config.keep_dir, dirs_exist_ok=True)
            if links is not None:
                cleanup.callback(links.delete)
            cleanup.callback(caps.close)
            cleanup.callback(processes.stop_all)
            for stop in power_stops:  # the recorder's before the meter's
                cleanup.callback(stop)
            if scheduler is not None:
                cleanup.callback(scheduler.stop_quietly)


def _adapting(plan: Plan, config: EmulationConfig) -> bool:
    return bool(plan.alternatives) and config.adapt is not False


def _check_adaptive(plan: Plan, plan_dir: Path, config: EmulationConfig) -> None:
    """Before anything starts: every alternative's files are there and current, and the
    scripted switches name alternatives the plan has."""
    if plan.alternatives:
        check_alternatives(plan, plan_dir)
    count = max(len(plan.alternatives), 1)
    for seq, alt in config.switch_at:
        if not 0 <= alt < count:
            raise TransportError(f"emulate: switch at frame {seq} to alternative {alt}: the "
                                 f"plan has alternatives 0..{count - 1}")
    if config.adapt and not plan.alternatives:
        raise TransportError(f"emulate --adapt: {plan_dir} has no alternatives (export it with "
                             "--adaptive K)")


def _start_controller(plan_dir: Path, plan: Plan, config: EmulationConfig,
                      processes: _Processes, cpus, links) -> list[str]:
    """The source's steering arguments: the scripted switches, and the controller's address
    once it listens (it runs beside the source, on the source's CPUs and network)."""
    argv = ["--switch-at", ",".join(f"{s}:{a}" for s, a in config.switch_at)] \
        if config.switch_at else []
    if not _adapting(plan, config):
        return argv
    workdir = processes.workdir
    processes.optional.add("controller")
    processes.start("controller", [
        str(plan_dir), "--controller", "--listen", "tcp://127.0.0.1:0",
        *_common(config, workdir, "controller"), "--hold", str(config.hold_s),
        "--margin", str(config.margin), "--cpus", ",".join(map(str, cpus[0]))],
        links.prefix(0) if links else ())
    limit = time.monotonic() + READY_TIMEOUT_S
    ready = workdir / "controller.ready"
    while not (ready.exists() and len(ready.read_text().splitlines()) > 1):
        if processes.children["controller"].poll() is not None:
            raise TransportError(processes.failure("controller"))
        if time.monotonic() > limit:
            raise TransportError(f"emulation: controller not ready after {READY_TIMEOUT_S:g} s")
        time.sleep(SUPERVISE_POLL_S)
    return [*argv, "--controller-at", ready.read_text().splitlines()[1]]


def _check_schedule(plan: Plan, config: EmulationConfig) -> None:
    from hwsched.runtime.linkemu import check_schedule

    if plan.is_graph and config.bandwidth_schedule:
        from hwsched.errors import BandwidthScheduleError

        raise BandwidthScheduleError("--bandwidth-schedule replays on a chain's hops; a "
                                     "stage-graph plan's links (one per pair of boards) are "
                                     "not scheduled yet")
    check_schedule(config.bandwidth_schedule, config.link_emulation, len(plan.stages) - 1)


def _start_schedule(links, config: EmulationConfig, workdir: Path):
    """Replay ``--bandwidth-schedule`` from the moment the source is ready to stream."""
    if links is None or not config.bandwidth_schedule:
        return None
    from hwsched.runtime.linkemu import BandwidthScheduler, file_exists, file_mtime_s

    return BandwidthScheduler(links, config.bandwidth_schedule,
                              file_mtime_s(workdir / "source.ready"),
                              file_exists(workdir / "sink.json")).start()


def _create_links(plan: Plan, config: EmulationConfig):
    from hwsched.hardware import load_link
    from hwsched.runtime.linkemu import create_links

    name = config.link or (plan.links[0].link if plan.links else "")
    if not name:
        raise TransportError("link emulation needs a link: the plan names none, pass --link")
    if plan.is_graph:  # one namespace per board, a veth pair per pair of boards
        from hwsched.runtime.graph_emulate import create_board_links

        return create_board_links(plan, load_link(name).bandwidth_bps)
    return create_links(len(plan.stages), load_link(name).bandwidth_bps)


def _link_delay_ms(plan: Plan, config: EmulationConfig) -> float:
    if not config.link_emulation:
        return 0.0
    from hwsched.hardware import load_link

    name = config.link or (plan.links[0].link if plan.links else "")
    return load_link(name).message_latency_ms if name else 0.0


def _sends_over_a_link(plan: Plan, k: int) -> bool:
    if plan.is_graph:
        from hwsched.runtime.graph_emulate import delays_messages

        return delays_messages(plan, k)
    return k < len(plan.stages) - 1


def _urls(plan: Plan, links) -> dict[str, str]:
    n = len(plan.stages)
    if links is not None and not plan.is_graph:  # a graph's: graph_emulate.graph_urls
        urls = {f"stage{k}": links.listen_url(k) for k in range(n)}
        urls["sink"] = links.sink_url()
        return urls
    pick = port_picker()
    ports = [pick() for _ in range(n + 1)]
    urls = {f"stage{k}": f"tcp://127.0.0.1:{ports[k]}" for k in range(n)}
    urls["sink"] = f"tcp://127.0.0.1:{ports[n]}"
    return urls


def _common(config: EmulationConfig, workdir: Path, name: str) -> list[str]:
    # each child's own limit, a safety net should this process die without ending it
    period_s = max(1.0 / config.rate_hz if config.rate_hz else 0.0,
                   config.expected_period_s or 0.0)
    timeout = (RUN_TIMEOUT_BASE_S + (RUN_TIMEOUT_PER_FRAME_S + period_s) * config.frames
               + READY_TIMEOUT_S)
    return ["--stats", str(workdir / f"{name}.json"), "--ready", str(workdir / f"{name}.ready"),
            "--window", str(config.window), "--resend-after", str(config.resend_after_s),
            "--max-runtime", str(timeout)]


def _start_roles(plan_dir: Path, plan: Plan, config: EmulationConfig, processes: _Processes,
                 urls: Mapping[str, str], cpus, links) -> None:
    n = len(plan.stages)
    delay = _link_delay_ms(plan, config)
    processes.start("sink", [str(plan_dir), "--sink", "--listen", urls["sink"],
                             *_common(config, processes.workdir, "sink"),
                             "--outputs", str(processes.workdir / "outputs.npz"),
                             "--data", config.data, "--frames", str(config.frames),
                             "--cpus", ",".join(map(str, cpus[n - 1]))],
                    links.prefix(n - 1) if links else ())
    for k in reversed(range(n)):
        if plan.is_graph:
            from hwsched.runtime.graph_emulate import graph_stage_argv

            wiring = graph_stage_argv(plan, k, urls)
        else:
            nxt = urls["sink"] if k == n - 1 else urls[f"stage{k + 1}"]
            wiring = ["--listen", urls[f"stage{k}"], "--next", nxt]
        processes.start(f"stage{k}", [
            str(plan_dir), "--stage", str(k), *wiring,
            "--threads", str(config.threads), "--cpus", ",".join(map(str, cpus[k])),
            "--events", str(processes.workdir / f"events{k}.jsonl"),
            *(["--link-delay-ms", str(delay)] if _sends_over_a_link(plan, k) else []),
            *(["--margin", str(config.margin)] if plan.alternatives else []),
            *_common(config, processes.workdir, f"stage{k}")],
            links.prefix(k) if links else ())


def _wait_ready(workdir: Path, plan: Plan, processes: _Processes) -> None:
    names = ["sink", *(f"stage{k}" for k in range(len(plan.stages)))]
    limit = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < limit:
        processes.raise_failed()
        if all((workdir / f"{n}.ready").exists() for n in names):
            return
        time.sleep(0.05)
    raise TransportError(f"emulation: roles not ready after {READY_TIMEOUT_S:g} s")


# -- power (virtual meter following the stage processes) ---------------------------------------
def _start_power(config: EmulationConfig, processes: _Processes, workdir: Path,
                 stops: list[Callable[[], Any]]) -> None:
    """The virtual meter and its recorder, each ``stop`` put in ``stops`` as soon as it runs
    (the run's clean-up calls what :func:`_finish_power` did not: an error or Ctrl-C must not
    leave their threads writing into the deleted work directory)."""
    if not config.power:
        return
    from hwsched.power.record import Recorder
    from hwsched.power.virtual import VirtualMeter

    pids = [c.pid for name, c in processes.children.items() if name.startswith("stage")]
    meter = VirtualMeter(pids, rate_hz=200.0)
    meter.start()
    stops.append(meter.stop)
    recorder = Recorder(meter.port, "ina219", workdir / "power.log")
    recorder.start()
    stops.append(recorder.stop)
    time.sleep(0.5)  # idle samples before the stream: the energy's idle baseline


def _finish_power(workdir: Path, stops: list[Callable[[], Any]]) -> dict[str, Any] | None:
    """The energy report of a run whose meter :func:`_start_power` started (``stops``
    non-empty), after stopping the recorder, then the meter; None without ``--power``."""
    if not stops:
        return None
    from hwsched.power.energy import energy_report
    from hwsched.power.logfile import read_log

    time.sleep(0.5)  # idle tail
    while stops:
        stops.pop()()  # the recorder's, then the meter's
    events = _read_events(workdir)
    log = read_log(workdir / "power.log")
    report = energy_report(log, events)
    return {"log": "power.log", **report.to_json()}


def _read_events(workdir: Path):
    from hwsched.power.energy import read_events

    merged = workdir / "events.jsonl"
    lines = sorted(
        (line for path in sorted(workdir.glob("events*.jsonl")) if path != merged
         for line in path.read_text().splitlines() if line.strip()),
        key=lambda line: (json.loads(line)["start_s"], line),
    )
    merged.write_text("".join(line + "\n" for line in lines))
    return read_events(merged)


# -- summary -----------------------------------------------------------------------------------
def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TransportError(f"emulation: {path.name} was not written; see its .log")
    return json.loads(path.read_text())


def percentiles(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}


def steady_throughput_ips(delivered_s: Sequence[float], warmup: int) -> float:
    """Frames per second between the ``warmup``-th and the last delivery."""
    times = list(delivered_s)
    if len(times) < 2:
        raise TransportError("emulation: need at least 2 delivered frames to measure throughput")
    warmup = min(warmup, len(times) - 2)
    span = times[-1] - times[warmup]
    return (len(times) - 1 - warmup) / span if span > 0 else float("inf")


def _predicted(plan: Plan, key: str, index: int, field_name: str = "latency_ms") -> float | None:
    items = plan.prediction.get(key) or []
    if index < len(items) and isinstance(items[index], Mapping):
        value = items[index].get(field_name)
        return float(value) if isinstance(value, int | float) else None
    return None


def _summarise(plan: Plan, config: EmulationConfig, workdir: Path, cpus, links,
               wall_s: float, power, restarts: Mapping[str, int]) -> EmulationResult:
    sink = _load_json(workdir / "sink.json")
    source = _load_json(workdir / "source.json")
    stages = [_load_json(workdir / f"stage{k}.json") for k in range(len(plan.stages))]
    delivered = sink["delivered_s"]
    warmup = config.warmup_frames if config.warmup_frames is not None else min(
        max(config.frames // 10, 1), 20)
    throughput = steady_throughput_ips(delivered, warmup)
    window_s = max(delivered[-1] - delivered[0], 1e-9)
    stage_measures = tuple(
        StageMeasure(k, plan.stages[k].platform, cpus[k], s["frames"], s["busy_ms"],
                     s["busy_ms_mean"], min(s["busy_total_s"] / window_s, 1.0),
                     _predicted(plan, "stages", k), restarts=restarts.get(f"stage{k}", 0),
                     arena_bytes=plan.stages[k].arena_bytes, engine=plan.stages[k].engine,
                     board=plan.stages[k].board, cpu_ms_per_frame=s.get("cpu_ms_per_frame"),
                     runtime_cpu_ms_per_frame=s.get("runtime_cpu_ms_per_frame"))
        for k, s in enumerate(stages)
    )
    senders = [source, *stages]
    if plan.is_graph:
        from hwsched.runtime.graph_emulate import graph_hops

        hops = graph_hops(plan, source, stages, sink, HopMeasure)
    else:
        hops = tuple(_hop(k, senders[k], stages[k] if k < len(stages) else sink, plan)
                     for k in range(len(plan.stages) + 1))
    latency = percentiles(sink["latency_ms"][warmup:] or sink["latency_ms"])
    predicted = plan.prediction.get("throughput_ips")
    predicted_latency = plan.prediction.get("latency_ms")
    outputs_file = workdir / "outputs.npz"
    outputs = dict(np.load(outputs_file)) if outputs_file.is_file() else {}
    return EmulationResult(
        model=plan.model, stages_count=len(plan.stages), frames=sink["frames"],
        complete=sink["complete"], in_order=sink["in_order"], throughput_ips=throughput,
        predicted_throughput_ips=None if predicted is None else float(predicted),
        latency_ms=latency,
        predicted_latency_ms=None if predicted_latency is None else float(predicted_latency),
        transport_ms=max(latency["p50"] - sum(s.busy_ms for s in stage_measures), 0.0),
        stages=stage_measures, hops=hops, accuracy=sink["accuracy"],
        link_emulation=None if links is None else {
            "namespaces": list(links.namespaces), "bandwidth_bps": links.bandwidth_bps,
            "delay_ms": _link_delay_ms(plan, config)},
        wall_s=wall_s, power=power, workdir=str(config.keep_dir) if config.keep_dir else None,
        outputs=outputs, cut_positions=plan.cut_positions,
        platforms=tuple(stage.platform for stage in plan.stages),
        analysis=plan.prediction.get("analysis"),
        source_cpu_ms_per_frame=source.get("cpu_ms_per_frame"),
        sink_cpu_ms_per_frame=sink.get("cpu_ms_per_frame"),
    )


def _hop(k: int, sender: Mapping[str, Any], receiver: Mapping[str, Any], plan: Plan
         ) -> HopMeasure:
    n = len(plan.stages)
    name = ("source→stage0" if k == 0 else f"stage{k - 1}→sink" if k == n
            else f"stage{k - 1}→stage{k}")
    down, up = sender["downstream"], receiver["upstream"]
    frames = max(receiver["frames"], 1)
    return HopMeasure(
        hop=k, name=name, payload_bytes_per_frame=up["payload_bytes"] / frames,
        send_ms=down["send_s"] / max(down["sent"], 1) * MS_PER_S, resent=down["resent"],
        duplicates=up["duplicates"], rejected=up["rejected"],
        predicted_ms=_predicted(plan, "links", k - 1) if 0 < k < n else None,
        measured_bandwidth_mbps=receiver.get("bandwidth_mbps"),
    )


# -- adaptive runs: the sink's counts, the switches it saw, the timeline ----------------------
#: Width of one timeline slice.
TIMELINE_BUCKET_S = 0.25


def _adaptive_summary(plan: Plan, workdir: Path) -> dict[str, Any]:
    sink = _load_json(workdir / "sink.json")
    source = _load_json(workdir / "source.json")
    start_s = float(source.get("started_at_s") or sink["delivered_s"][0])
    alternatives = sink.get("alternatives") or [0] * len(sink["sequence"])
    return {
        "frames_sent": source["frames"],
        **{key: sink[key] for key in ("frames_delivered", "frames_duplicated",
                                      "frames_out_of_order")},
        "switches": with_trials(
            seen_switches(plan, sink["sequence"], alternatives, sink["delivered_s"],
                          source.get("switches") or [], start_s),
            _optional_json(workdir / "controller.json").get("decisions"),
            source.get("switches") or []),
        "timeline": timeline(sink["delivered_s"], alternatives, source.get("reports") or [],
                             start_s),
    }


def _cuts(plan: Plan, alternative: int) -> tuple[int, ...]:
    from hwsched.runtime.controller import alternative_plans

    chosen = alternative_plans(plan).get(alternative)
    return tuple(chosen.cut_positions) if chosen is not None else ()


def _optional_json(path: Path) -> dict[str, Any]:
    """A role's stats that may be missing (the controller is advice: it may be killed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def with_trials(switches: Sequence[SwitchMeasure],
                decisions: Sequence[Mapping[str, Any]] | None,
                announced: Sequence[Mapping[str, Any]] = ()) -> tuple[SwitchMeasure, ...]:
    """``switches`` with each controller switch's ``trial`` from the controller decision it
    applied: the source's record of the switch (``announced``, by frame) names the number of
    decisions the controller had made (:class:`~hwsched.runtime.source.Steering`). Not the
    k-th decision for the k-th switch: a decision superseded before the next frame was sent
    is never applied, and a switch no decision asked for takes no flag.

    >>> s = SwitchMeasure(1.0, 40, 1, 0, (9,), (5,), 900.0, by="controller")
    >>> [x.trial for x in with_trials([s], [{"to": 0, "trial": True}],
    ...                               [{"at_frame": 40, "decision": 1}])]
    [True]
    >>> [x.trial for x in with_trials([s], None)]
    [None]
    """
    if decisions is None:
        return tuple(switches)
    by_frame = {int(a["at_frame"]): a.get("decision") for a in announced}
    used: set[int] = set()

    def flag(switch: SwitchMeasure) -> bool | None:
        count = by_frame.get(switch.at_frame)
        index = count - 1 if isinstance(count, int) else -1
        if index in used or not 0 <= index < len(decisions) or (
                decisions[index].get("to") != switch.to_alternative):
            return None
        used.add(index)
        return bool(decisions[index].get("trial"))

    return tuple(replace(s, trial=flag(s)) if s.by == "controller" else s for s in switches)


def seen_switches(plan: Plan, sequence: Sequence[int], alternatives: Sequence[int],
                  delivered_s: Sequence[float], announced: Sequence[Mapping[str, Any]],
                  start_s: float) -> tuple[SwitchMeasure, ...]:
    """Every change of alternative between consecutive delivered frames, with the source's
    record of it (when, why, what bandwidth it knew) matched by frame number."""
    by_frame = {int(s["at_frame"]): s for s in announced}
    switches = []
    for i in range(1, len(sequence)):
        if alternatives[i] == alternatives[i - 1]:
            continue
        said = by_frame.get(sequence[i], {})
        hops = {str(h): float(v) for h, v in (said.get("measured_bandwidth_mbps") or {}).items()
                if 0 < int(h) < len(plan.stages)}
        switches.append(SwitchMeasure(
            at_s=float(said.get("at_time_s", delivered_s[i])) - start_s,
            at_frame=sequence[i], from_alternative=alternatives[i - 1],
            to_alternative=alternatives[i], from_cut_positions=_cuts(plan, alternatives[i - 1]),
            to_cut_positions=_cuts(plan, alternatives[i]),
            measured_bandwidth_mbps=min(hops.values()) if hops else None,
            hop_bandwidth_mbps=hops, by=said.get("by")))
    return tuple(switches)


def timeline(delivered_s: Sequence[float], alternatives: Sequence[int],
             reports: Sequence[Sequence[Any]], start_s: float,
             bucket_s: float = TIMELINE_BUCKET_S) -> tuple[TimelineBucket, ...]:
    """The run in slices of ``bucket_s`` from the source's start to the last delivery; each
    hop's bandwidth is the latest report at or before the slice's end (carried forward).

    >>> [(b.t_s, b.throughput_ips, b.alternative, dict(b.hop_bandwidth_mbps))
    ...  for b in timeline([0.1, 0.2, 0.6], [0, 0, 1], [[0.05, 1, 1, 80.0, 2.0, 0]], 0.0)]
    [(0.0, 8.0, 0, {'1': 80.0}), (0.25, 0.0, 0, {'1': 80.0}), (0.5, 4.0, 1, {'1': 80.0})]
    """
    if not delivered_s:
        return ()
    ordered = sorted((float(r[0]), str(r[2]), r[3]) for r in reports if r[3] is not None)
    buckets, latest, r, d, alt = [], {}, 0, 0, alternatives[0]
    count = int((delivered_s[-1] - start_s) // bucket_s) + 1
    for b in range(max(count, 1)):
        end_s = start_s + (b + 1) * bucket_s
        while r < len(ordered) and ordered[r][0] <= end_s:
            latest[ordered[r][1]] = float(ordered[r][2])
            r += 1
        first = d
        while d < len(delivered_s) and delivered_s[d] < end_s:
            alt, d = alternatives[d], d + 1
        buckets.append(TimelineBucket(round(b * bucket_s, 6), dict(latest),
                                      (d - first) / bucket_s, alt))
    return tuple(buckets)

