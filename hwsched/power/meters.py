"""Parsers for the lines power meters print over serial.

Three families are understood, each registered by name in :data:`METERS`:

* ``ina219`` / ``ina226`` — a microcontroller printing one CSV line per conversion, e.g.
  ``ms,bus_V,shunt_mV,current_mA,power_mW``. The column names say what each field is and in which
  unit (:data:`COLUMN_ROLES`); the mapping is configurable because every sketch prints its own.
* ``tegrastats`` — Jetson ``tegrastats`` lines; the board-input rail is ``VDD_IN 4123mW/4001mW``
  (Orin, Xavier NX) or ``POM_5V_IN 1750/1628`` (Nano, TX2): instantaneous/average in mW.
* ``generic`` — ``timestamp,power_w`` CSV (seconds, watts) as exported by bench meters.

A parser turns one decoded line into a :class:`MeterReading` or raises :class:`MeterParseError`;
:func:`classify_line` wraps that for raw bytes off the wire and never raises, sorting every line
into a :class:`LineKind` so the recorder can count what it skipped.

>>> parser = make_parser("ina219")
>>> parser.parse("1500,5.02,12.3,123.0,617.5")
MeterReading(power_mw=617.5, meter_t_s=1.5, voltage_v=5.02, current_ma=123.0)
>>> classify_line(parser, b"INA219 ready").kind
<LineKind.BANNER: 'banner'>
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Protocol

from hwsched.errors import PowerError, UnknownNameError


class MeterParseError(PowerError):
    """One line from a meter is not a sample of the configured format."""


#: The power a reading may show: an embedded board draws well under a kilowatt, and a
#: current-sense amplifier's offset makes an idle rail read a little below zero, never more.
MAX_POWER_MW = 1_000_000.0
NEGATIVE_NOISE_MW = 100.0
#: Largest time a clock may show, in seconds (a meter's uptime, or host epoch time): year 2286.
MAX_TIME_S = 1e10


def check_power_mw(value: float, name: str = "power_mw") -> float:
    """``value`` if a board can draw it, else :class:`MeterParseError` (the recorder skips and
    counts such lines as malformed; a log reader refuses them).

    >>> check_power_mw(-99_999.0)
    Traceback (most recent call last):
    ...
    hwsched.power.meters.MeterParseError: power_mw -99999.0 is outside [-100, 1e+06] mW
    """
    if not -NEGATIVE_NOISE_MW <= value <= MAX_POWER_MW:
        raise MeterParseError(
            f"{name} {value} is outside [{-NEGATIVE_NOISE_MW:g}, {MAX_POWER_MW:g}] mW"
        )
    return value


def check_time_s(value: float, name: str) -> float:
    """``value`` if a clock can show it (0 … :data:`MAX_TIME_S`), else MeterParseError."""
    if not 0.0 <= value <= MAX_TIME_S:
        raise MeterParseError(f"{name} {value} is outside [0, {MAX_TIME_S:g}] s")
    return value


@dataclass(frozen=True)
class MeterReading:
    """One sample as the meter reported it, before the host timestamps it; a value no meter
    can show (a garbled line that still parses) raises :class:`MeterParseError`."""

    power_mw: float
    meter_t_s: float | None = None
    voltage_v: float | None = None
    current_ma: float | None = None

    def __post_init__(self) -> None:
        check_power_mw(self.power_mw)
        if self.meter_t_s is not None:
            check_time_s(self.meter_t_s, "meter_t_s")


class LineKind(str, Enum):
    """What a line off the wire turned out to be."""

    SAMPLE = "sample"
    HEADER = "header"  # column names, printed by a sketch on reset
    BANNER = "banner"  # human-readable text: reset banners, boot messages
    GARBAGE = "garbage"  # not decodable text: line noise, wrong baud rate
    MALFORMED = "malformed"  # shaped like data but not a valid sample (e.g. a cut line)


@dataclass(frozen=True)
class ClassifiedLine:
    kind: LineKind
    text: str
    reading: MeterReading | None = None
    columns: tuple[str, ...] | None = None
    reason: str = ""


class LineParser(Protocol):
    """What the recorder needs from a meter format."""

    meter: str

    def parse(self, line: str) -> MeterReading:
        """Return the sample on ``line`` or raise :class:`MeterParseError`."""
        ...

    def header_columns(self, line: str) -> tuple[str, ...] | None:
        """The column names if ``line`` is a header this parser understands, else ``None``."""
        ...

    def looks_like_data(self, line: str) -> bool:
        """Whether an unparsable ``line`` is a damaged sample rather than a banner."""
        ...


# --- column roles for CSV meters -------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRole:
    """What a named CSV column holds and the factor to this package's unit (s, mW, V, mA)."""

    role: str  # "time", "power", "voltage", "load_voltage", "current" or "ignore"
    scale: float


