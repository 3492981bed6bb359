"""Activation compression per link (QuantPipe-style): how crossing tensors travel on the wire.

A link of a chain plan has a ``compression`` level (``links[k].compression``):

- ``fp32``: tensors travel as their producing stage made them (the default: plans from before
  compression existed read as this, and nothing changes);
- ``fp16``: float32 tensors travel as float16 (half the bytes);
- ``int8``: float tensors travel as int8 codes of a per-tensor ``(scale, zero_point)``
  calibrated at export (``links[k].compression_quantization``; a quarter of fp32's bytes).

Only float tensors a *stage* made are compressed. A tensor that is already int8 (an int8 stage's
output) travels as it is at every level: its codes are already the smallest form, and
re-quantizing them would only add error. Model inputs (forwarded by a stage) are not
compressed either: they are the source's, not a link's.

Everything here is numpy only (the runner imports it), and export's proof calls the same
functions the runner does (:func:`through_link`), so both see the same rounding. int8 codes are
``clip(rint(x / scale) + zero_point, -128, 127)`` computed in float32 (round half to even, unlike
the hand-off's TFLite rounding: a tie is rare and either way within half a step; float32 keeps
a link's conversion at a few ms per MB on a small board instead of tens). After decompression a
tensor has the producer's dtype, and the consumer applies its usual hand-off step to it.

>>> from hwsched.deployment import Quantization, TensorSpec
>>> spec = TensorSpec("t", (1, 3), "float32")
>>> q = Quantization(0.5, -10)
>>> wire = compress(np.array([[0.2, 1.0, 500.0]], np.float32), spec, "int8", q)
>>> wire.dtype.name, wire.tolist(), decompress(wire, spec, "int8", q).tolist()
('int8', [[-10, -8, 127]], [[0.0, 1.0, 68.5]])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwsched.deployment import (
    COMPRESSION_LEVELS,
    LinkPlan,
    Quantization,
    StagePlan,
    TensorSpec,
)
from hwsched.errors import PlanError
from hwsched.handoff import INT_RANGES

#: Levels from weakest to strongest (fewest bytes last).
LEVELS = COMPRESSION_LEVELS
#: Float dtypes a link may compress.
FLOAT_DTYPES = ("float32", "float16")
#: Wire dtype of a float tensor at each level (None: as made).
LEVEL_DTYPES: Mapping[str, str | None] = {"fp32": None, "fp16": "float16", "int8": "int8"}
#: Relative tolerance of ``verify`` on the model outputs of a chain whose links compress at
#: each level (a fraction of each output's largest reference magnitude, like fp32's 1e-4).
#: fp16 keeps 11 significant bits (relative rounding 2**-11 ≈ 4.9e-4 per element); a few layers
#: after the link that grows, and 1e-2 holds with a wide margin on the zoo's CNNs. int8 keeps 256
#: levels over the calibrated range (half a step ≈ 0.2% of it, more for activations outside
#: the calibration data, which saturate): 0.1 of the output magnitude; whether that moves
#: predictions is what the measured accuracy drop (``verification.compression``) judges.
#: Measured on digits_cnn (fp32 stages, cuts after stem_relu, res_add, se_scale, down_relu,
#: 32 digits test samples): fp16 8.8e-6 to 2.8e-5, int8 1.1e-4 to 1.5e-3.
OUTPUT_TOLERANCE: Mapping[str, float] = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.1}


def check_level(level: str, what: str = "compression") -> str:
    if level not in LEVELS:
        raise PlanError(f"{what} {level!r} is not a compression level; valid: {', '.join(LEVELS)}")
    return level


def compresses(spec: TensorSpec, level: str) -> bool:
    """Whether ``level`` changes how a tensor made as ``spec`` travels."""
    target = LEVEL_DTYPES[check_level(level)]
    return target is not None and spec.dtype in FLOAT_DTYPES and spec.dtype != target


def wire_spec(spec: TensorSpec, level: str, q: Quantization | None = None) -> TensorSpec:
    """The spec a tensor made as ``spec`` travels in at ``level`` (``q``: int8's grid).

    >>> wire_spec(TensorSpec("t", (1, 4), "float32"), "fp16").dtype
    'float16'
    >>> int8 = TensorSpec("t", (1, 4), "int8", Quantization(0.1, 3))
    >>> wire_spec(int8, "int8") == int8                     # already int8: as it is
    True
    """
    if not compresses(spec, level):
        return spec
    if level == "fp16":
        return replace(spec, dtype="float16", quantization=None)
    if q is None:
        raise PlanError(f"tensor {spec.name!r}: int8 compression needs a calibrated "
                        "quantization (scale, zero_point); re-export with --compress int8")
    return replace(spec, dtype="int8", quantization=q)


def compress(values: np.ndarray, spec: TensorSpec, level: str,
             q: Quantization | None = None) -> np.ndarray:
    """A tensor made as ``spec``, as it travels at ``level``."""
    return to_wire(np.asarray(values), spec, wire_spec(spec, level, q))


def decompress(values: np.ndarray, spec: TensorSpec, level: str,
               q: Quantization | None = None) -> np.ndarray:
    """A tensor that travelled at ``level``, back in the producer's dtype (``spec``)."""
    return from_wire(np.asarray(values), wire_spec(spec, level, q), spec)


def to_wire(values: np.ndarray, made: TensorSpec, wire: TensorSpec) -> np.ndarray:
    """``values`` (as ``made``) in the wire's dtype: float16, int8 codes, or as they are."""
    if made == wire:
        return values
    if wire.quantization is not None:
        q = wire.quantization
        low, high = INT_RANGES[wire.dtype]
        codes = np.asarray(values, dtype=np.float32) * np.float32(1.0 / q.scale)
        codes += np.float32(q.zero_point)
        np.rint(codes, out=codes)
        np.clip(codes, low, high, out=codes)
        return codes.astype(wire.dtype)
    return np.asarray(values).astype(wire.dtype)


def from_wire(values: np.ndarray, wire: TensorSpec, made: TensorSpec) -> np.ndarray:
    """Wire values back in the producer's dtype (int8 codes dequantized)."""
    if made == wire:
        return values
    if wire.quantization is not None:
        q = wire.quantization
        floats = np.asarray(values).astype(np.float32)
        floats -= np.float32(q.zero_point)
        floats *= np.float32(q.scale)
        return floats.astype(made.dtype, copy=False)
    return np.asarray(values).astype(made.dtype)


def calibrate(values: Iterable[np.ndarray]) -> Quantization:
    """Asymmetric int8 ``(scale, zero_point)`` covering every value seen and 0 (as TFLite's
    calibration does: 0 must be exact, padding and ReLU produce it).

    >>> calibrate([np.array([-8.0, 0.5]), np.array([7.9375])])
    Quantization(scale=0.0625, zero_point=0)
    """
    low, high = 0.0, 0.0
    for array in values:
        finite = np.asarray(array, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    codes_low, codes_high = INT_RANGES["int8"]
    scale = (high - low) / (codes_high - codes_low)
    if scale <= 0 or not math.isfinite(scale):
        return Quantization(1.0, 0)  # all zeros: any grid holds them exactly
    zero_point = round(codes_low - low / scale)
    return Quantization(float(scale), int(np.clip(zero_point, codes_low, codes_high)))


# -- a plan's links ----------------------------------------------------------------------------
@dataclass(frozen=True)
class HopCodec:
    """How the tensors of one hop go on and come off the wire: ``made`` are the specs their
    producers made them in, ``wire`` the specs they travel in (equal when nothing is
    compressed)."""

    made: Mapping[str, TensorSpec]
    wire: Mapping[str, TensorSpec]

    @property
    def identity(self) -> bool:
        return all(self.made[name] == self.wire[name] for name in self.made)

    def pack(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The sender's side: every tensor as the hop carries it."""
        if self.identity:
            return dict(arrays)
        return {name: to_wire(arrays[name], self.made[name], self.wire[name])
                for name in self.wire}

    def unpack(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The receiver's side: every tensor back as its producer made it."""
        if self.identity:
            return dict(arrays)
        return {name: from_wire(arrays[name], self.wire[name], self.made[name])
                for name in arrays}


def link_wire_specs(link: LinkPlan | None, made: Mapping[str, TensorSpec],
                    model_inputs: Iterable[str] = ()) -> dict[str, TensorSpec]:
    """The wire spec of every tensor of a link (``made``: their producer specs, in order);
    model inputs travel as the source made them."""
    if link is None or link.compression == "fp32":
        return dict(made)
    skip = set(model_inputs)
    wire = {}
    for name, spec in made.items():
        if name in skip or not compresses(spec, link.compression):
            wire[name] = spec
            continue
        q = link.compression_quantization.get(name)
        if link.compression == "int8" and q is None:
            raise PlanError(
                f"plan: field 'links[{link.from_stage}].compression_quantization' has no "
                f"entry for {name!r}, which the link compresses to int8; re-export the plan")
        wire[name] = wire_spec(spec, link.compression, q)
    return wire


def check_link_compression(stages: Sequence[StagePlan], links: Sequence[LinkPlan],
                           where: str) -> None:
    """Every float tensor an int8-compressed link carries from a stage has its quantization,
    and the link names no quantization for a tensor it does not carry: one line naming the
    field, when the plan is read."""
    for k, link in enumerate(links):
        extra = sorted(set(link.compression_quantization) - set(link.tensors))
        if extra:
            raise PlanError(f"{where}: field 'links[{k}].compression_quantization' names "
                            f"{extra[0]!r}, which the link does not carry")
        if link.compression != "int8":
            continue
        made = _stage_made(stages, link)
        for name in link.tensors:
            spec = made.get(name)
            if spec is not None and compresses(spec, "int8") and \
                    name not in link.compression_quantization:
                raise PlanError(
                    f"{where}: field 'links[{k}].compression_quantization' lacks {name!r}, "
                    "which the link compresses to int8 (calibrate it: export --compress int8)")


def _stage_made(stages: Sequence[StagePlan], link: LinkPlan) -> dict[str, TensorSpec]:
    """Specs of the link's tensors that an earlier stage makes (the latest such stage)."""
    made: dict[str, TensorSpec] = {}
    for stage in stages[: link.to_stage]:
        made.update({o.name: o for o in stage.outputs})
    return {name: made[name] for name in link.tensors if name in made}


def wire_bytes(specs: Mapping[str, TensorSpec]) -> int:
    """Payload bytes of one message carrying ``specs``."""
    return sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in specs.values())


def strongest(levels: Iterable[str]) -> str:
    """The level with the fewest bytes among ``levels`` (fp32 when none).

    >>> strongest(["fp16", "fp32"])
    'fp16'
    """
    chosen = [check_level(level) for level in levels]
    return max(chosen, key=LEVELS.index, default="fp32")


def through_link(values: np.ndarray, made: TensorSpec, wire: TensorSpec) -> np.ndarray:
    """A tensor after the trip over a link: compressed into ``wire`` and back into ``made``
    (what export's chain feeds the next stage, so the proof sees the wire's rounding)."""
    if made == wire:
        return values
    return from_wire(to_wire(np.asarray(values), made, wire), wire, made)


def chain_link_specs(stages: Sequence[StagePlan], links: Sequence[LinkPlan]
                     ) -> dict[tuple[int, str], tuple[TensorSpec, TensorSpec]]:
    """(consumer stage, tensor) → (producer spec, wire spec) for every compressed tensor of a
    chain whose stages read only from the stage before them (export's chains)."""
    specs: dict[tuple[int, str], tuple[TensorSpec, TensorSpec]] = {}
    for link in links:
        if link.compression == "fp32":
            continue
        made = _stage_made(stages, link)
        for name, wire in link_wire_specs(link, made).items():
            if wire != made[name]:
                specs[(link.to_stage, name)] = (made[name], wire)
    return specs


#: Levels the planner may use without a measured accuracy: fp32 changes nothing, and fp16
#: keeps 11 significant bits (its drop measured 0.00 pp on digits_cnn at every cut tried);
#: int8 saturates outside its calibrated range, so it needs a measurement.
ALLOWED_UNMEASURED = ("fp32", "fp16")


def allowed_levels(requested: Sequence[str], measured: Mapping[str, Any] | None,
                   max_drop_pp: float) -> tuple[tuple[str, ...], dict[str, str]]:
    """The levels a planner may use, and why each other one is left out.

    ``measured`` is a plan's ``verification.compression`` (``export --compress``): a level
    measured there is allowed when its drop is within ``max_drop_pp``; a level not measured is
    allowed only if it is in :data:`ALLOWED_UNMEASURED`.

    >>> allowed_levels(["fp32", "int8"], {"levels": {"int8": {"drop_pp": 1.2}}}, 0.5)
    (('fp32',), {'int8': 'measured drop 1.20 pp > 0.5 pp'})
    >>> allowed_levels(["fp16", "int8"], None, 0.5)[1]
    {'int8': 'no measured accuracy (export --compress auto, then --compression-accuracy PLAN)'}
    """
    levels = (measured or {}).get("levels") or {}
    allowed, excluded = [], {}
    for level in requested:
        check_level(level)
        drop = (levels.get(level) or {}).get("drop_pp")
        if drop is None and level not in ALLOWED_UNMEASURED:
            excluded[level] = ("no measured accuracy (export --compress auto, then "
                               "--compression-accuracy PLAN)")
        elif drop is not None and drop > max_drop_pp:
            excluded[level] = f"measured drop {drop:.2f} pp > {max_drop_pp:g} pp"
        else:
            allowed.append(level)
    return tuple(allowed), excluded
