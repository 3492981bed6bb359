"""Terminal table of a :class:`~hwsched.schedule.Ranking`: ranked splits and baselines.

``render_candidates(plan, console)`` prints one row per listed candidate (rank, cut positions,
per-stage board/latency/memory, link time, totals, feasibility and Pareto mark), then one row
per single-platform baseline, then the gain of rank 1 over the best feasible baseline, and which
boards rank 1 leaves idle and why.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwsched.schedule import Candidate, Ranking

#: Candidates shown in the terminal unless the caller asks for more (the JSON has them all).
DEFAULT_ROWS = 15
BYTES_PER_MIB = 1024 * 1024
_GAIN_WORDS = {
    "throughput": "higher throughput",
    "latency": "lower latency (baseline / split)",
    "energy": "less energy per inference (baseline / split)",
}


def _mib(value: int) -> str:
    return f"{value / BYTES_PER_MIB:.2f}"


def _stages_text(candidate: Candidate) -> str:
    return escape("\n".join(
        f"{s.board or s.cost.platform} [{s.cost.precision}] {s.first_layer}…{s.last_layer}: "
        f"{s.cost.latency_ms:.2f} ms, {_mib(s.cost.memory_bytes)} MiB"
        + ("" if s.cost.fits_memory else " (does not fit)")
        for s in candidate.stages
    ))


def _links_text(candidate: Candidate) -> str:
    return (
        "\n".join(
            f"{lk.transfer_bytes / 1024:.1f} KiB {lk.dtype}: {lk.latency_ms:.2f} ms"
            for lk in candidate.links
        )
        or "—"
    )


def _status(candidate: Candidate) -> str:
    if candidate.feasible:
        return "[green]yes[/green]" + (" ★" if candidate.pareto else "")
    return f"[red]no[/red]: {escape(candidate.reasons[0])}"


def candidates_table(plan: Ranking, rows: int = DEFAULT_ROWS) -> Table:
    table = Table(
        title=(
            escape(f"{plan.model}: splits over {', '.join(plan.boards or plan.platforms)} "
                   f"via {plan.link}, ")
            +
            f"ranked by {plan.objective} (★ = Pareto-optimal)"
        ),
        title_justify="left",
    )
    for header, justify in (
        ("rank", "right"),
        ("cuts", "left"),
        ("stages", "left"),
        ("links", "left"),
        ("latency ms", "right"),
        ("throughput/s", "right"),
        ("energy mJ", "right"),
        ("feasible", "left"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for candidate in plan.candidates[:rows]:
        table.add_row(
            str(candidate.rank),
            ",".join(map(str, candidate.cut_positions)),
            _stages_text(candidate),
            _links_text(candidate),
            f"{candidate.latency_ms:.2f}",
            f"{candidate.throughput_ips:.1f}",
            f"{candidate.energy_mj:.1f}",
            _status(candidate),
        )
    return table


def baselines_table(plan: Ranking) -> Table:
    table = Table(title="each platform alone (whole model)", title_justify="left")
    for header in ("platform", "latency ms", "throughput/s", "energy mJ", "memory MiB", "feasible"):
        table.add_column(header, justify="left" if header in ("platform", "feasible") else "right")
    for baseline in plan.baselines:
        stage = baseline.stages[0]
        table.add_row(
            escape(f"{stage.cost.platform} [{stage.cost.precision}]"),
            f"{baseline.latency_ms:.2f}",
            f"{baseline.throughput_ips:.1f}",
            f"{baseline.energy_mj:.1f}",
            _mib(stage.cost.memory_bytes),
            _status(baseline),
        )
    return table


def gain_line(plan: Ranking) -> str:
    """One sentence: the gain of the best split over the best single board."""
    if plan.best is None:
        return "No split could be evaluated."
    if not plan.best.feasible:
        return "No feasible split: every candidate breaks a memory, op or precision limit."
    if plan.speedup is None:
        return "No platform can run the whole model alone: splitting is the only option."
    verdict = "better" if plan.speedup > 1 else "not better"
    return (
        f"Best split (rank 1) vs best single platform ({plan.best_baseline}): "
        f"{plan.speedup:.2f}x {_GAIN_WORDS[plan.objective]} — splitting is {verdict}."
    )


def render_candidates(plan: Ranking, console: Console, rows: int = DEFAULT_ROWS) -> None:
    """Print ranked candidates, baselines and the gain of the best split to ``console``."""
    console.print(candidates_table(plan, rows))
    hidden = len(plan.candidates) - rows
    if hidden > 0:
        console.print(f"… {hidden} more candidates in the JSON (--json FILE) and the HTML report")
    console.print(baselines_table(plan))
    console.print(gain_line(plan))
    if plan.idle_reason:
        console.print(escape(plan.idle_reason))
    for note in plan.notes:
        console.print(f"[yellow]Note: {escape(note)}")
    if plan.unscored_layers:
        console.print(
            f"[yellow]{len(plan.unscored_layers)} layer(s) have no cost rule and are costed by "
            f"memory traffic only: {', '.join(plan.unscored_layers[:5])}"
            + (" …" if len(plan.unscored_layers) > 5 else "")
        )
