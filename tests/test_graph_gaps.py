"""Issue 13's remaining gaps: mapping errors before the ranking, the stage graph drawn in the
report, graph candidates in ``candidates``, exactness on three boards, hand-off costs on edges.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from html.parser import HTMLParser

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from testlinks import link_yaml

from hwsched.cli import main
from hwsched.costs.placement import PlacementCoster
from hwsched.costs.runtime import RuntimeCost
from hwsched.placement import Board, Stage, chain_placement, placement_from_stages
from hwsched.schedule import graph_search as gs
from hwsched.schedule.graph_search import find_blocks, search_graph_placements
from tests.irgraphs import dag_graph


@pytest.fixture(scope="module")
def two_branch_file(tmp_path_factory):
    from tests.placement_models import two_branch_model

    path = tmp_path_factory.mktemp("models") / "two_branch.keras"
    two_branch_model(size=16, channels=16, depth=2).save(path)
    return path


@pytest.fixture(scope="module")
def balanced_file(tmp_path_factory):
    """Branches heavy enough that running them on two boards at once pays over gige."""
    from tests.placement_models import two_branch_model

    path = tmp_path_factory.mktemp("models") / "balanced.keras"
    two_branch_model(size=32, channels=64, depth=2).save(path)
    return path


# -- 1. a bad mapping fails before the chain ranking ------------------------------------------
BAD_MAPPINGS = {
    "unknown layer": (
        [{"board": "pi_a", "layers": ["image", "stem", "a*"]},
         {"board": "pi_b", "layers": ["b0", "b9"]},
         {"board": "pi_a", "layers": ["rest"]}],
        "'b9' matches no layer"),
    "layer in two stages": (
        [{"board": "pi_a", "layers": ["image..a1"]},
         {"board": "pi_b", "layers": ["a1", "b*"]},
         {"board": "pi_a", "layers": ["rest"]}],
        "layer 'a1' is in stages[0] and stages[1]"),
    "cycle": (
        [{"board": "pi_a", "layers": ["rest"]},
         {"board": "pi_b", "layers": ["b0..b1"]}],
        "the stages form a cycle"),
    "layer in no stage": (
        [{"board": "pi_a", "layers": ["image..a1"]},
         {"board": "pi_b", "layers": ["b*"]}],
        "is in no stage"),
}


def _refuse(*_args, **_kwargs):
    raise AssertionError("the chain ranking ran before the mapping was checked")


@pytest.mark.parametrize("case", sorted(BAD_MAPPINGS))
def test_a_bad_mapping_fails_before_the_ranking(case, two_branch_file, tmp_path, capsys,
                                                monkeypatch):
    stages, expected = BAD_MAPPINGS[case]
    mapping = tmp_path / "m.yaml"
    boards = [{"name": "pi_a", "platform": "rpi4"}, {"name": "pi_b", "platform": "rpi4"}]
    mapping.write_text(yaml.safe_dump({"boards": boards, "stages": stages}))
    import hwsched.cli.analyze as analyze

    monkeypatch.setattr(analyze, "rank_splits", _refuse)  # the slow part cannot run
    monkeypatch.setattr(analyze, "enumerate_cuts", _refuse)
    argv = ["analyze", str(two_branch_file), "--platforms", "rpi4", "--mapping", str(mapping),
            "--no-report"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and str(mapping) in err and err.count("\n") == 1, err


# -- 3. graph candidates ranked in ``candidates``; export picks either kind -------------------
def _analyze(model, tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    argv = ["analyze", str(model), "--platforms", "rpi4,rpi4", "--objective", "latency",
            "--no-report", "--json", str(out), "--top", "50", *extra]
    assert main(argv) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def analyses(balanced_file, tmp_path_factory):
    where = tmp_path_factory.mktemp("analyses")
    chain = _analyze(balanced_file, where, "chain")
    graph = _analyze(balanced_file, where, "graph", "--placement", "graph")
    return chain, graph, where / "graph.json"


def test_graph_and_chain_candidates_are_ranked_together(analyses):
    chain_doc, doc, _ = analyses
    kinds = [c["placement"] for c in doc["candidates"]]
    assert "graph" in kinds and "chain" in kinds
    assert [c["rank"] for c in doc["candidates"]] == list(range(1, len(kinds) + 1))
    latencies = [c["latency_ms"] for c in doc["candidates"] if c["feasible"]]
    assert latencies == sorted(latencies)  # --objective latency: one order over both kinds
    best = doc["candidates"][0]
    assert best["placement"] == "graph"  # the branch-parallel placement beats every chain
    board_of = {n: s["board"] for s in best["stages"] for n in s["layers"]}
    assert board_of["a0"] == board_of["a1"] != board_of["b0"] == board_of["b1"]
    assert all({"from", "to", "tensors"} <= set(e) for e in best["edges"])
    # a chain entry is the chain ranking's own entry, but for its joint rank and two new fields
    chains = [c for c in doc["candidates"] if c["placement"] == "chain"]
    assert [c["chain_rank"] for c in chains] == [c["rank"] for c in chain_doc["candidates"]]
    for joint, alone in zip(chains, chain_doc["candidates"], strict=True):
        same = {k: v for k, v in joint.items() if k not in ("placement", "chain_rank")}
        assert json.dumps({**same, "rank": joint["chain_rank"]}) == json.dumps(alone)
    assert "placement" not in json.dumps(chain_doc["candidates"])  # chain runs are unchanged
    assert doc["graph_candidates"] and doc["placement_ranking"]  # kept for scripts


def test_graph_candidates_are_marked_pareto_against_every_candidate(analyses):
    _, doc, _ = analyses
    rivals = [c for c in [*doc["candidates"], *doc.get("baselines", [])] if c["feasible"]]

    def beats(a, b):
        keys = ("period_ms", "latency_ms", "energy_mj")
        return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)

    graphs = [c for c in doc["candidates"] if c["placement"] == "graph"]
    assert graphs and all("pareto" in c for c in graphs)
    for candidate in graphs:
        front = candidate["feasible"] and not any(beats(r, candidate) for r in rivals)
        assert candidate["pareto"] == front, candidate["rank"]
    assert any(c["pareto"] for c in graphs)  # the fastest branch-parallel one is on the front


def test_export_candidate_of_a_graph_candidate_exports_that_stage_graph(analyses, balanced_file,
                                                                         tmp_path):
    _, doc, path = analyses
    chosen = next(c for c in doc["candidates"] if c["placement"] == "graph")
    out = tmp_path / "split"
    argv = ["export", str(balanced_file), "--analysis", str(path), "--candidate",
            str(chosen["rank"]), "--out", str(out), "--samples", "4"]
    assert main(argv) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert [s["board"] for s in plan["stages"]] == [s["board"] for s in chosen["stages"]]
    assert [(e["from"], e["to"], e["tensors"]) for e in plan["edges"]] == [
        (e["from"], e["to"], e["tensors"]) for e in chosen["edges"]]
    assert plan["prediction"]["analysis"]["rank"] == chosen["rank"]
    assert plan["verification"]["max_abs_diff"] < 1e-4
    # 2. the report draws the exported plan: one box per stage, one arrow per edge
    page = tmp_path / "plan.html"
    argv = ["report", str(path), "--plan", str(out), "--out", str(page)]
    assert main(argv) == 0
    drawn = _drawn(page.read_text(), "stage-graph-plan")
    assert sorted(drawn.stages) == [s["index"] for s in plan["stages"]]
    assert sorted(drawn.edges) == sorted((e["from"], e["to"]) for e in plan["edges"])


def test_a_graph_candidate_whose_edges_do_not_follow_from_its_stages_is_refused(
        analyses, balanced_file):
    from hwsched.cli.graphs import candidate_placement
    from hwsched.documents.analysis import AnalysisDocument
    from hwsched.errors import DocumentError
    from hwsched.load import load_model

    _, doc, _ = analyses
    graph = load_model(str(balanced_file)).graph
    rank = next(c["rank"] for c in doc["candidates"] if c["placement"] == "graph")
    listed = AnalysisDocument.from_dict(doc).candidate(rank)
    placement, _ = candidate_placement(listed, graph, "a.json")
    assert [s.board for s in placement.stages] == [s.board for s in listed.stages]
    edited = json.loads(json.dumps(doc))
    entry = next(c for c in edited["candidates"] if c["rank"] == rank)
    entry["edges"][0]["tensors"] = ["logits"]
    tampered = AnalysisDocument.from_dict(edited).candidate(rank)
    with pytest.raises(DocumentError, match=f"candidate {rank}: its stages do not give the edges"):
        candidate_placement(tampered, graph, "a.json")


# -- 2. the report draws the stage graph -------------------------------------------------------
class _Drawing(HTMLParser):
    """Stage boxes and edge arrows inside one ``<svg id=...>`` of a page, by their markup."""

    def __init__(self, svg_id: str) -> None:
        super().__init__()
        self.svg_id, self.inside = svg_id, False
        self.stages: list[int] = []
        self.edges: list[tuple[int, int]] = []
        self.critical_stages: list[int] = []
        self.critical_edges: list[tuple[int, int]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.inside = a.get("id") == self.svg_id
        if not self.inside or tag != "g":
            return
        classes = (a.get("class") or "").split()
        if "sg-stage" in classes:
            self.stages.append(int(a["data-stage"]))
            if "critical" in classes:
                self.critical_stages.append(int(a["data-stage"]))
        if "sg-edge" in classes:
            edge = (int(a["data-from"]), int(a["data-to"]))
            self.edges.append(edge)
            if "critical" in classes:
                self.critical_edges.append(edge)

    def handle_endtag(self, tag):
        if tag == "svg":
            self.inside = False


def _drawn(page: str, svg_id: str) -> _Drawing:
    parser = _Drawing(svg_id)
    parser.feed(page)
    return parser


def _longest_path_ms(record) -> float:
    """Every path from a stage without inputs to one without outputs, enumerated."""
    ms = {s["index"]: s["latency_ms"] for s in record["stages"]}
    out = {i: [(e["to"], e["latency_ms"]) for e in record["edges"] if e["from"] == i] for i in ms}
    starts = set(ms) - {e["to"] for e in record["edges"]}

    def walk(i):
        return ms[i] + max((t + walk(j) for j, t in out[i]), default=0.0)

    return max(walk(i) for i in starts)


def test_the_report_draws_the_best_graph_candidate(analyses):
    from hwsched.report.html import render_html

    chain_doc, doc, _ = analyses
    best = next(c for c in doc["candidates"] if c["placement"] == "graph")
    drawn = _drawn(render_html(doc), "stage-graph-best")
    assert sorted(drawn.stages) == [s["index"] for s in best["stages"]]
    assert sorted(drawn.edges) == sorted((e["from"], e["to"]) for e in best["edges"])
    # the highlighted path is a path, and its time is the longest of all paths
    on_path = drawn.critical_stages
    assert list(itertools.pairwise(on_path)) == drawn.critical_edges
    ms = {s["index"]: s["latency_ms"] for s in best["stages"]}
    edge_ms = {(e["from"], e["to"]): e["latency_ms"] for e in best["edges"]}
    total = sum(ms[i] for i in on_path) + sum(edge_ms[e] for e in drawn.critical_edges)
    assert total == pytest.approx(_longest_path_ms(best), rel=1e-9)
    # a chain-only analysis draws no stage graph: its page is the chain report it was
    page = render_html(chain_doc)
    assert "sg-stage" not in page and 'id="stage-graph' not in page


# -- 4. the graph search is exact over its stated space, on three boards ----------------------
THREE_BOARDS = (Board("pi", "rpi4"), Board("pi5", "rpi5"), Board("nano", "jetson_nano"))
#: A runner hand-off cost of the size measured on loopback (an 884 KB tensor: ~1.8 ms an end).
HANDOFF = RuntimeCost(frame_ms=0.05, per_byte_ms=2e-6)


def _fork_join(branches_per_block, layers_per_branch, residual, macs, widths):
    """The input, then fork-join blocks; returns the graph and each block's (branches, join)
    as built, the structure the search's space is stated over."""
    preds, last, blocks, k = [[]], 0, [], 0
    for count, residual_here in zip(branches_per_block, residual, strict=True):
        ends, branches = [], []
        for _ in range(count):
            prev, members = last, set()
            for _ in range(layers_per_branch[k % len(layers_per_branch)]):
                preds.append([prev])
                prev = len(preds) - 1
                members.add(prev)
            k += 1
            ends.append(prev)
            branches.append(frozenset(members))
        preds.append(sorted(ends + ([last] if residual_here else [])))
        last = len(preds) - 1
        blocks.append((tuple(branches), last))
    n = len(preds)
    graph = dag_graph(preds, widths=[widths[i % len(widths)] for i in range(n)],
                      macs=[0, *(macs[i % len(macs)] for i in range(n - 1))])
    return graph, blocks


