"""Record a power meter over serial into a power log, surviving whatever the wire does.

The port is opened with :func:`serial.serial_for_url`, so device paths, pty paths, ``loop://``
and ``socket://host:port`` all work. Every line gets the host time at which it arrived; the
meter's clock, if it prints one, is kept beside it (see :mod:`hwsched.power.timebase`).

What goes wrong on a bench, and what the recorder does about it — counted in
:class:`RecordSummary`, noted in the log, skipped, never fatal:

* **garbage bytes** (wrong baud rate, line noise): the line is dropped (``garbage_lines``);
* **partial lines**: the fragment before the first newline after every (re)open is dropped,
  because it cannot be known complete (``partial_lines``); overlong lines likewise;
* **reset banners** and re-printed column headers (``banner_lines``, ``header_lines``); a header
  is adopted as the column map unless the user fixed the columns;
* **meter resets**: its clock going backwards (``meter_resets``) starts a new clock segment;
* **unplug / replug**: a read error closes the port and it is reopened every
  ``reconnect_interval_s`` until it comes back (``disconnects``);
* **a stalled port**: no byte for ``stall_timeout_s`` closes and reopens it (``stalls``).

Use it as a context manager that records in a background thread:

>>> with Recorder("loop://", "ina219", "/tmp/doctest_power.csv") as recorder:  # doctest: +SKIP
...     run_the_workload()
>>> recorder.summary.samples  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import serial

from hwsched.errors import PowerError
from hwsched.power.energy import cumulative_energy_mj
from hwsched.power.logfile import LogSample, LogWriter, read_log, utc_iso
from hwsched.power.meters import (
    CsvMeterParser,
    LineKind,
    LineParser,
    MeterReading,
    classify_line,
    make_parser,
)
from hwsched.power.timebase import ClockFit, align

#: Longest line a meter prints; anything longer without a newline is noise.
MAX_LINE_BYTES = 512
DEFAULT_BAUD = 115200
READ_TIMEOUT_S = 0.05

Opener = Callable[..., Any]


class LineAssembler:
    """Bytes in, complete lines out; drops the fragment before the first newline after a reset.

    >>> assembler = LineAssembler()
    >>> assembler.feed(b"23,4.9\\n100,5.0,1"), assembler.feed(b"2\\n"), assembler.partial_lines
    ([], [b'100,5.0,12'], 1)
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self.partial_lines = 0
        self.overlong_lines = 0
        self._buffer = bytearray()
        self._skip_to_newline = True

    def reset(self) -> None:
        """After (re)opening a port: what came before the next newline is a fragment."""
        self._buffer.clear()
        self._skip_to_newline = True

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        *lines, rest = bytes(self._buffer).split(b"\n")
        self._buffer = bytearray(rest)
        if lines and self._skip_to_newline:
            lines.pop(0)
            self.partial_lines += 1
            self._skip_to_newline = False
        if len(self._buffer) > self.max_line_bytes:
            self._buffer.clear()
            self.overlong_lines += 1
            self._skip_to_newline = True
        return [line.rstrip(b"\r") for line in lines]


@dataclass(frozen=True)
class RecordSummary:
    """What a recording got and what it had to skip."""

    meter: str
    port: str
    out: Path
    duration_s: float = 0.0
    samples: int = 0
    sample_rate_hz: float | None = None
    mean_power_mw: float | None = None
    peak_power_mw: float | None = None
    energy_mj: float = 0.0
    garbage_lines: int = 0
    malformed_lines: int = 0
    partial_lines: int = 0
    banner_lines: int = 0
    header_lines: int = 0
    meter_resets: int = 0
    disconnects: int = 0
    stalls: int = 0
    clock_fits: tuple[ClockFit, ...] = ()

    def counters(self) -> dict[str, int]:
        names = [
            "samples",
            "garbage_lines",
            "malformed_lines",
            "partial_lines",
            "banner_lines",
            "header_lines",
            "meter_resets",
            "disconnects",
            "stalls",
        ]
        return {name: getattr(self, name) for name in names}


