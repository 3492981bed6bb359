"""What the HTML report derives from an analysis document, computed once and named.

The document is the JSON of ``hwsched analyze --json`` (see :mod:`hwsched.report.analysis` and
:meth:`hwsched.schedule.Ranking.to_dict`), optionally with a ``hardware`` section written by
:func:`hardware_section`. Nothing here reads a model or TensorFlow; :func:`hardware_section` is
the only function that reads files (the platform and link descriptors).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwsched.documents.analysis import AnalysisDocument
from hwsched.errors import HwschedError
from hwsched.hardware import Platform, descriptor_to_dict, load_link, load_platform
from hwsched.report.svg import PALETTE

#: Prefix the descriptor loader puts on the ``sources`` entry of an estimated number.
ESTIMATE_PREFIX = "estimate"
#: Latency models whose numbers come from descriptor figures rather than measurement.
PREDICTED_LATENCY_MODELS = ("roofline",)

Doc = Mapping[str, Any]


def hardware_section(
    platforms: Sequence[str | os.PathLike[str] | Platform], link: str | os.PathLike[str]
) -> dict[str, Any]:
    """The descriptors a report needs (memory limits, sources, estimates), keyed by name.

    ``analyze`` stores this in its JSON so ``hwsched report`` re-renders the same page on a
    machine that lacks the user's own descriptor files.
    """
    loaded = [load_platform(p) for p in platforms]
    return {
        "platforms": {p.name: _portable(descriptor_to_dict(p)) for p in loaded},
        "link": _portable(descriptor_to_dict(load_link(link))),
    }


def _portable(descriptor: dict[str, Any]) -> dict[str, Any]:
    """Without the descriptor's file path, which only means something on this machine."""
    return {key: value for key, value in descriptor.items() if key != "path"}


def with_hardware(document: Doc) -> dict[str, Any]:
    """``document`` with a ``hardware`` section, looked up by name when it has none.

    A name the registry no longer knows leaves the section out: the report then says the
    memory limits are unknown instead of failing.
    """
    check_document(document)
    if "hardware" in document:
        return dict(document)
    names = {stage["platform"] for c in _all_runs(document) for stage in c.get("stages", [])}
    try:
        section = hardware_section(
            sorted(names | set(document.get("platforms", []))), document["link"]
        )
    except HwschedError:
        return dict(document)
    return {**document, "hardware": section}


def check_document(document: Doc, where: str = "analysis") -> None:
    """Raise :class:`~hwsched.errors.DocumentError` naming the first missing or mistyped field
    (the analysis record's strict reader, :class:`hwsched.documents.analysis.AnalysisDocument`).
    """
    AnalysisDocument.from_dict(document, where)


def chain_candidates(document: Doc) -> list[Doc]:
    """The chain splits among ``candidates`` (``--placement graph`` ranks stage-graph candidates
    in the same list; they are drawn by :mod:`hwsched.report.graph_svg`, not as chains)."""
    return [c for c in document["candidates"] if c.get("placement", "chain") == "chain"]


def _all_runs(document: Doc) -> list[Doc]:
    return [*document.get("candidates", []), *document.get("baselines", [])]


@dataclass(frozen=True)
class Limits:
    """A board's memory limits in bytes (None where unknown or not applicable)."""

    ram_bytes: int | None
    flash_bytes: int | None
    param_cache_bytes: int | None


@dataclass(frozen=True)
class Facts:
    """Everything the sections and charts share, derived from one document."""

    document: Doc
    colours: Mapping[str, str]
    limits: Mapping[str, Limits]
    best: Doc | None
    best_baseline: Doc | None
    layer_index: Mapping[str, int]

    @property
    def candidates(self) -> list[Doc]:
        return chain_candidates(self.document)

    @property
    def baselines(self) -> list[Doc]:
        return list(self.document.get("baselines", []))

    @property
    def has_hardware(self) -> bool:
        return "hardware" in self.document

    def colour(self, platform: str) -> str:
        return self.colours.get(platform, PALETTE[-1])


