"""Link emulation: one network namespace per stage, veth pairs shaped with ``tc``.

Stage ``k`` runs in namespace ``NS_k``; hop ``k`` (stage ``k-1`` → ``k``) is a veth pair
``10.77.k.1`` (in ``NS_{k-1}``) ↔ ``10.77.k.2`` (in ``NS_k``), shaped in both directions with a
token-bucket filter (``tbf``) at the link's bandwidth. The source shares stage 0's namespace and
the sink the last stage's (camera and consumer sit on those boards), reaching them over the
namespace's own loopback. Addresses exist only inside the namespaces created here. This
kernel has no ``netem``, so the link's per-message latency is added by the sending runner
(``--link-delay-ms``). Needs root and iproute2; everything is deleted on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from hwsched.errors import TransportError

#: Token bucket depth: 4 ms of traffic at the line rate, at least a few full frames.
BURST_S = 0.004
MIN_BURST_BYTES = 16_000
TBF_LATENCY_MS = 200
COMMAND_TIMEOUT_S = 10.0
LISTEN_PORT = 5555


def available() -> str | None:
    """None when link emulation can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "link emulation needs root (network namespaces)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "link emulation needs iproute2 (ip, tc)"
    return None


def _run(*args: str) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TransportError(f"{' '.join(args)}: timed out") from None
    if done.returncode != 0:
        raise TransportError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")


@dataclass(frozen=True)
class EmulatedLinks:
    """Namespaces and addresses of an emulated pipeline (see the module docstring)."""

    namespaces: tuple[str, ...]
    bandwidth_bps: float

    def listen_url(self, stage: int) -> str:
        if stage == 0:
            return f"tcp://127.0.0.1:{LISTEN_PORT}"  # the source is local to stage 0
        return f"tcp://10.77.{stage}.2:{LISTEN_PORT}"

    def sink_url(self) -> str:
        return f"tcp://127.0.0.1:{LISTEN_PORT + 1}"

    def prefix(self, stage: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[stage]]

    def delete(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True,
                           timeout=COMMAND_TIMEOUT_S, check=False)


def create_links(stages: int, bandwidth_bps: float, tag: str | None = None) -> EmulatedLinks:
    """Create the namespaces and shaped veth pairs; the caller must :meth:`delete` them."""
    reason = available()
    if reason:
        raise TransportError(reason)
    tag = tag or f"hws{os.getpid()}"
    links = EmulatedLinks(tuple(f"{tag}s{k}" for k in range(stages)), bandwidth_bps)
    try:
        for ns in links.namespaces:
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        for hop in range(1, stages):
            _veth(links, hop, f"{tag}h{hop}")
    except BaseException:
        links.delete()
        raise
    return links


def _veth(links: EmulatedLinks, hop: int, name: str) -> None:
    left, right = links.namespaces[hop - 1], links.namespaces[hop]
    _run("ip", "link", "add", f"{name}a", "netns", left, "type", "veth",
         "peer", "name", f"{name}b", "netns", right)
    for ns, dev, host in ((left, f"{name}a", 1), (right, f"{name}b", 2)):
        _run("ip", "-n", ns, "addr", "add", f"10.77.{hop}.{host}/30", "dev", dev)
        _run("ip", "-n", ns, "link", "set", dev, "up")
        _shape(ns, dev, links.bandwidth_bps)


def _shape(ns: str, dev: str, bandwidth_bps: float) -> None:
    burst = max(int(bandwidth_bps / 8 * BURST_S), MIN_BURST_BYTES)
    _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
         "rate", f"{int(bandwidth_bps)}bit", "burst", str(burst),
         "latency", f"{TBF_LATENCY_MS}ms")
