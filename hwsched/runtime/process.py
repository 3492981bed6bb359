"""What every runner process shares: options, the events file, stats, CPU pinning."""

from __future__ import annotations

import functools
import json
import os
import resource
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hwsched.errors import OutputError, TransportError
from hwsched.runtime.defaults import DEFAULT_HWM, DEFAULT_RESEND_AFTER_S, DEFAULT_WINDOW
from hwsched.units import MS_PER_S

if TYPE_CHECKING:  # the transport needs pyzmq, which --help must not
    from hwsched.runtime.transport import CurveKeys

#: The calling thread's own usage where the OS has it (Linux), else the process's.
RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
#: Longest a loop waits for something to happen before re-checking its timers, where it has
#: timers it does not know the time of (a controller's commands, a probe train's wait).
POLL_S = 0.05
#: Longest a runner's loop sleeps when it knows all its timers: a safety net, not a tick.
#: Messages, its own timers and signals (:attr:`StopFlag.wake_fd`) each wake it. A 50 ms tick
#: woke every idle runner 20 times a second, and on a core shared with a computing stage each
#: wake-up (a cold pass of the Python loop) was taken from that compute: on bench_placement's
#: two-branch plan the join's and the sink's ticks ran 0.1-0.35 ms inside each 17 ms branch
#: compute on their core (``perf sched``), and evicted its caches.
IDLE_WAIT_S = 1.0


@dataclass(frozen=True)
class RunOptions:
    """Knobs shared by source, stage and sink processes."""

    window: int = DEFAULT_WINDOW
    resend_after_s: float = DEFAULT_RESEND_AFTER_S
    link_delay_s: float = 0.0
    hwm: int = DEFAULT_HWM
    curve_keys: Path | None = None
    events: Path | None = None
    stats: Path | None = None
    ready: Path | None = None
    #: Stop serving after this long (None: serve until the stream ends or a signal arrives).
    max_runtime_s: float | None = None
    exit_after_end: bool = True
    #: When the runner started (``time.monotonic()``): ``max_runtime_s`` counts from here,
    #: as the runner's watchdog does, not from the end of loading the model or the dataset.
    started_s: float = field(default_factory=time.monotonic)
    #: Adaptive plans: how much better another split must be to switch to it (None: the
    #: controller's default); a stage probes its link only when that could switch.
    margin: float | None = None

    def curve(self) -> CurveKeys | None:
        from hwsched.runtime.transport import curve_setup

        return None if self.curve_keys is None else curve_setup(self.curve_keys)

    def deadline_s(self) -> float:
        """The ``time.monotonic()`` at which the role stops: the same for every call, so a
        role that took long to load still stops before the watchdog ends it, with its stats
        written."""
        return float("inf") if self.max_runtime_s is None else self.started_s + self.max_runtime_s


def pin_to_cpus(cpus: Sequence[int] | None) -> None:
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
        except OSError as error:
            raise TransportError(f"cannot pin to CPUs {list(cpus)}: {error.strerror}") from None


#: ``mallopt`` parameters (glibc's malloc.h) and the values a runner sets: allocations up to
#: 32 MiB (glibc's largest mmap threshold on 64-bit) come from the heap, and freed memory stays
#: there instead of being returned to the kernel.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_MMAP_THRESHOLD_BYTES = 32 << 20
KEPT_TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Make the process reuse freed memory for its per-frame buffers; True if it could.

    Every frame a runner allocates its tensors afresh (the interpreter's output copy, the
    encoded frame, the received message). glibc serves a block of its *current* mmap threshold
    or more with a fresh ``mmap`` and unmaps it on ``free``, and its dynamic threshold only ever
    rises to the largest block freed so far, so a frame's equal-sized blocks get new pages
    every frame: ~215 page faults per 878 KB tensor, which measured 1.1 of the 1.7 ms a 878 KB
    hop cost its sending core (``hwsched.runtime.hopcost``). With fixed thresholds the blocks
    are reused from the heap. A no-op where the C library has no ``mallopt`` (musl, macOS)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEPT_MMAP_THRESHOLD_BYTES)
                and mallopt(M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD_BYTES))


@dataclass(frozen=True)
class ComputeSample:
    """This thread's CPU time, context switches and minor page faults at one moment (the
    switches and faults are the thread's where the OS has ``RUSAGE_THREAD``, Linux; the
    process's elsewhere): the difference of two tells a compute's wall time apart from what it
    really got (CPU time short of the wall: the core was taken away, or, with several
    interpreter threads, work done on the others; involuntary switches: by whom is another
    question; faults: fresh pages touched). ``getrusage`` costs about a microsecond.

    >>> a = ComputeSample(1.0, 2, 3, 4)
    >>> ComputeSample(1.5, 2, 5, 4).since(a).to_event()
    {'cpu_s': 0.5, 'voluntary_switches': 0, 'involuntary_switches': 2, 'minor_faults': 0}
    """

    cpu_s: float
    voluntary_switches: int
    involuntary_switches: int
    minor_faults: int

    @classmethod
    def now(cls) -> ComputeSample:
        usage = resource.getrusage(RUSAGE_THREAD)
        return cls(time.thread_time(), usage.ru_nvcsw, usage.ru_nivcsw, usage.ru_minflt)

    def since(self, before: ComputeSample) -> ComputeSample:
        return ComputeSample(self.cpu_s - before.cpu_s,
                             self.voluntary_switches - before.voluntary_switches,
                             self.involuntary_switches - before.involuntary_switches,
                             self.minor_faults - before.minor_faults)

    def to_event(self) -> dict[str, float | int]:
        return {"cpu_s": self.cpu_s, "voluntary_switches": self.voluntary_switches,
                "involuntary_switches": self.involuntary_switches,
                "minor_faults": self.minor_faults}


