"""The HTML report: escaping, determinism, every chart, numbers equal to the document's.

The documents are built from synthetic graphs through the real planner, so no TensorFlow is needed;
the browser test (``test_report_browser.py``) renders a real model.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from hwsched.cli import main
from hwsched.cuts import PROXY_RANKING, enumerate_cuts, rank_by_proxy
from hwsched.errors import DocumentError, ReportError
from hwsched.power.energy import PipelineEnergy, pipeline_energy, read_events
from hwsched.power.logfile import read_log
from hwsched.report.analysis import analysis_to_dict
from hwsched.report.charts import chart_ids
from hwsched.report.facts import Limits, derive, hardware_section, memory_share, with_hardware
from hwsched.report.html import default_report_path, render_html, write_report
from hwsched.report.measured import emulation_rows, matched_candidate, power_rows
from hwsched.runtime.emulate import EmulationResult, StageMeasure
from hwsched.schedule import rank_splits
from hwsched.schedule.synthetic import synthetic_graph

PLATFORMS = ["rpi4", "jetson_nano", "coral_edgetpu"]
EVIL = "<script>alert(1)</script>"


def analysis(n_layers: int = 30, platforms=PLATFORMS, name: str = "synthetic") -> dict:
    graph = synthetic_graph(n_layers, seed=3, name=name)
    cuts = enumerate_cuts(graph)
    document = analysis_to_dict(graph, cuts, rank_by_proxy(cuts, None), PROXY_RANKING, None)
    schedule = rank_splits(graph, platforms, "gige")
    document.update({k: v for k, v in schedule.to_dict().items() if k != "model"})
    document["hardware"] = hardware_section(platforms, "gige")
    return document


@pytest.fixture(scope="module")
def document() -> dict:
    return analysis()


def rows_of(page: str) -> list[str]:
    body = page.split('<table id="ranking-table">', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr [^>]*>.*?</tr>", body)


def svg_of(page: str, chart_id: str) -> str:
    match = re.search(rf'<svg class="chart" id="{chart_id}".*?</svg>', page, re.S)
    assert match, f"{chart_id} missing"
    return match.group(0)


# -- escaping --------------------------------------------------------------------------------------
def evil_document(document: dict) -> dict:
    """The same analysis with a hostile layer name and descriptor text everywhere they show."""
    evil = copy.deepcopy(document)
    old = evil["layers"][1]["name"]
    text = json.dumps(evil).replace(json.dumps(old), json.dumps(EVIL))
    evil = json.loads(text)
    evil["hardware"]["platforms"]["rpi4"]["description"] = '<img src=x onerror="alert(2)">'
    evil["unscored_layers"] = [EVIL]
    return evil


def test_hostile_names_are_shown_as_text_never_as_markup(document):
    page = render_html(evil_document(document))
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "onerror=\"alert" not in page
    assert page.count("<script") == 1  # only the report's own script


def test_the_page_requests_nothing_from_a_network(document):
    page = render_html(document)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, not a fetch
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", page)
    assert "default-src 'none'" in page


# -- determinism -----------------------------------------------------------------------------------
def test_same_input_same_bytes(document):
    first = render_html(document)
    assert render_html(copy.deepcopy(document)) == first
    assert render_html(json.loads(json.dumps(document))) == first


def test_write_report_writes_the_rendered_page(document, tmp_path):
    path = write_report(tmp_path / "deep" / "r.html", document)
    assert path.read_text(encoding="utf-8") == render_html(document)


# -- content ---------------------------------------------------------------------------------------
def test_every_chart_is_present_and_drawn(document):
    page = render_html(document)
    for chart_id in chart_ids():
        chart = svg_of(page, chart_id)
        assert re.search(r"<(rect|circle|path|polyline)\b", chart), chart_id
    assert 'id="chart-measured"' not in page  # nothing measured yet
    assert 'id="no-measurements"' in page


def test_summary_names_boards_link_objective_and_the_gain(document):
    page = render_html(document)
    top = page.split('<nav class="toc">', 1)[0]  # everything above the table of contents
    for name in [*PLATFORMS, "gige", "throughput", document["model"]]:
        assert name in top
    best = document["candidates"][0]
    for position in best["cut_positions"]:
        assert f"(position {position})" in top
    speedup = document["speedup"]
    shown = speedup if speedup > 1 else 1 / speedup
    assert f'id="gain">{shown:.2f}×<' in top
    assert document["best_baseline"] in top


def test_table_has_one_row_per_candidate_and_board_with_their_numbers(document):
    page = render_html(document)
    rows = rows_of(page)
    runs = document["candidates"] + document["baselines"]
    assert len(rows) == len(runs)
    for row, run in zip(rows, runs, strict=True):
        values = re.findall(r'data-v="([^"]*)"', row)
        # rank, cuts, throughput, latency, energy, transfer (see the header order)
        assert float(values[2]) == pytest.approx(run["throughput_ips"], rel=1e-5)
        assert float(values[3]) == pytest.approx(run["latency_ms"], rel=1e-5)
        assert float(values[4]) == pytest.approx(run["energy_mj"], rel=1e-5)
        transfer = sum(link["transfer_bytes"] for link in run["links"])
        assert float(values[5]) == transfer
        assert f'data-feasible="{int(run["feasible"])}"' in row


def test_memory_share_is_stage_memory_over_the_board_limit(document):
    page = render_html(document)
    first = rows_of(page)[0]
    stage = document["candidates"][0]["stages"][0]
    ram = document["hardware"]["platforms"][stage["platform"]]["ram_bytes"]
    assert f'data-v="{stage["memory_bytes"] / ram:.6g}"' in first


def test_memory_share_on_a_board_with_flash_is_the_tighter_of_flash_and_ram():
    stage = {"memory_bytes": 300, "weights_bytes": 100, "peak_activation_bytes": 200}
    mcu = Limits(ram_bytes=400, flash_bytes=1000, param_cache_bytes=None)
    board = Limits(ram_bytes=1000, flash_bytes=None, param_cache_bytes=None)
    assert memory_share(stage, mcu) == 0.5  # activations: 200 of 400 B RAM
    assert memory_share(stage, board) == 0.3  # everything in RAM: 300 of 1000 B
    assert memory_share(stage, None) is None


def test_cost_profile_marks_single_and_multi_tensor_cuts(document):
    chart = svg_of(render_html(document), "chart-profile")
    singles = sum(1 for cut in document["cut_points"] if cut["single_tensor"])
    assert chart.count('class="single"') == singles
    assert chart.count('class="multi"') == len(document["cut_points"]) - singles
    assert singles and len(document["cut_points"]) - singles  # the fixture has both kinds


def test_stage_times_outline_one_bottleneck_per_bar(document):
    chart = svg_of(render_html(document), "chart-times")
    bars = min(8, len(document["candidates"])) + len(document["baselines"])
    assert chart.count('class="bottleneck"') == bars


def test_memory_chart_draws_each_boards_limit(document):
    chart = svg_of(render_html(document), "chart-memory")
    rows = len(document["candidates"][0]["stages"]) + len(document["baselines"])
    assert chart.count('class="limit"') == rows


def test_pareto_chart_draws_every_candidate_and_board(document):
    page = render_html(document)
    for chart_id in ("chart-pareto-energy", "chart-pareto-latency"):
        chart = svg_of(page, chart_id)
        runs = len(document["candidates"]) + len(document["baselines"])
        assert chart.count('class="point') == runs
        assert "#1 recommended" in chart


def test_layer_strip_draws_every_layer_and_each_chosen_cut(document):
    chart = svg_of(render_html(document), "chart-strip")
    assert chart.count("<rect") >= len(document["layers"])
    assert chart.count('class="cutlabel"') == len(document["candidates"][0]["cut_positions"])


# -- warnings --------------------------------------------------------------------------------------
def test_warnings_name_infeasible_memory_unscored_layers_and_estimates(document):
    doc = copy.deepcopy(document)
    reason = "weights + peak activations 9 B exceed rpi4 RAM 1 B"
    doc["baselines"][0].update(feasible=False, reasons=[reason])
    doc["unscored_layers"] = ["l7"]
    warnings = render_html(doc).split('id="warnings">', 1)[1].split("</ul>", 1)[0]
    assert reason in warnings
    assert "Cannot run the whole model alone: rpi4" in warnings
    assert "l7" in warnings and "no compute rule" in warnings
    assert "roofline" in warnings and "estimates" in warnings


def test_no_feasible_split_is_said_first(document):
    doc = copy.deepcopy(document)
    for candidate in doc["candidates"]:
        candidate.update(feasible=False, reasons=["coral_edgetpu cannot run op 'other'"])
    page = render_html(doc)
    assert 'class="verdict bad"' in page
    assert '<li class="error">No feasible split' in page
    assert page.count('class="infeasible') >= len(doc["candidates"])


def test_without_descriptors_limits_are_unknown_not_invented(document):
    doc = {k: v for k, v in document.items() if k != "hardware"}
    page = render_html(doc)
    assert "memory limits are unknown" in page
    assert 'class="limit"' not in svg_of(page, "chart-memory")
    assert "hardware" in with_hardware(doc)  # the CLI looks the names up again


def test_a_document_without_candidates_is_refused_by_name(document):
    doc = {k: v for k, v in document.items() if k != "candidates"}
    with pytest.raises(DocumentError, match="^analysis: missing field 'candidates'$"):
        render_html(doc)
    with pytest.raises(DocumentError, match="JSON object"):
        derive([])  # type: ignore[arg-type]


# -- measured against predicted --------------------------------------------------------------
def emulation_of(candidate: dict, busy_ms=(2.0, 3.0, 4.0)) -> EmulationResult:
    """What ``hwsched emulate`` would report for a plan of ``candidate``'s split."""
    stages = tuple(
        StageMeasure(index=i, platform=s["platform"], cpus=(i,), frames=100, busy_ms=busy,
                     busy_ms_mean=busy, utilization=0.5, predicted_ms=s["latency_ms"])
        for i, (s, busy) in enumerate(zip(candidate["stages"], busy_ms, strict=False))
    )
    return EmulationResult(
        model="synthetic", stages_count=len(stages), frames=100, complete=True, in_order=True,
        throughput_ips=90.0, predicted_throughput_ips=123.0, latency_ms={"p50": 30.0, "p99": 41.0},
        predicted_latency_ms=7.0, transport_ms=1.0, stages=stages, hops=(), accuracy=None,
        link_emulation=None, wall_s=2.0, cut_positions=tuple(candidate["cut_positions"]),
        platforms=tuple(s["platform"] for s in candidate["stages"]),
    )


