"""Helpers for the power tests: pseudo-terminals and a meter with a known power profile."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from waiting import wait_until


def descriptors_open_on(path: str) -> int:
    """How many of this process's file descriptors point at ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            count += os.readlink(f"/proc/self/fd/{fd}") == path
    return count


def wait_until_opened(pty: Pty) -> None:
    """Block until a recorder in this process (a thread) has opened ``pty``: it discards what
    was written before it opened, so a meter whose every line counts starts after this."""
    wait_until(lambda: descriptors_open_on(pty.path) >= 2,  # the Pty holds the first
               what=f"the recorder to open {pty.path}")


def clock_fit_tolerance(meter: SyntheticMeter, log) -> float:
    """The relative energy error a host-clock fit may carry on this run, measured, not guessed.

    The recorder learns meter time → host time from when lines arrive, and on a loaded machine
    they arrive up to ``late_s`` after the meter sent them (the test knows when: the meter's
    own schedule). Over a span ``S`` a fitted slope can then be off by up to about
    ``2·late_s/S``, and energies scale with the slope. A quiet machine gives ~0.
    """
    meter_s = np.asarray(log.meter_t_s, dtype=np.float64)
    sent_s = np.array([meter.host_time(t) for t in meter_s])
    late_s = max(0.0, float(np.max(np.asarray(log.host_t_s, dtype=np.float64) - sent_s)))
    return 2 * late_s / float(meter_s[-1] - meter_s[0])


def lines_written(meter: SyntheticMeter) -> int:
    """Lines (samples, noise, banners) the meter has written so far."""
    return sum(meter.line(index).count(b"\n") for index in range(meter.written))


class Pty:
    """A pty pair: tests write meter bytes to ``master``; the recorder opens ``path``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):  # closed already by an unplug in the test
                os.close(fd)


@dataclass
class HannProfile:
    """Idle power with a raised-cosine bump inside each window (meter seconds).

    The bump is zero at the window edges, so the window's energy does not depend to first order
    on exactly where the edges fall: a test of alignment, parsing and integration, not of edge
    sampling. Energy of a window of host length T: idle·T + (peak − idle)·T/2.
    """

    windows_s: list[tuple[float, float]]
    idle_mw: float = 1000.0
    peak_mw: float = 4000.0

    def power_mw(self, meter_t_s: float) -> float:
        for start, end in self.windows_s:
            if start <= meter_t_s <= end:
                phase = (meter_t_s - start) / (end - start)
                return self.idle_mw + (self.peak_mw - self.idle_mw) * 0.5 * (
                    1 - math.cos(2 * math.pi * phase)
                )
        return self.idle_mw


@dataclass
class SyntheticMeter:
    """Writes an INA226 stream (``us,bus_V,current_mA,power_mW``) of a known profile to a pty
    in real time, with the meter clock drifting against host time and corruption mixed in."""

    pty: Pty
    profile: HannProfile
    duration_s: float
    rate_hz: float = 500.0
    drift_ppm: float = 150.0
    corrupt: bool = True
    host_zero_s: float = field(default=0.0, init=False)
    written: int = field(default=0, init=False)

    def host_time(self, meter_t_s: float) -> float:
        return self.host_zero_s + meter_t_s * (1 + self.drift_ppm * 1e-6)

    def line(self, index: int) -> bytes:
        meter_t_s = index / self.rate_hz
        power_mw = self.profile.power_mw(meter_t_s)
        text = f"{round(meter_t_s * 1e6)},5.000,{power_mw / 5.0:.4f},{power_mw:.4f}\n"
        if not self.corrupt or index < 10:
            return text.encode()
        if index % 97 == 0:
            return b"\xff\xfe\x00\x13garbage\x80\n"  # line noise
        if index % 89 == 0:
            return text[: len(text) // 3].encode() + b"\n"  # a line cut short
        if index % 151 == 0:
            return b"INA226 meter v1.2 ready\r\n" + text.encode()  # a reset banner
        return text.encode()

    def run(self) -> None:
        self.host_zero_s = time.time() + 0.05
        for index in range(int(self.duration_s * self.rate_hz)):
            delay_s = self.host_time(index / self.rate_hz) - time.time()
            if delay_s > 0:
                time.sleep(delay_s)
            self.pty.write(self.line(index))
            self.written += 1

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def events(self, path: Path) -> Path:
        """The profile's windows as runner events (one frame each) in host time."""
        with path.open("w") as out:
            for frame, (start, end) in enumerate(self.profile.windows_s):
                event = {
                    "frame": frame,
                    "stage": 0,
                    "start_s": self.host_time(start),
                    "end_s": self.host_time(end),
                }
                out.write(json.dumps(event) + "\n")
        return path

    def expected_mj(self) -> tuple[float, float]:
        """(total, dynamic) energy per window; all windows have the same length."""
        start, end = self.profile.windows_s[0]
        host_s = (end - start) * (1 + self.drift_ppm * 1e-6)
        bump_mj = (self.profile.peak_mw - self.profile.idle_mw) * host_s / 2
        return self.profile.idle_mw * host_s + bump_mj, bump_mj


def five_windows(lead_s: float = 0.3, length_s: float = 0.15, gap_s: float = 0.25):
    return [
        (lead_s + k * (length_s + gap_s), lead_s + k * (length_s + gap_s) + length_s)
        for k in range(5)
    ]


@contextlib.contextmanager
def file_size_limit(max_bytes: int):
    """Writes past ``max_bytes`` fail with EFBIG (as a full disk fails a write midway)."""
    import resource
    import signal

    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, previous_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_handler)