def model_cpu_clock(model: object) -> Callable[[], float]:
    """The clock that counts a model's invocations: the invoking thread's CPU time
    (:func:`time.thread_time`) for a one-thread interpreter, so the ZeroMQ I/O thread's work
    meanwhile stays the runtime's; the whole process's (:func:`time.process_time`) when the
    interpreter has worker threads of its own (``threads`` > 1), whose compute would otherwise
    be counted as the runtime's (the I/O thread's share during the invocation is then
    counted as the model's).

    >>> class M:
    ...     threads = 4
    >>> model_cpu_clock(M()) is time.process_time, model_cpu_clock(object()) is time.thread_time
    (True, True)
    """
    return time.process_time if getattr(model, "threads", 1) > 1 else time.thread_time


def cpu_record(started_cpu_s: float | None, frames: int,
               compute_cpu_s: float | None = None,
               now_cpu_s: float | None = None) -> dict[str, float | None]:
    """A runner's CPU since its loop began (``started_cpu_s``, :func:`time.process_time`:
    every thread of the process, its ZeroMQ I/O threads too), per frame; with
    ``compute_cpu_s`` (the model invocations' own CPU) also the rest per frame — what the
    runtime costs its core, to set beside the hand-off cost a plan charges
    (:meth:`hwsched.costs.runtime.RuntimeCost.stage_ms`). A runner pinned to one CPU used
    that much of it; None where nothing ran.

    >>> round(cpu_record(1.0, 4, compute_cpu_s=0.02, now_cpu_s=1.03)["runtime_cpu_ms_per_frame"], 9)
    2.5
    >>> cpu_record(None, 4)["cpu_ms_per_frame"] is None
    True
    """
    if started_cpu_s is None:
        return {"cpu_total_s": None, "cpu_ms_per_frame": None}
    total_s = (time.process_time() if now_cpu_s is None else now_cpu_s) - started_cpu_s
    record: dict[str, float | None] = {
        "cpu_total_s": total_s,
        "cpu_ms_per_frame": total_s * MS_PER_S / frames if frames else None}
    if compute_cpu_s is not None:
        record["compute_cpu_total_s"] = compute_cpu_s
        record["runtime_cpu_ms_per_frame"] = (
            max(0.0, total_s - compute_cpu_s) * MS_PER_S / frames if frames else None)
    return record


class EventLog:
    """Per-frame events as JSON lines ``{"frame", "stage", "start_s", "end_s"}`` (host time)."""

    def __init__(self, path: Path | None) -> None:
        self.handle: TextIO | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.handle = path.open("a", buffering=1, encoding="utf-8")  # line-buffered
            except OSError as error:
                raise OutputError(f"{path}: cannot write events ({error.strerror})") from None

    def write(self, frame: int, stage: int, start_s: float, end_s: float,
              **measured: float | int | None) -> None:
        """One line; ``measured`` adds fields after the four every reader relies on (a stage
        adds its alternative, incoming bandwidth and smoothed busy time)."""
        if self.handle is not None:
            self.handle.write(json.dumps(
                {"frame": frame, "stage": stage, "start_s": start_s, "end_s": end_s,
                 **measured}) + "\n")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def check_writable(flag: str, path: Path | None) -> None:
    """Refuse an output file that cannot be written, before the role loads or runs anything:
    a runner told to write its stats where it cannot used to find out only after the whole
    stream, and an events file there ended in a traceback."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{flag} {path}: cannot create {path.parent} "
                          f"({error.strerror})") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        why = "is a directory" if path.is_dir() else f"{path.parent} is not writable"
        raise OutputError(f"{flag} {path}: cannot write a file there ({why})")


def write_stats(path: Path | None, stats: dict[str, Any]) -> None:
    if path is None:
        return
    from hwsched.fileio import write_json

    write_json(path, stats)


def mark_ready(path: Path | None, listening: str | None = None) -> None:
    """Write ``PID`` and, on a second line, the address the runner listens on (with a port the
    OS chose for ``tcp://HOST:0``), atomically: whoever sees the file can read both."""
    if path is not None:
        from hwsched.fileio import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, f"{os.getpid()}\n{listening or ''}\n")


@functools.cache
def _wake_sockets() -> tuple[socket.socket, socket.socket]:
    """The process's one signal wake-up pair (reader, writer), kept for its lifetime: the
    signal module writes to a descriptor number, and a pair closed with its StopFlag would
    leave it writing into whatever file reuses that number."""
    pair = socket.socketpair()
    for end in pair:
        end.setblocking(False)
    return pair


class StopFlag:
    """Set by SIGTERM/SIGINT so loops end cleanly and still write their stats.

    A signal also makes :attr:`wake_fd` readable (``signal.set_wakeup_fd``): a loop that waits
    on it beside its channels stops at once, so it needs no periodic timeout to notice a
    signal and sleeps until a message or a timer of its own (:data:`IDLE_WAIT_S`). Python runs
    the handler only between bytecodes, and a ZeroMQ poll interrupted by a signal goes on
    waiting; without the descriptor only the poll's timeout ended the wait."""

    def __init__(self) -> None:
        self.set = False
        signal.set_wakeup_fd(_wake_sockets()[1].fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    @property
    def wake_fd(self) -> int:
        """Readable once a signal arrived (a :class:`~hwsched.runtime.transport.Waiter`
        drains it)."""
        return _wake_sockets()[0].fileno()

    def _handle(self, *_: object) -> None:
        self.set = True
