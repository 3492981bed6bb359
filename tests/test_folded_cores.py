"""``emulate`` folds a plan's cores beyond this host's CPUs onto them: the warning it prints
names exactly the stages whose cores the host lacks, and which other boards' stages they then
share a CPU with (checked over every assignment of 3 stages to cores 0..3 on a 2-CPU host,
against where :func:`graph_cpu_sets` really pins them)."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from unittest import mock

from hwsched.deployment import Plan, StagePlan
from hwsched.runtime.graph_emulate import folded_cores, graph_cpu_sets

HOST = [0, 1]


def _plan(cores: tuple[int, ...]) -> Plan:
    base = StagePlan(0, "rpi4", "s.tflite", "", "fp32", (), ())
    return Plan("m", tuple(replace(base, index=k, board=f"b{k}", cores=(c,))
                           for k, c in enumerate(cores)), ())


def test_the_warning_names_every_folded_stage_and_whom_it_now_shares_with():
    for cores in itertools.product(range(4), repeat=3):
        plan = _plan(cores)
        with mock.patch("os.sched_getaffinity", return_value=set(HOST)):
            pinned = graph_cpu_sets(plan, None)
        lines = folded_cores(plan, HOST)
        folded = [k for k, c in enumerate(cores) if c not in HOST]
        assert [int(re.match(r"stage (\d+)", line)[1]) for line in lines] == folded, cores
        for line, k in zip(lines, folded, strict=True):
            assert f"runs on {list(pinned[k])}" in line
            sharing = {j for j in range(len(cores)) if j != k and set(pinned[j]) & set(pinned[k])}
            named = {int(j) for j in re.findall(r"b\d+'s stage (\d+)", line)}
            assert named == sharing, (cores, line)