def _space(boards, branches):
    """Every way the stated space places one fork-join block after the input: one board for
    the block, or a join board and a board per branch (branches on the join board in the
    join's stage, or in a stage of their own beside it)."""
    names = [b.name for b in boards]
    yield from (("whole", b) for b in names)
    for j in names:
        for spread in itertools.product(names, repeat=len(branches)):
            if any(o != j for o in spread):
                yield ("spread", j, spread, False)
                if j in spread:
                    yield ("spread", j, spread, True)


def _stages(blocks, choices, first_board):
    """Stages of one point of the space: consecutive blocks on one board share a stage."""
    stages = [(first_board, {0})]
    for (branches, join), choice in zip(blocks, choices, strict=True):
        if choice[0] == "whole":
            layers = set().union(*branches) | {join}
            if stages[-1][0] == choice[1]:
                stages[-1][1].update(layers)
            else:
                stages.append((choice[1], layers))
            continue
        _, j, spread, split_local = choice
        join_stage = {join}
        for board in dict.fromkeys(spread):
            mine = set().union(*(b for b, on in zip(branches, spread, strict=True) if on == board))
            if board != j or split_local:
                stages.append((board, mine))
            else:
                join_stage |= mine
        stages.append((j, join_stage))
    return [Stage(b, frozenset(s)) for b, s in stages]


