"""One rule for the link a ``--mapping`` is priced over, in analyze as in export: a ``--link``
given on the command line wins, else the mapping's ``link``, else the default.

Failed before: ``analyze`` took the mapping's link first (a given ``--link`` was ignored for
the mapping, and a mapping naming a forced-encoding link was refused even with ``--link
gige``), while ``export --mapping`` took ``--link`` first."""

from __future__ import annotations

import json

import pytest
import yaml
from testlinks import link_yaml

from hwsched.cli import main


@pytest.fixture(scope="module")
def two_branch_file(tmp_path_factory):
    from tests.placement_models import two_branch_model

    path = tmp_path_factory.mktemp("models") / "two_branch.keras"
    two_branch_model(size=32, channels=64).save(path)
    return path


def _mapping(tmp_path, link: str):
    from tests.placement_models import BRANCH_PARALLEL_MAPPING

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**BRANCH_PARALLEL_MAPPING, "link": link}))
    return path


def _mapping_record(argv, out) -> dict:
    assert main([*argv, "--no-report", "--json", str(out)]) == 0
    return json.loads(out.read_text())["mapping"]


def test_a_given_link_wins_over_the_mappings(two_branch_file, tmp_path):
    mapping = _mapping(tmp_path, "eth100")
    argv = ["analyze", str(two_branch_file), "--platforms", "rpi4", "--mapping", str(mapping)]
    given = _mapping_record([*argv, "--link", "gige"], tmp_path / "given.json")
    assert given["link"] == "gige"
    assert _mapping_record(argv, tmp_path / "own.json")["link"] == "eth100"  # none given
    assert given["latency_ms"] < _mapping_record(argv, tmp_path / "own2.json")["latency_ms"]


def test_a_given_link_is_the_one_checked_for_a_forced_encoding(two_branch_file, tmp_path,
                                                                capsys):
    """The mapping names a link that forces fp16 (stage graphs cannot run over it); a given
    ``--link gige`` replaces it, so analyze prices the mapping on gige, as export sends it."""
    forced = tmp_path / "fp16_link.yaml"
    forced.write_text(link_yaml("fp16_link", 100_000_000, 0.1) + "encoding: fp16\n")
    mapping = _mapping(tmp_path, str(forced))
    argv = ["analyze", str(two_branch_file), "--platforms", "rpi4", "--mapping", str(mapping)]
    assert main([*argv, "--no-report"]) == 2  # the mapping's own link: refused in one line
    assert "as made" in capsys.readouterr().err
    assert _mapping_record([*argv, "--link", "gige"], tmp_path / "a.json")["link"] == "gige"
