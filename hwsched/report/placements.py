"""Graph placements beside the chain ranking: JSON records and a terminal table.

``analyze --placement graph`` and ``analyze --mapping FILE`` add three keys to the analysis
document and leave every chain field as it was: ``graph_candidates`` (each with ``rank`` in the
joint ranking, ``placement``, ``stages`` with ``layers`` and ``board``, ``edges`` as
``{from, to, tensors}``, and the chain candidates' totals), ``placement_ranking`` (chain and
graph candidates ranked together: ``{rank, kind, chain_rank | graph_index, ...totals}``) and
``graph_search`` (what the search covers and how far from optimal it may be).

With ``--placement graph`` the ranked ``candidates`` list itself holds both kinds in the joint
order (:func:`joint_candidates`): every entry gains ``placement`` (``chain`` or ``graph``) and its
``rank`` is its place in the joint order, which ``export --analysis FILE --candidate RANK`` picks
by; a chain entry keeps every other field as the chain ranking wrote it, plus ``chain_rank``
(its rank among the chains alone). Without graph candidates ``candidates`` is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwsched.costs.placement import PlacementCost
from hwsched.ir import LayerGraph
from hwsched.schedule import OBJECTIVES, Candidate

BYTES_PER_MIB = 1024 * 1024
#: How a stage graph's edges travel: as made. Stage-graph plans refuse compressed links
#: (:mod:`hwsched.deployment`) and their runners send tensors as their stage made them, so a
#: graph candidate is priced so too, whatever ``--compress`` lets the chain splits use.
GRAPH_WIRE_LEVEL = "fp32"


def placement_cost_to_dict(graph: LayerGraph, cost: PlacementCost, kind: str) -> dict[str, Any]:
    """A graph candidate: its stages (layers, board, costs), edges and totals."""
    shape = cost.placement.to_dict(graph)
    stages = [{**s, **e.to_dict()} for s, e in zip(shape["stages"], cost.stages, strict=True)]
    edges = [{**e, **c.to_dict(), "compression": GRAPH_WIRE_LEVEL}
             for e, c in zip(shape["edges"], cost.edges, strict=True)]
    return {
        "placement": kind,
        "boards": shape["boards"],
        "stages": stages,
        "edges": edges,
        "latency_ms": cost.latency_ms,
        "throughput_ips": cost.throughput_ips,
        "period_ms": cost.period_ms,
        "energy_mj": cost.energy_mj,
        "busy_ms": dict(cost.busy_ms),
        "memory_bytes": dict(cost.memory_bytes),
        "feasible": cost.feasible,
        "reasons": list(cost.reasons),
    }


def _key(record: dict[str, Any], objective: str) -> tuple:
    values = {"throughput": record["period_ms"], "latency": record["latency_ms"],
              "energy": record["energy_mj"]}
    return (not record["feasible"], values[objective],
            *(values[o] for o in OBJECTIVES if o != objective))


def joint_ranking(
    chain: Sequence[Candidate], graph_records: list[dict[str, Any]], objective: str
) -> list[dict[str, Any]]:
    """Chain and graph candidates in one order (ties: chain first); sets each graph record's
    ``rank`` to its place in that order. Each row's ``compression`` says how its links were
    priced (a chain's strongest link level; a graph's edges always as made), so a ranking that
    mixes a compressed chain with an uncompressed graph says so."""
    from hwsched.compression import strongest

    rows: list[tuple[tuple, int, dict[str, Any]]] = []
    for c in chain:
        row = {"kind": "chain", "chain_rank": c.rank, "latency_ms": c.latency_ms,
               "period_ms": c.period_ms, "throughput_ips": c.throughput_ips,
               "energy_mj": c.energy_mj, "feasible": c.feasible,
               "compression": strongest(link.compression for link in c.links)}
        rows.append((_key(row, objective), 0, row))
    for index, record in enumerate(graph_records):
        row = {"kind": "graph", "graph_index": index,
               **{k: record[k] for k in ("latency_ms", "period_ms", "throughput_ips",
                                         "energy_mj", "feasible")},
               "compression": GRAPH_WIRE_LEVEL}
        rows.append((_key(row, objective), 1, row))
    ranked = [row for _, _, row in sorted(rows, key=lambda item: (item[0], item[1]))]
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
        if row["kind"] == "graph":
            graph_records[row["graph_index"]]["rank"] = rank
    return ranked


def mark_graph_pareto(graph_records: list[dict[str, Any]], rivals: Sequence[Candidate]) -> None:
    """Set each graph record's ``pareto`` as a chain candidate's is set: feasible, and no
    feasible rival — chain split, single board (``rivals``) or other graph record — at least as
    good on period, latency and energy and better on one. Chain candidates keep their own
    marks (among chains), so a chain analysis reads exactly as before.

    >>> a = {"period_ms": 2.0, "latency_ms": 5.0, "energy_mj": 1.0, "feasible": True}
    >>> b = {"period_ms": 2.0, "latency_ms": 6.0, "energy_mj": 1.0, "feasible": True}
    >>> mark_graph_pareto(records := [a, b], [])
    >>> [r["pareto"] for r in records]
    [True, False]
    """
    metrics = [(c.period_ms, c.latency_ms, c.energy_mj) for c in rivals if c.feasible]
    metrics += [(r["period_ms"], r["latency_ms"], r["energy_mj"]) for r in graph_records
                if r["feasible"]]
    for record in graph_records:
        own = (record["period_ms"], record["latency_ms"], record["energy_mj"])
        record["pareto"] = bool(record["feasible"]) and not any(
            all(m <= o for m, o in zip(other, own, strict=True)) and other != own
            for other in metrics)


def joint_candidates(
    chain: Sequence[dict[str, Any]], graph_records: list[dict[str, Any]],
    ranking: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The ``candidates`` list in the joint order of ``ranking`` (from :func:`joint_ranking`):
    chain entries (``chain``: the chain ranking's own dicts, by chain rank) with ``rank`` set to
    the joint rank, ``placement: "chain"`` and ``chain_rank``; graph records as they are, with
    ``rank`` first.

    >>> chain = [{"rank": 1, "cut_positions": [3]}]
    >>> graph = [{"placement": "graph", "rank": 1}]
    >>> rows = [{"kind": "graph", "graph_index": 0, "rank": 1},
    ...         {"kind": "chain", "chain_rank": 1, "rank": 2}]
    >>> first, second = joint_candidates(chain, graph, rows)
    >>> first
    {'rank': 1, 'placement': 'graph'}
    >>> second
    {'rank': 2, 'cut_positions': [3], 'placement': 'chain', 'chain_rank': 1}
    """
    by_rank = {c["rank"]: c for c in chain}
    out = []
    for row in ranking:
        if row["kind"] == "graph":
            out.append({"rank": row["rank"], **graph_records[row["graph_index"]]})
        else:
            entry = by_rank[row["chain_rank"]]
            out.append({**entry, "rank": row["rank"], "placement": "chain",
                        "chain_rank": entry["rank"]})
    return out


