"""Energy per inference: power samples aligned with the runner's inference windows.

The events file is the runtime's: one JSON object per line,
``{"frame": int, "stage": int, "start_s": float, "end_s": float}`` in host ``time.time()``
seconds. A power log (:mod:`hwsched.power.logfile`) is put on the same clock by
:func:`hwsched.power.timebase.align`.

Method, as MLPerf Tiny measures energy:

1. The frames a log measures (its stage's, or all of them for a whole pipeline on one board) are
   cut into ``windows`` groups of back-to-back inferences, in start order.
2. Each window's energy is the trapezoid integral of power over the union of its frames'
   inference intervals, with power interpolated linearly at the interval edges.
3. Idle power is the median of the samples outside every inference interval (widened by
   ``idle_guard_s``, since power settles after a burst), unless given.
4. Per window: total ``E/K`` and dynamic ``(E − P_idle·T)/K``, K inferences busy for T seconds;
   the report gives the **median over windows** of each.
5. Per window also the *period* energy ``E_span/K``: the integral over the window's whole span,
   from the first inference's start to the last one's end, so it includes the waits between the
   K back-to-back inferences (K busy intervals and K−1 waits: one wait short of K full periods).
   This is the measured counterpart of the analysis's predicted energy per inference with the
   default ``active_idle`` model (:mod:`hwsched.costs.energy`), active power × busy + idle power ×
   (period − busy); ``E/K`` counts the busy intervals only. Its median over windows is reported
   as ``period_energy_per_inference_mj``.

>>> t = np.array([0.0, 1.0, 2.0, 3.0])
>>> cumulative_energy_mj(t, np.array([1000.0, 1000.0, 3000.0, 3000.0])).tolist()
[0.0, 1000.0, 3000.0, 6000.0]
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.documents import ENERGY, document_from_dict
from hwsched.documents.fields import FieldReader, record_to_dict
from hwsched.errors import PowerError
from hwsched.power.logfile import PowerLog
from hwsched.power.meters import MAX_POWER_MW, MAX_TIME_S
from hwsched.power.timebase import ClockFit, align

DEFAULT_WINDOWS = 5  # MLPerf Tiny's number of energy windows
DEFAULT_IDLE_GUARD_S = 0.1
MIN_IDLE_SAMPLES = 5


#: Largest events file read (a runner writes ~80 bytes per frame and stage).
MAX_EVENTS_BYTES = 512 * 1024 * 1024


def check_idle_power_mw(value: float | None, name: str = "idle power") -> None:
    """A given idle power is a power a board can draw at rest: finite, >= 0."""
    if value is not None and not 0 <= value <= MAX_POWER_MW:
        raise PowerError(f"{name} must be between 0 and {MAX_POWER_MW:g} mW, got {value}")


class EventsError(PowerError):
    """An events file is missing or has a malformed line."""


@dataclass(frozen=True)
class InferenceEvent:
    """One stage of one frame running, in host time."""

    frame: int
    stage: int
    start_s: float
    end_s: float


_EVENT_FIELDS = (("frame", int), ("stage", int), ("start_s", float), ("end_s", float))


def parse_event(text: str, where: str) -> InferenceEvent:
    """One events line → :class:`InferenceEvent`; errors name ``where`` (file:line)."""
    from hwsched.fileio import check_json_depth

    check_json_depth(text, where, EventsError, max_depth=4)
    try:
        record = json.loads(text)
    except ValueError as error:  # JSONDecodeError, or an integer of over 4,300 digits
        raise EventsError(f"{where}: not JSON ({getattr(error, 'msg', error)})") from None
    if not isinstance(record, dict):
        raise EventsError(f"{where}: expected a JSON object, got {type(record).__name__}")
    values = []
    for name, kind in _EVENT_FIELDS:
        value = record.get(name)
        if value is None:
            raise EventsError(f"{where}: missing field {name!r}")
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if (kind is int and not is_int) or (
            kind is float and not (is_int or isinstance(value, float))
        ):
            raise EventsError(f"{where}: field {name!r} must be {kind.__name__}, got {value!r}")
        if kind is float and not 0 <= value <= MAX_TIME_S:
            raise EventsError(f"{where}: field {name!r} is {value}, not a host time in seconds")
        if kind is int and not 0 <= value < 2**31:
            raise EventsError(f"{where}: field {name!r} is {value}, not a frame or stage index")
        values.append(kind(value))
    event = InferenceEvent(*values)
    if event.end_s < event.start_s:
        raise EventsError(f"{where}: end_s {event.end_s} is before start_s {event.start_s}")
    if event.end_s == event.start_s:  # would count as an inference that drew no energy
        raise EventsError(f"{where}: end_s equals start_s {event.start_s}; an inference takes time")
    return event


def read_events(path: str | Path) -> tuple[InferenceEvent, ...]:
    """Read an events JSONL file. A last line without its newline (a runner still writing, or
    killed mid-write) is ignored if it does not parse; any other bad line is an error."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_EVENTS_BYTES:
            raise EventsError(f"events file {path} is over {MAX_EVENTS_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EventsError(f"events file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EventsError(f"cannot read events file {path}: {error}") from None
    lines = text.split("\n")
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(line, f"{path}:{number}"))
        except EventsError:
            if number == len(lines):  # unterminated last line: cut short, not corrupt
                break
            raise
    if not events:
        raise EventsError(f"events file {path} has no inference events")
    return tuple(events)


