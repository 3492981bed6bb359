"""The report's timeline of an adaptive emulation: bandwidth, throughput, split bands, switches.

The report is a pure function of the JSON, so the documents here are synthetic: a link that
fades from 1000 to 20 Mbit/s and comes back, and a pipeline that switches split twice. The
pixels are checked against the chart's own axis mapping recomputed here (x proportional to
time), and a document without a timeline must give exactly the page it gave before.
"""

from __future__ import annotations

import json
import re
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_report_html import EVIL, analysis, emulation_of, svg_of

from hwsched.report import timeline
from hwsched.report.html import render_html
from hwsched.runtime.emulate import EmulationResult

BUCKET_S = 0.25
FADE_S, RECOVER_S = 5.0, 10.0
SWITCHES_S = (5.75, 10.5)
END_S = 14.0


def _fading_run() -> dict:
    """Timeline and switches of a run on a link that fades at 5 s and recovers at 10 s."""
    buckets = []
    for i in range(int(END_S / BUCKET_S) + 1):
        t = i * BUCKET_S
        faded = FADE_S <= t < RECOVER_S
        alternative = 1 if SWITCHES_S[0] <= t < SWITCHES_S[1] else 0
        buckets.append({"t_s": t, "hop_bandwidth_mbps": {"1": 19.0 if faded else 940.0},
                        "throughput_ips": 30.0 + alternative * 20 if faded else 100.0,
                        "alternative": alternative})
    switches = [
        {"at_s": SWITCHES_S[0], "at_frame": 520, "from_alternative": 0, "to_alternative": 1,
         "from_cut_positions": [12], "to_cut_positions": [30], "measured_bandwidth_mbps": 19.0},
        {"at_s": SWITCHES_S[1], "at_frame": 790, "from_alternative": 1, "to_alternative": 0,
         "from_cut_positions": [30], "to_cut_positions": [12], "measured_bandwidth_mbps": 940.0},
    ]
    schedule = [{"at_s": 0.0, "bandwidth_mbps": 1000.0, "hop": None, "applied_at_s": 0.0},
                {"at_s": FADE_S, "bandwidth_mbps": 20.0, "hop": None, "applied_at_s": 5.01},
                {"at_s": RECOVER_S, "bandwidth_mbps": 1000.0, "hop": None,
                 "applied_at_s": 10.02}]
    return {"timeline": buckets, "switches": switches, "bandwidth_schedule": schedule}


@pytest.fixture(scope="module")
def document() -> dict:
    return analysis()


@pytest.fixture(scope="module")
def plain(document) -> dict:
    """An emulation document as ``emulate --json`` writes it, without a timeline."""
    return json.loads(json.dumps(emulation_of(document["candidates"][0]).to_dict()))


def _x(t_s: float) -> float:
    """The chart's time axis, recomputed: LEFT..RIGHT pixels for 0..END_S seconds."""
    return timeline.LEFT + t_s / END_S * (timeline.RIGHT - timeline.LEFT)


def _floats(element: str, name: str) -> float:
    return float(re.search(rf'{name}="([-0-9.]+)"', element).group(1))


def test_no_timeline_renders_the_page_as_before(document, plain):
    page = render_html(document, plain)
    assert 'id="chart-timeline"' not in page and 'id="timeline"' not in page
    assert timeline.section(plain) == ""
    with_timeline = render_html(document, {**plain, **_fading_run()})
    section = timeline.section({**plain, **_fading_run()})
    assert section and section in with_timeline
    assert with_timeline.replace(section, "") == page  # the timeline adds itself, nothing else


def test_the_emulation_reader_keeps_the_timeline_for_the_report(plain):
    raw = {**plain, **_fading_run()}
    record = EmulationResult.from_dict(raw, "run.json")
    again = json.loads(json.dumps(record.to_dict()))
    assert timeline.section(again) == timeline.section(raw)


def test_bands_switches_and_schedule_fall_at_their_times(document, plain):
    chart = svg_of(render_html(document, {**plain, **_fading_run()}), "chart-timeline")
    bands = re.findall(r'<rect [^>]*class="band"[^>]*>', chart)
    assert len(bands) == 3
    edges = [(_floats(b, "x"), _floats(b, "x") + _floats(b, "width")) for b in bands]
    expected = [(0.0, SWITCHES_S[0]), SWITCHES_S, (SWITCHES_S[1], END_S)]
    for (left, right), (start, stop) in zip(edges, expected, strict=True):
        assert left == pytest.approx(_x(start), abs=0.02)
        assert right == pytest.approx(_x(stop), abs=0.02)
    marks = re.findall(r'<line [^>]*class="switch"[^>]*>(.*?)</line>', chart)
    xs = [_floats(m, "x1") for m in re.findall(r'<line [^>]*class="switch"[^>]*>', chart)]
    assert xs == pytest.approx([_x(t) for t in SWITCHES_S], abs=0.02)
    assert "frame 520: cuts 12 → cuts 30" in marks[0]
    assert "alt 1 · cuts 30" in chart and "alt 0 · cuts 12" in chart
    steps = re.search(r'<polyline points="([^"]+)"[^>]*class="schedule hop-all"', chart)
    step_xs = sorted({float(p.split(",")[0]) for p in steps.group(1).split()})
    assert step_xs == pytest.approx([_x(t) for t in (0.0, 5.01, 10.02, END_S)], abs=0.02)


