"""Issue 13's remaining gaps: mapping errors before the ranking, the stage graph drawn in the
report, graph candidates in ``candidates``, exactness on three boards, hand-off costs on edges.
"""

from __future__ import annotations

import pytest
import yaml

from hwsched.cli import main


@pytest.fixture(scope="module")
def two_branch_file(tmp_path_factory):
    from tests.placement_models import two_branch_model

    path = tmp_path_factory.mktemp("models") / "two_branch.keras"
    two_branch_model(size=16, channels=16, depth=2).save(path)
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