def derive(document: Doc) -> Facts:
    check_document(document)
    platforms = _platform_order(document)
    colours = {name: PALETTE[i % (len(PALETTE) - 1)] for i, name in enumerate(platforms)}
    baselines = list(document.get("baselines", []))
    named = [b for b in baselines if b.get("platform") == document.get("best_baseline")]
    candidates = chain_candidates(document)
    return Facts(
        document=document,
        colours=colours,
        limits=_limits(document),
        best=candidates[0] if candidates else None,
        best_baseline=named[0] if named else None,
        layer_index={layer["name"]: i for i, layer in enumerate(document["layers"])},
    )


def _platform_order(document: Doc) -> list[str]:
    """Pipeline order first, then any other platform a candidate uses (``--assign auto``)."""
    order = list(document["platforms"])
    for run in _all_runs(document):
        for stage in run.get("stages", []):
            if stage["platform"] not in order:
                order.append(stage["platform"])
    return order


def _limits(document: Doc) -> dict[str, Limits]:
    described = document.get("hardware", {}).get("platforms", {})
    return {
        name: Limits(d.get("ram_bytes"), d.get("flash_bytes"), d.get("param_cache_bytes"))
        for name, d in described.items()
    }


# -- per-candidate facts -------------------------------------------------------------------------
def bottleneck(candidate: Doc) -> tuple[str, int]:
    """``("stage" | "link", index)`` of the slowest pipeline element (it sets the period)."""
    times = [("stage", i, s["latency_ms"]) for i, s in enumerate(candidate["stages"])]
    times += [("link", i, lk["latency_ms"]) for i, lk in enumerate(candidate.get("links", []))]
    kind, index, _ = max(times, key=lambda t: (t[2], t[0] == "stage", -t[1]))
    return kind, index


def transfer_bytes(candidate: Doc) -> int:
    return sum(int(link["transfer_bytes"]) for link in candidate.get("links", []))


def memory_share(stage: Doc, limits: Limits | None) -> float | None:
    """The stage's memory as a fraction of the limit it must fit (None when unknown).

    With flash (MCUs) weights are held there and activations in RAM, so the tighter of the two
    fractions is the one that matters.
    """
    if limits is None or limits.ram_bytes is None:
        return None
    if limits.flash_bytes:
        return max(
            stage["weights_bytes"] / limits.flash_bytes,
            stage["peak_activation_bytes"] / limits.ram_bytes,
        )
    return stage["memory_bytes"] / limits.ram_bytes


def gain(best: Doc, baseline: Doc, metric: str) -> float | None:
    """How many times better ``best`` is than ``baseline`` on ``metric`` (>1 is better)."""
    mine, theirs = best.get(metric), baseline.get(metric)
    if mine is None or theirs is None:
        return None
    if metric == "throughput_ips":
        return mine / theirs if theirs > 0 else math.inf
    return theirs / mine if mine > 0 else math.inf


def cut_label(document: Doc, position: int) -> str:
    """The layer a cut position comes after (position p: the first p layers form the head)."""
    layers = document["layers"]
    return layers[position - 1]["name"] if 0 < position <= len(layers) else f"#{position}"


# -- warnings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Warning_:
    level: str  # "error" (no usable result) or "warn"
    text: str


def warnings(facts: Facts) -> list[Warning_]:
    """What the reader must know before trusting the recommendation, most severe first."""
    found = [*_feasibility_warnings(facts), *_reason_warnings(facts)]
    found += _unscored_warnings(facts.document)
    found += _estimate_warnings(facts)
    found += [Warning_("warn", text) for text in _schedule_remarks(facts.document)]
    return found


def _schedule_remarks(document: Doc) -> list[str]:
    """Boards the recommendation leaves idle (and why), and what the search left out."""
    idle = [document["idle_reason"]] if document.get("idle_reason") else []
    return [*idle, *document.get("notes", [])]


