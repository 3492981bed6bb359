"""Energy models: the linear coefficients of a stage's energy per inference.

A stage that computes for ``busy_ms`` within a pipeline period of ``period_ms`` (one inference
enters the pipeline every period) uses ``busy_w * busy_ms + period_w * period_ms`` millijoules
per inference. With ``active_idle`` (default) that is active power while busy plus idle power
while waiting: ``active * busy + idle * (period - busy)``. Link energy comes from the transfer
model. Keeping the form linear lets the solver minimise energy exactly.

>>> from hwsched.hardware import load_platform
>>> c = active_idle(load_platform("rpi4"))       # 6.4 W active, 2.7 W idle
>>> round(stage_energy_mj(c, busy_ms=10.0, period_ms=20.0), 3)   # 6.4*10 + 2.7*10
91.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hwsched.hardware import Platform


@dataclass(frozen=True)
class EnergyCoefficients:
    """Stage energy (mJ) = ``busy_w * busy_ms + period_w * period_ms``."""

    busy_w: float
    period_w: float


def active_idle(platform: Platform) -> EnergyCoefficients:
    """Active power while busy, idle power for the rest of the pipeline period."""
    return EnergyCoefficients(
        busy_w=platform.active_power_w - platform.idle_power_w, period_w=platform.idle_power_w
    )


def active_only(platform: Platform) -> EnergyCoefficients:
    """Dynamic view: only the time spent computing costs energy (boards sleep while waiting)."""
    return EnergyCoefficients(busy_w=platform.active_power_w, period_w=0.0)


def stage_energy_mj(coefficients: EnergyCoefficients, busy_ms: float, period_ms: float) -> float:
    return coefficients.busy_w * busy_ms + coefficients.period_w * period_ms


EnergyModel = Callable[[Platform], EnergyCoefficients]

ENERGY_MODELS: Mapping[str, EnergyModel] = MappingProxyType(
    {"active_idle": active_idle, "active_only": active_only}
)