# --- integration -----------------------------------------------------------------------------


def cumulative_energy_mj(t_s: np.ndarray, power_mw: np.ndarray) -> np.ndarray:
    """Trapezoid integral of power from the first sample to each sample (mW·s = mJ)."""
    steps = np.diff(t_s) * (power_mw[1:] + power_mw[:-1]) / 2.0
    return np.concatenate(([0.0], np.cumsum(steps)))


def energy_between_mj(
    t_s: np.ndarray, power_mw: np.ndarray, cumulative_mj: np.ndarray, start_s, end_s
) -> np.ndarray:
    """Energy over each ``[start_s, end_s]`` (arrays), power linear between samples."""
    return _energy_to(t_s, power_mw, cumulative_mj, np.asarray(end_s)) - _energy_to(
        t_s, power_mw, cumulative_mj, np.asarray(start_s)
    )


def _energy_to(t_s, power_mw, cumulative_mj, x_s: np.ndarray) -> np.ndarray:
    k = np.clip(np.searchsorted(t_s, x_s, side="right") - 1, 0, t_s.size - 2)
    span_s = t_s[k + 1] - t_s[k]
    slope = np.divide(
        power_mw[k + 1] - power_mw[k], span_s, out=np.zeros_like(span_s), where=span_s > 0
    )
    power_at_x = power_mw[k] + slope * (x_s - t_s[k])
    return cumulative_mj[k] + (x_s - t_s[k]) * (power_mw[k] + power_at_x) / 2.0


