"""``--placement`` and ``--mapping`` for ``hwsched analyze``: stage-graph placements searched
or read from a mapping file, costed by the one placement evaluator and ranked beside the chain
splits (see :mod:`hwsched.report.placements` for the JSON they add)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from hwsched.costs.placement import PlacementCoster, on_one_cpu
from hwsched.costs.runtime import RuntimeCost, load_runtime_cost
from hwsched.documents.analysis import GraphCandidateEntry
from hwsched.errors import DocumentError
from hwsched.hardware import Platform
from hwsched.ir import LayerGraph, OpKind
from hwsched.mapping import MappingSpec, read_mapping, resolve_mapping
from hwsched.placement import Board, Placement, Stage, placement_from_stages
from hwsched.report.placements import (
    joint_candidates,
    joint_ranking,
    mark_graph_pareto,
    placement_cost_to_dict,
    render_joint,
    render_placements,
)
from hwsched.schedule import Ranking
from hwsched.schedule.graph_search import SearchReport, search_graph_placements

PLACEMENTS = ("chain", "graph")


def add_placement_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--placement", choices=PLACEMENTS, default="chain",
                        help="chain: consecutive slices (default); graph: also search "
                        "placements that run parallel branches on different boards, ranked "
                        "together with the chain splits")
    parser.add_argument("--mapping", metavar="FILE",
                        help="a mapping file (YAML/JSON: boards, stages of layers, link) to "
                        "evaluate beside the ranked plans")


def distinct_boards(platforms: Sequence[Platform]) -> tuple[Board, ...]:
    """One board per platform given; repeats (``rpi4*2``) become ``rpi4``, ``rpi4_2``: a
    placement names its boards."""
    seen: dict[str, int] = {}
    boards = []
    for platform in platforms:
        seen[platform.name] = seen.get(platform.name, 0) + 1
        count = seen[platform.name]
        name = platform.name if count == 1 else f"{platform.name}_{count}"
        boards.append(Board(name, platform.name))
    return tuple(boards)


def search_summary(report: SearchReport) -> str:
    """How far from optimal the graph search may be, in one sentence."""
    best_period = min((c.period_ms for c in report.candidates), default=float("inf"))
    gap = best_period / report.period_lower_bound_ms - 1 if report.period_lower_bound_ms else 0.0
    return (
        f"Graph search: {report.blocks} blocks, {report.parallel_blocks} with parallel branches; "
        f"latency {report.latency_optimum_ms:.2f} ms is the "
        f"{'exact minimum' if report.latency_exact else 'lower bound'} over placements cut "
        "at single-tensor cut points with branches spread over boards; throughput is not "
        f"searched exactly: best period {best_period:.2f} ms is within {gap:.0%} of the lower "
        f"bound {report.period_lower_bound_ms:.2f} ms."
        + (" " + " ".join(report.notes) if report.notes else "")
    )


def read_mapping_option(args: argparse.Namespace) -> MappingSpec | None:
    """The mapping file, checked before the model is built (cheap mistakes fail first)."""
    return read_mapping(args.mapping) if getattr(args, "mapping", None) else None


class GivenLink(argparse.Action):
    """``analyze --link``: stored, and marked given (``args.link_given``), since its default
    cannot be told apart from a user's choice otherwise."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.link_given = True


def mapping_link(spec: MappingSpec, args: argparse.Namespace) -> str:
    """The link a mapping is priced over: a ``--link`` given on the command line, else the
    mapping's ``link``, else the default — one rule for analyze and export (a user naming a
    link on the command line expects it to be the one used)."""
    if getattr(args, "link_given", False) or not spec.link:
        return args.link
    return spec.link


@dataclass(frozen=True)
class MappedPlacement:
    """A mapping file and the placement it describes on the model's graph."""

    spec: MappingSpec
    placement: Placement


