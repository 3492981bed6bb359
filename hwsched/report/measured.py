"""Measured against predicted: the emulation and power documents beside the analysis.

The emulation document (``hwsched emulate DIR --json``) is read as
:class:`hwsched.runtime.emulate.EmulationResult` and the power document (``hwsched power energy
--json``) as :class:`hwsched.power.energy.PipelineEnergy`; both are checked field by field when
read (:mod:`hwsched.documents`). The emulation records the split it ran (``cut_positions``,
``platforms``), and it is compared with *that* candidate of the analysis; an emulation of a
split the analysis does not list is shown against the prediction its plan carried, and a file
from before the split was recorded against rank 1, each said in the caption.

A TensorFlow Lite Micro stage (``arena_bytes`` in the emulation's stage, from its plan, measured
at export) is shown beside the analysis's predicted memory for it (``peak_activation_bytes``,
which for a TFLM platform is the predicted arena).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hwsched.errors import ReportError
from hwsched.report import timeline
from hwsched.report.facts import Doc, Facts
from hwsched.report.svg import ACCENT_COLOUR, MUTED_COLOUR, Scale, esc, rect, sig, svg, text
from hwsched.units import MW_PER_W

#: Measured within this factor of predicted counts as agreeing (green), else red.
AGREEMENT = 1.25


@dataclass(frozen=True)
class Row:
    metric: str
    unit: str
    predicted: float | None
    measured: float

    @property
    def ratio(self) -> float | None:
        if self.predicted is None or self.predicted == 0:
            return None
        return self.measured / self.predicted


@dataclass(frozen=True)
class Match:
    """The analysis candidate an emulation ran (None: not listed) and how it was found."""

    candidate: Doc | None
    note: str


def as_emulation(emulation: Any):
    """An :class:`EmulationResult` (a parsed document is read and checked first)."""
    from hwsched.runtime.emulate import EmulationResult

    if emulation is None or isinstance(emulation, EmulationResult):
        return emulation
    return EmulationResult.from_dict(emulation, "emulation")


def as_energy(power: Any):
    """A :class:`PipelineEnergy` (a parsed document is read and checked first)."""
    from hwsched.power.energy import PipelineEnergy

    if power is None or isinstance(power, PipelineEnergy):
        return power
    return PipelineEnergy.from_dict(power, "energy report")


def matched_candidate(facts: Facts, emulation: Any) -> Match:
    """The candidate the emulation ran: the listed one with its cut positions and boards."""
    if emulation is None:
        return Match(facts.best, "")
    model = facts.document["model"]
    if emulation.model != model:
        raise ReportError(
            f"the emulation ran model {emulation.model!r}, the analysis is of {model!r}; give "
            "the emulation of a plan exported from this analysis"
        )
    if emulation.cut_positions is None:
        return Match(facts.best, "The emulation file does not record which split it ran "
                     "(written by an older hwsched); assumed to be the recommended one.")
    wanted = list(emulation.cut_positions)
    for candidate in [*facts.candidates, *facts.baselines]:  # a one-stage plan: a board alone
        boards = [stage["platform"] for stage in candidate["stages"]]
        same_boards = emulation.platforms is None or boards == list(emulation.platforms)
        if list(candidate["cut_positions"]) == wanted and same_boards:
            return Match(candidate, "")
    boards = f" on {', '.join(emulation.platforms)}" if emulation.platforms else ""
    return Match(None, f"The emulated split (cuts {_positions(wanted)}{boards}) is not among "
                 "the analysis's listed candidates; it is compared with the prediction its plan "
                 "carried.")


def _positions(positions: list[int]) -> str:
    return ", ".join(map(str, positions)) or "none"


def emulation_rows(candidate: Doc | None, emulation: Any) -> list[Row]:
    """Throughput, latency and per-stage busy time; predicted by ``candidate`` when the
    emulation ran a listed candidate, else by the plan's own prediction."""
    emulation = as_emulation(emulation)
    rows = []
    predicted_ips = candidate["throughput_ips"] if candidate else emulation.predicted_throughput_ips
    rows.append(Row("throughput", "inf/s", predicted_ips, emulation.throughput_ips))
    predicted_latency = candidate["latency_ms"] if candidate else emulation.predicted_latency_ms
    for quantile in ("p50", "p99"):
        if _is_number(emulation.latency_ms.get(quantile)):
            rows.append(Row(f"latency {quantile}", "ms",
                            predicted_latency if quantile == "p50" else None,
                            emulation.latency_ms[quantile]))
    stages = candidate["stages"] if candidate else []
    for i, stage in enumerate(emulation.stages):
        predicted = stages[i]["latency_ms"] if i < len(stages) else stage.predicted_ms
        rows.append(Row(f"stage {i + 1} {stage.platform} busy", "ms", predicted, stage.busy_ms))
        if stage.arena_bytes is not None:  # an MCU stage: TFLM's arena, measured at export
            memory = stages[i]["peak_activation_bytes"] if i < len(stages) else None
            rows.append(Row(f"stage {i + 1} {stage.platform} TFLM arena", "B", memory,
                            stage.arena_bytes))
    links = candidate.get("links", []) if candidate else []
    for hop in emulation.hops:
        # hops 1..n-1 are the planned links (0 is source→stage 0, n is last stage→sink)
        if 1 <= hop.hop <= len(emulation.stages) - 1:
            predicted = (links[hop.hop - 1]["latency_ms"] if hop.hop <= len(links)
                         else hop.predicted_ms)
            rows.append(Row(f"link {hop.hop} ({hop.name}) send", "ms", predicted, hop.send_ms))
    return rows


