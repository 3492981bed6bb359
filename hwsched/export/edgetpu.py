"""Edge TPU stages: compile with ``edgetpu_compiler`` when it is on ``PATH``, record its report.

An Edge TPU runs only what the compiler mapped onto it: the rest of the graph stays on the host
CPU, and parameters beyond the ~8 MiB on-chip cache stream over USB every inference. So export
compiles each stage whose platform's engine is ``edgetpu`` and records the compiler's own
report in ``plan.json`` (``edgetpu``: ops on the TPU and on the CPU per operator, on-chip memory
used for parameters, off-chip streaming, subgraphs); the compiled file becomes the stage file and
the stage's delegate is ``edgetpu``. Without the compiler the plan says the stage is *not
compiled* and why: the stage file is then the int8 model, which runs on LiteRT's CPU kernels.

Compiled stages contain the ``edgetpu-custom-op`` and run only with the delegate; the chain is
verified on the int8 stages before compilation. A compiled stage is then priced from the report
(:func:`price_compiled_stages`, :mod:`hwsched.costs.edgetpu`): ``edgetpu.priced`` in the plan,
and the plan's ``prediction`` re-priced with it (``latency_source: compiler``).

``hwsched analyze … --compiled DIR`` takes those facts back into a ranking
(:func:`compiled_split`, :func:`with_compiled`): the split ``DIR`` holds — its cut positions
on its boards — is priced again with each compiled stage's time from its report (on the
analysis's graph and descriptors) and every candidate is ranked again, the split added when
the search did not list it. The other candidates keep the descriptor's estimate: only
compiling them says more.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwsched.costs.edgetpu import COMPILER_SOURCE, price_compiled_stage
from hwsched.costs.energy import EnergyCoefficients, stage_energy_mj
from hwsched.deployment import Plan, StagePlan, load_plan
from hwsched.errors import ExportError, ScheduleError
from hwsched.hardware import Platform, load_host
from hwsched.ir import LayerGraph
from hwsched.schedule.api import _speedup
from hwsched.schedule.records import Candidate, Ranking
from hwsched.schedule.refine import rerank, restage
from hwsched.units import MS_PER_S

COMPILER = "edgetpu_compiler"
#: Seconds one stage may take to compile (the real compiler takes well under a minute).
COMPILE_TIMEOUT_S = 600
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
_SIZE = r"([\d.]+)\s*(B|KiB|MiB|GiB)"
_FIELDS = {
    "on_chip_parameter_bytes": rf"On-chip memory used for caching model parameters:\s*{_SIZE}",
    "on_chip_remaining_bytes": rf"On-chip memory remaining for caching model parameters:\s*{_SIZE}",
    "off_chip_streaming_bytes":
        rf"Off-chip memory used for streaming uncached model parameters:\s*{_SIZE}",
}
_COUNTS = {
    "subgraphs": r"Number of Edge TPU subgraphs:\s*(\d+)",
    "operations": r"Total number of operations:\s*(\d+)",
    "ops_on_tpu": r"Number of operations that will run on Edge TPU:\s*(\d+)",
    "ops_on_cpu": r"Number of operations that will run on CPU:\s*(\d+)",
}
_OPERATOR_ROW = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*?)\s*$", re.MULTILINE)
_VERSION = re.compile(r"Edge TPU Compiler version\s+(\S+)")
MAPPED = "Mapped to Edge TPU"


def parse_report(text: str) -> dict[str, Any]:
    """The compiler's printed report as plan fields (sizes in bytes).

    >>> r = parse_report("Edge TPU Compiler version 16.0.384591198\\nOn-chip memory used for "
    ...     "caching model parameters: 1.50KiB\\nOff-chip memory used for streaming uncached "
    ...     "model parameters: 0.00B\\nOperator   Count   Status\\n\\nCONV_2D   3   Mapped to "
    ...     "Edge TPU\\nMEAN   1   Operation is otherwise supported, but not mapped\\n")
    >>> r["on_chip_parameter_bytes"], r["ops_on_tpu"], r["ops_on_cpu"]
    (1536, 3, 1)
    """
    report: dict[str, Any] = {"compiled": True}
    version = _VERSION.search(text)
    report["compiler_version"] = version.group(1) if version else None
    for key, pattern in _FIELDS.items():
        found = re.search(pattern, text)
        report[key] = None if not found else round(float(found.group(1)) * _UNITS[found.group(2)])
    for key, pattern in _COUNTS.items():
        found = re.search(pattern, text)
        report[key] = None if not found else int(found.group(1))
    operators = [{"op": op, "count": int(count), "status": status}
                 for op, count, status in _OPERATOR_ROW.findall(text) if op != "Operator"]
    report["operators"] = operators
    if operators:  # the table is the ground truth when the summary lines are missing
        on_tpu = sum(o["count"] for o in operators if o["status"] == MAPPED)
        report["ops_on_tpu"] = on_tpu if report["ops_on_tpu"] is None else report["ops_on_tpu"]
        on_cpu = sum(o["count"] for o in operators if o["status"] != MAPPED)
        report["ops_on_cpu"] = on_cpu if report["ops_on_cpu"] is None else report["ops_on_cpu"]
    return report


def compile_stages(
    stages: Sequence[StagePlan], stage_bytes: Sequence[bytes],
) -> tuple[tuple[StagePlan, ...], list[bytes]]:
    """Stages and files with every Edge TPU stage compiled (or marked not compiled)."""
    compiler = shutil.which(COMPILER)
    out_stages, out_bytes = list(stages), list(stage_bytes)
    for index, stage in enumerate(stages):
        if stage.engine != "edgetpu":
            continue
        if compiler is None:
            out_stages[index] = replace(stage, delegate=None, edgetpu={
                "compiled": False,
                "reason": f"{COMPILER} is not on PATH: the stage is the int8 model and runs on "
                          f"the CPU; install the Edge TPU compiler and export again to run it "
                          f"on the TPU",
            })
            continue
        report, data = _compile(compiler, stage, stage_bytes[index])
        out_stages[index] = replace(stage, delegate="edgetpu", edgetpu=report)
        out_bytes[index] = data
    return tuple(out_stages), out_bytes


def _compile(compiler: str, stage: StagePlan, data: bytes) -> tuple[Mapping[str, Any], bytes]:
    where = f"stage {stage.index} ({stage.platform})"
    with tempfile.TemporaryDirectory(prefix="hwsched-edgetpu-") as work:
        source = Path(work) / stage.file
        source.write_bytes(data)
        try:
            done = subprocess.run([compiler, "-s", "-o", work, str(source)], capture_output=True,
                                  text=True, timeout=COMPILE_TIMEOUT_S, cwd=work)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ExportError(f"{where}: {COMPILER} could not run: {error}") from None
        output = done.stdout + done.stderr
        compiled = Path(work) / f"{source.stem}_edgetpu.tflite"
        if done.returncode != 0 or not compiled.is_file():
            lines = [line for line in output.splitlines() if line.strip()]
            detail = lines[-1].strip() if lines else f"exit status {done.returncode}"
            raise ExportError(f"{where}: {COMPILER} failed: {detail}")
        log = compiled.with_suffix(".log")
        if not _OPERATOR_ROW.search(output) and log.is_file():  # -s prints the table; else log
            output += "\n" + log.read_text(errors="replace")
        return parse_report(output), compiled.read_bytes()


def price_compiled_stages(
    graph: LayerGraph, stages: Sequence[StagePlan], platforms: Sequence[Platform],
    prediction: Mapping[str, Any],
) -> tuple[tuple[StagePlan, ...], dict[str, Any]]:
    """Every compiled Edge TPU stage priced from its compiler report
    (:mod:`hwsched.costs.edgetpu`): the price is recorded in the stage's ``edgetpu.priced``,
    and the plan's ``prediction`` is re-priced with it — the stage's ``latency_ms`` replaced
    (the analysis's estimate kept as ``analysis_latency_ms``, ``latency_source: compiler``),
    and the pipeline's ``latency_ms``, ``period_ms`` and ``throughput_ips`` recomputed."""
    out, repriced = list(stages), dict(prediction)
    rows = [dict(row) for row in prediction.get("stages") or ()]
    for index, (stage, platform) in enumerate(zip(stages, platforms, strict=True)):
        if not (stage.edgetpu or {}).get("compiled"):
            continue
        host = load_host(platform)
        if host is None:
            out[index] = replace(stage, edgetpu={**stage.edgetpu, "unpriced": (
                f"{platform.path} names no runtime.host, the CPU that runs the ops the compiler "
                "leaves behind; the prediction keeps the analysis's estimate")})
            continue
        first = graph.position(stage.first_layer)
        cost = price_compiled_stage(graph, first, graph.position(stage.last_layer) + 1,
                                    platform, host, stage.edgetpu)
        out[index] = replace(stage, edgetpu={**stage.edgetpu, "priced": cost.to_dict()})
        if len(rows) == len(stages):
            rows[index] = {**rows[index], "analysis_latency_ms": rows[index].get("latency_ms"),
                           "latency_ms": cost.latency_ms, "latency_source": COMPILER_SOURCE}
    if rows and any(r.get("latency_source") == COMPILER_SOURCE for r in rows):
        repriced.update(_pipeline_times(rows, prediction.get("links") or ()), stages=rows)
    return tuple(out), repriced


def _pipeline_times(stages: Sequence[Mapping[str, Any]], links: Sequence[Mapping[str, Any]]
                    ) -> dict[str, float]:
    """A chain's latency (stages and links in turn) and period (its busiest stage or link).

    >>> _pipeline_times([{"latency_ms": 2.0}, {"latency_ms": 5.0}], [{"latency_ms": 1.0}])
    {'latency_ms': 8.0, 'period_ms': 5.0, 'throughput_ips': 200.0}
    """
    times = [float(s["latency_ms"]) for s in stages] + [float(x["latency_ms"]) for x in links]
    period = max(times)
    return {"latency_ms": sum(times), "period_ms": period,
            "throughput_ips": MS_PER_S / period if period > 0 else math.inf}


# -- analyze --compiled DIR: re-rank with an exported split's compiler facts -----------------
@dataclass(frozen=True)
class CompiledSplit:
    """The exported split and its compiled stages' times (ms, by stage index)."""

    source: str
    cut_positions: tuple[int, ...]
    platforms: tuple[str, ...]
    stage_ms: Mapping[int, float]


def read_compiled(directory: Path) -> Plan:
    """The plan of ``directory``, refused in one line unless it has a compiled Edge TPU stage
    (cheap: read before the model loads)."""
    plan = load_plan(Path(directory))
    if not any((s.edgetpu or {}).get("compiled") for s in plan.stages):
        raise ScheduleError(f"--compiled {directory}: the plan has no compiled Edge TPU stage "
                            "(export with edgetpu_compiler on PATH first)")
    return plan


def compiled_split(graph: LayerGraph, plan: Plan, platforms: Sequence[Platform],
                   source: str) -> CompiledSplit:
    """Each compiled stage of ``plan`` priced on ``graph`` with the analysis's descriptors."""
    if plan.model != graph.name or plan.is_graph:
        kind = "stage graph" if plan.is_graph else "chain"
        raise ScheduleError(f"--compiled {source}: holds a {kind} of model {plan.model!r}; the "
                            f"analysis ranks chains of {graph.name!r}")
    by_name = {p.name: p for p in platforms}
    times = {}
    for stage in plan.stages:
        if not (stage.edgetpu or {}).get("compiled"):
            continue
        platform = by_name.get(stage.platform)
        host = load_host(platform) if platform is not None else None
        if host is None:
            raise ScheduleError(f"--compiled {source}: stage {stage.index} runs on "
                                f"{stage.platform}, which is not among --platforms or names no "
                                "runtime.host")
        first, last = graph.position(stage.first_layer), graph.position(stage.last_layer)
        report = _checked_report(stage.edgetpu, f"{source}/plan.json: field "
                                 f"'stages[{stage.index}].edgetpu")
        times[stage.index] = price_compiled_stage(graph, first, last + 1, platform, host,
                                                  report).latency_ms
    return CompiledSplit(source, tuple(plan.cut_positions),
                         tuple(s.platform for s in plan.stages), times)


def _checked_report(report: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """``report`` (a plan's ``edgetpu`` record) if the fields pricing reads are well formed;
    else one line naming the field (``where`` ends in the record's path, unquoted)."""
    def fail(field: str, wanted: str, got: Any) -> ScheduleError:
        return ScheduleError(f"{where}.{field}' must be {wanted}, got {got!r}")

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    for field in ("ops_on_cpu", "off_chip_streaming_bytes"):
        if report.get(field) is not None and not count(report[field]):
            raise fail(field, "a whole number >= 0", report[field])
    rows = report.get("operators") or []
    if not isinstance(rows, list):
        raise fail("operators", "a list of {op, count, status}", rows)
    for i, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("op"), str)
                and isinstance(row.get("status"), str) and count(row.get("count"))):
            raise fail(f"operators[{i}]", "{op: text, count: whole number >= 0, status: text}",
                       row)
    return report


