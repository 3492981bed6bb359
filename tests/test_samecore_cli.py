"""The same-core hop cost from the command line (issue 13): ``profile --hop-cost`` writes the
hop measured with both ends on one core as the cost file's ``same_core`` section, and
``analyze --runtime-cost FILE --mapping`` prices a hop whose two ends share one CPU with it.

Oracles: the arithmetic of the hops a hand-drawn mapping has on one CPU (their count and
bytes read off the model), the same analysis with a file from before the section existed,
and the cost fitted through samples that lie exactly on lines. TensorFlow-free: the model is
a small ``.tflite`` read by hwsched's own reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from hwsched.cli import main
from hwsched.costs.runtime import RuntimeCost, load_runtime_cost
from hwsched.runtime.hopcost import HopSample

MODEL = Path(__file__).parent / "data" / "digits_tail_fp16.tflite"
#: The model's bytes (float32): its input (1, 32), the classifier's logits (1, 10) that stage 0
#: sends stage 1, and the softmax output (1, 10) the sink receives.
INPUT_BYTES, LOGITS_BYTES, OUTPUT_BYTES = 128, 40, 40
ACROSS = RuntimeCost.asymmetric(sender=(0.1, 2e-6), receiver=(0.05, 1e-6), wire=(0.2, 1e-4))
ONE_CORE = RuntimeCost.asymmetric(sender=(0.3, 5e-6), receiver=(0.2, 4e-6), wire=(0.5, 3e-4),
                                  source="both ends on one core")


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _mapping(tmp_path: Path, cores: tuple[list[int], list[int]] | None) -> Path:
    """The classifier on one stage and the softmax on the next: one board with one CPU
    (``cores=None``), or two boards with the CPUs given."""
    stages = [{"layers": ["rest"]}, {"layers": ["StatefulPartitionedCall_1:0"]}]
    if cores is None:
        boards = [{"name": "pi", "platform": "rpi4", "cores": [0]}]
        stages = [{**stage, "board": "pi"} for stage in stages]
    else:
        boards = [{"name": f"pi{i}", "platform": "rpi4", "cores": c} for i, c in enumerate(cores)]
        stages = [{**stage, "board": f"pi{i}"} for i, stage in enumerate(stages)]
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump({"boards": boards, "stages": stages, "link": "gige"}))
    return path


def _analyze(tmp_path: Path, cost_file: Path, mapping: Path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert main(["analyze", str(MODEL), "--platforms", "rpi4,rpi4", "--mapping", str(mapping),
                 "--runtime-cost", str(cost_file), "--json", str(out), "--no-report"]) == 0
    return json.loads(out.read_text())


def _delta_wire_ms(*payloads: int) -> float:
    return sum(ONE_CORE.wire_ms(b) - ACROSS.wire_ms(b) for b in payloads)


# -- the file ----------------------------------------------------------------------------------
def test_an_old_file_loads_unchanged(tmp_path):
    old = ACROSS.to_dict()
    assert "same_core" not in old  # what every file written before the section looked like
    loaded = load_runtime_cost(_write(tmp_path / "old.json", old))
    assert loaded == ACROSS and loaded.same_core is None
    assert loaded.to_dict() == old


def test_the_section_round_trips_in_both_file_forms(tmp_path):
    cost = replace(ACROSS, same_core=ONE_CORE)
    flat = _write(tmp_path / "flat.json", cost.to_dict())  # as profile --hop-cost writes it
    printed = _write(tmp_path / "printed.json",  # as python -m hwsched.runtime.hopcost prints it
                     {"samples": [], "runtime_cost": cost.to_dict()})
    for path in (flat, printed):
        loaded = load_runtime_cost(path)
        assert loaded.same_core == ONE_CORE and loaded == cost


def test_the_writer_fits_the_same_core_samples_as_the_section():
    """Samples on exact lines: the section's terms are those lines' (no measuring noise)."""
    from hwsched.runtime.hopcost import runtime_cost_with_same_core

    def hop(size: int, sender_ms: float, receiver_ms: float, wire_ms: float) -> HopSample:
        return HopSample(size, sender_ms, receiver_ms, sender_ms + receiver_ms + wire_ms)

    across = [hop(b, 0.1 + b * 1e-6, 0.2 + b * 2e-6, 0.25 + b * 1e-5) for b in (0, 1000, 4000)]
    one = [hop(b, 0.4 + b * 3e-6, 0.3 + b * 4e-6, 0.75 + b * 5e-5) for b in (0, 1000, 4000)]
    data = runtime_cost_with_same_core(across, one).to_dict()
    section = data["same_core"]
    assert section["sender_frame_ms"] == pytest.approx(0.4)
    assert section["receiver_per_byte_ms"] == pytest.approx(4e-6)
    assert section["wire_frame_ms"] == pytest.approx(0.75)
    assert section["wire_per_byte_ms"] == pytest.approx(5e-5)
    assert "on one core" in section["source"] and "on two cores" in data["source"]
    assert data["wire_frame_ms"] == pytest.approx(0.25)
    assert "same_core" not in runtime_cost_with_same_core(across, None).to_dict()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_measurement_writes_the_section(tmp_path):
    """The real measurement, as small as it goes: two sizes, two frames each, idle cores."""
    command = [sys.executable, "-m", "hwsched.runtime.hopcost", "--sizes", "0,4096",
               "--frames", "2", "--repeats", "1", "--idle-cores", "--same-core"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    path = _write(tmp_path / "hop.json", json.loads(done.stdout))
    document = json.loads(path.read_text())
    assert [s["payload_bytes"] for s in document["same_core_samples"]] == [0, 4096]
    cost = load_runtime_cost(path)
    assert cost.same_core is not None
    assert "on one core" in cost.same_core.source and "on two cores" in cost.source


# -- pricing -----------------------------------------------------------------------------------
def test_two_stages_on_one_core_cost_exactly_the_same_core_difference(tmp_path):
    """One board, one CPU, both stages on it: the source's hop (into stage 0, on the source's
    CPU), the stage-to-stage hop and the sink's hop all have their ends on one CPU, so the
    frame's latency grows by exactly those three hops' wire difference; the cores' shares
    (and so the period) are the cross-core cost's, as the planner prices them."""
    mapping = _mapping(tmp_path, None)
    old = _analyze(tmp_path, _write(tmp_path / "old.json", ACROSS.to_dict()), mapping, "old")
    with_section = {**ACROSS.to_dict(), "same_core": ONE_CORE.to_dict()}
    new = _analyze(tmp_path, _write(tmp_path / "new.json", with_section), mapping, "new")
    assert old["runtime_cost"]["same_core_charged"] is False
    assert new["runtime_cost"]["same_core_charged"] is True
    assert new["runtime_cost"]["cost"]["same_core"] == ONE_CORE.to_dict()
    before, after = old["mapping"], new["mapping"]
    expected = _delta_wire_ms(INPUT_BYTES, LOGITS_BYTES, OUTPUT_BYTES)
    assert expected == pytest.approx(0.9416)  # 3 x 0.3 ms + 208 B x 2e-4 ms/B
    assert after["latency_ms"] - before["latency_ms"] == pytest.approx(expected, abs=1e-9)
    assert after["throughput_ips"] == pytest.approx(before["throughput_ips"], rel=1e-12)


