"""Review of ``gap_ms`` in profile documents (issues 13/14): a profile written before it
still reads (None), and a negative gap — no idle lasts less than nothing — is refused in one
line naming the file and the field, as a negative latency is, not taken for a paced profile
(which silenced analyze's note on a back-to-back profile)."""

from __future__ import annotations

import json

import pytest

from hwsched.costs.profile import parse_profile
from hwsched.errors import ProfileError

BASE = {"model": "m", "platform": "rpi4", "layers": [{"name": "a", "latency_ms": 0.1}]}


def test_a_profile_without_gap_ms_reads_and_a_paced_one_keeps_it():
    assert parse_profile(BASE, "old.json").gap_ms is None
    assert parse_profile({**BASE, "gap_ms": 0}, "b2b.json").gap_ms == 0
    assert parse_profile({**BASE, "gap_ms": 20.0}, "paced.json").gap_ms == 20.0


def test_a_negative_gap_is_refused_naming_file_and_field():
    with pytest.raises(ProfileError, match=r"neg\.json.*'gap_ms' must be >= 0, got -5"):
        parse_profile({**BASE, "gap_ms": -5}, "neg.json")


def test_analyze_refuses_a_negative_gap_in_one_line(tmp_path, capsys):
    from hwsched.cli import main
    from hwsched.load import load_model

    graph = load_model("digits_cnn").graph
    path = tmp_path / "neg.profile.json"
    path.write_text(json.dumps({
        "model": graph.name, "platform": "rpi4", "gap_ms": -5,
        "layers": [{"name": layer.name, "latency_ms": 0.1} for layer in graph.layers]}))
    code = main(["analyze", "digits_cnn", "--platforms", "rpi4,rpi4", "--profile", str(path),
                 "--objective", "latency", "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "gap_ms" in err[0] and str(path) in err[0], err
