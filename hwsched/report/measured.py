"""Measured against predicted: the emulation and power documents beside the analysis.

The emulation document (``hwsched emulate DIR --json``) has ``throughput_ips``, optionally
``predicted_throughput_ips``, ``latency_ms`` (``{p50, p99}`` or a number) and ``stages`` with
``busy_ms``; the power document (``hwsched power energy --json``) has ``energy_per_inference_mj``,
``dynamic_energy_per_inference_mj``, ``idle_power_mw``, ``average_power_mw``, ``inferences`` and
per-board ``stages``. An emulation stage with ``arena_bytes`` (a TensorFlow Lite Micro stage,
measured at export) is shown beside the analysis's predicted memory for it (its
``peak_activation_bytes``, which for a TFLM platform is the predicted arena). Either may be
missing fields; a row is shown only when both its sides are
known, or the measured side alone with ``—`` for the prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def matched_candidate(facts: Facts, emulation: Doc | None) -> Doc | None:
    """The candidate the emulation ran: same cut positions, else the recommended one."""
    wanted = None
    if emulation:
        wanted = emulation.get("cut_positions", emulation.get("plan", {}).get("cut_positions"))
    if wanted is not None:
        for candidate in facts.candidates:
            if list(candidate["cut_positions"]) == list(wanted):
                return candidate
    return facts.best


def emulation_rows(candidate: Doc | None, emulation: Doc) -> list[Row]:
    rows = []
    predicted_ips = emulation.get(
        "predicted_throughput_ips", candidate["throughput_ips"] if candidate else None
    )
    if _is_number(emulation.get("throughput_ips")):
        rows.append(Row("throughput", "inf/s", predicted_ips, emulation["throughput_ips"]))
    latency = emulation.get("latency_ms")
    predicted_latency = candidate["latency_ms"] if candidate else None
    if isinstance(latency, dict):
        for quantile in ("p50", "p99"):
            if _is_number(latency.get(quantile)):
                rows.append(
                    Row(
                        f"latency {quantile}",
                        "ms",
                        predicted_latency if quantile == "p50" else None,
                        latency[quantile],
                    )
                )
    elif _is_number(latency):
        rows.append(Row("latency", "ms", predicted_latency, latency))
    stages = candidate["stages"] if candidate else []
    for i, stage in enumerate(emulation.get("stages", [])):
        if not isinstance(stage, dict) or not _is_number(stage.get("busy_ms")):
            continue
        predicted = stage.get("predicted_ms", stages[i]["latency_ms"] if i < len(stages) else None)
        name = stage.get("platform", stages[i]["platform"] if i < len(stages) else "")
        rows.append(Row(f"stage {i + 1} {name} busy", "ms", predicted, stage["busy_ms"]))
        if _is_number(stage.get("arena_bytes")):  # an MCU stage: TFLM's arena, measured
            memory = stages[i]["peak_activation_bytes"] if i < len(stages) else None
            rows.append(Row(f"stage {i + 1} {name} TFLM arena", "B", memory, stage["arena_bytes"]))
    return rows


def power_rows(facts: Facts, candidate: Doc | None, power: Doc) -> list[Row]:
    """Measured power beside the prediction, like for like.

    The analysis predicts energy per inference over a whole pipeline period (active power while
    busy, idle power while waiting), so it is compared with the measured energy over each
    window's whole span per inference (``period_energy_per_inference_mj``). Energy measured over
    the inference intervals only, and average power while inferring, have no prediction of the
    same quantity and are shown measured-only.
    """
    rows = []
    energy = candidate["energy_mj"] if candidate else None
    if _is_number(power.get("period_energy_per_inference_mj")):
        rows.append(Row("energy / inference (whole period)", "mJ", energy,
                        power["period_energy_per_inference_mj"]))
    if _is_number(power.get("energy_per_inference_mj")):
        rows.append(Row("energy / inference (while inferring)", "mJ", None,
                        power["energy_per_inference_mj"]))
    if _is_number(power.get("dynamic_energy_per_inference_mj")):
        rows.append(
            Row("dynamic energy / inference", "mJ", None, power["dynamic_energy_per_inference_mj"])
        )
    if _is_number(power.get("average_power_mw")):
        rows.append(Row("average power while inferring", "mW", None, power["average_power_mw"]))
    if _is_number(power.get("idle_power_mw")):
        rows.append(Row("idle power", "mW", _idle_mw(facts, candidate), power["idle_power_mw"]))
    stages = candidate["stages"] if candidate else []
    for report in power.get("stages", []):
        index = report.get("stage") if isinstance(report, dict) else None
        if (
            isinstance(index, int)
            and 0 <= index < len(stages)
            and _is_number(report.get("period_energy_per_inference_mj"))
        ):
            rows.append(
                Row(
                    f"stage {index + 1} {stages[index]['platform']} energy (whole period)",
                    "mJ",
                    stages[index]["energy_mj"],
                    report["period_energy_per_inference_mj"],
                )
            )
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
    candidate = matched_candidate(facts, emulation)
    rows = emulation_rows(candidate, emulation) if emulation else []
    rows += power_rows(facts, candidate, power) if power else []
    which = (
        f"#{candidate['rank']} (cuts {', '.join(map(str, candidate['cut_positions']))})"
        if candidate
        else "no candidate"
    )
    inferences = power.get("inferences") if power else None
    runs = f" · power measured over {inferences} inferences" if inferences else ""
    caption = (
        f"Compared with candidate {which}{runs}. Ratio = measured / predicted; green "
        f"within {AGREEMENT:g}× of the prediction. Predicted energy assumes the predicted "
        "period; a slower measured pipeline idles longer per inference."
    )
    return (
        f'{heading}<figure class="card">{measured_chart(rows)}'
        f"<figcaption>{esc(caption)}</figcaption></figure>{_table(rows)}"
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