def test_throughput_line_follows_the_buckets(document, plain):
    run = _fading_run()
    chart = svg_of(render_html(document, {**plain, **run}), "chart-timeline")
    points = re.search(r'<polyline points="([^"]+)"[^>]*class="throughput"', chart).group(1)
    xy = [tuple(map(float, p.split(","))) for p in points.split()]
    assert [x for x, _ in xy] == pytest.approx([_x(b["t_s"]) for b in run["timeline"]], abs=0.02)
    values = [b["throughput_ips"] for b in run["timeline"]]
    # higher throughput is drawn higher (smaller y), equal values at equal heights
    for (_, ya), (_, yb), va, vb in zip(xy, xy[1:], values, values[1:], strict=False):
        assert (ya < yb) == (va > vb) and (ya == yb) == (va == vb)


def test_switch_table_lists_every_switch(plain):
    section = timeline.section({**plain, **_fading_run()})
    rows = re.findall(r"<tr><td.*?</tr>", section.split('id="switch-table"')[1])
    assert len(rows) == 2 and "790" in rows[1] and "cuts 30 → cuts 12" in rows[1]
    quiet = timeline.section({**plain, "timeline": _fading_run()["timeline"][:3]})
    assert 'id="no-switches"' in quiet


def test_hostile_hop_names_are_escaped(plain):
    run = _fading_run()
    for bucket in run["timeline"]:
        bucket["hop_bandwidth_mbps"] = {EVIL: 5.0}
    section = timeline.section({**plain, **run})
    assert EVIL not in section and "&lt;script&gt;" in section


def test_same_document_same_bytes(plain):
    run = {**plain, **_fading_run()}
    assert timeline.section(run) == timeline.section(json.loads(json.dumps(run)))


def test_a_single_bucket_and_missing_values_still_draw(plain):
    one = {"timeline": [{"t_s": 0.0, "hop_bandwidth_mbps": {"1": None}, "throughput_ips": 3.0,
                         "alternative": 0}]}
    chart = timeline.timeline_chart(one)
    assert 'id="chart-timeline"' in chart and "<circle" in chart


@given(st.lists(st.tuples(st.floats(0.01, 3.0), st.integers(0, 3)), min_size=1, max_size=30))
def test_bands_partition_the_run_by_alternative(steps):
    """Brute force: every bucket lies in the one band of its alternative, bands tile the run
    and neighbours differ."""
    buckets, t = [], 0.0
    for gap, alternative in steps:
        buckets.append({"t_s": t, "alternative": alternative})
        t += gap
    runs = timeline.bands(buckets, end_s=t)
    assert runs[0].start_s == 0.0 and runs[-1].stop_s == t
    for a, b in pairwise(runs):
        assert a.stop_s == b.start_s and a.alternative != b.alternative
    for bucket in buckets:
        inside = [r for r in runs if r.start_s <= bucket["t_s"] < r.stop_s
                  or (r is runs[-1] and bucket["t_s"] >= r.start_s)]
        assert inside[0].alternative == bucket["alternative"]


def test_only_the_links_between_stages_are_drawn(plain):
    """The source's and the sink's local hand-offs (hops 0 and n) are not the link."""
    run = _fading_run()
    for bucket in run["timeline"]:
        bucket["hop_bandwidth_mbps"] = {"0": 5.0, "1": 900.0, "2": 7.0}
    chart = timeline.timeline_chart({**plain, **run})
    assert plain["stages_count"] == 3
    assert "bandwidth hop-1" in chart and "bandwidth hop-2" in chart
    assert "bandwidth hop-0" not in chart and "bandwidth hop-3" not in chart
    chart = timeline.timeline_chart({**plain, "stages_count": 2, **run})
    assert "bandwidth hop-1" in chart and "bandwidth hop-2" not in chart


def test_band_edges_move_to_the_switch_times(plain):
    """A bucket knows only its last frame's split; the switch knows when it happened."""
    run = _fading_run()
    run["switches"][0]["at_s"] = SWITCHES_S[0] + 0.1  # inside the bucket before the change
    chart = timeline.timeline_chart({**plain, **run})
    bands = re.findall(r'<rect [^>]*class="band"[^>]*>', chart)
    assert _floats(bands[1], "x") == pytest.approx(_x(SWITCHES_S[0] + 0.1), abs=0.02)


def test_band_labels_never_overlap(plain):
    """A split that ran briefly keeps its band (and its tooltip) but no label spilling onto
    its neighbour's."""
    run = _fading_run()
    run["switches"][0]["at_s"] = 0.2
    for bucket in run["timeline"]:
        bucket["alternative"] = 1 if 0.25 <= bucket["t_s"] < SWITCHES_S[1] else 0
    chart = timeline.timeline_chart({**plain, **run})
    assert len(re.findall(r'class="band"', chart)) == 3
    labels = re.findall(r'<text x="([0-9.]+)"[^>]*>(alt [^<]*)</text>', chart)
    assert [label for _, label in labels] == ["alt 1 · cuts 30", "alt 0 · cuts 12"]
    right_edges = [float(x) + timeline.LABEL_CHAR_PX * len(label) for x, label in labels]
    assert right_edges[0] < float(labels[1][0])