def _dp_sum(costs, found, first, choices) -> float:
    """What the search's dynamic program adds up for one point of the space, block by block."""
    total, here = gs._chain_step(costs, found[0], None, first), first
    for block, choice in zip(found[1:], choices, strict=True):
        if choice[0] == "whole":
            total += gs._chain_step(costs, block, here, choice[1])
            here = choice[1]
        else:
            total += gs._parallel_step(costs, block, here, gs._Choice(*choice[1:]))
            here = choice[1]
    return total + costs.sink_ms[here]  # the last stage's hand-off to the sink


def _brute_force_latency(graph, blocks, coster, boards=THREE_BOARDS) -> float:
    """The evaluator's latency of every point of the space; each must also be what the
    dynamic program adds up for it (latency is additive over blocks in the space)."""
    best = math.inf
    found = find_blocks(graph)
    costs = gs._Costs(coster, boards)
    per_block = [list(_space(boards, branches)) for branches, _ in blocks]
    for first in boards:
        for choices in itertools.product(*per_block):
            stages = _stages(blocks, choices, first.name)
            placement = placement_from_stages(graph, boards, stages)
            latency = coster.evaluate(placement).latency_ms
            assert _dp_sum(costs, found, first.name, choices) == pytest.approx(latency, rel=1e-9)
            best = min(best, latency)
    return best