def test_an_old_file_prices_as_before(tmp_path):
    """Without the section, the same mapping is priced as with the cost alone: the analysis
    of a file that has the section but whose same-core terms equal the cross-core ones."""
    mapping = _mapping(tmp_path, None)
    old = _analyze(tmp_path, _write(tmp_path / "old.json", ACROSS.to_dict()), mapping, "old")
    same = {**ACROSS.to_dict(), "same_core": ACROSS.to_dict()}
    equal = _analyze(tmp_path, _write(tmp_path / "equal.json", same), mapping, "equal")
    assert old["mapping"]["latency_ms"] == pytest.approx(equal["mapping"]["latency_ms"],
                                                         abs=1e-12)
    assert "same_core" not in old["runtime_cost"]["cost"]


def test_stages_on_two_cpus_pay_it_only_for_the_source_and_sink_hops(tmp_path):
    """Stage 0 on CPU 0 of one board, stage 1 on CPU 1 of another: the hop between them
    crosses the link at the cross-core price; the source's and sink's hops still share their
    one-CPU stage's CPU."""
    mapping = _mapping(tmp_path, ([0], [1]))
    old = _analyze(tmp_path, _write(tmp_path / "old.json", ACROSS.to_dict()), mapping, "old")
    with_section = {**ACROSS.to_dict(), "same_core": ONE_CORE.to_dict()}
    new = _analyze(tmp_path, _write(tmp_path / "new.json", with_section), mapping, "new")
    difference = new["mapping"]["latency_ms"] - old["mapping"]["latency_ms"]
    assert difference == pytest.approx(_delta_wire_ms(INPUT_BYTES, OUTPUT_BYTES), abs=1e-9)
    assert new["runtime_cost"]["same_core_charged"] is True