def resolve_mapping_option(spec: MappingSpec | None, graph: LayerGraph) -> MappedPlacement | None:
    """The mapping checked against the model's layers (unknown layer, a layer in two stages or
    in none, a cycle): called as soon as the graph exists, before the chain ranking or any other
    slow step, so a typo costs the user the model's load and nothing more."""
    return None if spec is None else MappedPlacement(spec, resolve_mapping(spec, graph))


def placement_section(
    args: argparse.Namespace,
    mapped: MappedPlacement | None,
    graph: LayerGraph,
    platforms: Sequence[Platform],
    schedule: Ranking,
    profiles: Sequence[Any],
    out: Console,
    err: Console,
    priced: list[Placement] | None = None,
) -> dict[str, Any]:
    """Search and/or evaluate stage graphs; print them; the keys they add to the document.
    ``priced`` (when given) receives every placement priced, for :func:`same_core_charged`."""
    priced = [] if priced is None else priced
    if args.placement == "chain" and mapped is None:
        return {}
    # the chain candidates they are ranked with carry the runner's cost: so do they
    runtime = (load_runtime_cost(args.runtime_cost)
               if getattr(args, "runtime_cost", None) else None)
    options = dict(precision=args.precision, profile=list(profiles) or None,
                   latency_model=args.latency_model, memory_model=args.memory_model,
                   transfer_model=args.transfer_model, energy_model=args.energy_model,
                   **runtime_options(runtime))
    known = {p.name: p for p in platforms}
    section: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    if args.placement == "graph":
        boards = distinct_boards(platforms)
        coster = PlacementCoster(graph, boards, args.link, platforms=known, **options)
        report = search_graph_placements(coster, boards)
        priced.extend(c.placement for c in report.candidates)
        records = [placement_cost_to_dict(graph, c, "graph") for c in report.candidates]
        mark_graph_pareto(records, [*schedule.candidates, *schedule.baselines])
        section["graph_search"] = report.to_dict()
        section["placement_ranking"] = joint_ranking(schedule.candidates, records,
                                                     args.objective)
        section["graph_candidates"] = records
        chain = [c.to_dict() for c in schedule.candidates]
        section["candidates"] = joint_candidates(chain, records, section["placement_ranking"])
        render_joint(out, section["candidates"], args.objective, args.top)
        render_placements(out, records, f"{graph.name}: branch-parallel placements over "
                          f"{', '.join(b.name for b in boards)} (rank = place among chain and "
                          "graph candidates)")
        out.print(search_summary(report))
    if mapped is not None:
        mapping, placement = mapped.spec, mapped.placement
        link = mapping_link(mapping, args)
        coster = PlacementCoster(graph, mapping.boards, link, platforms=known, **options)
        priced.append(placement)
        record = {"source": mapping.source, "link": link,
                  **placement_cost_to_dict(graph, coster.evaluate(placement), "mapping")}
        for reason in record["reasons"]:
            err.print(f"warning: {mapping.source}: {reason}")
        section["mapping"] = record
        render_placements(out, [record], f"mapping {mapping.source} via {link}")
    return section


def runtime_options(runtime: RuntimeCost | None) -> dict[str, RuntimeCost | None]:
    """:class:`PlacementCoster`'s hand-off costs from a ``--runtime-cost`` file: the cost, and
    its ``same_core`` section (when the file has one) for the hops whose two ends share one
    CPU — two stages on one one-CPU core set (a mapping's ``cores``), the source's or sink's
    hop of a one-CPU first or last stage. A file without it prices them across two cores.

    Not priced on one core yet (they keep the cross-core cost): a chain's source and sink
    hops, and those of a stage-graph stage without cores — ``emulate`` pins the source to
    stage 0's CPU and the sink to the last stage's, so those hops do run on one core; and the
    one-core hop's ends: the section's measured sender and receiver costs are not used, only
    its wire part (each end is charged on its core at the cross-core cost).

    >>> runtime_options(None)
    {'runtime': None, 'same_core_runtime': None}
    """
    return {"runtime": runtime,
            "same_core_runtime": runtime.same_core if runtime is not None else None}