def _feasibility_warnings(facts: Facts) -> list[Warning_]:
    out = []
    best = facts.best
    if best is None:
        out.append(Warning_("error", "No split could be evaluated."))
    elif not best.get("feasible", True):
        out.append(
            Warning_(
                "error",
                "No feasible split: every candidate breaks a memory, op or "
                "precision limit (reasons in the table).",
            )
        )
    infeasible = [c for c in facts.candidates if not c.get("feasible", True)]
    if infeasible and best is not None and best.get("feasible", True):
        out.append(
            Warning_(
                "warn",
                f"{len(infeasible)} of {len(facts.candidates)} listed "
                "candidates are infeasible; they are kept in the table, marked red.",
            )
        )
    alone = [b.get("platform", "?") for b in facts.baselines if not b.get("feasible", True)]
    if alone:
        out.append(Warning_("warn", f"Cannot run the whole model alone: {', '.join(alone)}."))
    if not facts.has_hardware:
        out.append(
            Warning_(
                "warn",
                "Board descriptors were not found: memory limits are unknown "
                "(only the planner's fits/does-not-fit verdicts are shown).",
            )
        )
    return out


def _reason_warnings(facts: Facts, limit: int = 6) -> list[Warning_]:
    """Distinct infeasibility reasons (unsupported ops, memory), single boards first."""
    reasons: dict[str, None] = {}
    for run in [*facts.baselines, *facts.candidates]:
        for reason in run.get("reasons", []):
            reasons.setdefault(reason, None)
    listed = list(reasons)
    out = [Warning_("warn", reason) for reason in listed[:limit]]
    if len(listed) > limit:
        out.append(Warning_("warn", f"… and {len(listed) - limit} more distinct reasons."))
    return out


def _unscored_warnings(document: Doc, shown: int = 8) -> list[Warning_]:
    unscored = list(document.get("unscored_layers", []))
    if not unscored:
        return []
    more = f" and {len(unscored) - shown} more" if len(unscored) > shown else ""
    return [
        Warning_(
            "warn",
            f"{len(unscored)} layer(s) have no compute rule and are costed by "
            f"memory traffic only: {', '.join(unscored[:shown])}{more}.",
        )
    ]


def _estimate_warnings(facts: Facts) -> list[Warning_]:
    document = facts.document
    out = []
    models = document.get("cost_models", {})
    predicted = sorted(
        key.split(":", 1)[1]
        for key, model in models.items()
        if key.startswith("latency:") and model in PREDICTED_LATENCY_MODELS
    )
    if predicted:
        out.append(
            Warning_(
                "warn",
                "Latencies are predicted from descriptor figures (roofline), "
                f"not measured, for {', '.join(predicted)}; measure with "
                "'hwsched profile' to replace them.",
            )
        )
    for platform, layers in document.get("estimated_layers", {}).items():
        out.append(
            Warning_(
                "warn",
                f"{platform}: {len(layers)} layer(s) outside the measured "
                "profile keep roofline estimates.",
            )
        )
    counts = estimate_counts(document)
    if counts:
        listed = ", ".join(f"{name} {n}" for name, n in counts.items())
        out.append(
            Warning_(
                "warn",
                f"Descriptor numbers that are estimates, not published "
                f"figures: {listed} (see Assumptions).",
            )
        )
    return out


def estimates(descriptor: Doc) -> dict[str, str]:
    """``field -> why`` for the descriptor numbers marked as estimates."""
    return {
        field: note.split(":", 1)[1].strip() if ":" in note else note
        for field, note in sorted(descriptor.get("sources", {}).items())
        if note.startswith(ESTIMATE_PREFIX)
    }


def estimate_counts(document: Doc) -> dict[str, int]:
    hardware = document.get("hardware", {})
    described = [*hardware.get("platforms", {}).values()]
    if "link" in hardware:
        described.append(hardware["link"])
    counts = {d["name"]: len(estimates(d)) for d in described}
    return {name: n for name, n in counts.items() if n}
