"""``export --compress auto`` over a link descriptor that forces an ``encoding``: the link sends
that level and no other, so the plan's links carry the link's level, not the one ``auto``
measures best; another explicit level is one error line before the model loads.

Failed before the fix: ``auto`` measured every level and chose int8 (within a 100 pp drop) for
a link that only sends fp16; ``--compress int8`` was exported the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
from testlinks import link_yaml

from hwsched.cli import main
from hwsched.deployment import load_plan


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def fp16_link(tmp_path) -> Path:
    link = tmp_path / "fp16_link.yaml"
    link.write_text(link_yaml("fp16_link", 100_000_000, 0.1) + "encoding: fp16\n")
    return link


def test_auto_takes_the_links_forced_level(tmp_path, fp16_link, capsys):
    out = tmp_path / "plan"
    argv = ["export", "digits_cnn", "--cuts", "res_add", "--platforms", "rpi4,rpi4",
            "--precision", "fp32", "--link", str(fp16_link), "--compress", "auto",
            "--max-accuracy-drop", "100", "--out", str(out), "--samples", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    plan = load_plan(out)
    assert [lk.compression for lk in plan.links] == ["fp16"]
    assert plan.verification.passed


def test_another_level_is_refused_before_the_model_loads(tmp_path, fp16_link, capsys):
    argv = ["export", str(tmp_path / "absent.keras"), "--cuts", "x", "--platforms",
            "rpi4,rpi4", "--link", str(fp16_link), "--compress", "int8",
            "--out", str(tmp_path / "plan")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compress int8" in err[0] and "as fp16 only" in err[0]
