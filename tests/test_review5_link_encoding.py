"""A link descriptor that forces an encoding, exported for a model without labeled data: the
link can send nothing else, so the export sends that encoding and proves the chain by its
outputs, rather than refusing for want of a dataset the user never asked to measure on."""

from __future__ import annotations

from pathlib import Path

import pytest
from kerasmodels import residual_se_model
from testlinks import link_yaml

from hwsched.cli import main
from hwsched.deployment import load_plan


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


def test_forced_encoding_link_exports_a_model_without_labels(tmp_path, capsys):
    model = tmp_path / "res_se.keras"
    residual_se_model().save(model)
    link = tmp_path / "fp16_link.yaml"
    link.write_text(link_yaml("fp16_link", 100_000_000, 0.1) + "encoding: fp16\n")
    out = tmp_path / "plan"
    argv = ["export", str(model), "--cuts", "res_add", "--platforms", "rpi4,rpi4",
            "--precision", "fp32", "--link", str(link), "--out", str(out), "--samples", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    plan = load_plan(out)
    assert [lk.compression for lk in plan.links] == ["fp16"]
    assert plan.verification.passed
