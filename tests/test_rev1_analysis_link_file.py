"""``export --analysis A --candidate N`` of an analysis made over a link descriptor *file*: the
analysis records the link by its name, which is in no registry, so the export takes the same
file again with ``--link FILE`` (refused when its name differs). Over a link that forces an
encoding the plan then sends the level the analysis priced, without measuring accuracy (the
link can send nothing else), and predicts the analysis's own figures.

Failed before the fix: ``--link FILE`` was refused as contradicting the analysis (a path is not
the name it recorded) and without it the export stopped on "unknown link", so no analysis over
a descriptor file — every forced-encoding link is one — could be exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testlinks import link_yaml

from hwsched.cli import main
from hwsched.deployment import load_plan

FIGURES = ("latency_ms", "period_ms", "throughput_ips", "energy_mj")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


def _analysis(tmp_path: Path, link: Path, model: str = "digits_cnn") -> tuple[Path, dict]:
    out = tmp_path / "a.json"
    assert main(["analyze", model, "--platforms", "rpi4,rpi4", "--precision", "fp32",
                 "--link", str(link), "--no-report", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    candidate = next(c for c in document["candidates"] if c["links"] and c["feasible"])
    return out, candidate


@pytest.mark.parametrize("encoding", ["", "fp16"])
def test_the_same_file_exports_the_candidate_as_analysed(tmp_path, capsys, encoding):
    link = tmp_path / "test_link.yaml"
    link.write_text(link_yaml("test_link", 100_000_000, 0.1)
                    + (f"encoding: {encoding}\n" if encoding else ""))
    path, candidate = _analysis(tmp_path, link)
    out = tmp_path / "plan"
    argv = ["export", "digits_cnn", "--analysis", str(path), "--candidate",
            str(candidate["rank"]), "--link", str(link), "--out", str(out), "--samples", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    plan = load_plan(out)
    # oracle: the exported plan's links (what the runner sends) against what was ranked
    assert [lk.compression for lk in plan.links] == [lk["compression"] for lk in
                                                     candidate["links"]]
    assert [lk.transfer_bytes for lk in plan.links] == [lk["transfer_bytes"] for lk in
                                                        candidate["links"]]
    assert [lk.compression for lk in plan.links] == [encoding or "fp32"]
    assert {k: plan.prediction[k] for k in FIGURES} == {k: candidate[k] for k in FIGURES}
    assert plan.verification.passed


def test_a_model_without_labels_over_a_forced_link(tmp_path, capsys):
    """The link decides the level: nothing is measured, so no labeled data is needed."""
    from kerasmodels import residual_se_model

    model = tmp_path / "res_se.keras"
    residual_se_model().save(model)
    link = tmp_path / "test_link.yaml"
    link.write_text(link_yaml("test_link", 100_000_000, 0.1) + "encoding: fp16\n")
    path, candidate = _analysis(tmp_path, link, str(model))
    out = tmp_path / "plan"
    argv = ["export", str(model), "--analysis", str(path), "--candidate",
            str(candidate["rank"]), "--link", str(link), "--out", str(out), "--samples", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    plan = load_plan(out)
    assert [lk.compression for lk in plan.links] == ["fp16"] * len(candidate["links"])
    assert plan.verification.passed


def test_a_file_of_another_link_is_refused(tmp_path, capsys):
    link, other = tmp_path / "test_link.yaml", tmp_path / "other_link.yaml"
    link.write_text(link_yaml("test_link", 100_000_000, 0.1))
    other.write_text(link_yaml("other_link", 100_000_000, 0.1))
    path, candidate = _analysis(tmp_path, link)
    capsys.readouterr()
    argv = ["export", "digits_cnn", "--analysis", str(path), "--candidate",
            str(candidate["rank"]), "--link", str(other), "--out", str(tmp_path / "plan")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--link contradicts" in err[0]
    assert not (tmp_path / "plan").exists()