def _roles(role: str, scale: float, *names: str) -> dict[str, ColumnRole]:
    return {name: ColumnRole(role, scale) for name in names}


#: Column names (case-insensitive) a CSV meter may print, by what they hold.
COLUMN_ROLES: Mapping[str, ColumnRole] = MappingProxyType(
    {
        **_roles("time", 1e-3, "ms", "millis", "t_ms", "time_ms", "timestamp_ms"),
        **_roles("time", 1e-6, "us", "micros", "t_us", "time_us", "timestamp_us"),
        **_roles("time", 1.0, "s", "t_s", "time_s", "seconds", "timestamp", "timestamp_s"),
        **_roles("power", 1.0, "power_mw", "mw", "p_mw"),
        **_roles("power", 1e3, "power_w", "w", "p_w"),
        **_roles("power", 1e-3, "power_uw", "uw", "p_uw"),
        **_roles("voltage", 1.0, "bus_v", "v", "vbus", "voltage_v", "bus_voltage_v"),
        **_roles("voltage", 1e-3, "bus_mv", "vbus_mv", "voltage_mv"),
        **_roles("load_voltage", 1.0, "load_v", "supply_v", "vin"),
        **_roles("current", 1.0, "current_ma", "ma", "i_ma"),
        **_roles("current", 1e3, "current_a", "a", "i_a"),
        **_roles("current", 1e-3, "current_ua", "ua", "i_ua"),
        **_roles("ignore", 1.0, "shunt_mv", "shunt_v", "vshunt", "shunt_uv", "_", "-", "skip"),
    }
)


@dataclass(frozen=True)
class ColumnMap:
    """Where each quantity sits in a CSV line, and its factor to s / mW / V / mA.

    Power comes from a power column if there is one, else from bus voltage × current (what the
    INA219's own power register computes), else from load voltage × current.
    """

    names: tuple[str, ...]
    time: tuple[int, float] | None
    power: tuple[int, float] | None
    voltage: tuple[int, float] | None
    current: tuple[int, float] | None

    @classmethod
    def from_names(cls, names: Sequence[str]) -> ColumnMap:
        names = tuple(name.strip() for name in names)
        found: dict[str, tuple[int, float]] = {}
        for index, name in enumerate(names):
            role = COLUMN_ROLES.get(name.lower())
            if role is None:
                valid = ", ".join(sorted(COLUMN_ROLES))
                raise PowerError(f"unknown meter column {name!r}; valid column names: {valid}")
            if role.role in found and role.role != "ignore":
                raise PowerError(f"meter columns {','.join(names)}: two {role.role} columns")
            found.setdefault(role.role, (index, role.scale))
        voltage = found.get("voltage") or found.get("load_voltage")
        if "power" not in found and not (voltage and "current" in found):
            raise PowerError(
                f"meter columns {','.join(names)}: need a power column (e.g. power_mW) "
                "or a voltage and a current column (e.g. bus_V and current_mA)"
            )
        return cls(names, found.get("time"), found.get("power"), voltage, found.get("current"))


def _split_fields(line: str) -> list[str]:
    # Sketches print commas, semicolons, tabs or spaces between values; take the first present.
    for separator in (",", ";", "\t"):
        if separator in line:
            return [field.strip() for field in line.split(separator)]
    return line.split()


def _number(field: str, name: str) -> float:
    try:
        value = float(field)
    except ValueError:
        raise MeterParseError(f"field {name} is not a number: {field[:20]!r}") from None
    if not math.isfinite(value):
        raise MeterParseError(f"field {name} is not finite: {field[:20]!r}")
    return value


_DATA_CHARS = re.compile(r"^[0-9eE+\-.,;\s]*$")


@dataclass(frozen=True)
class CsvMeterParser:
    """INA219/INA226-style and generic CSV lines, one sample per line."""

    meter: str
    columns: ColumnMap

    def parse(self, line: str) -> MeterReading:
        fields = _split_fields(line.strip())
        if len(fields) != len(self.columns.names):
            raise MeterParseError(
                f"expected {len(self.columns.names)} fields "
                f"({','.join(self.columns.names)}), got {len(fields)}"
            )
        names = self.columns.names
        values = [_number(field, name) for field, name in zip(fields, names, strict=True)]

        def pick(slot: tuple[int, float] | None) -> float | None:
            return None if slot is None else values[slot[0]] * slot[1]

        voltage_v, current_ma = pick(self.columns.voltage), pick(self.columns.current)
        power_mw = pick(self.columns.power)
        if power_mw is None:
            assert voltage_v is not None and current_ma is not None  # ensured by ColumnMap
            power_mw = voltage_v * current_ma
        return MeterReading(power_mw, pick(self.columns.time), voltage_v, current_ma)

    def header_columns(self, line: str) -> tuple[str, ...] | None:
        fields = _split_fields(line.strip())
        if len(fields) >= 2 and all(field.lower() in COLUMN_ROLES for field in fields):
            return tuple(fields)
        return None

    def looks_like_data(self, line: str) -> bool:
        return bool(_DATA_CHARS.match(line))