def merge_intervals(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, disjoint union of ``[start, end]`` intervals."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _inside(t_s: np.ndarray, merged: list[tuple[float, float]], guard_s: float = 0.0):
    """Mask of the samples inside any interval widened by ``guard_s`` on both sides."""
    if not merged:
        return np.zeros(t_s.shape, dtype=bool)
    starts = np.array([a for a, _ in merged]) - guard_s
    ends = np.array([b for _, b in merged]) + guard_s
    index = np.searchsorted(starts, t_s, side="right") - 1
    return (index >= 0) & (t_s <= ends[np.clip(index, 0, None)])


# --- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowEnergy:
    """One measurement window of back-to-back inferences."""

    first_frame: int
    last_frame: int
    inferences: int
    busy_s: float
    energy_mj: float  # over the inference intervals only
    dynamic_energy_mj: float
    span_s: float  # first inference's start to last one's end, waits included
    span_energy_mj: float  # over span_s

    JSON_DERIVED = (
        "energy_per_inference_mj",
        "dynamic_energy_per_inference_mj",
        "period_energy_per_inference_mj",
    )

    @property
    def energy_per_inference_mj(self) -> float:
        return self.energy_mj / self.inferences

    @property
    def period_energy_per_inference_mj(self) -> float:
        return self.span_energy_mj / self.inferences

    @property
    def dynamic_energy_per_inference_mj(self) -> float:
        return self.dynamic_energy_mj / self.inferences


@dataclass(frozen=True)
class EnergyReport:
    """Energy per inference measured by one power log (one board)."""

    log: str
    meter: str
    stage: int | None  # None: every stage in the events file ran on this board
    inferences: int
    energy_per_inference_mj: float  # over the inference intervals only
    dynamic_energy_per_inference_mj: float
    period_energy_per_inference_mj: float  # over each window's span, waits included
    idle_power_mw: float
    idle_source: str  # "measured" or "given"
    idle_samples: int
    average_power_mw: float
    peak_power_mw: float
    busy_s: float
    uncovered_frames: int  # frames outside the log's time span, left out
    max_gap_in_windows_s: float
    time_source: str
    clock_fits: tuple[ClockFit, ...]
    windows: tuple[WindowEnergy, ...]

    def to_json(self) -> dict[str, Any]:
        return record_to_dict(self)


@dataclass(frozen=True)
class PipelineEnergy:
    """Energy per inference of a pipeline: one :class:`EnergyReport` per board, summed.

    Energies per inference are summed because every inference passes through every board. Idle
    power is summed because every board is powered throughout. The summed average power is the
    sum of each board's average over its *own* busy intervals; the boards' busy intervals are not
    aligned, so it is not a power the pipeline was measured to draw at any one instant.
    """

    stages: tuple[EnergyReport, ...]

    @property
    def inferences(self) -> int:
        return min(report.inferences for report in self.stages)

    def total(self, field: str) -> float:
        return float(sum(getattr(report, field) for report in self.stages))

    #: Per-board fields summed into the pipeline's (in the order they are written).
    SUMMED = (
        "energy_per_inference_mj",
        "dynamic_energy_per_inference_mj",
        "idle_power_mw",
        "average_power_mw",
        "period_energy_per_inference_mj",
    )
    JSON_KIND = ENERGY
    JSON_ERROR = PowerError
    JSON_TITLE = "energy report"

    def to_dict(self) -> dict[str, Any]:
        """The ``hwsched power energy --json`` document (read back by :meth:`from_dict`)."""
        return {
            "kind": ENERGY,
            **{name: self.total(name) for name in self.SUMMED},
            "inferences": self.inferences,
            "peak_power_mw": max(report.peak_power_mw for report in self.stages),
            "stages": [report.to_json() for report in self.stages],
        }

    to_json = to_dict

    @classmethod
    def from_dict(cls, data: Any, where: str = "energy report") -> PipelineEnergy:
        """Read a document; the summed fields are checked, then recomputed from the stages."""
        energy = document_from_dict(cls, data, where)
        if not energy.stages:
            raise PowerError(f"{where}: field 'stages' is empty")
        reader = FieldReader(where, PowerError)
        for name in (*cls.SUMMED, "peak_power_mw"):
            reader.value(reader.get(data, name, ""), float, name)
        reader.value(reader.get(data, "inferences", ""), int, "inferences")
        return energy


def _select_events(events, stage: int | None, log: PowerLog) -> list[InferenceEvent]:
    chosen = [event for event in events if stage is None or event.stage == stage]
    if not chosen:
        stages = sorted({event.stage for event in events})
        raise PowerError(f"{log.path}: no events for stage {stage}; the events have {stages}")
    for event in chosen:
        if event.end_s <= event.start_s:
            raise PowerError(
                f"{log.path}: frame {event.frame} stage {event.stage} has no inference time "
                f"(start_s {event.start_s}, end_s {event.end_s})"
            )
    return chosen


def _frames(events: list[InferenceEvent]) -> list[tuple[int, list[tuple[float, float]]]]:
    """(frame, its intervals) in order of the frame's first start."""
    by_frame: dict[int, list[tuple[float, float]]] = {}
    for event in events:
        by_frame.setdefault(event.frame, []).append((event.start_s, event.end_s))
    return sorted(by_frame.items(), key=lambda item: (min(item[1])[0], item[0]))


def _window_groups(frames: list, windows: int) -> list[list]:
    count = max(1, min(windows, len(frames)))
    bounds = np.linspace(0, len(frames), count + 1).round().astype(int)
    return [frames[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def measured_idle_power_mw(
    t_s: np.ndarray, power_mw: np.ndarray, busy: list[tuple[float, float]], guard_s: float, log
) -> tuple[float, int]:
    """Median power of the samples away from every inference interval, and their count."""
    idle = power_mw[~_inside(t_s, busy, guard_s)]
    if idle.size < MIN_IDLE_SAMPLES:
        raise PowerError(
            f"{log.path}: only {idle.size} samples outside the inference windows, too few for "
            "an idle baseline; record idle time before/after the run or pass --idle-mw"
        )
    return float(np.median(idle)), int(idle.size)


def _max_gap_s(t_s: np.ndarray, busy: list[tuple[float, float]]) -> float:
    gap = 0.0
    for start, end in busy:
        first = max(int(np.searchsorted(t_s, start, side="right")) - 1, 0)
        last = min(int(np.searchsorted(t_s, end, side="left")), t_s.size - 1)
        if last > first:
            gap = max(gap, float(np.max(np.diff(t_s[first : last + 1]))))
    return gap


def energy_report(
    log: PowerLog,
    events: Sequence[InferenceEvent],
    *,
    stage: int | None = None,
    idle_power_mw: float | None = None,
    windows: int = DEFAULT_WINDOWS,
    idle_guard_s: float = DEFAULT_IDLE_GUARD_S,
) -> EnergyReport:
    """Energy per inference for the frames ``log`` measured (see the module doc)."""
    check_idle_power_mw(idle_power_mw)
    if len(log) < 2:
        raise PowerError(f"{log.path}: {len(log)} samples; need at least 2 to integrate")
    timebase = align(log.meter_t_s, log.host_t_s, log.segment)
    order = np.argsort(timebase.t_s, kind="stable")
    t_s, power_mw = timebase.t_s[order], log.power_mw[order]
    selected = _select_events(events, stage, log)
    frames = _frames(selected)
    covered = [f for f in frames if min(f[1])[0] >= t_s[0] and max(e for _, e in f[1]) <= t_s[-1]]
    if not covered:
        first, last = min(e.start_s for e in selected), max(e.end_s for e in selected)
        raise PowerError(
            f"{log.path}: covers host time {t_s[0]:.3f}–{t_s[-1]:.3f} s but the inferences run "
            f"{first:.3f}–{last:.3f} s; record the log while the runner runs, on the same host"
        )
    busy = merge_intervals([iv for _, intervals in covered for iv in intervals])
    all_busy = merge_intervals([iv for _, intervals in frames for iv in intervals])
    idle_source, idle_samples = "given", 0
    if idle_power_mw is None:
        idle_source = "measured"
        idle_power_mw, idle_samples = measured_idle_power_mw(
            t_s, power_mw, all_busy, idle_guard_s, log
        )
    cumulative_mj = cumulative_energy_mj(t_s, power_mw)
    window_energies = tuple(
        _window_energy(group, t_s, power_mw, cumulative_mj, idle_power_mw)
        for group in _window_groups(covered, windows)
    )
    busy_s = sum(w.busy_s for w in window_energies)
    total_mj = sum(w.energy_mj for w in window_energies)
    inside = _inside(t_s, busy)
    return EnergyReport(
        log=str(log.path),
        meter=log.meter,
        stage=stage,
        inferences=len(covered),
        energy_per_inference_mj=float(
            np.median([w.energy_per_inference_mj for w in window_energies])
        ),
        dynamic_energy_per_inference_mj=float(
            np.median([w.dynamic_energy_per_inference_mj for w in window_energies])
        ),
        period_energy_per_inference_mj=float(
            np.median([w.period_energy_per_inference_mj for w in window_energies])
        ),
        idle_power_mw=float(idle_power_mw),
        idle_source=idle_source,
        idle_samples=idle_samples,
        average_power_mw=total_mj / busy_s if busy_s > 0 else float(np.mean(power_mw[inside])),
        peak_power_mw=float(np.max(power_mw[inside])) if inside.any() else total_mj / busy_s,
        busy_s=busy_s,
        uncovered_frames=len(frames) - len(covered),
        max_gap_in_windows_s=_max_gap_s(t_s, busy),
        time_source=timebase.source,
        clock_fits=timebase.fits,
        windows=window_energies,
    )


def _window_energy(group, t_s, power_mw, cumulative_mj, idle_power_mw: float) -> WindowEnergy:
    busy = merge_intervals([iv for _, intervals in group for iv in intervals])
    starts = np.array([a for a, _ in busy])
    ends = np.array([b for _, b in busy])
    energy_mj = float(np.sum(energy_between_mj(t_s, power_mw, cumulative_mj, starts, ends)))
    busy_s = float(np.sum(ends - starts))
    span = energy_between_mj(t_s, power_mw, cumulative_mj, starts[:1], ends[-1:])  # busy is sorted
    frames = [frame for frame, _ in group]
    return WindowEnergy(
        first_frame=frames[0],
        last_frame=frames[-1],
        inferences=len(group),
        busy_s=busy_s,
        energy_mj=energy_mj,
        dynamic_energy_mj=energy_mj - idle_power_mw * busy_s,
        span_s=float(ends[-1] - starts[0]),
        span_energy_mj=float(span[0]),
    )


def pipeline_energy(
    logs: Sequence[tuple[int | None, PowerLog]],
    events: Sequence[InferenceEvent],
    *,
    idle_power_mw: Sequence[float | None] | None = None,
    windows: int = DEFAULT_WINDOWS,
    idle_guard_s: float = DEFAULT_IDLE_GUARD_S,
) -> PipelineEnergy:
    """One report per ``(stage, log)`` — one log per board — and their sums.

    ``idle_power_mw``: one value per log, or a single value for every log; ``None`` (or a
    ``None`` entry) measures idle power from the log."""
    idles = list(idle_power_mw) if idle_power_mw is not None else [None] * len(logs)
    if len(idles) == 1:
        idles *= len(logs)
    if len(idles) != len(logs):
        raise PowerError(f"{len(idles)} idle powers given for {len(logs)} logs; give 1 or each")
    reports = tuple(
        energy_report(
            log, events, stage=stage, idle_power_mw=idle, windows=windows, idle_guard_s=idle_guard_s
        )
        for (stage, log), idle in zip(logs, idles, strict=True)
    )
    return PipelineEnergy(reports)
