"""CPU bandwidth caps: run a process at a fraction of one core, to emulate a slower board.

Real deployments pair unequal boards; on one host, a stage of a slower board is emulated by
capping its process with the kernel's CFS bandwidth controller: in every period of
``period_us`` it may run for at most ``fraction x period_us``. The cgroup v1 ``cpu`` hierarchy
takes ``cpu.cfs_quota_us``/``cpu.cfs_period_us``; cgroup v2 (where its ``cpu`` controller is
enabled) takes ``cpu.max`` = ``"quota period"``. The period is short (10 ms) so that a frame of
a few milliseconds sees an even rate rather than full speed followed by a long stall; a cap of
less than 10% lengthens it, since the kernel will not grant less than 1 ms per period.

:class:`CpuCap` is a context manager that makes one cgroup, moves processes into it, and on
exit — normal, exception or Ctrl-C — moves whatever is left back to where this process lives
and removes the directory; a maker SIGKILLed before it could is swept up by the next cap made
beside it (:func:`sweep_orphans`). Making cgroups needs root; a missing controller or a
non-root user is a :class:`~hwsched.errors.CpuCapError` with one line saying so.

A capped process's *mean* rate is the fraction, but a process that wakes after idling finds
the period's whole quota unspent and runs its first ``quota_us`` at full speed: a 5 ms tile
under a 0.5 cap of a 10 ms period took 5 ms, not 10 (a one-frame-at-a-time pipeline's capped
tiles ran 1.5-2x faster than their board). So a cap below a whole core is *steady* by default:
a filler process in the same cgroup, at the lowest priority (``SCHED_IDLE``) and on the capped
process's CPUs, spends whatever quota the stage leaves, as a board busy at its fraction would
— a waking stage preempts it at once and gets the rate of a steadily capped core (measured on
this host: 0.50-0.53 of a core for 2-30 ms bursts after 23 ms idle gaps, against 0.75-0.94
without the filler for 2-5 ms bursts). The filler only spends what the cap grants the group,
but the group competes for its CPU at full weight (``SCHED_IDLE`` ranks a task only inside its
group; cgroup v1 has no idle group): a process outside the cap on the same CPU (the source or
sink ``emulate`` puts on a capped first or last board's core, another board's stage sharing
the core, anyone else's load) loses up to the cap's fraction to it while the stage idles — the
board is busy at its fraction, as the emulation wants; lowering the group's weight instead
would starve the stage itself under any load. The stages of one board share one cgroup
(:class:`StageCaps` ``boards``), since one filler per stage would compete with the board's
other stages. What a steady cap cannot do is run an invocation shorter than the quota
(5 ms at 0.5) at an even half speed: it goes at full speed or waits for the next period, by
the phase at which it wakes, so such stages are right on average over frames and bimodal per
frame (a median over frames leans to the fast mode). Shorter periods were measured here and
under-delivered (0.35 of a core at a 2 ms period, with or without the filler: the kernel
accounts bandwidth at its 4 ms tick).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwsched.errors import CpuCapError

log = logging.getLogger(__name__)

#: CFS period of a cap: short, so a frame of a few ms runs at an even rate.
DEFAULT_PERIOD_US = 10_000
#: The kernel's smallest quota per period (cgroup v1 and v2).
MIN_QUOTA_US = 1_000
#: The kernel's longest period.
MAX_PERIOD_US = 1_000_000
MOUNTS = Path("/proc/self/mounts")
GROUP_PREFIX = "hwsched-cap"
#: How long removing a cgroup keeps retrying while the kernel still counts an exited task.
RMDIR_TIMEOUT_S = 5.0
#: A filler re-reads its cap's processes and their CPUs this often (a stage pins itself after
#: it is capped) and ends within this long of the last of them or of the process that started
#: it.
FILLER_FOLLOW_S = 0.05
#: How long closing a cap waits for its filler to end once killed.
FILLER_EXIT_TIMEOUT_S = 5.0
NS_PER_S = 1e9
_counter = itertools.count()


@dataclass(frozen=True)
class CpuController:
    """Where the cgroup CPU controller is mounted, and which cgroup version it speaks."""

    root: Path
    version: int

    def own_cgroup(self, pid: int | str = "self") -> Path:
        """The cgroup directory ``pid`` is in now (where capped processes return to)."""
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, relative = line.split(":", 2)
            wanted = controllers == "" if self.version == 2 else "cpu" in controllers.split(",")
            if wanted:
                return self.root / relative.lstrip("/")
        return self.root


def find_cpu_controller(mounts: Path = MOUNTS) -> CpuController:
    """The cgroup v1 ``cpu`` hierarchy, else a cgroup v2 mount with ``cpu`` enabled."""
    v2 = None
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, kind, options = Path(fields[1]), fields[2], fields[3].split(",")
        if kind == "cgroup" and "cpu" in options:
            return CpuController(where, 1)
        controllers = where / "cgroup.controllers"
        if kind == "cgroup2" and _lists_cpu(controllers):
            v2 = v2 or CpuController(where, 2)
    if v2 is None:
        raise CpuCapError(
            "no cgroup CPU controller is mounted (neither a cgroup v1 'cpu' hierarchy nor a "
            "cgroup v2 mount with 'cpu' in cgroup.controllers); --board-speed needs one"
        )
    return v2


def _lists_cpu(controllers: Path) -> bool:
    try:
        return "cpu" in controllers.read_text().split()
    except OSError:
        return False


def quota_period_us(fraction: float, period_us: int = DEFAULT_PERIOD_US) -> tuple[int, int]:
    """Quota and period for a cap of ``fraction`` of one core, the period lengthened where
    the quota would fall under the kernel's 1 ms minimum.

    >>> quota_period_us(0.5), quota_period_us(0.05)
    ((5000, 10000), (1000, 20000))
    """
    check_fraction(fraction)
    period = max(period_us, math.ceil(MIN_QUOTA_US / fraction))
    if period > MAX_PERIOD_US:
        raise CpuCapError(f"board speed {fraction:g} is below what a CPU cap can give "
                          f"({MIN_QUOTA_US / MAX_PERIOD_US:g} of a core)")
    return round(fraction * period), period


def check_fraction(fraction: float, what: str = "board speed") -> None:
    if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise CpuCapError(f"{what} {fraction!r} must be a fraction of one core in (0, 1]")


def parse_speeds(text: str) -> tuple[float, ...] | None:
    """``--board-speed auto|F[,F…]``: None for auto, else the fractions.

    >>> parse_speeds("1,0.5"), parse_speeds("auto")
    ((1.0, 0.5), None)
    """
    if text.strip() == "auto":
        return None
    try:
        speeds = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise CpuCapError(
            f"--board-speed {text!r}: expected 'auto' or fractions of a core, e.g. 1,0.5"
        ) from None
    for speed in speeds:
        check_fraction(speed, f"--board-speed {text!r}:")
    return speeds


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as error:
        raise CpuCapError(f"cannot write {value.strip()!r} to {path}: {error.strerror}") from None


class CpuCap:
    """One cgroup capping its processes at ``fraction`` of a core (see the module doc)."""

    def __init__(self, fraction: float, name: str = "stage",
                 period_us: int = DEFAULT_PERIOD_US,
                 controller: CpuController | None = None, home: Path | None = None,
                 steady: bool = True) -> None:
        self.quota_us, self.period_us = quota_period_us(fraction, period_us)
        self.fraction = fraction
        #: Whether a filler spends the quota the capped processes leave (module docstring).
        self.steady = steady and self.quota_us < self.period_us
        self._filler: subprocess.Popen | None = None
        self.name = name
        self.controller = controller
        #: Where the cap's cgroup is made and its processes return to (default: the caller's
        #: cgroup when the cap is entered).
        self.home = home
        self.path: Path | None = None

    def __enter__(self) -> CpuCap:
        _require_root()
        self.controller = self.controller or find_cpu_controller()
        self.home = self.home or self.controller.own_cgroup()
        sweep_orphans(self.home)
        path = self.home / cap_name(self.name, os.getpid(), next(_counter))
        try:
            path.mkdir()
        except OSError as error:
            raise CpuCapError(f"cannot create cgroup {path}: {error.strerror}") from None
        self.path = path
        try:
            self._set_limits(path)
        except BaseException:
            self.close()
            raise
        return self

    def _set_limits(self, path: Path) -> None:
        if self.controller is not None and self.controller.version == 2:
            _write(path / "cpu.max", f"{self.quota_us} {self.period_us}\n")
            return
        _write(path / "cpu.cfs_period_us", f"{self.period_us}\n")
        _write(path / "cpu.cfs_quota_us", f"{self.quota_us}\n")

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) under the cap."""
        if self.path is None:
            raise CpuCapError("a CPU cap must be entered before processes are added")
        # a filler with no other living member may be ending (e.g. a stage restarted at
        # once): it could miss ``pid``, so a new one is started
        lonely = not _members(self.path, {pid, self.filler_pid})
        _write(self.path / "cgroup.procs", f"{pid}\n")
        if self.steady and (self.filler_pid is None or lonely):
            self._start_filler()

    def _start_filler(self) -> None:
        """A filler following this cap's processes (their CPUs, their life), in its cgroup."""
        self._stop_filler()
        assert self.path is not None
        self._filler = subprocess.Popen(
            [sys.executable, "-c", "import sys; from hwsched.runtime.cpucap import fill; "
             "fill(sys.argv[1], int(sys.argv[2]))", str(self.path), str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        # lowest priority before it may run in the cgroup (``fill`` sets it too, for safety)
        os.sched_setscheduler(self._filler.pid, os.SCHED_IDLE, os.sched_param(0))
        _write(self.path / "cgroup.procs", f"{self._filler.pid}\n")

    def _stop_filler(self) -> None:
        filler, self._filler = self._filler, None
        if filler is not None and filler.poll() is None:
            filler.kill()
            try:
                filler.wait(FILLER_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # SIGKILLed but not reaped yet (a stuck wait
                # in the kernel): removing the cgroup below reports what is left, no traceback
                log.warning("filler %d did not exit %g s after SIGKILL", filler.pid,
                            FILLER_EXIT_TIMEOUT_S)

    @property
    def filler_pid(self) -> int | None:
        """The running filler's process id (None: not steady, or no process added yet)."""
        return None if self._filler is None or self._filler.poll() is not None \
            else self._filler.pid

    def pids(self) -> list[int]:
        if self.path is None or not self.path.is_dir():
            return []
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def limits(self) -> tuple[int, int]:
        """``(quota_us, period_us)`` as the kernel holds them now (read back)."""
        assert self.path is not None
        if self.controller is not None and self.controller.version == 2:
            quota, period = (self.path / "cpu.max").read_text().split()
            return int(quota), int(period)
        quota = int((self.path / "cpu.cfs_quota_us").read_text())
        return quota, int((self.path / "cpu.cfs_period_us").read_text())

    def close(self) -> None:
        """End the filler, move every remaining process back home and remove the cgroup
        (idempotent)."""
        self._stop_filler()
        path, self.path = self.path, None
        if path is None or not path.is_dir():
            return
        limit = time.monotonic() + RMDIR_TIMEOUT_S
        while True:
            for pid in _pids_in(path):
                with contextlib.suppress(OSError):  # it may exit meanwhile
                    (self.home / "cgroup.procs").write_text(f"{pid}\n")
            try:
                path.rmdir()
                return
            except OSError as error:
                if error.errno != errno.EBUSY or time.monotonic() > limit:
                    raise CpuCapError(f"cannot remove cgroup {path}: {error.strerror}") from None
                time.sleep(0.01)  # an exiting task still counted; retry until it is gone

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep_orphans(home: Path) -> list[Path]:
    """Remove the caps in ``home`` whose maker has died (a SIGKILLed ``emulate`` cannot
    close its caps; its filler ends by itself), moving any process left in one back to
    ``home``; returns the cgroups removed. Best effort: one still busy stays for a later
    sweep. Caps of live makers are never touched (a maker is looked up in this process's pid
    namespace: one cgroup ``home`` shared across pid namespaces is not supported); a maker is
    its pid *and* start time (:func:`is_orphan`), so a dead maker's reused pid does not keep
    its caps alive."""
    removed = []
    for path in home.glob(f"{GROUP_PREFIX}-*"):
        if not path.is_dir() or not is_orphan(path.name):
            continue
        for pid in _pids_in(path):
            with contextlib.suppress(OSError):  # it may exit meanwhile
                (home / "cgroup.procs").write_text(f"{pid}\n")
        with contextlib.suppress(OSError):
            path.rmdir()
            removed.append(path)
    return removed


def cap_name(name: str, pid: int, serial: int) -> str:
    """A cap's cgroup name: its maker's pid and start time in it, so a later process that
    reuses the pid neither collides with a cap left behind nor passes for its maker.

    >>> cap_name("stage", os.getpid(), 3) == (
    ...     f"hwsched-cap-stage-{os.getpid()}-t{start_ticks(os.getpid())}-3")
    True
    """
    return f"{GROUP_PREFIX}-{name}-{pid}-t{start_ticks(pid)}-{serial}"


def cap_maker(cap: str) -> tuple[int, int | None] | None:
    """``(pid, start_ticks)`` of the process that made cap ``cap`` (start None: named before
    start times were recorded), or None for a name that is not a cap's.

    >>> cap_maker("hwsched-cap-board-1-417-t9021-0"), cap_maker("hwsched-cap-stage-417-2")
    ((417, 9021), (417, None))
    """
    *_, pid, started, _serial = cap.rsplit("-", 3)
    if started.startswith("t") and started[1:].isdigit() and pid.isdigit():
        return int(pid), int(started[1:])
    pid = cap.rsplit("-", 2)[-2]
    return (int(pid), None) if pid.isdigit() else None


def is_orphan(cap: str, start_of: Callable[[int], int | None] | None = None) -> bool:
    """Whether cap ``cap``'s maker is gone: no living process has its pid, or the one that
    has it started at another time (the pid was reused). ``start_of(pid)`` is a living
    process's start time, None for none (default: :func:`start_ticks`, this pid namespace).

    >>> cap = "hwsched-cap-stage-42-t1000-0"
    >>> is_orphan(cap, {42: 1000}.get), is_orphan(cap, {42: 5000}.get), is_orphan(cap, {}.get)
    (False, True, True)
    """
    maker = cap_maker(cap)
    if maker is None:  # not a name we make: leave it alone
        return False
    started = (start_of or start_ticks)(maker[0])
    return started is None or (maker[1] is not None and started != maker[1])


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (``/proc/PID/stat`` field
    22), or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields 3, 4, … (the name may hold spaces)
    return None if fields[0] == "Z" else int(fields[19])


def fill(cgroup: str, parent: int) -> None:
    """A steady cap's filler (the body of its process): at the lowest priority, spin on the
    CPUs of the other processes in ``cgroup`` (a board's stages share a cap) until none is
    left or ``parent`` (the process that started it) is gone."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    path, me = Path(cgroup), {os.getpid()}
    while os.getppid() == parent:
        cpus = set()
        for pid in _members(path, me):
            with contextlib.suppress(OSError):  # it may end meanwhile
                cpus |= os.sched_getaffinity(pid)
        if not cpus:  # the cap's stages ended
            return
        if cpus != os.sched_getaffinity(0):
            os.sched_setaffinity(0, cpus)
        until = time.monotonic() + FILLER_FOLLOW_S
        while time.monotonic() < until:
            pass


def _alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (an exited process not yet reaped, a zombie, does not)."""
    return pid is not None and start_ticks(pid) is not None


def _members(path: Path, besides: set[int | None]) -> list[int]:
    """The living processes in cgroup ``path`` but ``besides``."""
    return [pid for pid in _pids_in(path) if pid not in besides and _alive(pid)]


def _pids_in(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def board_speeds(platforms: Sequence[tuple[str, str]]) -> tuple[float, ...]:
    """``--board-speed auto``: each board's compute rate at its stage's precision (from its
    descriptor) over the fastest board's, so the fastest runs a whole core.

    >>> board_speeds([("rpi4", "fp32"), ("rpi4", "fp32")])
    (1.0, 1.0)
    """
    from hwsched.hardware import load_platform

    rates = [load_platform(name).compute_gops[precision] for name, precision in platforms]
    fastest = max(rates)
    return tuple(max(rate / fastest, MIN_QUOTA_US / MAX_PERIOD_US) for rate in rates)


def stage_speeds(plan, speeds: Sequence[float] | None) -> tuple[float | None, ...]:
    """Per stage of ``plan``: the cap (None = uncapped). ``speeds`` is ``()`` for no caps,
    None for ``auto``, else one fraction per stage."""
    n = len(plan.stages)
    if speeds is not None and len(speeds) == 0:
        return (None,) * n
    if speeds is None:
        return board_speeds([(stage.platform, stage.precision) for stage in plan.stages])
    if len(speeds) != n:
        raise CpuCapError(f"--board-speed gives {len(speeds)} speeds for the plan's {n} stages")
    return tuple(speeds)


class StageCaps:
    """One cap per capped stage of an emulation, or per board: stages given the same
    ``boards`` entry (not None) and the same speed share one cgroup, as they share one slow
    board's CPU (and its one filler); a board given several speeds keeps a cap per speed, as
    before boards were known. Stages at speed None run uncapped. Checks that caps can be made
    (root, a CPU controller) when it is built, before anything starts."""

    def __init__(self, speeds: Sequence[float | None],
                 boards: Sequence[str | None] | None = None) -> None:
        for speed in speeds:
            if speed is not None:
                check_fraction(speed)
        if any(speed is not None for speed in speeds):
            check_usable()
        self.speeds = tuple(speeds)
        self._keys: tuple[int | tuple[str, float | None], ...] = tuple(
            index if boards is None or index >= len(boards) or boards[index] is None
            else (boards[index], speed) for index, speed in enumerate(self.speeds))
        self._stack = contextlib.ExitStack()
        self._caps: dict[int | tuple[str, float | None], CpuCap] = {}
        self._home: Path | None = None

    def attach(self, pids: Iterable[tuple[int, int]]) -> None:
        """Cap ``(stage index, pid)`` pairs; a cgroup is made on first use, every one beside
        the others in the caller's cgroup as it was at the first: a caller that caps itself
        (:func:`~hwsched.runtime.profile.time_stages_paired`) would otherwise make the next
        cap inside its own, where a child faster than its parent is refused (EINVAL)."""
        for index, pid in pids:
            speed = self.speeds[index] if index < len(self.speeds) else None
            if speed is None:
                continue
            key = self._keys[index]
            if key not in self._caps:
                if self._home is None:
                    self._home = find_cpu_controller().own_cgroup()
                self._caps[key] = self._stack.enter_context(
                    CpuCap(speed, f"stage{index}", home=self._home))
            self._caps[key].add(pid)

    def speed(self, index: int) -> float | None:
        return self.speeds[index] if index < len(self.speeds) else None

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> StageCaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` has consumed so far (all threads), from ``/proc/PID/schedstat``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / NS_PER_S


def _require_root() -> None:
    if os.geteuid() != 0:
        raise CpuCapError("--board-speed caps CPU with cgroups, which needs root; run as root "
                          "or drop --board-speed")


def check_usable() -> CpuController:
    """Fail early, before anything slow, when caps cannot be made here."""
    _require_root()
    return find_cpu_controller()
