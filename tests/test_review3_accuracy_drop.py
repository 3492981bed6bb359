"""``export --max-accuracy-drop`` without ``--compress``: it bounds the level an ``--analysis``
candidate was ranked with (export measures that level's accuracy and refuses it beyond the
drop), so it is taken there; where no measured level is chosen (a candidate sent fp32, a stage
graph, ``--adaptive``) it is refused in one line saying why, before the model loads.

Failed before: ``export --analysis A --candidate N --max-accuracy-drop PP`` of an fp16
candidate was refused ("give --compress too"), although the drop was exactly what bounded it;
``--adaptive`` and ``--mapping`` asked for ``--compress``, which they then refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsched.cli import main
from hwsched.deployment import load_plan


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


def _analysis(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--precision", "fp32",
                 "--link", "wifi", "--compress", "fp32,fp16", "--no-report",
                 "--json", str(path)]) == 0
    return path, json.loads(path.read_text())


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_the_drop_bounds_an_analysed_candidates_level(tmp_path, capsys):
    path, document = _analysis(tmp_path)
    candidate = next(c for c in document["candidates"] if c["feasible"]
                     and any(lk["compression"] == "fp16" for lk in c["links"]))
    out = tmp_path / "plan"
    assert main(["export", "digits_cnn", "--analysis", str(path), "--candidate",
                 str(candidate["rank"]), "--max-accuracy-drop", "7", "--out", str(out),
                 "--samples", "4"]) == 0, capsys.readouterr().err
    compression = load_plan(out).verification.compression
    assert compression["max_accuracy_drop_pp"] == 7 and compression["chosen"] == "fp16"


def test_refused_for_an_uncompressed_candidate_before_the_model_loads(tmp_path, capsys):
    path, document = _analysis(tmp_path)
    document["model"] = "absent"
    path.write_text(json.dumps(document))
    rank = next(c["rank"] for c in document["candidates"] if c["links"]
                and all(lk["compression"] == "fp32" for lk in c["links"]))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "absent.keras"), "--analysis", str(path),
                 "--candidate", str(rank), "--max-accuracy-drop", "1",
                 "--out", str(tmp_path / "plan")]) == 2
    line = _one_line(capsys)
    assert "--max-accuracy-drop" in line and "uncompressed (fp32)" in line, line


@pytest.mark.parametrize("option, why", [
    (["--adaptive", "2", "--platforms", "rpi4,rpi4"], "--adaptive exports its splits "
                                                      "uncompressed"),
    (["--mapping", "m.yaml"], "stage-graph exports"),
])
def test_refused_where_nothing_is_compressed_saying_why(tmp_path, capsys, option, why,
                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.yaml").write_text("boards: [{name: a, platform: rpi4}]\n"
                              "stages: [{board: a, layers: [rest]}]\n")
    assert main(["export", str(tmp_path / "absent.keras"), *option, "--max-accuracy-drop", "1",
                 "--out", str(tmp_path / "plan")]) == 2
    line = _one_line(capsys)
    assert why in line and "--max-accuracy-drop" in line and "give --compress" not in line