def _check_exact(graph, blocks, runtime=None, boards=THREE_BOARDS, same_core=None):
    found = find_blocks(graph)
    assert [(b.first, b.stop, b.join) for b in found[:1]] == [(0, 1, None)]
    assert [(b.branches, b.join) for b in found[1:]] == blocks
    coster = PlacementCoster(graph, boards, "gige", runtime=runtime,
                             same_core_runtime=same_core)
    report = search_graph_placements(coster, boards)
    oracle = _brute_force_latency(graph, blocks, coster, boards)
    assert report.latency_optimum_ms == pytest.approx(oracle, rel=1e-9)
    assert min(c.latency_ms for c in report.candidates) == pytest.approx(oracle, rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 3), st.lists(st.integers(1, 2), min_size=3, max_size=3), st.booleans(),
       st.lists(st.integers(10, 40_000_000), min_size=4, max_size=4),
       st.lists(st.integers(1, 200_000), min_size=3, max_size=3),
       st.sampled_from([None, HANDOFF]))
def test_graph_search_is_exact_on_three_boards(branches, layers, residual, macs, widths,
                                               runtime):
    graph, blocks = _fork_join([branches], layers, [residual], macs, widths)
    _check_exact(graph, blocks, runtime)


@pytest.mark.parametrize("runtime", [None, HANDOFF])
def test_graph_search_is_exact_over_two_blocks_on_three_boards(runtime):
    graph, blocks = _fork_join([2, 2], [1, 2], [False, True],
                               [30_000_000, 4_000_000, 25_000_000, 900_000], [64, 5000, 120_000])
    _check_exact(graph, blocks, runtime)