def test_a_chain_analysis_says_the_section_was_not_charged(tmp_path):
    """Chain candidates put every stage on a board of its own: nothing to charge, and the
    record says so rather than claiming a charge."""
    out = tmp_path / "chain.json"
    cost = _write(tmp_path / "new.json", {**ACROSS.to_dict(), "same_core": ONE_CORE.to_dict()})
    assert main(["analyze", str(MODEL), "--platforms", "rpi4,rpi4", "--runtime-cost",
                 str(cost), "--json", str(out), "--no-report"]) == 0
    section = json.loads(out.read_text())["runtime_cost"]
    assert section["charged"] is True and section["same_core_charged"] is False


# -- a malformed section -----------------------------------------------------------------------
@pytest.mark.parametrize(("section", "field"), [
    (3, "same_core"),
    ([0.1, 1e-6], "same_core"),
    ({"frame_ms": -1, "per_byte_ms": 0.0}, "same_core: field 'frame_ms'"),
    ({"frame_ms": 0.1}, "same_core: field 'per_byte_ms'"),
    ({"frame_ms": 0.1, "per_byte_ms": 0.0, "wire_frame_ms": "fast"},
     "same_core: field 'wire_frame_ms'"),
    ({"frame_ms": 0.1, "per_byte_ms": 0.0, "same_core": {"frame_ms": 0, "per_byte_ms": 0}},
     "same_core: field 'same_core'"),
])
def test_a_malformed_section_is_one_line_naming_file_and_field(tmp_path, capsys, section,
                                                                field):
    path = _write(tmp_path / "hop.json", {**ACROSS.to_dict(), "same_core": section})
    # a model that does not exist: the cost file is judged before it
    assert main(["analyze", str(tmp_path / "absent.keras"), "--runtime-cost", str(path),
                 "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "hop.json" in err[0] and field in err[0], err[0]


def _analysis_with(tmp_path: Path, name: str, *options: str) -> Path:
    out = tmp_path / f"{name}.json"
    assert main(["analyze", str(MODEL), "--platforms", "rpi4,rpi4", *options, "--json",
                 str(out), "--no-report"]) == 0
    return out


def _cost_files(tmp_path: Path) -> tuple[Path, Path]:
    """A file without the section and one with it."""
    return (_write(tmp_path / "old.json", ACROSS.to_dict()),
            _write(tmp_path / "new.json", {**ACROSS.to_dict(), "same_core": ONE_CORE.to_dict()}))


def test_a_mapping_on_one_cpu_is_charged_the_hand_computed_latency(tmp_path):
    """Both stages on CPU 0 of one board: every hop on one core. The runner's share of each
    stage and the frame's latency, computed by hand from the two cost lines: stage 0 receives
    the 128 B input (the source's end and its own) and sends the 40 B logits, stage 1 receives
    them and hands the 40 B output to the sink; the three hops take the one-core wire part."""
    _, new = _cost_files(tmp_path)
    analysis = json.loads(_analysis_with(tmp_path, "one", "--mapping",
                                         str(_mapping(tmp_path, None)),
                                         "--runtime-cost", str(new)).read_text())
    assert analysis["runtime_cost"]["same_core_charged"] is True
    first, second = analysis["mapping"]["stages"]
    end = ACROSS.end_ms
    assert first["runtime_ms"] == pytest.approx(
        2 * end(INPUT_BYTES) + ACROSS.sender_ms(LOGITS_BYTES), abs=1e-12)
    assert second["runtime_ms"] == pytest.approx(
        ACROSS.receiver_ms(LOGITS_BYTES) + 2 * end(OUTPUT_BYTES), abs=1e-12)
    wires_ms = 0.5 + 128 * 3e-4 + 2 * (0.5 + 40 * 3e-4)  # source, stage-to-stage, sink
    assert wires_ms == pytest.approx(1.5624)
    expected = first["latency_ms"] + second["latency_ms"] + wires_ms
    assert analysis["mapping"]["latency_ms"] == pytest.approx(expected, abs=1e-9)


def test_a_mapping_without_a_one_cpu_stage_says_not_charged(tmp_path):
    """Each stage on two CPUs of a board of its own: no hop has its ends on one CPU, so the
    section changes no figure, and the record says it was not charged."""
    old, new = _cost_files(tmp_path)
    mapping = _mapping(tmp_path, ([0, 1], [0, 1]))
    before = _analyze(tmp_path, old, mapping, "old")
    after = _analyze(tmp_path, new, mapping, "new")
    assert after["mapping"]["latency_ms"] == pytest.approx(before["mapping"]["latency_ms"],
                                                           abs=1e-12)
    assert after["runtime_cost"]["same_core_charged"] is False


def test_a_graph_search_on_boards_without_cores_says_not_charged(tmp_path):
    """``--placement graph`` places stages on whole boards (no core sets): no hop is priced on
    one CPU, so every graph candidate has the figures of the file without the section, and
    the analysis says it was not charged."""
    old, new = _cost_files(tmp_path)
    runs = [json.loads(_analysis_with(tmp_path, name, "--placement", "graph",
                                      "--runtime-cost", str(cost)).read_text())
            for name, cost in (("old", old), ("new", new))]
    before, after = ([c["latency_ms"] for c in run["graph_candidates"]] for run in runs)
    assert after and after == pytest.approx(before, abs=1e-12)
    assert runs[1]["runtime_cost"]["same_core_charged"] is False


def test_export_of_an_analysed_candidate_carries_the_same_core_record(tmp_path):
    """``export --analysis F --candidate R`` predicts what the analysis ranked: its plan's
    ``prediction.runtime_cost`` holds the same-core terms, read back through the analysis's
    typed record. The analysis charged its one-CPU mapping; its chain candidate was not, and
    its prediction says so."""
    from hwsched.cli.export import analysed_prediction
    from hwsched.costs.runtime import runtime_cost_from_dict
    from hwsched.documents import load_document
    from hwsched.documents.analysis import AnalysisDocument

    _, new = _cost_files(tmp_path)
    out = _analysis_with(tmp_path, "mapped", "--mapping", str(_mapping(tmp_path, None)),
                         "--runtime-cost", str(new))
    analysis = load_document(AnalysisDocument, out)
    assert analysis.runtime_cost["same_core_charged"] is True
    candidate = analysis.candidate(1)
    prediction = analysed_prediction(analysis, candidate, one_cpu_hop=False)  # chain path
    record = prediction["runtime_cost"]
    assert record["charged"] is True and record["same_core_charged"] is False
    assert runtime_cost_from_dict(record["cost"], "cost").same_core == ONE_CORE
    assert prediction["latency_ms"] == json.loads(out.read_text())["candidates"][0]["latency_ms"]
