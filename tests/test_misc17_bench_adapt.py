"""``bench_adapt`` reads the split a stream ran on at a link change from the run's own record.

Failed before: with no switch before the change it said split 0, so a run started on another
split (``--switch-at``, a plan whose split 0 is not the one streamed first) was judged against
the wrong split (``switch_needed`` wrong at the first change)."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_adapt.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_adapt_misc17", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_stream_started_on_split_1_runs_on_it_until_its_first_switch(bench):
    run = {"switches": [{"at_s": 12.4, "from_alternative": 1, "to_alternative": 0},
                        {"at_s": 25.3, "from_alternative": 0, "to_alternative": 1}],
           "timeline": [{"t_s": 0.0, "alternative": 1}, {"t_s": 12.6, "alternative": 0}]}
    assert [bench._running_at(run, t) for t in (0.0, 10.0, 20.0, 30.0)] == [1, 1, 0, 1]


def test_without_switches_the_timeline_says_where_it_started(bench):
    run = {"switches": [], "timeline": [{"t_s": 0.0, "alternative": 2},
                                        {"t_s": 0.35, "alternative": 2}]}
    assert bench._running_at(run, 10.0) == 2


def test_docstring_examples_run(bench):
    result = doctest.testmod(bench)
    assert result.attempted >= 5 and result.failed == 0
