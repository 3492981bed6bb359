"""bench_placement's breakdown keeps milliseconds and counts apart (issue 13's review): the
involuntary context switches of a compute are a count, so they go to their own field, and
``measured_breakdown_ms`` holds milliseconds only. Oracle: events written by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_placement.py"
    spec = importlib.util.spec_from_file_location("bench_placement_breakdown", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    return bench


def _event(frame: int, cpu_s: float, switches: int) -> dict:
    return {"frame": frame, "stage": 0, "start_s": 10.0, "end_s": 10.008, "sent_s": 10.009,
            "read_s": {"source": 9.999}, "wire_s": {"source": 9.998}, "cpu_s": cpu_s,
            "voluntary_switches": 0, "involuntary_switches": switches, "minor_faults": 0}


def test_compute_switches_are_counted_apart_from_the_milliseconds(tmp_path):
    bench = _bench()
    events = [_event(0, 0.001, 90), _event(1, 0.006, 3), _event(2, 0.007, 5),
              _event(3, 0.005, 4)]  # frame 0: warm-up
    (tmp_path / "events0.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    ms = bench.latency_breakdown(tmp_path, warmup=1)
    assert ms == pytest.approx({"edge source->0": 1.0, "stage 0 join wait": 1.0,
                                "stage 0 compute": 8.0, "stage 0 compute cpu": 6.0,
                                "stage 0 compute preempted": 2.0, "stage 0 fan-out": 1.0},
                               abs=1e-6)
    assert bench.switch_counts(tmp_path, warmup=1) == {
        "stage 0 compute involuntary switches": 4}


def test_a_run_without_cpu_accounting_has_no_counts(tmp_path):
    event = {k: v for k, v in _event(1, 0.0, 0).items()
             if k not in ("cpu_s", "involuntary_switches")}
    (tmp_path / "events0.jsonl").write_text(json.dumps(event) + "\n")
    assert _bench().switch_counts(tmp_path, warmup=1) == {}


def test_the_wake_only_pricing_prices_hops_as_the_headline_does():
    """``*_wake_only`` differs from the headline by co-run pricing alone: a hop between two
    stages on one core costs both the same-core wire (hand-computed from the cost given)."""
    import argparse

    from hwsched.costs.runtime import RuntimeCost
    from hwsched.placement import Board, Stage, placement_from_stages
    from hwsched.schedule.synthetic import synthetic_graph

    graph = synthetic_graph(12, seed=0)
    segments = [{"first_layer": graph.layers[a].name, "last_layer": graph.layers[b - 1].name,
                 "latency_ms": 3.0, "back_to_back_ms": 2.5, "co_run_ms": 3.5}
                for a, b in ((0, 6), (6, 12))]
    profile = {"kind": "hwsched-profile", "model": graph.name, "platform": "rpi4",
               "precision": "fp32", "segments": segments, "gap_ms": 50.0}
    cross = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.3, 0.0))
    same = RuntimeCost.asymmetric(sender=(0.1, 0.0), receiver=(0.2, 0.0), wire=(0.7, 0.0))
    args = argparse.Namespace(link="gige", runtime_cost=cross, same_core_cost=same)
    boards = (Board("core0", "rpi4", (0,)), Board("core1", "rpi4", (1,)))
    headline, old, wake_only = _bench().pricings(graph, boards, args, profile, "m", cross)
    both_on_core0 = placement_from_stages(graph, boards, [Stage("core0", range(6)),
                                                          Stage("core0", range(6, 12))])
    wires = [c.evaluate(both_on_core0).edges[0].latency_ms for c in (headline, wake_only, old)]
    assert wires == pytest.approx([0.7, 0.7, 0.3])
