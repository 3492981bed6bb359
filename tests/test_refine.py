"""Where stage times come from (``latency_source``) and ``--refine``: re-ranking on stage times
measured whole, each while its partner stage runs."""

from __future__ import annotations

import json

from hwsched.cli import main


def _profile(tmp_path, platform: str) -> str:
    path = tmp_path / f"{platform}.profile.json"
    path.write_text(json.dumps({
        "model": "digits_cnn", "platform": platform, "precision": "fp32",
        "segments": [
            {"first_layer": "image", "last_layer": "res_add", "latency_ms": 0.4},
            {"first_layer": "res_relu2", "last_layer": "classifier", "latency_ms": 0.2},
        ],
    }))
    return str(path)


def test_each_stage_names_where_its_time_came_from(tmp_path):
    out = tmp_path / "a.json"
    argv = ["analyze", "digits_cnn", "--platforms", "rpi4,rpi5", "--precision", "fp32",
            "--profile", _profile(tmp_path, "rpi4"), "--no-report", "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    runs = [*doc["candidates"], *doc["baselines"]]
    sources = {(s["platform"], s["latency_source"]) for run in runs for s in run["stages"]}
    assert sources == {("rpi4", "profile"), ("rpi5", "roofline")}