@pytest.fixture(scope="module")
def power() -> PipelineEnergy:
    """A real energy report: the shipped INA219 log of one board running stage 0."""
    logs = Path(__file__).parent.parent / "power_logs"
    events = read_events(logs / "example_ina219.events.jsonl")
    return pipeline_energy([(0, read_log(logs / "example_ina219.csv"))], events)


def test_measured_numbers_stand_beside_the_predicted_ones(document, power):
    best = document["candidates"][0]
    emulation = emulation_of(best)
    page = render_html(document, emulation, power)
    assert 'id="no-measurements"' not in page
    chart = svg_of(page, "chart-measured")
    rows = {r.metric: r for r in emulation_rows(best, emulation)}
    assert rows["throughput"].predicted == best["throughput_ips"]
    assert rows["throughput"].ratio == pytest.approx(90.0 / best["throughput_ips"])
    assert rows["latency p50"].predicted == best["latency_ms"]
    assert rows["stage 2 jetson_nano busy"].predicted == best["stages"][1]["latency_ms"]
    power_row = {r.metric: r for r in power_rows(derive(document), best, power)}
    # the prediction covers a whole period (idle while waiting): compared like for like
    period = power_row["energy / inference (whole period)"]
    assert period.predicted == best["energy_mj"]
    assert period.measured == power.stages[0].period_energy_per_inference_mj
    assert power_row["energy / inference (while inferring)"].predicted is None
    assert power_row["idle power"].predicted == pytest.approx(
        sum(document["hardware"]["platforms"][p]["idle_power_w"] * 1000 for p in PLATFORMS)
    )
    stage = power_row["stage 1 rpi4 energy (whole period)"]
    assert stage.predicted == best["stages"][0]["energy_mj"]
    assert f"{rows['throughput'].ratio:.2f}" in page
    assert f"{power.inferences} inferences" in page
    assert chart.count("<rect") >= 2 * len(rows)