def _stages_text(record: dict[str, Any]) -> str:
    lines = []
    for s in record["stages"]:
        names = s["layers"]
        span = names[0] if len(names) == 1 else f"{names[0]}…{names[-1]} ({len(names)})"
        lines.append(f"{s['index']}: {s['board']} {span}: {s['latency_ms']:.2f} ms")
    return escape("\n".join(lines))


def _edges_text(record: dict[str, Any]) -> str:
    return escape("\n".join(
        f"{e['from']}→{e['to']} {len(e['tensors'])} tensor(s) {e['latency_ms']:.2f} ms"
        for e in record["edges"]
    ) or "—")


def render_placements(console: Console, records: list[dict[str, Any]], title: str) -> None:
    table = Table(title=escape(title), title_justify="left")
    for header in ("rank", "kind", "stages", "edges", "latency ms", "throughput/s", "energy mJ",
                   "feasible"):
        justify = "right" if header in ("rank", "latency ms", "throughput/s", "energy mJ") \
            else "left"
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for record in records:
        status = "[green]yes[/green]" if record["feasible"] else \
            f"[red]no[/red]: {escape(record['reasons'][0])}"
        table.add_row(str(record.get("rank", "—")), record["placement"], _stages_text(record),
                      _edges_text(record), f"{record['latency_ms']:.2f}",
                      f"{record['throughput_ips']:.1f}", f"{record['energy_mj']:.1f}", status)
    console.print(table)


def render_joint(console: Console, candidates: list[dict[str, Any]], objective: str,
                 rows: int) -> None:
    """The joint ranking: the ranks ``export --analysis FILE --candidate RANK`` takes."""
    table = Table(title=f"chain and graph candidates ranked together by {objective} (rank = "
                  "export --candidate RANK)", title_justify="left")
    for header in ("rank", "kind", "split", "wire", "latency ms", "throughput/s", "energy mJ"):
        table.add_column(header, justify="left" if header in ("kind", "split", "wire")
                         else "right")
    for c in candidates[:rows]:
        if c["placement"] == "graph":
            split = " ".join(f"{s['index']}:{s['board']}" for s in c["stages"])
        else:
            split = f"cuts {','.join(map(str, c['cut_positions'])) or '—'} (chain rank " \
                    f"{c['chain_rank']})"
        table.add_row(str(c["rank"]), c["placement"], escape(split), wire_level(c),
                      f"{c['latency_ms']:.2f}", f"{c['throughput_ips']:.1f}",
                      f"{c['energy_mj']:.1f}")
    console.print(table)


def wire_level(candidate: dict[str, Any]) -> str:
    """How a ranked candidate's links were priced: the strongest level among its chain links
    or graph edges (fp32: as made).

    >>> wire_level({"placement": "graph", "edges": [{"compression": "fp32"}]})
    'fp32'
    >>> wire_level({"placement": "chain", "links": [{"compression": "fp16"}]})
    'fp16'
    """
    from hwsched.compression import strongest

    items = candidate.get("edges") if candidate.get("placement") == "graph" else \
        candidate.get("links")
    return strongest(item.get("compression", "fp32") for item in items or ())


def graph_wire_note(levels: Sequence[str]) -> str | None:
    """One sentence when chain candidates may send compressed links beside graph candidates
    that cannot (None when every link is priced as made anyway).

    >>> graph_wire_note(["fp32", "fp16"])[:60]
    'graph candidates are priced with their edges as made (fp32):'
    >>> graph_wire_note(["fp32"]) is None
    True
    """
    others = [level for level in levels if level != GRAPH_WIRE_LEVEL]
    if not others:
        return None
    return (f"graph candidates are priced with their edges as made ({GRAPH_WIRE_LEVEL}): "
            "stage-graph plans send tensors uncompressed, while chain candidates may send "
            f"their links as {', '.join(others)} (column 'wire')")