#: Boards of one CPU each, and a same-core hop dearer than HANDOFF's (wire 0): every hop inside
#: a board, and the source's and the sink's, take it (the evaluator's rule).
ONE_CPU_BOARDS = tuple(Board(b.name, b.platform, (0,)) for b in THREE_BOARDS)
SAME_CORE = RuntimeCost(frame_ms=0.05, per_byte_ms=2e-6, wire_frame_ms=0.4,
                        wire_per_byte_ms=1e-6)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 2), min_size=3, max_size=3),
       st.lists(st.integers(10, 40_000_000), min_size=4, max_size=4),
       st.lists(st.integers(1, 200_000), min_size=3, max_size=3))
def test_graph_search_is_exact_with_same_core_hops_on_one_cpu_boards(layers, macs, widths):
    # the DP priced every hop inside a board and the source/sink hops with the cross-core
    # wire part while the evaluator charged the same-core one: its optimum sat below
    graph, blocks = _fork_join([2], layers, [False], macs, widths)
    _check_exact(graph, blocks, HANDOFF, ONE_CPU_BOARDS, SAME_CORE)


# -- 6. the runner's hand-off cost on every graph edge ------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.integers(4, 30), st.integers(0, 50), st.integers(1, 3), st.data())
def test_a_chain_placement_pays_the_runtime_cost_the_chain_pays(n_layers, seed, k, data):
    from hwsched.schedule import evaluate
    from hwsched.schedule.refine import with_runtime_cost
    from hwsched.schedule.synthetic import synthetic_graph

    graph = synthetic_graph(n_layers, seed=seed)
    cuts = tuple(sorted(data.draw(st.sets(st.integers(1, n_layers - 1), min_size=k - 1,
                                          max_size=k - 1))))
    platforms = ["rpi4", "jetson_nano", "rpi5"][:k]
    chain = with_runtime_cost(graph, evaluate(graph, platforms, "gige", cuts), HANDOFF)
    boards = tuple(Board(p, p) for p in platforms)
    coster = PlacementCoster(graph, boards, "gige", runtime=HANDOFF)
    cost = coster.evaluate(chain_placement(graph, boards, cuts))
    assert [s.compute_ms for s in cost.stages] == pytest.approx(
        [s.cost.latency_ms for s in chain.stages], rel=1e-9)
    assert cost.latency_ms == pytest.approx(chain.latency_ms, rel=1e-9)
    assert cost.period_ms == pytest.approx(chain.period_ms, rel=1e-9)


