"""A link descriptor that forces an ``encoding`` makes the export compress every link to that
level (``link_encoding_request``: the plan's links say ``compression: fp16`` and the runner
converts each tensor), so the ranking must price and label its links as that level: the same
bytes, the same conversion and the same ``compression`` as ``--compress fp16`` over the same
link unforced; and an int8 stage's output travels as it is (int8 is not widened to fp16).

Failed before the fix: over a forced fp16 link each chain link said ``compression: fp32`` (the
exported plan's says fp16), left the fp16 conversion out of its latency, and an int8 head's
link was priced at two bytes an element (float16) while the runner sends its int8 as made."""

from __future__ import annotations

import math

import pytest
from testlinks import link_yaml

from hwsched.cuts import enumerate_cuts
from hwsched.hardware import load_link
from hwsched.schedule import rank_splits
from hwsched.schedule.synthetic import synthetic_graph


@pytest.fixture
def links(tmp_path):
    plain, forced = tmp_path / "plain_link.yaml", tmp_path / "fp16_link.yaml"
    plain.write_text(link_yaml("plain_link", 100_000_000, 0.1))
    forced.write_text(link_yaml("fp16_link", 100_000_000, 0.1) + "encoding: fp16\n")
    return load_link(plain), load_link(forced)


def _links_by_cut(ranking) -> dict[int, object]:
    return {c.cut_positions[0]: c.links[0] for c in ranking.candidates if c.links}


def _asked_and_made(graph, links, precision: str):
    """Each cut's link ranked over the plain link with ``--compress fp16`` (asked) and over
    the link that forces fp16 (made)."""
    plain, forced = links
    asked = _links_by_cut(rank_splits(graph, ["rpi4", "rpi4"], plain, precision=precision,
                                      stages=2, compression=("fp16",)))
    made = _links_by_cut(rank_splits(graph, ["rpi4", "rpi4"], forced, precision=precision,
                                     stages=2))
    return asked, made


def test_a_forced_link_is_priced_as_its_level(links):
    graph = synthetic_graph(10, seed=2)
    asked, made = _asked_and_made(graph, links, "fp32")
    assert asked and asked.keys() == made.keys()
    for cut, link in made.items():
        assert link.compression == "fp16"
        assert (link.dtype, link.transfer_bytes) == (asked[cut].dtype, asked[cut].transfer_bytes)
        assert link.latency_ms == pytest.approx(asked[cut].latency_ms)


def test_an_int8_head_sends_int8_over_a_forced_fp16_link(links):
    graph = synthetic_graph(10, seed=2)
    asked, made = _asked_and_made(graph, links, "int8")
    inputs = {t.name for layer in graph.input_layers for t in layer.outputs}
    checked = 0
    for cut in enumerate_cuts(graph):
        link = made[cut.head_layers]
        assert (link.dtype, link.transfer_bytes) == (asked[cut.head_layers].dtype,
                                                     asked[cut.head_layers].transfer_bytes)
        if not inputs & {t.name for t in cut.crossing}:  # the oracle: one byte an element
            assert link.transfer_bytes == sum(math.prod(t.shape) for t in cut.crossing)
            checked += 1
    assert checked
