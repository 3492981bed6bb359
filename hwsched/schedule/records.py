"""Result records of a ranking: a stage, a link, a candidate split and the whole ranking.

Records are frozen and carry units in their field names; ``to_dict`` writes the JSON contract of
``hwsched analyze --json`` (fields are added, never renamed or dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hwsched.schedule.tables import INF, StageCost
from hwsched.units import MS_PER_S

OBJECTIVES = ("throughput", "latency", "energy")
ASSIGN_MODES = ("fixed", "auto")
#: ``stages="auto"``: the planner picks how many of the boards to use.
AUTO_STAGES = "auto"
#: Candidates listed for N >= 3 platforms when ``top`` is not given.
DEFAULT_TOP_K = 20


_OBJECTIVE_TEXT = {
    "throughput": lambda c: f"{c.throughput_ips:.1f} inferences/s",
    "latency": lambda c: f"{c.latency_ms:.2f} ms",
    "energy": lambda c: f"{c.energy_mj:.1f} mJ per inference",
}


def _stages(count: int) -> str:
    return f"{count} stage" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class StageResult:
    cost: StageCost
    first_layer: str
    last_layer: str
    energy_mj: float
    #: The board instance running the stage: the platform name, or ``name#i`` (1-based, in the
    #: order the boards were given) when several boards share that platform.
    board: str = ""

    def to_dict(self) -> dict[str, Any]:
        c = self.cost
        return {
            "platform": c.platform,
            "board": self.board or c.platform,
            "precision": c.precision,
            "first_layer": self.first_layer,
            "last_layer": self.last_layer,
            "layers": c.stop - c.first,
            "macs": c.macs,
            "weights_bytes": c.weights_bytes,
            "peak_activation_bytes": c.peak_activation_bytes,
            "memory_bytes": c.memory_bytes,
            "latency_ms": c.latency_ms,
            "energy_mj": self.energy_mj,
            "fits_memory": c.fits_memory,
            "reasons": list(c.reasons),
        }


@dataclass(frozen=True)
class LinkResult:
    link: str
    cut_position: int
    dtype: str
    messages: int
    transfer_bytes: int
    wire_bytes: int
    latency_ms: float
    energy_mj: float
    reasons: tuple[str, ...]
    #: How the crossing tensors travel (hwsched.compression): fp32 = as made, fp16, int8.
    compression: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "cut_position": self.cut_position,
            "dtype": self.dtype,
            "messages": self.messages,
            "transfer_bytes": self.transfer_bytes,
            "wire_bytes": self.wire_bytes,
            "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj,
            "compression": self.compression,
        }


@dataclass(frozen=True)
class Candidate:
    """One split: stages in pipeline order and the links between them."""

    cut_positions: tuple[int, ...]
    stages: tuple[StageResult, ...]
    links: tuple[LinkResult, ...]
    latency_ms: float
    period_ms: float
    energy_mj: float
    rank: int = 0
    pareto: bool = False

    @property
    def assignment(self) -> tuple[str, ...]:
        """Platform (descriptor) name of each stage; repeats when boards are identical."""
        return tuple(stage.cost.platform for stage in self.stages)

    @property
    def boards(self) -> tuple[str, ...]:
        """Board instance of each stage (``rpi4#2``)."""
        return tuple(stage.board or stage.cost.platform for stage in self.stages)

    @property
    def throughput_ips(self) -> float:
        return MS_PER_S / self.period_ms if self.period_ms > 0 else INF

    @property
    def reasons(self) -> tuple[str, ...]:
        stage_reasons = (r for stage in self.stages for r in stage.cost.reasons)
        return (*stage_reasons, *(r for link in self.links for r in link.reasons))

    @property
    def feasible(self) -> bool:
        return not self.reasons

    def objective_value(self, objective: str) -> float:
        """The objective as a quantity to minimise."""
        return {"throughput": self.period_ms, "latency": self.latency_ms, "energy": self.energy_mj}[
            objective
        ]

    def sort_key(self, objective: str, order_index: Mapping[tuple[str, ...], int]) -> tuple:
        """Feasible first, then the objective, the other objectives, fewer stages (idle boards
        cost nothing), the order's position among those searched, the cut positions."""
        others = [o for o in OBJECTIVES if o != objective]
        return (
            not self.feasible,
            self.objective_value(objective),
            *(self.objective_value(o) for o in others),
            len(self.stages),
            order_index.get(self.assignment, 0),
            self.cut_positions,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "cut_positions": list(self.cut_positions),
            "stages": [stage.to_dict() for stage in self.stages],
            "links": [link.to_dict() for link in self.links],
            "latency_ms": self.latency_ms,
            "throughput_ips": self.throughput_ips,
            "period_ms": self.period_ms,
            "energy_mj": self.energy_mj,
            "feasible": self.feasible,
            "pareto": self.pareto,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Ranking:
    """The ranked candidates, the single-platform baselines and the gain of rank 1."""

    model: str
    objective: str
    assign: str
    platforms: tuple[str, ...]
    link: str
    precisions: Mapping[str, str]
    cost_models: Mapping[str, str]
    candidates: tuple[Candidate, ...]
    baselines: tuple[Candidate, ...]
    #: Rank 1 over the best feasible baseline, in the objective's sense (>1 is better).
    speedup: float | None
    best_baseline: str | None
    unscored_layers: tuple[str, ...]
    estimated_layers: Mapping[str, tuple[str, ...]]
    #: Every board given, in order (``rpi4#1``, ``rpi4#2``, ``jetson_nano``).
    boards: tuple[str, ...] = ()
    #: ``"auto"`` or the forced number of stages.
    stages: int | str = 0
    #: The best split found for each number of stages searched, fewest stages first: why the
    #: idle boards stay idle.
    best_by_stage_count: tuple[Candidate, ...] = ()
    #: What the search left out and why, one sentence each.
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def idle_boards(self) -> tuple[str, ...]:
        """Boards rank 1 leaves idle."""
        used = set(self.best.boards) if self.best else set()
        return tuple(board for board in self.boards if board not in used)

    @property
    def idle_reason(self) -> str | None:
        """Which boards rank 1 leaves idle and why: the best split with each other number of
        stages the search tried, in the objective's own unit."""
        idle = self.idle_boards
        if self.best is None or not idle:
            return None
        used = len(self.best.stages)
        text = _OBJECTIVE_TEXT[self.objective]
        others = [c for c in self.best_by_stage_count if len(c.stages) != used and c.feasible]
        why = "; ".join(f"{_stages(len(c.stages))}: {text(c)}" for c in others)
        return (
            f"Idle: {', '.join(idle)} — rank 1 uses {used} of {len(self.boards)} boards "
            f"({text(self.best)})"
            + (f"; the best with {why}." if why else "; other numbers of stages were not searched.")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "objective": self.objective,
            "assign": self.assign,
            "platforms": list(self.platforms),
            "link": self.link,
            "precisions": dict(self.precisions),
            "cost_models": dict(self.cost_models),
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "baselines": [
                {"platform": b.stages[0].cost.platform, **b.to_dict()} for b in self.baselines
            ],
            "speedup": self.speedup,
            "best_baseline": self.best_baseline,
            "unscored_layers": list(self.unscored_layers),
            "estimated_layers": {k: list(v) for k, v in self.estimated_layers.items()},
            "boards": list(self.boards),
            "stages_mode": self.stages,
            "idle_boards": list(self.idle_boards),
            "idle_reason": self.idle_reason,
            "best_by_stage_count": [
                {
                    "stages": len(c.stages),
                    "boards": list(c.boards),
                    "cut_positions": list(c.cut_positions),
                    "throughput_ips": c.throughput_ips,
                    "latency_ms": c.latency_ms,
                    "energy_mj": c.energy_mj,
                    "feasible": c.feasible,
                }
                for c in self.best_by_stage_count
            ],
            "notes": list(self.notes),
        }