def power_rows(facts: Facts, candidate: Doc | None, power: Any) -> list[Row]:
    """Measured power beside the prediction, like for like.

    The analysis predicts energy per inference over a whole pipeline period (active power while
    busy, idle power while waiting), so it is compared with the measured energy over each
    window's whole span per inference (``period_energy_per_inference_mj``). Energy measured over
    the inference intervals only, and average power while inferring, have no prediction of the
    same quantity and are shown measured-only.
    """
    power = as_energy(power)
    energy = candidate["energy_mj"] if candidate else None
    rows = [
        Row("energy / inference (whole period)", "mJ", energy,
            power.total("period_energy_per_inference_mj")),
        Row("energy / inference (while inferring)", "mJ", None,
            power.total("energy_per_inference_mj")),
        Row("dynamic energy / inference", "mJ", None,
            power.total("dynamic_energy_per_inference_mj")),
        Row("average power while inferring", "mW", None, power.total("average_power_mw")),
        Row("idle power", "mW", _idle_mw(facts, candidate), power.total("idle_power_mw")),
    ]
    stages = candidate["stages"] if candidate else []
    for report in power.stages:
        if report.stage is not None and 0 <= report.stage < len(stages):
            stage = stages[report.stage]
            rows.append(Row(f"stage {report.stage + 1} {stage['platform']} energy (whole period)",
                            "mJ", stage["energy_mj"], report.period_energy_per_inference_mj))
    return rows


