"""The power log: a CSV file with a ``#`` header block, written one flushed line per sample.

A log looks like this (see ``power_logs/README.md``)::

    # hwsched power log
    # format_version: 1
    # meter: ina219
    # port: /dev/ttyACM0
    # sample_rate_hz: 99.8
    # start_time: 2024-05-01T12:00:00.000Z
    # units: host_t_s=s (host time.time()); meter_t_s=s (meter clock); power_mw=mW; ...
    host_t_s,meter_t_s,power_mw,voltage_v,current_ma,segment
    1714564800.012345,0.010000,2512.300,5.0120,501.260,0
    # note: 1714564801.2 banner 'INA219 ready'
    ...
    # end: samples=1200 garbage_lines=2 ...

Every sample carries the host time at which its line arrived; the meter's own clock is kept
beside it (empty when the meter has none) so the energy stage can fit offset and drift. ``#``
lines may appear anywhere; ``key: value`` lines before the column line form the header.

The writer flushes after every line, so a log cut short by a crash or power loss is valid up to
its last complete line; :func:`read_log` ignores a final line without its newline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO

import numpy as np

from hwsched.errors import PowerError

FORMAT_VERSION = "1"
MAGIC = "# hwsched power log"
COLUMNS: tuple[str, ...] = (
    "host_t_s",
    "meter_t_s",
    "power_mw",
    "voltage_v",
    "current_ma",
    "segment",
)
UNITS = (
    "host_t_s=s since the epoch (host time.time() when the line arrived); "
    "meter_t_s=s (meter clock, empty if none); power_mw=mW; voltage_v=V; current_ma=mA; "
    "segment=count of port (re)opens and meter resets (the meter clock restarts)"
)
#: Samples buffered before the header is written, so it can state the measured sample rate.
RATE_PROBE_SAMPLES = 50
RATE_PROBE_S = 1.0


class PowerLogError(PowerError):
    """A power log is missing, not a power log, or has a malformed line."""


@dataclass(frozen=True)
class LogSample:
    """One row of a power log."""

    host_t_s: float
    power_mw: float
    meter_t_s: float | None = None
    voltage_v: float | None = None
    current_ma: float | None = None
    segment: int = 0  # bumped on every reopen of the port and reset of the meter


def utc_iso(t_s: float) -> str:
    """Host time as ISO-8601 UTC with milliseconds, the form log headers use."""
    whole = math.floor(t_s)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((t_s - whole) * 1e3):03d}Z"


def _field(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def format_sample(sample: LogSample) -> str:
    return ",".join(
        (
            f"{sample.host_t_s:.6f}",
            _field(sample.meter_t_s, 6),
            f"{sample.power_mw:.3f}",
            _field(sample.voltage_v, 4),
            _field(sample.current_ma, 3),
            str(sample.segment),
        )
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def estimate_rate_hz(samples: list[LogSample]) -> float | None:
    """Samples per second, from the meter clock if it has one, else from host times."""
    if len(samples) < 2:
        return None
    meter = [s.meter_t_s for s in samples]
    if all(t is not None for t in meter) and meter[-1] > meter[0]:  # type: ignore[operator]
        return (len(samples) - 1) / (meter[-1] - meter[0])  # type: ignore[operator]
    span_s = samples[-1].host_t_s - samples[0].host_t_s
    return (len(samples) - 1) / span_s if span_s > 0 else None


class LogWriter:
    """Writes a power log line by line, flushing each.

    The header is held back until :data:`RATE_PROBE_SAMPLES` samples or :data:`RATE_PROBE_S`
    seconds have arrived, so that it can name the measured sample rate; notes that arrive in the
    meantime are held with the samples, in order.

    An existing non-empty file at ``path`` is an error unless ``overwrite``: a recording started
    by mistake must not wipe an earlier one.
    """

    def __init__(
        self, path: str | Path, header: Mapping[str, object], *, overwrite: bool = False
    ) -> None:
        self.path = Path(path)
        self._header = {key: _one_line(str(value)) for key, value in header.items()}
        self._pending: list[LogSample | str] = []
        self._header_written = False
        self.samples_written = 0
        if not overwrite and self.path.is_file() and self.path.stat().st_size > 0:
            raise PowerLogError(
                f"{self.path} exists and is not empty; choose another file or overwrite it "
                "(--force, overwrite=True)"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = self.path.open("w", encoding="utf-8", newline="\n")
        except OSError as error:
            reason = error.strerror or error
            raise PowerLogError(f"cannot write power log {self.path}: {reason}") from None

    def write(self, sample: LogSample) -> None:
        if self._header_written:
            self._emit(format_sample(sample))
            return
        self._pending.append(sample)
        samples = [item for item in self._pending if isinstance(item, LogSample)]
        if len(samples) >= RATE_PROBE_SAMPLES or (
            sample.host_t_s - samples[0].host_t_s >= RATE_PROBE_S
        ):
            self._write_header()

    def note(self, host_t_s: float, text: str) -> None:
        """An incident (banner, reset, disconnect…) as a ``# note:`` line."""
        line = f"# note: {host_t_s:.6f} {_one_line(text)}"
        if self._header_written:
            self._emit(line)
        else:
            self._pending.append(line)

    def close(self, footer: Mapping[str, object] | None = None) -> None:
        if self._file.closed:
            return
        if not self._header_written:
            self._write_header()
        if footer:
            self._emit("# end: " + " ".join(f"{k}={_one_line(str(v))}" for k, v in footer.items()))
        self._file.close()

    def _write_header(self) -> None:
        samples = [item for item in self._pending if isinstance(item, LogSample)]
        rate_hz = estimate_rate_hz(samples)
        header = {
            "format_version": FORMAT_VERSION,
            **self._header,
            "sample_rate_hz": "unknown" if rate_hz is None else f"{rate_hz:.2f}",
            "units": UNITS,
        }
        self._file.write(MAGIC + "\n")
        self._file.writelines(f"# {key}: {value}\n" for key, value in header.items())
        self._file.write(",".join(COLUMNS) + "\n")
        self._header_written = True
        pending, self._pending = self._pending, []
        for item in pending:
            self._emit(item if isinstance(item, str) else format_sample(item))

    def _emit(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()  # a crash must not take already received samples with it
        if not line.startswith("#"):
            self.samples_written += 1


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLog:
    """A power log in memory: header fields and one read-only array per column."""

    path: Path
    header: Mapping[str, str]
    host_t_s: np.ndarray
    meter_t_s: np.ndarray  # NaN where the meter gave no clock
    power_mw: np.ndarray
    voltage_v: np.ndarray
    current_ma: np.ndarray
    segment: np.ndarray
    notes: tuple[str, ...] = ()
    truncated_last_line: bool = False
    footer: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.host_t_s)

    @property
    def meter(self) -> str:
        return self.header.get("meter", "unknown")


