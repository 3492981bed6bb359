"""Link emulation: stages in their own network namespaces over a tc-shaped veth link.

Needs root and iproute2 (skipped otherwise); everything it creates lives in namespaces it
creates and deletes itself."""

from __future__ import annotations

import os
import subprocess

import pytest
from testlinks import link_yaml

from hwsched.runtime.linkemu import available

pytestmark = pytest.mark.network

BANDWIDTH_BPS = 1_000_000
FRAMES = 30
CUT = 8  # after res_add: one 8×8×8 float32 tensor (2048 B) crosses


@pytest.fixture(scope="module")
def slow_plan(tmp_path_factory):
    reason = available()
    if reason:
        pytest.skip(reason)
    from kerasmodels import residual_se_model

    from hwsched.export import export
    from hwsched.load import LoadedModel
    from hwsched.load.keras_reader import read_keras_model

    root = tmp_path_factory.mktemp("net")
    link = root / "slow1m.yaml"
    link.write_text(link_yaml("slow1m", BANDWIDTH_BPS, 2.0))
    model = residual_se_model()
    graph, binding = read_keras_model(model, "res_se", source="test")
    loaded = LoadedModel(graph=graph, source="test", kind="keras", keras=binding)
    plan_dir = root / "plan"
    export(loaded, ["rpi4", "rpi4"], plan_dir, cut_positions=(CUT,), precisions="fp32",
           cache=False, samples=2, link=str(link))
    return plan_dir, link


def _namespaces() -> set[str]:
    """This process's emulation namespaces (named after its pid: another emulation running on
    the machine at the same time has its own)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in done.stdout.splitlines()
            if line.strip() and line.split()[0].startswith(f"hws{os.getpid()}")}


def test_shaped_link_bounds_throughput_and_cleans_up(slow_plan):
    from hwsched.runtime.emulate import EmulationConfig, emulate

    plan_dir, link = slow_plan
    before = _namespaces()
    result = emulate(plan_dir, EmulationConfig(frames=FRAMES, link_emulation=True,
                                               link=str(link)))
    assert result.complete and result.in_order
    payload = result.hops[1].payload_bytes_per_frame
    wire_bytes = payload + 200  # frame header, TCP/IP, ZeroMQ framing
    assert result.throughput_ips <= 1.15 * BANDWIDTH_BPS / 8 / payload
    assert result.throughput_ips >= 0.4 * BANDWIDTH_BPS / 8 / wire_bytes
    assert result.link_emulation["delay_ms"] == 2.0
    assert _namespaces() == before  # namespaces and veths are gone