# --- tegrastats ------------------------------------------------------------------------------

#: Board-input rails in the order tried when no rail is named.
TEGRASTATS_RAILS: tuple[str, ...] = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")
_RAIL_VALUE = r"(\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?"
_TEGRA_STAMP = re.compile(r"^(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2})\s")
_ANY_RAIL = re.compile(r"\b[A-Z][A-Z0-9_]* " + _RAIL_VALUE)


def _tegrastats_stamp_s(line: str) -> float | None:
    """Newer tegrastats prefixes ``MM-DD-YYYY HH:MM:SS``; only offsets matter, so read as UTC."""
    match = _TEGRA_STAMP.match(line)
    if match is None:
        return None
    month, day, year, hour, minute, second = (int(group) for group in match.groups())
    try:
        return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class TegrastatsParser:
    """Jetson ``tegrastats`` lines; reports the instantaneous value of one rail in mW."""

    rails: tuple[str, ...] = TEGRASTATS_RAILS
    meter: str = "tegrastats"

    def parse(self, line: str) -> MeterReading:
        for rail in self.rails:
            match = re.search(rf"(?<![A-Z0-9_]){re.escape(rail)} {_RAIL_VALUE}", line)
            if match is not None:
                power_mw = _number(match.group(1), rail)
                return MeterReading(power_mw, _tegrastats_stamp_s(line))
        raise MeterParseError(f"no rail {' or '.join(self.rails)} in tegrastats line")

    def header_columns(self, line: str) -> tuple[str, ...] | None:
        return None

    def looks_like_data(self, line: str) -> bool:
        return line.startswith("RAM ") or bool(_TEGRA_STAMP.match(line) or _ANY_RAIL.search(line))


# --- registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterSpec:
    name: str
    description: str
    default_columns: tuple[str, ...] = ()


#: Meter formats by the name the CLI takes.
METERS: Mapping[str, MeterSpec] = MappingProxyType(
    {
        "ina219": MeterSpec(
            "ina219",
            "INA219 on a microcontroller printing CSV",
            ("ms", "bus_V", "shunt_mV", "current_mA", "power_mW"),
        ),
        "ina226": MeterSpec(
            "ina226",
            "INA226 on a microcontroller printing CSV",
            ("ms", "bus_V", "current_mA", "power_mW"),
        ),
        "tegrastats": MeterSpec("tegrastats", "Jetson tegrastats (VDD_IN / POM_5V_IN rail)"),
        "generic": MeterSpec("generic", "CSV timestamp,power_w", ("timestamp", "power_W")),
    }
)


def make_parser(
    meter: str, columns: Sequence[str] | None = None, rail: str | None = None
) -> CsvMeterParser | TegrastatsParser:
    """The parser for ``meter``; ``columns`` overrides a CSV meter's column names."""
    spec = METERS.get(meter)
    if spec is None:
        raise UnknownNameError("meter", meter, list(METERS))
    if meter == "tegrastats":
        if columns:
            raise PowerError("tegrastats has no columns to map; name the rail with --rail")
        return TegrastatsParser((rail,) if rail else TEGRASTATS_RAILS)
    if rail:
        raise PowerError(f"--rail applies to tegrastats only, not to {meter}")
    return CsvMeterParser(meter, ColumnMap.from_names(columns or spec.default_columns))


def parse_columns(text: str) -> tuple[str, ...]:
    """``"ms,bus_V,current_mA"`` → ``("ms", "bus_V", "current_mA")``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


# --- classification of raw lines -------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")
_WORD = re.compile(r"[A-Za-z]{3,}")


def decode_line(raw: bytes) -> str | None:
    """The text of a raw line, or ``None`` if it is not clean printable text."""
    try:
        text = raw.decode("utf-8").strip("\r\n")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def classify_line(parser: LineParser, raw: bytes) -> ClassifiedLine:
    """Sort one raw line into a :class:`LineKind`; never raises."""
    text = decode_line(raw)
    if text is None:
        return ClassifiedLine(LineKind.GARBAGE, raw.decode("utf-8", "replace"), reason="not text")
    if not text.strip():
        return ClassifiedLine(LineKind.MALFORMED, text, reason="empty line")
    try:
        return ClassifiedLine(LineKind.SAMPLE, text, reading=parser.parse(text))
    except MeterParseError as error:
        reason = str(error)
    columns = parser.header_columns(text)
    if columns is not None:
        return ClassifiedLine(LineKind.HEADER, text, columns=columns)
    if parser.looks_like_data(text) or not _WORD.search(text):
        return ClassifiedLine(LineKind.MALFORMED, text, reason=reason)
    return ClassifiedLine(LineKind.BANNER, text, reason=reason)