def _parse_row(text: str, where: str) -> list[float]:
    fields = text.split(",")
    if len(fields) != len(COLUMNS):
        raise PowerLogError(f"{where}: expected {len(COLUMNS)} fields, got {len(fields)}")
    values: list[float] = []
    for name, raw in zip(COLUMNS, fields, strict=True):
        if raw.strip() == "" and name not in ("host_t_s", "power_mw", "segment"):
            values.append(math.nan)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise PowerLogError(f"{where}: {name} is not a number: {raw[:20]!r}") from None
        if not math.isfinite(value):
            raise PowerLogError(f"{where}: {name} is not finite: {raw[:20]!r}")
        values.append(value)
    _check_row(values, where)
    return values


def _check_row(values: list[float], where: str) -> None:
    """A row with a value no meter or clock can show is refused, not averaged in: the
    recorder never writes one, so it means the log was damaged or edited."""
    from hwsched.power.meters import MeterParseError, check_power_mw, check_time_s

    row = dict(zip(COLUMNS, values, strict=True))
    try:
        check_time_s(row["host_t_s"], "host_t_s")
        if not math.isnan(row["meter_t_s"]):
            check_time_s(row["meter_t_s"], "meter_t_s")
        check_power_mw(row["power_mw"])
        if not (row["segment"].is_integer() and 0 <= row["segment"] < 2**31):
            raise MeterParseError(f"segment {row['segment']} is not a count of port reopens")
    except MeterParseError as error:
        raise PowerLogError(f"{where}: {error}") from None


def _key_value(comment: str) -> tuple[str, str] | None:
    key, sep, value = comment.partition(":")
    if not sep or not key.strip().replace("_", "").isalnum():
        return None
    return key.strip(), value.strip()


def _parse_footer(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split())
    return {key: value for key, sep, value in pairs if sep}


def read_log(path: str | Path) -> PowerLog:
    """Read a power log; errors name the file and line. A final unterminated line is ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PowerLogError(f"power log {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PowerLogError(f"cannot read power log {path}: {error}") from None
    lines = text.split("\n")
    truncated = lines[-1] != ""
    lines = lines[:-1]  # the last element is either '' or a line cut short by a crash
    if not lines or lines[0].strip() != MAGIC:
        raise PowerLogError(f"{path}:1: not a hwsched power log (expected {MAGIC!r})")
    header: dict[str, str] = {}
    notes: list[str] = []
    footer: dict[str, str] = {}
    rows: list[list[float]] = []
    columns_seen = False
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith("#"):
            comment = line[1:].strip()
            if comment.startswith("note:"):
                notes.append(comment[5:].strip())
            elif comment.startswith("end:"):
                footer = _parse_footer(comment[4:])
            elif not columns_seen and (pair := _key_value(comment)):
                header[pair[0]] = pair[1]
        elif not columns_seen:
            if tuple(line.strip().split(",")) != COLUMNS:
                raise PowerLogError(f"{path}:{number}: expected column line {','.join(COLUMNS)}")
            columns_seen = True
        elif line.strip():
            rows.append(_parse_row(line, f"{path}:{number}"))
    if not columns_seen:
        raise PowerLogError(f"{path}: no column line; the recording stopped before any sample")
    return _to_log(path, header, rows, notes, truncated, footer)


def _to_log(
    path: Path,
    header: dict[str, str],
    rows: list[list[float]],
    notes: list[str],
    truncated: bool,
    footer: dict[str, str],
) -> PowerLog:
    table = np.array(rows, dtype=float).reshape(len(rows), len(COLUMNS))
    columns = []
    for index in range(len(COLUMNS)):
        column = table[:, index].copy()
        column.flags.writeable = False
        columns.append(column)
    return PowerLog(
        path,
        MappingProxyType(header),
        *columns,
        notes=tuple(notes),
        truncated_last_line=truncated,
        footer=MappingProxyType(footer),
    )