def with_compiled(ranking: Ranking, split: CompiledSplit, listed: Candidate,
                  energy: Sequence[EnergyCoefficients]) -> Ranking:
    """``ranking`` with ``listed`` (the exported split as the analysis prices it) re-priced
    from the compiler's reports and every candidate ranked again; its energy again from the
    new stage times and period with each stage's board's ``energy`` coefficients."""
    stage_ms = [split.stage_ms.get(k, stage.cost.latency_ms)
                for k, stage in enumerate(listed.stages)]
    repriced = restage(listed, stage_ms)
    # moved by the stages' change only: the latency may hold more than stages and links (the
    # source's and the sink's wire with a runtime cost), which restage would drop
    repriced = replace(repriced, latency_ms=listed.latency_ms + sum(stage_ms)
                       - sum(stage.cost.latency_ms for stage in listed.stages))
    stages = tuple(replace(s, energy_mj=stage_energy_mj(c, s.cost.latency_ms, repriced.period_ms))
                   for s, c in zip(repriced.stages, energy, strict=True))
    repriced = replace(repriced, stages=stages, energy_mj=sum(s.energy_mj for s in stages)
                       + sum(link.energy_mj for link in repriced.links))
    others = [c for c in ranking.candidates if not _same(c, split)]
    candidates = rerank([*others, repriced], ranking.objective)
    speedup, best_baseline = _speedup(candidates[0], ranking.baselines, ranking.objective)
    return replace(ranking, candidates=candidates, speedup=speedup, best_baseline=best_baseline)


def find_split(ranking: Ranking, split: CompiledSplit) -> Candidate | None:
    """The ranked candidate that is the exported split, if the search listed it."""
    return next((c for c in ranking.candidates if _same(c, split)), None)


def mark_compiled(document: dict, split: CompiledSplit) -> None:
    """``latency_source: compiler`` on the compiled stages of the split's JSON candidate."""
    for row in document.get("candidates", []):
        platforms = tuple(stage.get("platform") for stage in row.get("stages", []))
        cuts = tuple(row.get("cut_positions") or ())
        if row.get("placement", "chain") == "chain" and (cuts, platforms) == (
                split.cut_positions, split.platforms):
            for index in split.stage_ms:
                row["stages"][index]["latency_source"] = COMPILER_SOURCE


def _same(candidate: Candidate, split: CompiledSplit) -> bool:
    return (candidate.cut_positions == split.cut_positions
            and candidate.assignment == split.platforms)
