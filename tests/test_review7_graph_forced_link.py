"""Stage graphs over a link that forces an encoding: stage-graph plans send tensors as made
(a compressed link in one is refused), so such a link cannot carry them. ``analyze`` does not
price them there and ``export`` does not write them, each in one line before the model loads.

Failed before the fix: ``analyze`` priced a stage graph's edges (a ``--mapping``'s, checked by
hand: every edge ``float16``) at the link's fp16, while the exported graph plan sends float32
(and ``export --mapping`` wrote it)."""

from __future__ import annotations

import json

import pytest
import yaml
from testlinks import link_yaml

from hwsched.cli import main


@pytest.fixture
def fp16_link(tmp_path):
    link = tmp_path / "fp16_link.yaml"
    link.write_text(link_yaml("fp16_link", 100_000_000, 0.1) + "encoding: fp16\n")
    return link


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("option", [["--placement", "graph"], ["--tiles"]])
def test_analyze_refuses_stage_graphs_over_it(tmp_path, fp16_link, capsys, option):
    argv = ["analyze", str(tmp_path / "absent.keras"), "--platforms", "rpi4,rpi4", "--link",
            str(fp16_link), "--no-report", *option]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert "sends tensors as fp16 only" in line and "as made" in line and option[0] in line


def test_export_refuses_a_mapping_over_it(tmp_path, fp16_link, capsys):
    from tests.placement_models import BRANCH_PARALLEL_MAPPING

    mapping = tmp_path / "m.yaml"
    mapping.write_text(yaml.safe_dump({**BRANCH_PARALLEL_MAPPING, "link": str(fp16_link)}))
    argv = ["export", str(tmp_path / "absent.keras"), "--mapping", str(mapping), "--out",
            str(tmp_path / "plan")]
    assert main(argv) == 2
    assert "--mapping: link" in _one_line(capsys)
    assert not (tmp_path / "plan").exists()


def test_a_chain_analysis_over_it_still_runs(tmp_path, fp16_link):
    out = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--link", str(fp16_link),
                 "--no-report", "--json", str(out)]) == 0
    links = [lk for c in json.loads(out.read_text())["candidates"] for lk in c["links"]]
    assert links and {lk["dtype"] for lk in links} == {"float16"}
