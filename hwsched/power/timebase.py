"""Map a meter's own clock onto host time: offset and drift fitted per clock segment.

Host timestamps say when a line *arrived*: the true sample instant plus a transport delay that
is never negative and jitters (USB frames, scheduler). The meter clock is steady but has its own
zero and rate. So for each segment (the meter clock restarts when the meter resets), host time is
fitted as ``offset_s + (1 + drift_ppm·1e-6)·meter_t_s`` along the *lower envelope* of the
points: the minimum-delay sample of each slice of the segment, where the delay is smallest.

>>> meter = np.arange(0.0, 10.0, 0.01)
>>> host = 1000.0 + meter * (1 + 50e-6) + np.where(np.arange(meter.size) % 7, 0.004, 0.0)
>>> fit = fit_segment(meter, host)
>>> round(fit.offset_s, 6), round(fit.drift_ppm, 1)
(1000.0, 50.0)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: A meter clock that jumps forward by this much more than host time did is a restarted clock.
MAX_CLOCK_JUMP_S = 1.0
#: Slices per segment for the lower envelope; enough to average jitter, few enough to each
#: contain some minimum-delay samples.
ENVELOPE_SLICES = 32


@dataclass(frozen=True)
class ClockFit:
    """host_t_s ≈ offset_s + (1 + drift_ppm·1e-6) · meter_t_s over one segment."""

    offset_s: float
    drift_ppm: float
    samples: int
    delay_p50_ms: float  # arrival delay of the samples above the fitted envelope
    delay_p95_ms: float

    def to_host(self, meter_t_s: np.ndarray) -> np.ndarray:
        return self.offset_s + (1.0 + self.drift_ppm * 1e-6) * meter_t_s


@dataclass(frozen=True)
class Timebase:
    """Aligned sample times for a whole log and how they were obtained."""

    t_s: np.ndarray
    source: str  # "meter clock" or "host arrival time"
    fits: tuple[ClockFit, ...] = ()


def clock_segments(
    meter_t_s: np.ndarray, host_t_s: np.ndarray, segment: np.ndarray | None = None
) -> list[slice]:
    """Runs of samples over which the meter clock runs without restarting: split where the
    recorder started a new segment (it reopened the port), where the clock went back, or where
    it jumped ahead of host time."""
    if meter_t_s.size == 0:
        return []
    step_meter = np.diff(meter_t_s)
    step_host = np.diff(host_t_s)
    restart = (step_meter < 0) | (step_meter - step_host > MAX_CLOCK_JUMP_S)
    if segment is not None:
        restart |= np.diff(segment) != 0
    breaks = np.flatnonzero(restart) + 1
    edges = [0, *breaks.tolist(), meter_t_s.size]
    return [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares y = a + b·x, centred for precision with epoch-sized y."""
    x0, y0 = x.mean(), y.mean()
    dx = x - x0
    denominator = float(dx @ dx)
    slope = float(dx @ (y - y0)) / denominator if denominator > 0 else 1.0
    return y0 - slope * x0, slope


def fit_segment(meter_t_s: np.ndarray, host_t_s: np.ndarray) -> ClockFit:
    """Fit one segment's clock along the lower envelope of arrival times."""
    n = meter_t_s.size
    if n < 4 or np.ptp(meter_t_s) <= 0:
        offset = float(np.min(host_t_s - meter_t_s)) if n else 0.0
        return ClockFit(offset, 0.0, n, 0.0, 0.0)
    intercept, slope = _line_fit(meter_t_s, host_t_s)
    residual = host_t_s - (intercept + slope * meter_t_s)
    slices = np.array_split(np.arange(n), min(ENVELOPE_SLICES, n // 2))
    lowest = np.array([part[np.argmin(residual[part])] for part in slices])
    intercept, slope = _line_fit(meter_t_s[lowest], host_t_s[lowest])
    delay = host_t_s - (intercept + slope * meter_t_s)
    # The envelope points scatter around the line; shift it under (nearly) all of them.
    shift = float(np.percentile(delay[lowest], 10))
    delay_ms = (delay - shift) * 1e3
    return ClockFit(
        offset_s=float(intercept + shift),
        drift_ppm=(slope - 1.0) * 1e6,
        samples=n,
        delay_p50_ms=float(np.percentile(delay_ms, 50)),
        delay_p95_ms=float(np.percentile(delay_ms, 95)),
    )


def meter_clock_usable(meter_t_s: np.ndarray, segment: np.ndarray | None = None) -> bool:
    """A clock that exists on every sample and ticks between most samples of a segment
    (tegrastats' 1 s stamps do not, at its usual 100 ms interval)."""
    if meter_t_s.size < 4 or np.isnan(meter_t_s).any():
        return False
    ticks = np.diff(meter_t_s) != 0
    if segment is not None:
        ticks = ticks[np.diff(segment) == 0]
    return ticks.size == 0 or float(np.mean(ticks)) >= 0.9


def align(
    meter_t_s: np.ndarray, host_t_s: np.ndarray, segment: np.ndarray | None = None
) -> Timebase:
    """Sample times on the host clock: meter clock mapped per segment, else arrival times."""
    if not meter_clock_usable(meter_t_s, segment):
        return Timebase(np.asarray(host_t_s, dtype=float), "host arrival time")
    t_s = np.empty_like(host_t_s, dtype=float)
    fits = []
    for part in clock_segments(meter_t_s, host_t_s, segment):
        fit = fit_segment(meter_t_s[part], host_t_s[part])
        t_s[part] = fit.to_host(meter_t_s[part])
        fits.append(fit)
    return Timebase(t_s, "meter clock", tuple(fits))
