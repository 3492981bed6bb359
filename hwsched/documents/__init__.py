"""The JSON documents hwsched writes and reads, each one typed record read by one strict reader.

=================  =========================================  ==================================
``kind``           written by                                 record
=================  =========================================  ==================================
hwsched-analysis   ``hwsched analyze --json``                 :class:`.analysis.AnalysisDocument`
hwsched-plan       ``hwsched export`` (``plan.json``)         :class:`hwsched.deployment.Plan`
hwsched-emulation  ``hwsched emulate --json``                 ``runtime.emulate.EmulationResult``
hwsched-energy     ``hwsched power energy --json``            ``power.energy.PipelineEnergy``
hwsched-profile    ``hwsched profile``                        :class:`.profile.ProfileDocument`
=================  =========================================  ==================================

(the power calibration is YAML and has carried ``kind: hwsched-power-calibration`` from the
start). Every document starts with its ``kind``, so a file given in the wrong place is refused
in one line instead of failing on some field deep inside. Files written before the marker
existed have none: they are recognised by the fields only their kind has, so a kind-less file
of the wrong kind is refused the same way, and one of the right kind is read with the fields
it has (fields that came with the marker, such as the emulation's ``cut_positions``, are then
optional; the report says when it had to do without them).

This package is pure Python: the on-board runner may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwsched.documents.fields import FieldReader, read_record, record_to_dict

ANALYSIS = "hwsched-analysis"
PLAN = "hwsched-plan"
EMULATION = "hwsched-emulation"
ENERGY = "hwsched-energy"
PROFILE = "hwsched-profile"
CALIBRATION = "hwsched-power-calibration"

#: What each kind is, and the command that writes it (for error messages).
KINDS: Mapping[str, str] = {
    ANALYSIS: "an analysis ('hwsched analyze MODEL --json FILE')",
    PLAN: "a deployment plan ('hwsched export … --out DIR')",
    EMULATION: "an emulation result ('hwsched emulate DIR --json FILE')",
    ENERGY: "an energy report ('hwsched power energy LOG --events F --json FILE')",
    PROFILE: "a measured profile ('hwsched profile MODEL --out FILE')",
    CALIBRATION: "a power calibration ('hwsched power calibrate')",
}

__all__ = [
    "ANALYSIS", "CALIBRATION", "EMULATION", "ENERGY", "KINDS", "PLAN", "PROFILE",
    "FieldReader", "check_kind", "document_from_dict", "document_to_dict", "guess_kind",
    "load_document", "read_json_file", "read_record", "record_to_dict",
]


def guess_kind(data: Mapping[str, Any]) -> str | None:
    """The kind of a document from its ``kind`` field, else from fields only that kind has.

    >>> guess_kind({"kind": "hwsched-energy"})
    'hwsched-energy'
    >>> guess_kind({"model": "m", "candidates": [], "cut_points": []})
    'hwsched-analysis'
    >>> guess_kind({"x": 1}) is None
    True
    """
    if not isinstance(data, Mapping):
        return None
    if isinstance(data.get("kind"), str):
        return data["kind"]
    signatures = (
        (ANALYSIS, ("candidates", "cut_points")),
        (PLAN, ("stages", "links", "verification")),
        (EMULATION, ("throughput_ips", "stages_count")),
        (ENERGY, ("energy_per_inference_mj", "idle_power_mw")),
        (PROFILE, ("platform", "segments")),
    )
    for kind, fields in signatures:
        if all(name in data for name in fields):
            return kind
    return None


def check_kind(data: Mapping[str, Any], kind: str, reader: FieldReader) -> bool:
    """Raise unless ``data`` is a ``kind`` document; True when it carries the marker."""
    marker = data.get("kind") if isinstance(data, Mapping) else None
    if isinstance(data, Mapping) and "kind" in data and not isinstance(marker, str):
        shown = repr(marker) if len(repr(marker)) <= 40 else repr(marker)[:37] + "…"
        raise reader.fail("kind", f"must be a string such as {kind!r}, got {shown}")
    found = guess_kind(data)
    if found is not None and found != kind:
        what = KINDS.get(found, f"a document of kind {found!r}")
        raise reader.error(f"{reader.where}: not {KINDS.get(kind, kind)}: this is {what}")
    return isinstance(data, Mapping) and "kind" in data


def document_to_dict(record: Any) -> dict[str, Any]:
    """``{"kind": …, <the record's fields>}``."""
    return {"kind": type(record).JSON_KIND, **record_to_dict(record)}


def document_from_dict(cls: type, data: Any, where: str) -> Any:
    """Read a ``cls`` document (a record with ``JSON_KIND`` and ``JSON_ERROR``), kind checked.

    Fields listed in the record's ``REQUIRED_WITH_KIND`` (added together with the marker) are
    required when the document carries it.
    """
    reader = FieldReader(where, cls.JSON_ERROR)
    if not isinstance(data, Mapping):
        raise reader.error(f"{where}: must hold a JSON object, not {type(data).__name__}")
    if check_kind(data, cls.JSON_KIND, reader):
        for name in getattr(cls, "REQUIRED_WITH_KIND", ()):
            reader.get(data, name, "")
    return read_record(cls, {k: v for k, v in data.items() if k != "kind"}, reader)


def read_json_file(path: str | Path, error: type[Exception], what: str) -> Any:
    """Parsed JSON of ``path`` through the one safe reader (:func:`hwsched.fileio.read_json`:
    size and nesting capped before parsing); every failure is one ``error`` naming the file."""
    from hwsched.fileio import read_json

    return read_json(path, error, what)


def load_document(cls: type, path: str | Path) -> Any:
    """Read and check a ``cls`` document from a file."""
    data = read_json_file(path, cls.JSON_ERROR, cls.JSON_TITLE)
    return cls.from_dict(data, str(path))