def test_every_graph_edge_costs_an_end_on_both_cores():
    # x -> s -> (a, b) -> add; b on board q, the rest on p (a in a stage of its own)
    graph = dag_graph([[], [0], [1], [1], [2, 3]], widths=[100, 1000, 3000, 5000, 7],
                      macs=[0, 10, 50_000_000, 50_000_000, 10])
    boards = (Board("p", "rpi4"), Board("q", "rpi4"))
    stages = [Stage("p", {0, 1}), Stage("p", {2}), Stage("q", {3}), Stage("p", {4})]
    placement = placement_from_stages(graph, boards, stages)
    plain = PlacementCoster(graph, boards, "gige").evaluate(placement)
    cost = PlacementCoster(graph, boards, "gige", runtime=HANDOFF).evaluate(placement)

    def end(floats):
        return 0.05 + 4 * floats * 2e-6

    expected = [
        2 * end(100) + 2 * end(1000),  # source + own end of x; s sent to stages 1 and 2
        end(1000) + end(3000),          # receives s, sends a
        end(1000) + end(5000),          # receives s, sends b (over the link)
        end(3000) + end(5000) + 2 * end(7),  # receives a and b; hands the output to the sink
    ]
    assert [s.runtime_ms for s in cost.stages] == pytest.approx(expected, rel=1e-9)
    assert [s.compute_ms - p.compute_ms for s, p in zip(cost.stages, plain.stages,
                                                        strict=True)] == pytest.approx(expected)
    link = [e.latency_ms for e in plain.edges]  # (0,1), (0,2), (1,3), (2,3)
    t = [s.compute_ms for s in cost.stages]
    longest = t[0] + max(link[0] + t[1] + link[2], link[1] + t[2] + link[3]) + t[3]
    assert cost.latency_ms == pytest.approx(longest, rel=1e-9)


def test_an_edge_inside_one_board_waits_the_hand_offs_wire_part():
    # as above; a paced hop's wire part (wake-ups between the two runners' shares) is charged
    # on the edges inside board p, which use no link: latency grows, busy time does not
    graph = dag_graph([[], [0], [1], [1], [2, 3]], widths=[100, 1000, 3000, 5000, 7],
                      macs=[0, 10, 50_000_000, 50_000_000, 10])
    boards = (Board("p", "rpi4"), Board("q", "rpi4"))
    stages = [Stage("p", {0, 1}), Stage("p", {2}), Stage("q", {3}), Stage("p", {4})]
    placement = placement_from_stages(graph, boards, stages)
    paced = RuntimeCost.asymmetric(sender=(0.05, 2e-6), receiver=(0.05, 2e-6),
                                   wire=(0.3, 1e-4))
    ends_only = RuntimeCost.asymmetric(sender=(0.05, 2e-6), receiver=(0.05, 2e-6))
    cost = PlacementCoster(graph, boards, "gige", runtime=paced).evaluate(placement)
    base = PlacementCoster(graph, boards, "gige", runtime=ends_only).evaluate(placement)
    wire = {(0, 1): 0.3 + 4 * 1000 * 1e-4, (1, 3): 0.3 + 4 * 3000 * 1e-4}  # float32 bytes
    for edge, before in zip(cost.edges, base.edges, strict=True):
        inside = (edge.source, edge.target) in wire
        assert edge.link is None if inside else edge.link == "gige"
        assert edge.latency_ms == pytest.approx(wire.get((edge.source, edge.target),
                                                         before.latency_ms), rel=1e-9)
    t = [s.compute_ms for s in base.stages]
    link = {(e.source, e.target): e.latency_ms for e in base.edges}
    longest = t[0] + max(wire[(0, 1)] + t[1] + wire[(1, 3)],
                         link[(0, 2)] + t[2] + link[(2, 3)]) + t[3]
    source_sink = (0.3 + 4 * 100 * 1e-4) + (0.3 + 4 * 7 * 1e-4)  # hops on boards p too
    assert cost.latency_ms == pytest.approx(longest + source_sink, rel=1e-9)
    assert cost.period_ms == pytest.approx(base.period_ms, rel=1e-9)
    assert dict(cost.busy_ms) == pytest.approx(dict(base.busy_ms), rel=1e-9)


