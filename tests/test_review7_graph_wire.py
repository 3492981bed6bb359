"""``analyze --placement graph --compress fp32,fp16``: chain candidates may send their links as
fp16 while a stage-graph plan can only send tensors as made (its plans refuse compressed links),
so graph candidates are priced as made and the ranking says so — per edge, per ranked row, in
the ``compression`` section and in one line of the output.

Failed before the fix: nothing in the JSON or the table told an fp16 chain from an as-made
graph candidate ranked beside it (graph edges had no ``compression``, ranking rows neither)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from hwsched.cli import main


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    from tests.placement_models import two_branch_model

    root = tmp_path_factory.mktemp("wire")
    model = root / "two_branch.keras"
    two_branch_model(size=32, channels=64).save(model)
    out, printed = root / "a.json", io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["analyze", str(model), "--platforms", "rpi4,rpi4", "--placement", "graph",
                     "--precision", "fp32", "--compress", "fp32,fp16", "--objective",
                     "latency", "--no-report", "--json", str(out)]) == 0
    return {**json.loads(out.read_text()), "printed": printed.getvalue()}


def _fp32_bytes(document, tensors) -> int:
    """The oracle: each tensor's float32 size from its shape in the analysis's layer table."""
    shapes = {t["name"]: t["shape"] for layer in document["layers"] for t in layer["outputs"]}
    return sum(4 * math.prod(shapes[name]) for name in tensors)


def test_graph_edges_are_priced_and_marked_as_made(analysed):
    graphs = [c for c in analysed["candidates"] if c["placement"] == "graph"]
    crossing = [e for c in graphs for e in c["edges"] if e["link"] is not None]
    assert crossing, "the test needs a graph candidate with an edge between two boards"
    for edge in (e for c in graphs for e in c["edges"]):
        assert edge["compression"] == "fp32"
    for edge in crossing:
        assert edge["transfer_bytes"] == _fp32_bytes(analysed, edge["tensors"])


def test_the_ranking_says_which_rows_are_compressed(analysed):
    chains = [c for c in analysed["candidates"] if c["placement"] == "chain" and c["links"]]
    assert any(link["compression"] == "fp16" for c in chains for link in c["links"])
    rows = analysed["placement_ranking"]
    by_rank = {c["rank"]: c for c in analysed["candidates"]}
    for row in rows:
        candidate = by_rank[row["rank"]]
        levels = ({e["compression"] for e in candidate["edges"]} if row["kind"] == "graph"
                  else {link["compression"] for link in candidate["links"]})
        expected = "fp16" if "fp16" in levels else "fp32"
        assert row["compression"] == expected
    assert {r["compression"] for r in rows if r["kind"] == "graph"} == {"fp32"}
    assert "fp16" in {r["compression"] for r in rows if r["kind"] == "chain"}


def test_the_document_and_the_output_state_it(analysed):
    section = analysed["compression"]
    assert section["graph_levels"] == ["fp32"]
    assert "graph candidates are priced with their edges as made (fp32)" in section["graph_note"]
    assert "fp16" in section["graph_note"]
    printed = " ".join(analysed["printed"].split())  # the terminal wraps long lines
    assert " ".join(section["graph_note"].split()) in printed
    assert "wire" in printed  # the joint table's column
