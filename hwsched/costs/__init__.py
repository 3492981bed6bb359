"""Cost models: plug-ins with one signature per kind, a default, and a name registry.

Four kinds, each a mapping ``name -> function`` with a default name; an unknown name raises
:class:`~hwsched.errors.UnknownNameError` listing the valid ones (:func:`get_model`):

``latency`` (:mod:`hwsched.costs.latency`)
    ``model(graph, platform, precision, profile) -> LayerLatencies``: per-layer milliseconds on
    one platform. ``roofline`` (default): max(compute, memory) per layer from the descriptor;
    ``measured``: measured segment/layer times from a :class:`~hwsched.costs.profile.Profile`.
``memory`` (:mod:`hwsched.costs.memory`)
    ``model(graph, precision) -> ActivationProfile``: bytes live at each position of the
    topological order; the peak activation memory of a stage is the max over its positions.
    ``arena`` (default): tensor lifetimes as TFLite's arena planner sees them;
    ``largest_tensor``: inputs + outputs of one layer (the cnn-parted rule).
``transfer`` (:mod:`hwsched.costs.transfer`)
    ``model(link, payload_bytes, messages) -> TransferCost``. ``framed`` (default): frames,
    per-frame overhead and gaps, bits per byte, per-message latency; ``ideal``: bandwidth only.
``energy`` (:mod:`hwsched.costs.energy`)
    ``model(platform) -> EnergyCoefficients``: stage energy is linear in its busy time and the
    pipeline period. ``active_idle`` (default): active power while busy, idle power for the rest
    of the period; ``active_only``: active power while busy, nothing while waiting.

Units: milliseconds, bytes, watts, millijoules (W x ms = mJ).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from hwsched.costs.energy import ENERGY_MODELS, EnergyCoefficients
from hwsched.costs.latency import LATENCY_MODELS, LayerLatencies
from hwsched.costs.memory import MEMORY_MODELS, ActivationProfile
from hwsched.costs.profile import Profile, load_profile, parse_profile
from hwsched.costs.transfer import TRANSFER_MODELS, TransferCost
from hwsched.errors import UnknownNameError

#: The default model of each kind.
DEFAULT_MODELS: Mapping[str, str] = MappingProxyType(
    {"latency": "roofline", "memory": "arena", "transfer": "framed", "energy": "active_idle"}
)
#: Every registry, by kind.
REGISTRIES: Mapping[str, Mapping[str, Callable[..., Any]]] = MappingProxyType(
    {
        "latency": LATENCY_MODELS,
        "memory": MEMORY_MODELS,
        "transfer": TRANSFER_MODELS,
        "energy": ENERGY_MODELS,
    }
)


def get_model(kind: str, name: str | None = None) -> Callable[..., Any]:
    """The cost model ``name`` of one kind (its default when ``name`` is None)."""
    if kind not in REGISTRIES:
        raise UnknownNameError("cost model kind", kind, tuple(REGISTRIES))
    registry = REGISTRIES[kind]
    chosen = DEFAULT_MODELS[kind] if name is None else name
    if chosen not in registry:
        raise UnknownNameError(f"{kind} model", chosen, tuple(registry))
    return registry[chosen]


def model_names(kind: str) -> tuple[str, ...]:
    if kind not in REGISTRIES:
        raise UnknownNameError("cost model kind", kind, tuple(REGISTRIES))
    return tuple(REGISTRIES[kind])


__all__ = [
    "DEFAULT_MODELS",
    "REGISTRIES",
    "ActivationProfile",
    "EnergyCoefficients",
    "LayerLatencies",
    "Profile",
    "TransferCost",
    "get_model",
    "load_profile",
    "model_names",
    "parse_profile",
]
