"""A hop cost's source says where its ends ran from the cores they resolve to (issue 13's
review): a process allowed one CPU measures both ends on it, so "on one core", though no
cores were named. Oracle: the affinity the test sets."""

from __future__ import annotations

import os
import threading

from hwsched.runtime.hopcost import hop_cpus, hop_placement


def _in_a_thread_on(cpus: set[int]) -> tuple[tuple[int, int], str]:
    """``hop_cpus()`` and ``hop_placement()`` in a thread allowed only ``cpus`` (Linux
    affinity is per thread, so the test process keeps its own)."""
    got = []

    def run() -> None:
        os.sched_setaffinity(0, cpus)
        got.append((hop_cpus(), hop_placement()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return got[0]


def test_a_process_on_one_cpu_measures_its_hop_on_one_core():
    first = min(os.sched_getaffinity(0))
    cpus, where = _in_a_thread_on({first})
    assert cpus == (first, first)
    assert where == "on one core"


def test_named_cores_decide_when_given():
    allowed = sorted(os.sched_getaffinity(0))
    assert hop_placement((allowed[0], allowed[0])) == "on one core"
    if len(allowed) > 1:
        assert hop_placement((allowed[0], allowed[1])) == "on two cores"
        assert _in_a_thread_on(set(allowed[:2]))[1] == "on two cores"