class Recorder:
    """Records ``meter`` on ``port`` into the power log ``out`` in a background thread.

    ``start()``/``stop()`` or ``with Recorder(...) as r:``; ``stop()`` returns the
    :class:`RecordSummary` (also in ``r.summary``). ``run(duration_s)`` records in the caller's
    thread. ``opener`` replaces :func:`serial.serial_for_url` (it takes the same arguments).
    An existing non-empty ``out`` is refused unless ``overwrite``.
    """

    def __init__(
        self,
        port: str,
        meter: str,
        out: str | Path,
        *,
        baud: int = DEFAULT_BAUD,
        columns: Sequence[str] | None = None,
        rail: str | None = None,
        stall_timeout_s: float = 2.0,
        reconnect_interval_s: float = 0.5,
        opener: Opener = serial.serial_for_url,
        clock: Callable[[], float] = time.time,
        overwrite: bool = False,
    ) -> None:
        self.port, self.meter, self.out = port, meter, Path(out)
        self.overwrite = overwrite
        self.baud = baud
        self.parser: LineParser = make_parser(meter, columns, rail)
        self._columns_fixed = columns is not None
        self.stall_timeout_s = stall_timeout_s
        self.reconnect_interval_s = reconnect_interval_s
        self._opener, self._clock = opener, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._assembler = LineAssembler()
        self._counts = dict.fromkeys(RecordSummary(meter, port, self.out).counters(), 0)
        self._last_meter_t_s: float | None = None
        self._writer: LogWriter | None = None
        self._error: BaseException | None = None
        self._open_failure_noted = False
        self._opened = False
        self._segment = 0
        self.summary = RecordSummary(meter, port, self.out)

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise PowerError(f"recorder for {self.out} is already running")
        self._writer = self._open_log()
        self._thread = threading.Thread(target=self._loop, name="hwsched-power-recorder")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> RecordSummary:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self._finish()

    def run(self, duration_s: float | None = None) -> RecordSummary:
        """Record in this thread for ``duration_s`` (``None``: until KeyboardInterrupt)."""
        self._writer = self._open_log()
        deadline = None if duration_s is None else self._clock() + duration_s
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends an open-ended recording
            self._loop(deadline)
        return self._finish()

    def wait(self, duration_s: float) -> None:
        """Sleep while the background thread records."""
        self._stop.wait(duration_s)

    def count(self, name: str) -> int:
        return self._counts[name]

    # --- the loop ----------------------------------------------------------------------------

    def _open_log(self) -> LogWriter:
        start_s = self._clock()
        self._start_s = start_s
        header = {
            "meter": self.meter,
            "port": self.port,
            "baud": self.baud,
            "columns": ",".join(self.parser.columns.names)
            if isinstance(self.parser, CsvMeterParser)
            else "-",
            "rails": ",".join(getattr(self.parser, "rails", ())) or "-",
            "start_time": utc_iso(start_s),
            "start_host_t_s": f"{start_s:.6f}",
        }
        return LogWriter(self.out, header, overwrite=self.overwrite)

    def _loop(self, deadline: float | None = None) -> None:
        port = None
        last_data_s = self._clock()
        try:
            while not self._stop.is_set() and (deadline is None or self._clock() < deadline):
                if port is None:
                    port = self._try_open()
                    last_data_s = self._clock()
                    continue
                port, last_data_s = self._read_once(port, last_data_s)
        except BaseException as error:
            self._error = error
            if isinstance(error, KeyboardInterrupt):
                raise
        finally:
            _close_quietly(port)

    def _try_open(self) -> Any:
        try:
            port = self._opener(self.port, baudrate=self.baud, timeout=READ_TIMEOUT_S)
            port.reset_input_buffer()  # stale bytes would get today's host timestamps
        except (serial.SerialException, OSError, ValueError) as error:
            if not self._open_failure_noted:
                self._note(f"cannot open {self.port}: {error}; retrying")
                self._open_failure_noted = True
            self._stop.wait(self.reconnect_interval_s)
            return None
        self._open_failure_noted = False
        self._assembler.reset()
        if self._opened:
            self._segment += 1  # a replugged meter may have restarted its clock unseen
        self._opened = True
        return port

    def _read_once(self, port: Any, last_data_s: float) -> tuple[Any, float]:
        try:
            chunk = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError) as error:
            self._counts["disconnects"] += 1
            self._note(f"disconnect: {error}; reopening {self.port}")
            _close_quietly(port)
            self._stop.wait(self.reconnect_interval_s)
            return None, last_data_s
        now_s = self._clock()
        if not chunk:
            if now_s - last_data_s < self.stall_timeout_s:
                return port, last_data_s
            self._counts["stalls"] += 1
            self._note(f"stall: no data for {now_s - last_data_s:.1f} s; reopening {self.port}")
            _close_quietly(port)
            return None, now_s
        for line in self._assembler.feed(chunk):
            self._handle_line(line, now_s)
        return port, now_s

    def _handle_line(self, raw: bytes, host_t_s: float) -> None:
        line = classify_line(self.parser, raw)
        if line.kind is LineKind.SAMPLE:
            assert line.reading is not None
            self._handle_sample(line.reading, host_t_s)
        elif line.kind is LineKind.HEADER:
            self._counts["header_lines"] += 1
            self._adopt_header(line.columns or (), host_t_s)
        elif line.kind is LineKind.BANNER:
            self._counts["banner_lines"] += 1
            self._note(f"banner {line.text[:80]!r}", host_t_s)
        elif line.kind is LineKind.GARBAGE:
            self._counts["garbage_lines"] += 1
        else:
            self._counts["malformed_lines"] += 1

    def _handle_sample(self, reading: MeterReading, host_t_s: float) -> None:
        last = self._last_meter_t_s
        if reading.meter_t_s is not None and last is not None and reading.meter_t_s < last:
            self._counts["meter_resets"] += 1
            self._note(f"meter reset: clock went from {last:.3f} s to {reading.meter_t_s:.3f} s")
            self._segment += 1
        self._last_meter_t_s = reading.meter_t_s
        assert self._writer is not None
        self._writer.write(
            LogSample(
                host_t_s,
                reading.power_mw,
                reading.meter_t_s,
                reading.voltage_v,
                reading.current_ma,
                self._segment,
            )
        )
        self._counts["samples"] += 1

    def _adopt_header(self, columns: tuple[str, ...], host_t_s: float) -> None:
        if self._columns_fixed or not isinstance(self.parser, CsvMeterParser):
            return
        if columns == self.parser.columns.names:
            return
        try:
            self.parser = make_parser(self.meter, columns)
        except PowerError as error:
            self._note(f"ignored header {','.join(columns)}: {error}", host_t_s)
            return
        self._note(f"meter printed columns {','.join(columns)}; adopted", host_t_s)

    def _note(self, text: str, host_t_s: float | None = None) -> None:
        if self._writer is not None:
            self._writer.note(self._clock() if host_t_s is None else host_t_s, text)

    # --- the end -----------------------------------------------------------------------------

    def _finish(self) -> RecordSummary:
        duration_s = self._clock() - self._start_s
        self._counts["partial_lines"] = (
            self._assembler.partial_lines + self._assembler.overlong_lines
        )
        summary = replace(self.summary, duration_s=duration_s, **self._counts)
        if self._writer is not None:
            self._writer.close({**summary.counters(), "duration_s": f"{duration_s:.3f}"})
            self._writer = None
        if self._error is not None and not isinstance(self._error, KeyboardInterrupt):
            raise PowerError(f"recording {self.port} stopped: {self._error}") from self._error
        self.summary = summarize_log(summary)
        return self.summary


def _close_quietly(port: Any) -> None:
    if port is None:
        return
    with contextlib.suppress(serial.SerialException, OSError):  # already gone: nothing to free
        port.close()


def summarize_log(summary: RecordSummary) -> RecordSummary:
    """Fill in rate, mean/peak power, energy and clock fits from the log just written."""
    log = read_log(summary.out)
    if len(log) == 0:
        return summary
    timebase = align(log.meter_t_s, log.host_t_s, log.segment)
    t_s, power_mw = timebase.t_s, log.power_mw
    span_s = float(t_s[-1] - t_s[0]) if len(log) > 1 else 0.0
    return replace(
        summary,
        sample_rate_hz=(len(log) - 1) / span_s if span_s > 0 else None,
        mean_power_mw=float(np.mean(power_mw)),
        peak_power_mw=float(np.max(power_mw)),
        energy_mj=float(cumulative_energy_mj(t_s, power_mw)[-1]),
        clock_fits=timebase.fits,
    )
