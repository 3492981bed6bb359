"""A link whose descriptor says ``encoding: fp32`` is exported like a native one: no
compression request (``link_encoding_request`` is None), so the runner sends each crossing
tensor as its stage made it — an int8 stage's output as int8. The analysis must price those
bytes. Failed before: ``encoding_dtype`` widened int8 crossing tensors to float32 on such a
link, so the analysis priced 4x the bytes the exported plan sends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testlinks import link_yaml

from hwsched.cli import main
from hwsched.deployment import load_plan


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSCHED_CACHE", str(tmp_path / "cache"))


def _analysis(tmp_path: Path, encoding: str) -> tuple[Path, Path, dict]:
    link = tmp_path / f"link_{encoding}.yaml"
    link.write_text(link_yaml("test_link", 100_000_000, 0.1)
                    + (f"encoding: {encoding}\n" if encoding else ""))
    out = tmp_path / f"a_{encoding}.json"
    assert main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--precision", "int8",
                 "--link", str(link), "--stages", "2", "--no-report", "--json", str(out)]) == 0
    return link, out, json.loads(out.read_text())


def _wire_bytes(document: dict) -> dict[tuple[int, ...], list[int]]:
    return {tuple(c["cut_positions"]): [lk["transfer_bytes"] for lk in c["links"]]
            for c in document["candidates"] if c["links"]}


def test_an_fp32_link_prices_what_the_runner_sends(tmp_path, capsys):
    link, path, document = _analysis(tmp_path, "fp32")
    _, _, native = _analysis(tmp_path, "")
    assert _wire_bytes(document) == _wire_bytes(native)  # as made, like a native link
    candidate = next(c for c in document["candidates"] if c["links"] and c["feasible"])
    out = tmp_path / "plan"
    assert main(["export", "digits_cnn", "--analysis", str(path), "--candidate",
                 str(candidate["rank"]), "--link", str(link), "--out", str(out),
                 "--samples", "4"]) == 0, capsys.readouterr().err
    plan = load_plan(out)
    # the oracle: what the exported plan sends across each link
    assert [lk.transfer_bytes for lk in plan.links] == [lk["transfer_bytes"] for lk in
                                                        candidate["links"]]
