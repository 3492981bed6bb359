"""Measured power → values for a platform's hardware descriptor.

The descriptor (``hardware/platforms/<platform>.yaml``) is not rewritten, and nothing loads a
calibration automatically: calibration writes a small YAML file of measured values, named for the
platform, that ``hwsched analyze --power-calibration FILE`` reads (with :func:`read_calibration`)
to replace the platform's active and idle power by the measured ones
(:func:`hwsched.hardware.with_measured_power`) for that analysis::

    kind: hwsched-power-calibration
    version: 1
    platform: rpi4
    active_power_mw: 4310.2
    idle_power_mw: 2710.0
    energy_per_inference_mj: 215.5
    dynamic_energy_per_inference_mj: 80.1
    inferences: 50
    source_log: power_logs/rpi4_stage0.csv
    events: run/events.jsonl
    meter: ina219
    stage: 0
    date: 2024-05-01T12:00:00Z
    power:          # the descriptor's own keys (hardware/platforms/*.yaml), to copy in by hand
      active_w: {value: 4.3102, source: "measured: power_logs/rpi4_stage0.csv (ina219), ..."}
      idle_w: {value: 2.71, source: "measured: ..."}
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from hwsched.documents import CALIBRATION, check_kind
from hwsched.documents.fields import FieldReader, read_record
from hwsched.errors import PowerError
from hwsched.fileio import atomic_write_text
from hwsched.power.energy import EnergyReport
from hwsched.power.meters import MAX_POWER_MW

KIND = CALIBRATION
VERSION = 1
_PLATFORM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class PowerCalibration:
    """What a platform draws, measured."""

    platform: str
    active_power_mw: float  # average while inferring
    idle_power_mw: float
    energy_per_inference_mj: float
    dynamic_energy_per_inference_mj: float
    inferences: int
    source_log: str
    events: str
    meter: str
    stage: int | None
    date: str

    def to_record(self) -> dict:
        """The file's content: the measured values, and a ``power`` block shaped like the
        descriptor's (``active_w``/``idle_w`` with a ``source``) to copy into it by hand."""
        source = (
            f"measured: {self.source_log} ({self.meter}), {self.inferences} inferences, {self.date}"
        )
        return {
            "kind": KIND,
            "version": VERSION,
            **asdict(self),
            "power": {
                "active_w": {"value": round(self.active_power_mw / 1e3, 4), "source": source},
                "idle_w": {"value": round(self.idle_power_mw / 1e3, 4), "source": source},
            },
        }


def calibration_from_report(
    report: EnergyReport, platform: str, events: str | Path, now: dt.datetime | None = None
) -> PowerCalibration:
    if not _PLATFORM_NAME.match(platform):
        raise PowerError(f"platform name {platform!r} must be letters, digits, '_', '-' or '.'")
    if not 0 <= report.idle_power_mw <= report.average_power_mw:
        # the same rule analyze applies when it reads the calibration: refuse it now
        raise PowerError(
            f"{report.log}: idle power {report.idle_power_mw:.1f} mW is not between 0 and the "
            f"average power while inferring ({report.average_power_mw:.1f} mW); cannot calibrate"
        )
    now = now or dt.datetime.now(dt.timezone.utc)
    return PowerCalibration(
        platform=platform,
        active_power_mw=round(report.average_power_mw, 3),
        idle_power_mw=round(report.idle_power_mw, 3),
        energy_per_inference_mj=round(report.energy_per_inference_mj, 4),
        dynamic_energy_per_inference_mj=round(report.dynamic_energy_per_inference_mj, 4),
        inferences=report.inferences,
        source_log=report.log,
        events=str(events),
        meter=report.meter,
        stage=report.stage,
        date=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def default_calibration_path(platform: str) -> Path:
    return Path("power_logs") / f"{platform}.power.yaml"


def write_calibration(calibration: PowerCalibration, path: str | Path) -> Path:
    """Write atomically: a failed write leaves an existing file as it was."""
    return atomic_write_text(path, yaml.safe_dump(calibration.to_record(), sort_keys=False))


def read_calibration(path: str | Path) -> PowerCalibration:
    """Read a calibration file back, as ``hwsched analyze --power-calibration FILE`` does."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CALIBRATION_BYTES:
            _refuse_large(path)
        record = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
        raise PowerError(f"cannot read calibration {path}: {_one_line(error)}") from None
    reader = FieldReader(str(path), PowerError)
    if not isinstance(record, dict) or "kind" not in record:
        raise PowerError(f"{path}: not a power calibration (kind must be {KIND!r})")
    check_kind(record, KIND, reader)
    if isinstance(record.get("date"), dt.datetime | dt.date):  # an unquoted date in YAML
        record["date"] = record["date"].isoformat().replace("+00:00", "Z")
    return _check_range(read_record(PowerCalibration, record, reader), path)


def _refuse_large(path: Path) -> None:
    """A file over the cap is no calibration; when its head names another document's kind (an
    analysis is often larger than the cap), say which, as for a small file."""
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace")
    named = re.search(r'^\s*\{?\s*"?kind"?\s*:\s*"?([\w-]+)"?', head)
    if named and named.group(1) != KIND:
        check_kind({"kind": named.group(1)}, KIND, FieldReader(str(path), PowerError))
    raise PowerError(f"{path}: over {MAX_CALIBRATION_BYTES:,} bytes; not a calibration")


#: Measured quantities, read as floats whether written as 2710 or 2710.0.
_NUMBERS = (
    "active_power_mw",
    "idle_power_mw",
    "energy_per_inference_mj",
    "dynamic_energy_per_inference_mj",
)
#: A calibration file is a dozen lines; energies beyond a megajoule per inference are not real.
MAX_CALIBRATION_BYTES = 64 * 1024
MAX_ENERGY_MJ = 1e9


def _check_range(calibration: PowerCalibration, path: Path) -> PowerCalibration:
    """Powers are 0…MAX_POWER_MW, energies ±MAX_ENERGY_MJ; checked before ``float()`` (a
    400-digit YAML integer would overflow it)."""
    for name in _NUMBERS:
        value = getattr(calibration, name)
        low = 0.0 if name.endswith("_mw") else -MAX_ENERGY_MJ
        high = MAX_POWER_MW if name.endswith("_mw") else MAX_ENERGY_MJ
        if not low <= value <= high:
            raise PowerError(f"{path}: field {name!r} must be a finite number, got "
                             f"{repr(value)[:30]} (range {low:g} to {high:g})")
    return replace(calibration, **{name: float(getattr(calibration, name)) for name in _NUMBERS})


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