def test_emulation_of_another_candidate_is_compared_with_that_candidate(document):
    """Fails before the emulation recorded its split: every run was compared with rank 1."""
    other = document["candidates"][1]
    emulation = emulation_of(other)
    page = render_html(document, EmulationResult.from_dict(emulation.to_dict(), "run.json"))
    assert f"Compared with candidate #{other['rank']}" in page
    rows = {r.metric: r for r in emulation_rows(other, emulation)}
    assert rows["throughput"].predicted == other["throughput_ips"]


def test_emulation_of_an_unlisted_split_uses_the_plans_prediction(document):
    listed = {tuple(c["cut_positions"]) for c in document["candidates"]}
    unlisted = next(
        (p,) for p in range(1, len(document["layers"])) if (p,) not in listed
    )
    emulation = replace(emulation_of(document["candidates"][0]), cut_positions=unlisted)
    match = matched_candidate(derive(document), emulation)
    assert match.candidate is None and "not among the analysis's listed candidates" in match.note
    page = render_html(document, emulation)
    assert "Compared with the plan" in page
    throughput = emulation_rows(None, emulation)[0]
    assert throughput.predicted == emulation.predicted_throughput_ips


def test_emulation_of_one_board_alone_is_compared_with_that_baseline(document):
    baseline = document["baselines"][1]
    emulation = emulation_of(baseline)
    assert emulation.cut_positions == ()
    page = render_html(document, emulation)
    assert f"Compared with {baseline['platform']} alone" in page
    assert emulation_rows(baseline, emulation)[0].predicted == baseline["throughput_ips"]