# -- 5. link emulation of a stage-graph plan: one namespace per board ---------------------------
SLOW_LINK = link_yaml("slow1m", 1_000_000, 1.0)
LINK_FRAMES = 24


def _namespaces() -> set[str]:
    import subprocess

    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


@pytest.mark.network
def test_link_emulation_runs_a_stage_graph_one_namespace_per_board(tmp_path):
    import numpy as np

    from hwsched.runtime.linkemu import available

    if available():
        pytest.skip(available())
    from hwsched.export.graph import export_placement
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model
    from hwsched.mapping import parse_mapping, resolve_mapping
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from tests.placement_models import BRANCH_PARALLEL_MAPPING, two_branch_model

    link = tmp_path / "slow1m.yaml"
    link.write_text(SLOW_LINK)
    model = two_branch_model(size=8, channels=8)
    graph, binding = read_keras_model(model, "two_branch", source="two_branch_model")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    plan_dir = tmp_path / "plan"
    placement = resolve_mapping(parse_mapping(BRANCH_PARALLEL_MAPPING, "mapping"), graph)
    export_placement(loaded, placement, plan_dir, link=str(link), samples=2, cache=False)
    x = np.random.default_rng(5).random((LINK_FRAMES, 8, 8, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    from hwsched.errors import BandwidthScheduleError
    from hwsched.runtime.linkemu import BandwidthStep

    mine = f"hwg{os.getpid()}"  # the tag of the namespaces this process creates
    fading = EmulationConfig(frames=LINK_FRAMES, link_emulation=True, link=str(link),
                             bandwidth_schedule=(BandwidthStep(0.5, 2.0),))
    with pytest.raises(BandwidthScheduleError, match="stage-graph plan"):
        emulate(plan_dir, fading)  # refused before anything starts
    assert not [ns for ns in _namespaces() if ns.startswith(mine)]
    run = emulate(plan_dir, EmulationConfig(frames=LINK_FRAMES, link_emulation=True,
                                            link=str(link), data=str(tmp_path / "x.npy")))
    assert run.complete and run.in_order
    reference = np.stack([np.asarray(model(x[i:i + 1])) for i in range(LINK_FRAMES)])
    np.testing.assert_allclose(run.outputs["logits"], reference, rtol=1e-4, atol=1e-5)
    # four stages on two boards: two namespaces; stem's output crosses to pi_b and b1's back,
    # each 8x8x8 float32 = 2048 bytes a frame through a 1 Mbit/s veth each way
    assert len(run.link_emulation["namespaces"]) == 2
    assert all(ns.startswith(mine) for ns in run.link_emulation["namespaces"])
    crossing = [h for h in run.hops if h.name in ("stage0→stage2", "stage2→stage3")]
    assert [round(h.payload_bytes_per_frame) for h in crossing] == [2048, 2048]
    assert run.throughput_ips <= 1.15 * 1_000_000 / 8 / 2048
    # namespaces (and the veths in them) are gone; other runs on this machine may add theirs
    assert not set(run.link_emulation["namespaces"]) & _namespaces()