def _idle_mw(facts: Facts, candidate: Doc | None) -> float | None:
    """Sum of the descriptors' idle power over the candidate's boards (they idle together)."""
    described = facts.document.get("hardware", {}).get("platforms", {})
    if candidate is None or not described:
        return None
    try:
        return sum(described[s["platform"]]["idle_power_w"] * MW_PER_W for s in candidate["stages"])
    except KeyError:
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# -- rendering -----------------------------------------------------------------------------------
def section(facts: Facts, emulation: Doc | None, power: Doc | None) -> str:
    heading = '<h2 id="measured">Measured against predicted</h2>'
    if not emulation and not power:
        return heading + (
            '<p class="card small muted" id="no-measurements">No measurements given: every '
            "number above is a prediction. Run the split with <code>hwsched emulate DIR --json "
            "F</code> or measure it with <code>hwsched power energy LOG --events E --json F"
            "</code>, then re-render with <code>hwsched report ANALYSIS.json --emulation F "
            "--power-json F</code>.</p>"
        )
    emulation, power = as_emulation(emulation), as_energy(power)
    match = matched_candidate(facts, emulation)
    candidate = match.candidate
    rows = emulation_rows(candidate, emulation) if emulation else []
    rows += power_rows(facts, candidate, power) if power else []
    which = "the plan's own prediction"
    if candidate and "platform" in candidate:
        which = f"{candidate['platform']} alone"
    elif candidate:
        which = f"candidate #{candidate['rank']} (cuts {_positions(candidate['cut_positions'])})"
    runs = f" · power measured over {power.inferences} inferences" if power else ""
    caption = (
        f"Compared with {which}{runs}. {match.note + ' ' if match.note else ''}Ratio = "
        f"measured / predicted; green within {AGREEMENT:g}× of the prediction. Predicted energy "
        "assumes the predicted period; a slower measured pipeline idles longer per inference."
    )
    return (
        f'{heading}<figure class="card">{measured_chart(rows)}'
        f"<figcaption>{esc(caption)}</figcaption></figure>{_table(rows)}"
        + (timeline.section(emulation.to_dict()) if emulation else "")
    )


def measured_chart(rows: list[Row]) -> str:
    """Predicted (light) and measured (dark) bars per metric, each row on its own scale."""
    width, row_h, left, right = 1100, 34, 230, 880
    height = 24 + row_h * len(rows)
    parts = [
        rect(left, 4, 10, 10, fill=MUTED_COLOUR),
        text(left + 14, 13, "predicted"),
        rect(left + 90, 4, 10, 10, fill=ACCENT_COLOUR),
        text(left + 104, 13, "measured"),
    ]
    for k, row in enumerate(rows):
        y = 22 + k * row_h
        top = max(row.measured, row.predicted or 0.0) or 1.0
        x = Scale(0, top, left, right)
        parts.append(text(left - 8, y + 17, f"{row.metric} ({row.unit})", text_anchor="end"))
        if row.predicted is not None:
            parts.append(
                rect(
                    left,
                    y,
                    x(row.predicted) - left,
                    12,
                    fill=MUTED_COLOUR,
                    title=f"predicted {sig(row.predicted)} {row.unit}",
                )
            )
        parts.append(
            rect(
                left,
                y + 13,
                x(row.measured) - left,
                12,
                fill=ACCENT_COLOUR,
                title=f"measured {sig(row.measured)} {row.unit}",
            )
        )
        parts.append(text(right + 8, y + 17, _summary(row), fill=_ratio_colour(row.ratio)))
    return svg(width, height, "".join(parts), "Measured against predicted", "chart-measured")


def _summary(row: Row) -> str:
    predicted = "—" if row.predicted is None else sig(row.predicted)
    ratio = "" if row.ratio is None else f" · ×{row.ratio:.2f}"
    return f"{predicted} → {sig(row.measured)} {row.unit}{ratio}"


def _ratio_colour(ratio: float | None) -> str | None:
    if ratio is None:
        return None
    return "#1a7f37" if 1 / AGREEMENT <= ratio <= AGREEMENT else "#c62828"


def _table(rows: list[Row]) -> str:
    body = "".join(
        f'<tr><td>{esc(r.metric)}</td><td class="n">'
        f"{esc('—' if r.predicted is None else sig(r.predicted, 4))}</td>"
        f'<td class="n">{esc(sig(r.measured, 4))}</td><td>{esc(r.unit)}</td>'
        f'<td class="n {_ratio_class(r.ratio)}">'
        f"{esc('—' if r.ratio is None else f'{r.ratio:.2f}')}</td></tr>"
        for r in rows
    )
    return (
        f'<div class="tablewrap"><table id="measured-table"><thead><tr><th>metric</th>'
        '<th class="n">predicted</th><th class="n">measured</th><th>unit</th>'
        f'<th class="n">measured / predicted</th></tr></thead><tbody>{body}</tbody>'
        "</table></div>"
    )


def _ratio_class(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return "ratio-ok" if 1 / AGREEMENT <= ratio <= AGREEMENT else "ratio-off"
