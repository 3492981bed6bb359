"""``analyze --compress fp32,fp16`` then ``export --analysis A --candidate N``: the candidate's
links were ranked as fp16, so the plan must send them as fp16 (its prediction is the analysis's
own figures, priced with fp16 bytes on the wire).

Failed before the fix: the export read each link's level from the record's unknown fields
(``extra``), where ``compression`` never is (it is a declared field), so every analysed
candidate was exported uncompressed: float32 on the wire under an fp16 prediction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsched.cli import main
from hwsched.deployment import load_plan


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


def test_the_plan_sends_the_level_the_candidate_was_ranked_with(tmp_path, capsys):
    path = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--precision", "fp32",
                 "--link", "wifi", "--compress", "fp32,fp16", "--no-report",
                 "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    candidate = next(c for c in document["candidates"] if c["feasible"]
                     and any(lk["compression"] == "fp16" for lk in c["links"]))
    out = tmp_path / "plan"
    assert main(["export", "digits_cnn", "--analysis", str(path), "--candidate",
                 str(candidate["rank"]), "--out", str(out),
                 "--samples", "4"]) == 0, capsys.readouterr().err
    plan = load_plan(out)
    # the oracle: what the exported runner sends, against what the analysis ranked
    assert [lk.compression for lk in plan.links] == [lk["compression"] for lk in
                                                     candidate["links"]]
    assert [lk.transfer_bytes for lk in plan.links] == [lk["transfer_bytes"] for lk in
                                                        candidate["links"]]
    assert plan.verification.passed


def test_another_level_than_the_ranked_one_is_refused(tmp_path, capsys):
    """The plan predicts the analysis's figures, priced at the candidate's levels: another
    ``--compress`` would export links the prediction does not describe. One line, before the
    model loads (the model file does not even exist)."""
    path = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--precision", "fp32",
                 "--no-report", "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    document["model"] = "absent"  # the analysis of a model file that is not there
    path.write_text(json.dumps(document))
    rank = next(c["rank"] for c in document["candidates"] if c["links"])
    capsys.readouterr()
    argv = ["export", str(tmp_path / "absent.keras"), "--analysis", str(path), "--candidate",
            str(rank), "--compress", "fp16", "--out", str(tmp_path / "plan")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compress contradicts" in err[0] and "fp32" in err[0], err
    assert not (tmp_path / "plan").exists()
