"""The report in a real browser: Debian's chromium, headless, driven by Playwright.

``hwsched analyze digits_cnn`` over three boards writes the report (with measured results beside
the predictions); the page must load without a console error, a failed request or any request at
all beyond its own file, draw every chart, and re-sort its table when a header is clicked. A
screenshot is kept in pytest's tmp dir and its path printed.

Chromium is installed with apt when it is missing and we are root; Playwright's own browser
download is never used (``playwright install`` needs the network).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hwsched.cli import main
from hwsched.report.charts import chart_ids
from hwsched.runtime.emulate import EmulationResult, StageMeasure

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PLATFORMS = "rpi4,jetson_nano,coral_edgetpu"
POWER_LOGS = Path(__file__).parent.parent / "power_logs"


def _emulation() -> EmulationResult:
    """What 'hwsched emulate --json' records for a 3-stage digits_cnn pipeline."""
    stages = tuple(
        StageMeasure(index=i, platform=name, cpus=(i,), frames=500, busy_ms=busy,
                     busy_ms_mean=busy, utilization=0.5, predicted_ms=None)
        for i, (name, busy) in enumerate(zip(PLATFORMS.split(","), (0.4, 0.6, 1.1), strict=True))
    )
    return EmulationResult(
        model="digits_cnn", stages_count=3, frames=500, complete=True, in_order=True,
        throughput_ips=700.0, predicted_throughput_ips=None, latency_ms={"p50": 2.5, "p99": 3.9},
        predicted_latency_ms=None, transport_ms=0.4, stages=stages, hops=(), accuracy=None,
        link_emulation=None, wall_s=1.0, cut_positions=None, platforms=None,
    )


pytestmark = pytest.mark.browser


def _install_chromium() -> str | None:
    """None when chromium is there (installing it if we may), else why it is not."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and apt-get cannot run here (not root or not Debian)"
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium but {CHROMIUM} is missing"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    problem = _install_chromium()
    if problem:
        pytest.skip(problem)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    (folder / "emulation.json").write_text(json.dumps(_emulation().to_dict()))
    assert main(["power", "energy", str(POWER_LOGS / "example_ina219.csv"), "--events",
                 str(POWER_LOGS / "example_ina219.events.jsonl"), "--stage", "0",
                 "--json", str(folder / "power.json")]) == 0
    page = folder / "digits_cnn.html"
    argv = ["analyze", "digits_cnn", "--platforms", PLATFORMS, "--stages", "3",
            "--report", str(page),
            "--emulation", str(folder / "emulation.json"),
            "--power-json", str(folder / "power.json")]
    assert main(argv) == 0
    return page


@pytest.fixture(scope="module")
def loaded(browser, report):
    """The open page and every problem seen while it loaded."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(
        f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))

    def only_the_report(route):
        if route.request.url != report.as_uri():
            problems.append(f"request beyond the file: {route.request.url}")
            route.abort()
        else:
            route.continue_()

    page.route("**/*", only_the_report)
    page.goto(report.as_uri(), wait_until="load")
    yield page, problems
    page.close()


def test_page_loads_without_errors_or_requests(loaded, tmp_path_factory):
    page, problems = loaded
    shot = tmp_path_factory.mktemp("screenshot") / "digits_cnn.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert problems == []
    assert "digits_cnn" in page.title()


@pytest.mark.parametrize("chart_id", [*chart_ids(), "chart-measured"])
def test_each_chart_rendered(loaded, chart_id):
    page, _ = loaded
    chart = page.locator(f"svg#{chart_id}")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    shapes = chart.evaluate("el => el.querySelectorAll('rect, circle, path, polyline').length")
    assert shapes > 3
    drawn = chart.evaluate("el => el.getBBox().width * el.getBBox().height")
    assert drawn > 0


def _column(page, header: str) -> list[float]:
    index = page.evaluate(
        """name => Array.from(document.querySelectorAll('#ranking-table thead th'))
                     .findIndex(th => th.textContent.trim() === name)""", header)
    assert index >= 0, header
    return page.evaluate(
        """i => Array.from(document.querySelectorAll('#ranking-table tbody tr'))
                  .map(tr => parseFloat(tr.cells[i].getAttribute('data-v')))""", index)


def test_clicking_a_header_sorts_the_table(loaded):
    page, problems = loaded
    before = _column(page, "latency ms")
    page.click("#ranking-table thead th:text-is('latency ms')")
    ascending = _column(page, "latency ms")
    assert ascending == sorted(before)
    assert ascending != before  # rank order is not latency order here, so rows moved
    page.click("#ranking-table thead th:text-is('latency ms')")
    assert _column(page, "latency ms") == sorted(before, reverse=True)
    sorted_by = page.get_attribute("#ranking-table thead th:text-is('latency ms')", "aria-sort")
    assert sorted_by == "descending"
    assert problems == []


def test_filters_hide_rows(loaded):
    page, _ = loaded
    rows = page.locator("#ranking-table tbody tr")
    total = rows.count()
    page.uncheck("#filter-baselines")
    assert page.locator("#ranking-table tbody tr:not([hidden])").count() == total - 3
    page.check("#filter-baselines")
    page.fill("#filter-text", "coral_edgetpu alone")
    assert page.locator("#ranking-table tbody tr:not([hidden])").count() == 1
    page.fill("#filter-text", "")
    assert page.locator("#ranking-table tbody tr:not([hidden])").count() == total
