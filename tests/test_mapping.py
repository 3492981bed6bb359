"""Mapping files: patterns, and one clear line for every mistake the issue lists."""

from __future__ import annotations

import json

import pytest

from hwsched.errors import PlacementError
from hwsched.mapping import match_pattern, read_mapping, resolve_mapping
from tests.irgraphs import dag_graph

# n0 -> n1 -> {n2, n3} ; n2 -> n4 ; n3 -> n5 ; n4, n5 -> n6
FORK = [[], [0], [1], [1], [2], [3], [4, 5]]


def _write(tmp_path, data, suffix=".yaml"):
    import yaml

    path = tmp_path / f"m{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    return path


def _mapping(stages, boards=None, **extra):
    boards = boards or [{"name": "a", "platform": "rpi4", "cores": [0, 1]},
                        {"name": "b", "platform": "jetson_nano"}]
    return {"boards": boards, "stages": stages, **extra}


def test_patterns_ranges_globs_and_rest(tmp_path):
    g = dag_graph(FORK)
    path = _write(tmp_path, _mapping([{"board": "a", "layers": ["n0..n2", "n4"]},
                                      {"board": "b", "layers": ["rest"]}], link="gige"))
    placement = resolve_mapping(read_mapping(path), g)
    layers = [sorted(g.layers[p].name for p in s.layers) for s in placement.stages]
    assert layers == [["n0", "n1", "n2", "n4"], ["n3", "n5", "n6"]]
    assert [(e.source, e.target, e.tensor_names) for e in placement.edges] == [
        (0, 1, ("n1", "n4"))
    ]
    assert sorted(match_pattern(g, "n[35]")) == [3, 5]


def test_json_mapping_reads_like_yaml(tmp_path):
    g = dag_graph(FORK)
    data = _mapping([{"board": "a", "layers": ["n0", "n1"]}, {"board": "b", "layers": ["rest"]}])
    a = resolve_mapping(read_mapping(_write(tmp_path, data, ".json")), g)
    b = resolve_mapping(read_mapping(_write(tmp_path, data)), g)
    assert a.stages == b.stages and a.edges == b.edges


@pytest.mark.parametrize(
    ("stages", "boards", "message"),
    [
        ([{"board": "a", "layers": ["n0..n3"]}, {"board": "b", "layers": ["n3..n6"]}], None,
         r"layer 'n3' is in stages\[0\] and stages\[1\]"),
        ([{"board": "a", "layers": ["n0..n3"]}, {"board": "b", "layers": ["n5", "n6"]}], None,
         r"layer 'n4' \(1 layer\(s\) in all\) is in no stage"),
        ([{"board": "a", "layers": ["n0", "nope"]}, {"board": "b", "layers": ["rest"]}], None,
         r"stages\[0\]: 'nope' matches no layer"),
        ([{"board": "a", "layers": ["n0..zz"]}, {"board": "b", "layers": ["rest"]}], None,
         r"range 'n0..zz': unknown layer 'zz'"),
        ([{"board": "c", "layers": ["rest"]}], None, r"stages\[0\]: unknown board 'c'"),
        ([{"board": "a", "layers": ["rest"]}],
         [{"name": "a", "platform": "no_such_board"}], r"unknown platform 'no_such_board'"),
        ([{"board": "a", "layers": ["rest"]}, {"board": "b", "layers": ["rest"]}], None,
         r"'rest' is already in stages\[0\]"),
        # n0, n1, n4, n6 on a; n2 on b: a -> b (n1) and b -> a (n2): a cycle
        ([{"board": "a", "layers": ["n0", "n1", "n3..n6"]}, {"board": "b", "layers": ["n2"]}],
         None, r"the stages form a cycle: stage 0 \(a\) -> stage 1 \(b\) -> stage 0 \(a\)"),
    ],
)
def test_every_mapping_mistake_is_one_clear_line(tmp_path, stages, boards, message):
    g = dag_graph(FORK)
    with pytest.raises(PlacementError, match=message) as caught:
        resolve_mapping(read_mapping(_write(tmp_path, _mapping(stages, boards))), g)
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(PlacementError, match="mapping file does not exist"):
        read_mapping(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("boards: [\n")
    with pytest.raises(PlacementError, match="bad.yaml: mapping file is not valid"):
        read_mapping(bad)
    with pytest.raises(PlacementError, match=r"link: unknown link 'carrier_pigeon'"):
        read_mapping(_write(tmp_path, _mapping([{"board": "a", "layers": ["rest"]}],
                                               link="carrier_pigeon")))
    with pytest.raises(PlacementError, match=r"cores: must be a list"):
        read_mapping(_write(tmp_path, _mapping([{"board": "a", "layers": ["rest"],
                                                 "cores": [-1]}])))
