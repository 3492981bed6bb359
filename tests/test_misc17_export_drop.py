"""``export --analysis A --candidate N --max-accuracy-drop PP`` with a drop that is no bound
(negative, not finite) is refused in one line before the model loads.

Failed before: the drop was checked only when export built its compression request, after
the model had loaded (here: the absent model file was reported instead of the drop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsched.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("drop", ["-1", "nan"])
def test_a_bad_drop_is_refused_before_the_model_loads(tmp_path, capsys, drop):
    path = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--precision", "fp32",
                 "--link", "wifi", "--compress", "fp32,fp16", "--no-report",
                 "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    rank = next(c["rank"] for c in document["candidates"] if c["feasible"]
                and any(lk["compression"] == "fp16" for lk in c["links"]))
    document["model"] = "absent"
    path.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "absent.keras"), "--analysis", str(path),
                 "--candidate", str(rank), "--max-accuracy-drop", drop,
                 "--out", str(tmp_path / "plan")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-accuracy-drop" in err[0] and "absent" not in err[0], err