def test_emulation_of_another_model_is_refused(document):
    emulation = replace(emulation_of(document["candidates"][0]), model="resnet50")
    with pytest.raises(ReportError, match="ran model 'resnet50', the analysis is of 'synthetic'"):
        render_html(document, emulation)


def test_an_emulation_file_from_before_the_split_was_recorded_says_so(document):
    legacy = emulation_of(document["candidates"][0]).to_dict()
    for name in ("kind", "cut_positions", "platforms", "analysis"):
        del legacy[name]
    page = render_html(document, EmulationResult.from_dict(legacy, "old.json"))
    assert "does not record which split it ran" in page
    legacy["kind"] = "hwsched-emulation"  # with the marker the split is required
    with pytest.raises(DocumentError, match="^new.json: missing field 'cut_positions'$"):
        EmulationResult.from_dict(legacy, "new.json")


# -- command line ----------------------------------------------------------------------------------
def test_report_command_renders_a_saved_analysis(document, tmp_path, capsys):
    saved = tmp_path / "a.json"
    saved.write_text(json.dumps(document))
    emulation = emulation_of(document["candidates"][0])
    path = tmp_path / "e.json"
    path.write_text(json.dumps(emulation.to_dict()))
    out = tmp_path / "r.html"
    assert main(["report", str(saved), "--emulation", str(path), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_html(document, emulation)
    assert str(out) in capsys.readouterr().err


def test_report_command_defaults_to_reports_model_html(document, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "a.json"
    saved.write_text(json.dumps(document))
    assert main(["report", str(saved)]) == 0
    assert (tmp_path / "reports" / "synthetic.html").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "not valid JSON"), ("[1]", "JSON object, not list"),
     ('{"model": "m"}', "missing field 'hwsched_version'")],
)
def test_report_command_errors_are_one_line(tmp_path, capsys, content, message):
    saved = tmp_path / "a.json"
    saved.write_text(content)
    assert main(["report", str(saved), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_default_report_path_is_a_safe_file_name():
    assert str(default_report_path("efficientnet_b0")) == "reports/efficientnet_b0.html"
    assert str(default_report_path("models/my net.keras")) == "reports/my_net.html"


def test_report_command_refuses_a_damaged_analysis_in_one_line(tmp_path, capsys):
    """Fails before the strict reader: the page died on a KeyError deep in the rendering."""
    analysis = tmp_path / "a.json"
    assert main(["analyze", "digits_cnn", "--no-report", "--json", str(analysis)]) == 0
    document = json.loads(analysis.read_text())
    del document["candidates"][0]["stages"][0]["latency_ms"]
    analysis.write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["report", str(analysis), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    field = "candidates[0].stages[0].latency_ms"
    assert err == f"hwsched: error: {analysis}: missing field '{field}'\n"
    assert not (tmp_path / "r.html").exists()


def test_report_command_refuses_a_document_of_another_kind_in_one_line(
    document, power, tmp_path, capsys
):
    analysis = tmp_path / "a.json"
    analysis.write_text(json.dumps(document))
    energy = tmp_path / "e.json"
    energy.write_text(json.dumps(power.to_dict()))
    out = str(tmp_path / "r.html")
    assert main(["report", str(analysis), "--power-json", str(analysis), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{analysis}: not an energy report" in err
    assert "this is an analysis" in err
    assert main(["report", str(energy), "--out", out]) == 2
    assert f"{energy}: not an analysis" in capsys.readouterr().err
    assert main(["report", str(analysis), "--emulation", str(energy), "--out", out]) == 2
    assert f"{energy}: not an emulation result" in capsys.readouterr().err
    assert main(["report", str(analysis), "--power-json", str(energy), "--out", out]) == 0
