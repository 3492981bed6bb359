"""A virtual INA219 on a pseudo-terminal whose power follows the CPU use of real processes.

Like an Arduino sketch it prints a banner, a column header and then one CSV line per sample,
``ms,bus_V,shunt_mV,current_mA,power_mW``, at ``rate_hz``. Power is

    P = idle_mw + (active_mw − idle_mw) · u

where ``u`` is the CPU time the watched processes used per second of wall time since the last
sample (1.0 = one core fully busy; it exceeds 1 with several busy threads). Without PIDs the
whole machine's CPU use counts. Each reading is the average over the interval that just ended,
as an INA219 with averaging reports it.

CPU time comes from ``/proc/PID/task/*/schedstat`` (nanoseconds, so 100+ Hz sampling is smooth),
falling back to ``utime+stime`` of ``/proc/PID/stat`` (clock ticks).

>>> with VirtualMeter(pids=[os.getpid()], rate_hz=50) as meter:  # doctest: +SKIP
...     print(meter.port)           # open it with Recorder(meter.port, "ina219", ...)
/dev/pts/3
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from hwsched.errors import PowerError
from hwsched.power.meters import MAX_POWER_MW

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
INA219_COLUMNS = ("ms", "bus_V", "shunt_mV", "current_mA", "power_mW")
DEFAULT_SHUNT_OHM = 0.1  # the INA219 breakout boards' shunt
DEFAULT_BUS_V = 5.0


def process_cpu_s(pid: int, proc: Path = Path("/proc")) -> float | None:
    """CPU seconds process ``pid`` has used (all its threads), or ``None`` once it is gone."""
    total_ns = 0
    try:
        for task in (proc / str(pid) / "task").iterdir():
            total_ns += int((task / "schedstat").read_text().split()[0])
        return total_ns * 1e-9
    except FileNotFoundError:
        pass  # a thread ended mid-scan, the process ended, or no schedstat: try /proc/PID/stat
    except (OSError, ValueError, IndexError):
        pass
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def machine_cpu_s(proc: Path = Path("/proc")) -> float:
    """CPU seconds the whole machine has been busy (all cores, not idle or iowait)."""
    fields = (proc / "stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle_ticks = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    busy_ticks = sum(ticks[:8]) - idle_ticks  # guest time is already inside user time
    return busy_ticks / CLOCK_TICKS_PER_S


class CpuPowerModel:
    """Power from recent CPU use: ``idle + (active − idle)·u``.

    ``u`` is averaged over at least ``window_s``: CPU counters advance in steps (scheduler
    ticks, and clock ticks in ``/proc/stat``), so shorter intervals alternate between zero and
    several cores. The average conserves CPU time, so energy is unaffected; ``u`` is capped at
    the number of cores.
    """

    def __init__(
        self,
        pids: Sequence[int] = (),
        *,
        idle_mw: float,
        active_mw: float,
        window_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= idle_mw <= active_mw <= MAX_POWER_MW:  # also false for nan
            raise PowerError(f"need 0 <= idle_mw <= active_mw <= {MAX_POWER_MW:g}, got "
                             f"{idle_mw} and {active_mw}")
        self.pids = tuple(pids)
        missing = [pid for pid in self.pids if process_cpu_s(pid) is None]
        if missing:
            raise PowerError(f"no process with PID {missing[0]} to follow (see /proc)")
        self.idle_mw, self.active_mw = idle_mw, active_mw
        self.window_s = window_s if window_s is not None else (0.02 if pids else 0.1)
        self._cores = os.cpu_count() or 1
        self._clock = clock
        self._last_cpu = self._cpu_now()
        self._used_s = 0.0
        self._history: deque[tuple[float, float]] = deque([(clock(), 0.0)])

    def _cpu_now(self) -> dict[int | None, float]:
        if not self.pids:
            return {None: machine_cpu_s()}
        now = {}
        for pid in self.pids:
            cpu_s = process_cpu_s(pid)
            if cpu_s is not None:
                now[pid] = cpu_s
        return now

    def utilization(self) -> float:
        """Cores' worth of CPU the watched processes used over the last ``window_s`` or more."""
        now_t_s, now_cpu = self._clock(), self._cpu_now()
        # A process that ended contributes nothing more; a counter never runs backwards.
        self._used_s += sum(
            max(0.0, cpu_s - self._last_cpu.get(key, cpu_s)) for key, cpu_s in now_cpu.items()
        )
        self._last_cpu.update(now_cpu)
        self._history.append((now_t_s, self._used_s))
        while len(self._history) > 2 and now_t_s - self._history[1][0] >= self.window_s:
            self._history.popleft()
        then_t_s, then_used_s = self._history[0]
        if now_t_s <= then_t_s:
            return 0.0
        return min((self._used_s - then_used_s) / (now_t_s - then_t_s), float(self._cores))

    def power_mw(self) -> float:
        return self.idle_mw + (self.active_mw - self.idle_mw) * self.utilization()