def same_core_charged(graph: LayerGraph, priced: Sequence[Placement],
                      runtime: RuntimeCost | None) -> bool:
    """JSON ``runtime_cost.same_core_charged``: whether the cost has a ``same_core`` section
    and some stage-graph placement priced with it (``priced``: the graph candidates and the
    mapping) has a hop it prices on one CPU (:func:`one_cpu_hop`). Boards without cores
    (``--placement graph``), a mapping with no one-CPU stage, chain candidates (each stage a
    board of its own) and tiled ones (their planner is not given the section) have none, and
    say false: their figures are those of a file without the section."""
    if runtime is None or runtime.same_core is None:
        return False
    return any(one_cpu_hop(graph, placement) for placement in priced)


def one_cpu_hop(graph: LayerGraph, placement: Placement) -> bool:
    """Whether :class:`PlacementCoster` prices one of the placement's hops with its
    ``same_core_runtime``: an edge between two stages on one and the same one-CPU core set
    (:func:`on_one_cpu`), the source's hop when every stage holding a model input shares
    stage 0's one CPU, or the sink's hop from a stage sharing the last stage's one CPU.

    >>> from hwsched.placement import placement_from_stages
    >>> from hwsched.schedule.synthetic import synthetic_graph
    >>> g = synthetic_graph(4, seed=0)
    >>> def placed(*cores):
    ...     boards = (Board("a", "rpi4", (0, 1)),)
    ...     return placement_from_stages(g, boards, [Stage("a", {0, 1}, cores[0]),
    ...                                              Stage("a", {2, 3}, cores[1])])
    >>> one_cpu_hop(g, placed((0,), (0,))), one_cpu_hop(g, placed((0, 1), (0, 1)))
    (True, False)
    """
    stages = placement.stages
    if not stages:
        return False
    if any(on_one_cpu(placement, stages[e.source], stages[e.target]) for e in placement.edges):
        return True
    fed = [s for s in stages
           if any(graph.layers[p].op is OpKind.INPUT for p in s.positions)] or [stages[0]]
    if all(on_one_cpu(placement, stages[0], s) for s in fed):
        return True
    return any(on_one_cpu(placement, stages[-1], stages[i]) for i in set(placement.sink.values()))


def candidate_placement(candidate: GraphCandidateEntry, graph: LayerGraph, where: str
                        ) -> tuple[Placement, tuple[str, ...]]:
    """The placement a stage-graph candidate of an analysis lists, and each stage's precision.

    Its edges are derived from the graph again and must be the ones the analysis listed: a
    candidate edited by hand, or an analysis of another version of the model, is refused in one
    line rather than exported as something else."""
    boards = tuple(Board(b.name, b.platform, b.cores) for b in candidate.boards)
    stages, names = [], {layer.name for layer in graph}
    for i, entry in enumerate(candidate.stages):
        missing = [n for n in entry.layers if n not in names]
        if missing:
            raise DocumentError(f"{where}: candidate {candidate.rank}: stages[{i}] names layer "
                                f"{missing[0]!r}, which model {graph.name!r} does not have")
        stages.append(Stage(entry.board, frozenset(graph.position(n) for n in entry.layers),
                            entry.cores))
    placement = placement_from_stages(graph, boards, stages)
    listed = candidate.edge_list(where)
    derived = tuple((e.source, e.target, e.tensor_names) for e in placement.edges)
    if [s.layers for s in placement.stages] != [s.layers for s in stages] or derived != listed:
        raise DocumentError(
            f"{where}: candidate {candidate.rank}: its stages do not give the edges it lists "
            f"on model {graph.name!r}; analyze the model again"
        )
    return placement, tuple(s.precision for s in candidate.stages)
