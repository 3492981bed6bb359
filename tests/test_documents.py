"""Every JSON document hwsched writes, read back through its one record: byte for byte, with
its kind marker, refusing a missing or mistyped field or a document of another kind in one
line naming the file and the field. The documents are real command output (analyze, export
--analysis, emulate, power energy, profile on digits_cnn and the shipped power log); the
contract fields are the README's, listed here independently of the code.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from hwsched.cli import main
from hwsched.costs.profile import load_profile
from hwsched.deployment import load_plan, plan_from_dict, plan_to_dict
from hwsched.documents import load_document
from hwsched.documents.analysis import AnalysisDocument
from hwsched.documents.profile import ProfileDocument
from hwsched.errors import HwschedError
from hwsched.power.energy import PipelineEnergy
from hwsched.runtime.emulate import EmulationResult

POWER_LOGS = Path(__file__).parent.parent / "power_logs"
#: An analysis with a non-default precision: ranking again with the defaults (fp16 on the
#: Jetson) could not reproduce its candidates, so an export that re-ranked would show.
ANALYZE = ["analyze", "digits_cnn", "--precision", "fp32", "--stages", "2", "--no-report"]


class PlanRecord:
    """plan.json's record lives in hwsched.deployment (the runner reads it)."""

    @staticmethod
    def from_dict(data, where):
        return PlanRecord.Read(plan_from_dict(data, where))

    class Read:
        def __init__(self, plan):
            self.plan = plan

        def to_dict(self):
            return plan_to_dict(self.plan)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Real output of every command that writes a document (one run each, shared)."""
    root = tmp_path_factory.mktemp("documents")
    files = {name: root / f"{name}.json" for name in ("analysis", "emulation", "energy",
                                                      "profile")}
    assert main([*ANALYZE, "--json", str(files["analysis"])]) == 0
    analysis = json.loads(files["analysis"].read_text())
    first = analysis["candidates"][0]["cut_positions"]
    rank = next(c["rank"] for c in analysis["candidates"] if c["cut_positions"] != first)
    split = root / "split"
    assert main(["export", "digits_cnn", "--analysis", str(files["analysis"]), "--candidate",
                 str(rank), "--out", str(split), "--samples", "4"]) == 0
    assert main(["emulate", str(split), "--frames", "20", "--json",
                 str(files["emulation"])]) == 0
    assert main(["power", "energy", str(POWER_LOGS / "example_ina219.csv"), "--events",
                 str(POWER_LOGS / "example_ina219.events.jsonl"), "--json",
                 str(files["energy"])]) == 0
    assert main(["profile", "digits_cnn", "--segments", "2", "--runs", "3", "--warmup", "1",
                 "--out", str(files["profile"])]) == 0
    return {**files, "plan": split / "plan.json", "split": split, "rank": rank}


RECORDS = {
    "analysis": AnalysisDocument,
    "emulation": EmulationResult,
    "energy": PipelineEnergy,
    "profile": ProfileDocument,
    "plan": PlanRecord,
}
KINDS = {
    "analysis": "hwsched-analysis",
    "emulation": "hwsched-emulation",
    "energy": "hwsched-energy",
    "profile": "hwsched-profile",
    "plan": "hwsched-plan",
}
#: The README's "JSON contracts", as paths into each document (``[0]``: the first item).
CONTRACT = {
    "analysis": [
        "model", "layers[0].name", "layers[0].op", "layers[0].inputs", "layers[0].params",
        "layers[0].macs", "cut_points[0].head_layers", "cut_points[0].after",
        "cut_points[0].crossing", "cut_points[0].crossing[0].producer",
        "cut_points[0].crossing[0].shape", "cut_points[0].crossing[0].dtype",
        "cut_points[0].crossing[0].bytes", "cut_points[0].transfer_bytes",
        "candidates[0].rank", "candidates[0].cut_positions", "candidates[0].stages[0].platform",
        "candidates[0].stages[0].board", "boards", "idle_boards", "idle_reason",
        "best_by_stage_count",
        "candidates[0].stages[0].first_layer", "candidates[0].stages[0].last_layer",
        "candidates[0].stages[0].macs", "candidates[0].stages[0].weights_bytes",
        "candidates[0].stages[0].peak_activation_bytes", "candidates[0].stages[0].memory_bytes",
        "candidates[0].stages[0].latency_ms", "candidates[0].stages[0].energy_mj",
        "candidates[0].stages[0].fits_memory", "candidates[0].links[0].link",
        "candidates[0].links[0].transfer_bytes", "candidates[0].links[0].latency_ms",
        "candidates[0].links[0].energy_mj", "candidates[0].latency_ms",
        "candidates[0].throughput_ips", "candidates[0].energy_mj", "candidates[0].feasible",
        "candidates[0].pareto", "baselines[0].platform", "speedup",
    ],
    "plan": [
        "model", "stages[0].index", "stages[0].platform", "stages[0].file", "stages[0].sha256",
        "stages[0].precision", "stages[0].inputs[0].name", "stages[0].inputs[0].shape",
        "stages[0].inputs[0].dtype", "stages[0].inputs[0].quantization",
        "stages[0].inputs[0].source", "stages[0].outputs[0].name", "links",
        "verification.max_abs_diff", "verification.top1_agreement", "verification.samples",
        "verification.reference", "prediction",
    ],
    "emulation": ["throughput_ips", "predicted_throughput_ips", "stages[0].busy_ms",
                  "latency_ms.p50", "latency_ms.p99", "cut_positions", "platforms"],
    "energy": ["energy_per_inference_mj", "dynamic_energy_per_inference_mj", "idle_power_mw",
               "average_power_mw", "inferences"],
    "profile": ["model", "platform", "segments[0].first_layer", "segments[0].last_layer",
                "segments[0].latency_ms"],
}
#: Fields a reader needs: removing one must be refused by name.
REQUIRED = {
    "analysis": ["model", "candidates", "candidates[0].cut_positions",
                 "candidates[0].stages[0].latency_ms", "candidates[0].links[0].transfer_bytes",
                 "layers[3].name", "cut_points[0].crossing[0].bytes", "baselines[0].platform"],
    "emulation": ["throughput_ips", "stages[1].busy_ms", "latency_ms", "cut_positions",
                  "platforms", "hops[0].send_ms"],
    "energy": ["energy_per_inference_mj", "idle_power_mw", "inferences",
               "stages[0].windows[0].busy_s", "stages[0].clock_fits[0].drift_ppm"],
    "profile": ["model", "platform", "segments[1].latency_ms"],
}


def walk(document, path: str):
    """(container, key) of ``path`` such as ``candidates[0].stages[1].latency_ms``."""
    node, parts = document, path.replace("[", ".[").split(".")
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    return node, int(last[1:-1]) if last.startswith("[") else last


def read(runs, name: str) -> tuple[str, dict]:
    text = runs[name].read_text()
    return text, json.loads(text)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_real_output_reads_back_and_writes_again_byte_for_byte(runs, name):
    text, data = read(runs, name)
    record = RECORDS[name].from_dict(data, str(runs[name]))
    assert json.dumps(record.to_dict(), indent=2, allow_nan=False) + "\n" == text


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_every_document_starts_with_its_kind_and_keeps_the_contract(runs, name):
    _, data = read(runs, name)
    assert next(iter(data)) == "kind" and data["kind"] == KINDS[name]
    for path in CONTRACT[name]:
        container, key = walk(data, path)
        assert key in container if isinstance(key, str) else key < len(container), path


@pytest.mark.parametrize(("name", "path"), [(n, p) for n in REQUIRED for p in REQUIRED[n]])
def test_a_missing_required_field_is_one_line_naming_file_and_field(runs, name, path):
    _, data = read(runs, name)
    container, key = walk(data, path)
    del container[key]
    with pytest.raises(HwschedError) as caught:
        RECORDS[name].from_dict(data, "run/x.json")
    assert str(caught.value) == f"run/x.json: missing field '{path}'"


@pytest.mark.parametrize(("name", "path"), [(n, p) for n in REQUIRED for p in REQUIRED[n]])
def test_a_field_of_the_wrong_type_is_one_line_naming_file_and_field(runs, name, path):
    _, data = read(runs, name)
    container, key = walk(data, path)
    container[key] = {"not": "this"} if isinstance(container[key], str) else "text"
    with pytest.raises(HwschedError) as caught:
        RECORDS[name].from_dict(data, "run/x.json")
    assert str(caught.value).startswith(f"run/x.json: field '{path}' must be ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("legacy", [False, True], ids=["marked", "without-kind"])
@pytest.mark.parametrize("given", sorted(RECORDS))
@pytest.mark.parametrize("wanted", sorted(RECORDS))
def test_a_document_of_another_kind_is_refused_in_one_line(runs, given, wanted, legacy):
    if given == wanted:
        return
    _, data = read(runs, given)
    if legacy:  # written before the marker: recognised by the fields only its kind has
        del data["kind"]
    with pytest.raises(HwschedError) as caught:
        RECORDS[wanted].from_dict(data, "x.json")
    message = str(caught.value)
    assert message.startswith("x.json: not ") and "\n" not in message
    assert f"this is {'an' if given in ('analysis', 'emulation', 'energy') else 'a'}" in message


def test_files_from_before_the_marker_are_still_read(runs):
    for name in ("analysis", "energy", "profile", "plan"):
        _, data = read(runs, name)
        del data["kind"]
        record = RECORDS[name].from_dict(data, "old.json")
        assert json.loads(json.dumps(record.to_dict())) == {"kind": KINDS[name], **data}


def test_the_emulation_records_the_split_it_ran_and_the_analysis_it_came_from(runs):
    """Fails before the fix: EmulationResult.to_dict wrote no cut_positions."""
    emulation = load_document(EmulationResult, runs["emulation"])
    analysis = load_document(AnalysisDocument, runs["analysis"])
    candidate = analysis.candidate(runs["rank"])
    assert emulation.cut_positions == candidate.cut_positions
    assert emulation.platforms == candidate.platforms and emulation.model == analysis.model
    assert emulation.analysis["rank"] == runs["rank"]


def test_the_report_compares_the_emulation_with_the_candidate_it_ran(runs, tmp_path):
    """Fails before the fix: the report compared every emulation with rank 1."""
    out = tmp_path / "r.html"
    assert main(["report", str(runs["analysis"]), "--emulation", str(runs["emulation"]),
                 "--power-json", str(runs["energy"]), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert f"Compared with candidate #{runs['rank']} (cuts" in page
    assert runs["rank"] != 1


def test_analyze_reads_measured_documents_through_their_records(runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    argv = [*ANALYZE, "--report", str(out), "--emulation", str(runs["energy"])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an emulation result" in err and not out.exists()


def test_a_profile_written_by_hwsched_profile_is_what_analyze_reads(runs):
    profile = load_profile(runs["profile"])
    document = load_document(ProfileDocument, runs["profile"])
    assert profile.model == document.model == "digits_cnn"
    assert [s.latency_ms for s in profile.segments] == [s.latency_ms for s in document.segments]


# -- export --analysis -------------------------------------------------------------------------
def test_export_from_an_analysis_exports_exactly_that_candidate(runs):
    """Fails before the fix: export had no --analysis and re-ranked with its own defaults."""
    analysis = json.loads(runs["analysis"].read_text())
    candidate = next(c for c in analysis["candidates"] if c["rank"] == runs["rank"])
    plan = load_plan(runs["split"])
    assert list(plan.cut_positions) == candidate["cut_positions"]
    assert [s.platform for s in plan.stages] == [s["platform"] for s in candidate["stages"]]
    assert [s.precision for s in plan.stages] == [s["precision"] for s in candidate["stages"]]
    assert [s.precision for s in plan.stages] == ["fp32", "fp32"]  # not the Jetson's fp16
    assert {link.link for link in plan.links} == {analysis["link"]}
    digest = hashlib.sha256(runs["analysis"].read_bytes()).hexdigest()
    assert plan.prediction["analysis"] == {
        "file": str(runs["analysis"]), "sha256": digest, "rank": runs["rank"]}
    assert plan.prediction["throughput_ips"] == candidate["throughput_ips"]
    assert plan.prediction["stages"] == candidate["stages"]


def export_error(argv, capsys) -> str:
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_export_from_an_analysis_refuses_what_it_cannot_export_as_analysed(
    runs, tmp_path, capsys
):
    analysis, out = str(runs["analysis"]), str(tmp_path / "x")
    listed = len(json.loads(runs["analysis"].read_text())["candidates"])
    err = export_error(["digits_cnn", "--analysis", analysis, "--candidate", "99", "--out", out],
                       capsys)
    assert f"{analysis}: no candidate of rank 99; the analysis lists ranks 1-{listed}" in err
    err = export_error(["mobilenet_v2", "--analysis", analysis, "--candidate", "1", "--out",
                        out], capsys)
    assert "is an analysis of model 'digits_cnn', not of 'mobilenet_v2'" in err
    err = export_error(["digits_cnn", "--analysis", analysis, "--candidate", "1", "--precision",
                        "fp16", "--out", out], capsys)
    assert "--precision contradicts candidate 1" in err
    err = export_error(["digits_cnn", "--analysis", analysis, "--cut-positions", "3",
                        "--out", out], capsys)
    assert "say which candidate with --candidate RANK" in err
    assert not Path(out).exists()


def test_export_from_a_damaged_analysis_is_one_line(runs, tmp_path, capsys):
    out = str(tmp_path / "x")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(runs["analysis"].read_text()[:500])
    err = export_error(["digits_cnn", "--analysis", str(truncated), "--candidate", "1",
                        "--out", out], capsys)
    assert f"{truncated}: not valid JSON" in err
    data = json.loads(runs["analysis"].read_text())
    del data["candidates"][0]["cut_positions"]
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(data))
    err = export_error(["digits_cnn", "--analysis", str(damaged), "--candidate", "1",
                        "--out", out], capsys)
    assert f"{damaged}: missing field 'candidates[0].cut_positions'" in err


def test_export_from_an_analysis_of_another_version_of_the_model_is_refused(
    runs, tmp_path, capsys
):
    data = copy.deepcopy(json.loads(runs["analysis"].read_text()))
    data["layers"][3]["name"] = "renamed"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    err = export_error(["digits_cnn", "--analysis", str(other), "--candidate", "1", "--out",
                        str(tmp_path / "x")], capsys)
    assert "analysed another version of model 'digits_cnn' (layer 3 is 'renamed' there" in err


def test_plain_candidate_without_an_analysis_still_ranks(tmp_path):
    out = tmp_path / "split"
    assert main(["export", "digits_cnn", "--candidate", "1", "--platforms", "rpi4,jetson_nano",
                 "--out", str(out), "--samples", "2"]) == 0
    plan = load_plan(out)
    assert "analysis" not in plan.prediction and plan.prediction["rank"] == 1


@pytest.mark.parametrize("module", ["hwsched.documents", "hwsched.documents.fields",
                                    "hwsched.documents.analysis"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_a_calibration_written_by_power_calibrate_reads_back_and_refuses_other_kinds(
    runs, tmp_path
):
    import yaml

    from hwsched.power.calibrate import read_calibration

    out = tmp_path / "rpi4.power.yaml"
    assert main(["power", "calibrate", str(POWER_LOGS / "example_ina219.csv"), "--events",
                 str(POWER_LOGS / "example_ina219.events.jsonl"), "--platform", "rpi4",
                 "--out", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    calibration = read_calibration(out)
    assert written["kind"] == "hwsched-power-calibration"
    for name in ("platform", "active_power_mw", "idle_power_mw", "inferences", "date", "stage"):
        assert getattr(calibration, name) == written[name], name
    with pytest.raises(HwschedError) as caught:
        read_calibration(runs["analysis"])
    assert str(caught.value) == (
        f"{runs['analysis']}: not a power calibration ('hwsched power calibrate'): this is an "
        "analysis ('hwsched analyze MODEL --json FILE')"
    )


@pytest.mark.parametrize("assign", ["fixed", "auto"])
def test_the_analysis_record_writes_what_the_ranking_writes_byte_for_byte(assign):
    """The record declares the writers' fields in their order: a field the ranking adds or
    moves (which the record would keep in ``extra``, after its own) shows up here."""
    from hwsched.cuts import PROXY_RANKING, enumerate_cuts, rank_by_proxy
    from hwsched.report.analysis import analysis_to_dict
    from hwsched.report.facts import hardware_section
    from hwsched.schedule import rank_splits
    from hwsched.schedule.synthetic import synthetic_graph

    graph = synthetic_graph(24, seed=5, name="synthetic")
    cuts = enumerate_cuts(graph)
    written = analysis_to_dict(graph, cuts, rank_by_proxy(cuts, 2), PROXY_RANKING, 2)
    platforms = ["rpi4", "jetson_nano", "coral_edgetpu"]
    ranking = rank_splits(graph, platforms, "gige", assign=assign)
    written.update({k: v for k, v in ranking.to_dict().items() if k != "model"})
    written["hardware"] = hardware_section(platforms, "gige")
    record = AnalysisDocument.from_dict(written)
    undeclared = {
        "AnalysisDocument": set(record.extra),
        "CandidateEntry": {k for c in record.candidates for k in c.extra},
        "StageEntry/LinkEntry": {k for c in record.candidates for s in (*c.stages, *c.links)
                                 for k in s.extra},
    }
    assert not any(undeclared.values()), f"declare in hwsched/documents/analysis.py: {undeclared}"
    again = record.to_dict()
    assert again.pop("kind") == "hwsched-analysis"
    assert json.dumps(again, indent=2) == json.dumps(written, indent=2)


def test_fields_another_writer_added_are_kept_where_they_were(runs):
    """A key the record does not declare, anywhere in the document, is written back in place."""
    def insert_after(mapping: dict, after: str, key: str, value) -> dict:
        items = list(mapping.items())
        at = [k for k, _ in items].index(after) + 1
        return dict([*items[:at], (key, value), *items[at:]])

    _, data = read(runs, "analysis")
    data = insert_after(data, "link", "new_section", {"nested": [1, 2.5, None]})
    stage = data["candidates"][0]["stages"][0]
    data["candidates"][0]["stages"][0] = insert_after(stage, "platform", "unit_ms", 1.5)
    record = AnalysisDocument.from_dict(data, "a.json")
    assert record.extra == {"new_section": {"nested": [1, 2.5, None]}}
    assert json.dumps(record.to_dict(), indent=2) == json.dumps(data, indent=2)
