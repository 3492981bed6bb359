"""``emulate`` folds a plan's cores beyond this host's CPUs onto them (a plan's cores are
indices into the CPUs the process may use): the warning it prints names exactly the stages
with a core beyond them, where each then runs, and the other boards' stages it shares a CPU
with — checked over every assignment of 3 stages to cores 0..3 or none, on two boards or three,
on hosts whose CPU ids are and are not 0..n-1, against where the emulation pins each stage
(its own CPU sets, the oracle computed here from the plan by the modulo rule)."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

from hwsched.deployment import Plan, StagePlan
from hwsched.runtime.graph_emulate import folded_cores, graph_cpu_sets

NO_CORES = None


def _plan(cores: tuple[int | None, ...], boards: tuple[str, ...]) -> Plan:
    base = StagePlan(0, "rpi4", "s.tflite", "", "fp32", (), ())
    return Plan("m", tuple(replace(base, index=k, board=b, cores=None if c is None else (c,))
                           for k, (c, b) in enumerate(zip(cores, boards, strict=True))), ())


def _pinned(cores, host):
    """Where a stage runs: its core's index into the host's CPUs, modulo their count; a stage
    without cores on CPU k mod count."""
    return [{host[(k if c is None else c) % len(host)]} for k, c in enumerate(cores)]


def test_the_warning_names_every_folded_stage_where_it_runs_and_whom_it_shares_with():
    for host in ([0, 1], [1, 3]):
        for boards in (("a", "b", "c"), ("a", "a", "b")):
            for cores in itertools.product((NO_CORES, 0, 1, 2, 3), repeat=3):
                plan = _plan(cores, boards)
                pinned = _pinned(cores, host)
                assert [set(c) for c in graph_cpu_sets(plan, None, allowed=host)] == pinned
                lines = folded_cores(plan, host)
                folded = [k for k, c in enumerate(cores) if c is not None and c >= len(host)]
                said = [int(re.match(r"stage (\d+)", line)[1]) for line in lines]
                assert said == folded, (host, boards, cores, lines)
                for line, k in zip(lines, folded, strict=True):
                    assert f"runs on CPU {sorted(pinned[k])}" in line, line
                    sharing = {j for j in range(3) if j != k and pinned[j] & pinned[k]
                               and boards[j] != boards[k]}
                    named = {int(j) for j in re.findall(r"'s stage (\d+)", line)}
                    assert named == sharing, (host, boards, cores, line)