def ina219_line(
    meter_ms: int,
    power_mw: float,
    bus_v: float = DEFAULT_BUS_V,
    shunt_ohm: float = DEFAULT_SHUNT_OHM,
) -> str:
    """One line as the usual INA219 sketch prints it: ``ms,bus_V,shunt_mV,current_mA,power_mW``."""
    current_ma = power_mw / bus_v
    shunt_mv = current_ma * shunt_ohm  # mA·Ω = mV
    return f"{meter_ms},{bus_v:.3f},{shunt_mv:.2f},{current_ma:.2f},{power_mw:.1f}\n"


class VirtualMeter:
    """Streams INA219 lines on a pty in a background thread; ``port`` is the path to open.

    ``power`` replaces the CPU model with any callable returning mW (for synthetic profiles).
    Writes never block: when nobody reads and the pty buffer is full, lines are dropped and
    counted in ``dropped_lines``, as a UART without flow control drops them.
    """

    def __init__(
        self,
        pids: Sequence[int] = (),
        *,
        rate_hz: float = 100.0,
        idle_mw: float = 2000.0,
        active_mw: float = 3500.0,
        noise_mw: float = 0.0,
        seed: int = 0,
        power: Callable[[], float] | None = None,
    ) -> None:
        if not 0 < rate_hz <= 10_000:
            raise PowerError(f"virtual meter rate_hz must be in (0, 10000], got {rate_hz}")
        if not 0 <= noise_mw <= MAX_POWER_MW:
            raise PowerError(f"virtual meter noise_mw must be >= 0, got {noise_mw}")
        self.rate_hz = rate_hz
        self.noise_mw = noise_mw
        self._power = power or CpuPowerModel(pids, idle_mw=idle_mw, active_mw=active_mw).power_mw
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = -1
        self.port = ""
        self.lines_written = 0
        self.dropped_lines = 0

    def __enter__(self) -> VirtualMeter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> str:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no newline translation: bytes as a UART sends them
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._loop, name="hwsched-virtual-meter")
        self._thread.daemon = True
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def wait(self, duration_s: float | None = None) -> None:
        """Block until ``duration_s`` passed or :meth:`stop` (from another thread)."""
        self._stop.wait(duration_s)

    def _loop(self) -> None:
        start_s = time.monotonic()
        self._send(f"hwsched virtual INA219, {self.rate_hz:g} Hz\n")
        self._send(",".join(INA219_COLUMNS) + "\n")
        tick = 1
        while not self._stop.wait(max(0.0, start_s + tick / self.rate_hz - time.monotonic())):
            now_s = time.monotonic()
            power_mw = self._power() + self._random.gauss(0.0, self.noise_mw)
            self._send(ina219_line(int((now_s - start_s) * 1e3), max(power_mw, 0.0)))
            # After a long stall (a suspended process) resume at the current tick, not in a burst.
            tick = max(tick + 1, int((now_s - start_s) * self.rate_hz))

    def _send(self, line: str) -> None:
        try:
            os.write(self._master, line.encode("ascii"))
            self.lines_written += 1
        except BlockingIOError:
            self.dropped_lines += 1
        except OSError as error:
            if error.errno != errno.EIO:
                raise
            self.dropped_lines += 1
