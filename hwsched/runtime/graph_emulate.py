"""Emulating a stage-graph plan: one address per edge, stages pinned to their core sets.

:func:`hwsched.runtime.emulate.emulate` calls these for a plan with ``edges``; everything else
(processes, readiness, the source and sink, the summary) is the chain's.

With link emulation (:func:`create_board_links`) there is one network namespace per **board**,
not per stage: stages on one board share it and reach each other over its loopback, as they
would on the board. Every pair of boards that exchanges tensors gets its own veth pair
``10.78.i.1`` ↔ ``10.78.i.2``, shaped in both directions with ``tbf`` at the link's bandwidth
(a switched network: each pair is its own link, as the placement cost model prices it). The
source shares stage 0's namespace and the sink the last stage's. The link's per-message
latency is added by a sending runner, which has one delay for all its out-edges: it is given to
a stage whose out-edges all leave its board (:func:`delays_messages`); a stage that also sends
within its board gets none rather than delaying an in-board hand-off.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwsched.deployment import Plan
from hwsched.errors import TransportError
from hwsched.runtime.graph_stage import SINK, SOURCE, downstreams, upstreams
from hwsched.runtime.linkemu import COMMAND_TIMEOUT_S, LISTEN_PORT, _run, _shape, available

#: Addresses of the board-to-board veth pairs: ``10.78.<pair>.1`` and ``.2``.
BOARD_SUBNET = "10.78"
#: Pairs of boards one run can join (one /30 per pair in the subnet's third byte).
MAX_BOARD_PAIRS = 256
LOOPBACK = "127.0.0.1"


def graph_urls(plan: Plan, free_port: Callable[[], int], links: BoardLinks | None = None
               ) -> dict[str, str]:
    """``"U->K"`` for every edge into stage K (U a stage or ``source``), ``sink``, and
    ``stage0`` (= the source's edge, where the chain's source code sends); through the
    emulated ``links`` when given (:func:`graph_link_urls`)."""
    if links is not None:
        return graph_link_urls(plan, links)
    urls = {}
    for k in range(len(plan.stages)):
        for u in upstreams(plan, k):
            urls[f"{u}->{k}"] = f"tcp://127.0.0.1:{free_port()}"
    urls[SINK] = f"tcp://127.0.0.1:{free_port()}"
    urls["stage0"] = urls[f"{SOURCE}->0"]
    return urls


def graph_cpu_sets(plan: Plan, given: Sequence[Sequence[int]] | None,
                   allowed: Sequence[int] | None = None) -> tuple[tuple[int, ...], ...]:
    """Each stage's ``cores`` from the plan (indices into the CPUs this process may use, or
    ``allowed``, taken modulo their count), else stage k on CPU k mod that count."""
    if given is not None:
        return tuple(tuple(c) for c in given)
    cpus = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
    return tuple(
        tuple(dict.fromkeys(cpus[c % len(cpus)] for c in stage.cores)) if stage.cores
        else (cpus[k % len(cpus)],)
        for k, stage in enumerate(plan.stages)
    )


def folded_cores(plan: Plan, cpus: Sequence[int]) -> list[str]:
    """What a plan's ``cores`` become on a host with only ``cpus`` (the CPUs this process may
    use; a plan's cores are indices into them, as :func:`graph_cpu_sets` takes them): one line
    per stage with a core beyond them, folded modulo onto others, naming the CPUs it then runs
    on and the other boards' stages it shares one with (the emulation no longer measures the
    boards the plan priced apart).

    >>> from hwsched.deployment import StagePlan
    >>> from dataclasses import replace as r
    >>> s = StagePlan(0, "rpi4", "a.tflite", "", "fp32", (), ())
    >>> plan = Plan("m", (r(s, board="a", cores=(0,)), r(s, index=1, board="b", cores=(2,))),
    ...             ())
    >>> print(*folded_cores(plan, [4, 5]))  # doctest: +NORMALIZE_WHITESPACE
    stage 1 (board b) asks for cores [2]; this host has 2 CPUs ([4, 5]): it runs on CPU [4],
    beside board a's stage 0
    >>> folded_cores(plan, [4, 5, 6])
    []
    """
    ordered = sorted(cpus)
    pinned = graph_cpu_sets(plan, None, allowed=ordered)
    lines = []
    for k, stage in enumerate(plan.stages):
        if not stage.cores or max(stage.cores) < len(ordered):
            continue
        board = stage.board or stage.platform
        others = [f"board {other.board or other.platform}'s stage {j}"
                  for j, other in enumerate(plan.stages)
                  if j != k and set(pinned[j]) & set(pinned[k])
                  and (other.board is None or other.board != stage.board)]
        lines.append(f"stage {k} (board {board}) asks for cores {list(stage.cores)}; this host "
                     f"has {len(ordered)} CPUs ({ordered}): it runs on CPU {list(pinned[k])}"
                     + (f", beside {', '.join(others)}" if others else ""))
    return lines


def graph_stage_argv(plan: Plan, k: int, urls: Mapping[str, str]) -> list[str]:
    """The runner flags that wire stage ``k`` to its edges."""
    argv = []
    for u in upstreams(plan, k):
        argv += ["--listen-from", f"{u}={urls[f'{u}->{k}']}"]
    for d in downstreams(plan, k):
        argv += ["--next-to", f"{d}={urls[SINK] if d == SINK else urls[f'{k}->{d}']}"]
    return argv


def graph_hops(plan: Plan, source: Mapping[str, Any], stages: Sequence[Mapping[str, Any]],
               sink: Mapping[str, Any], hop_type: Callable[..., Any]) -> tuple[Any, ...]:
    """One measured hop per edge: the source's, every stage-to-stage edge, the sink's."""
    last = len(plan.stages) - 1
    pairs: list[tuple[str, Mapping[str, Any], Mapping[str, Any], int]] = [
        ("source→stage0", source["downstream"], stages[0]["edges_in"][SOURCE],
         stages[0]["frames"])]
    for edge in plan.edges:
        a, b = edge.from_stage, edge.to_stage
        pairs.append((f"stage{a}→stage{b}", stages[a]["edges_out"][str(b)],
                      stages[b]["edges_in"][str(a)], stages[b]["frames"]))
    pairs.append((f"stage{last}→sink", stages[last]["edges_out"][SINK], sink["upstream"],
                  sink["frames"]))
    return tuple(
        hop_type(hop=i, name=name, payload_bytes_per_frame=up["payload_bytes"] / max(frames, 1),
                 send_ms=down["send_s"] / max(down["sent"], 1) * 1000.0, resent=down["resent"],
                 duplicates=up["duplicates"], rejected=up["rejected"], predicted_ms=None)
        for i, (name, down, up, frames) in enumerate(pairs)
    )


# -- link emulation: one namespace per board -----------------------------------------------------
def stage_boards(plan: Plan) -> tuple[str, ...]:
    """The board of each stage (a plan without boards: every stage its own)."""
    return tuple(stage.board or f"stage{stage.index}" for stage in plan.stages)


@dataclass(frozen=True)
class BoardLinks:
    """Namespaces and veth addresses of an emulated stage graph (module docstring)."""

    #: One namespace per board, in the order the boards first appear among the stages.
    namespaces: tuple[str, ...]
    bandwidth_bps: float
    #: Index into ``namespaces`` of each stage's board.
    stage_namespace: tuple[int, ...]
    #: ``(a, b)`` -> the address of board ``b``'s end of the veth pair joining boards a and b.
    addresses: Mapping[tuple[int, int], str]

    def prefix(self, stage: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[self.stage_namespace[stage]]]

    def host(self, sender: int, receiver: int) -> str:
        """Where stage ``receiver`` listens for stage ``sender``: its board's loopback when
        both run on one board, else its end of the two boards' veth pair."""
        a, b = self.stage_namespace[sender], self.stage_namespace[receiver]
        return LOOPBACK if a == b else self.addresses[(a, b)]

    def delete(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True,
                           timeout=COMMAND_TIMEOUT_S, check=False)


def board_pairs(plan: Plan) -> tuple[tuple[int, int], ...]:
    """Pairs of board indices (lower first) that some edge joins, sorted."""
    boards = list(dict.fromkeys(stage_boards(plan)))
    of = [boards.index(b) for b in stage_boards(plan)]
    return tuple(sorted({tuple(sorted((of[e.from_stage], of[e.to_stage])))
                         for e in plan.edges if of[e.from_stage] != of[e.to_stage]}))


def create_board_links(plan: Plan, bandwidth_bps: float, tag: str | None = None) -> BoardLinks:
    """Create one namespace per board and a shaped veth pair per pair of boards that exchange
    tensors; the caller must :meth:`BoardLinks.delete` them."""
    reason = available()
    if reason:
        raise TransportError(reason)
    pairs = board_pairs(plan)
    if len(pairs) > MAX_BOARD_PAIRS:
        raise TransportError(f"link emulation joins at most {MAX_BOARD_PAIRS} pairs of boards; "
                             f"this plan has {len(pairs)}")
    tag = tag or f"hwg{os.getpid()}"
    boards = list(dict.fromkeys(stage_boards(plan)))
    addresses = {}
    for i, (a, b) in enumerate(pairs):
        addresses[(b, a)], addresses[(a, b)] = f"{BOARD_SUBNET}.{i}.1", f"{BOARD_SUBNET}.{i}.2"
    links = BoardLinks(tuple(f"{tag}b{k}" for k in range(len(boards))), bandwidth_bps,
                       tuple(boards.index(b) for b in stage_boards(plan)), addresses)
    try:
        for ns in links.namespaces:
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        for i, (a, b) in enumerate(pairs):
            _board_veth(links, i, a, b, f"{tag}p{i}")
    except BaseException:
        links.delete()
        raise
    return links


def _board_veth(links: BoardLinks, i: int, a: int, b: int, name: str) -> None:
    left, right = links.namespaces[a], links.namespaces[b]
    _run("ip", "link", "add", f"{name}a", "netns", left, "type", "veth",
         "peer", "name", f"{name}b", "netns", right)
    for ns, dev, host in ((left, f"{name}a", 1), (right, f"{name}b", 2)):
        _run("ip", "-n", ns, "addr", "add", f"{BOARD_SUBNET}.{i}.{host}/30", "dev", dev)
        _run("ip", "-n", ns, "link", "set", dev, "up")
        _shape(ns, dev, links.bandwidth_bps)


def graph_link_urls(plan: Plan, links: BoardLinks) -> dict[str, str]:
    """As :func:`graph_urls`, each receiver listening where its sender reaches it through the
    emulated links (the source and sink on the loopback of stage 0's and the last stage's
    board)."""
    urls, port = {}, LISTEN_PORT
    for k in range(len(plan.stages)):
        for u in upstreams(plan, k):
            host = LOOPBACK if u == SOURCE else links.host(int(u), k)
            urls[f"{u}->{k}"], port = f"tcp://{host}:{port}", port + 1
    urls[SINK] = f"tcp://{LOOPBACK}:{port}"
    urls["stage0"] = urls[f"{SOURCE}->0"]
    return urls


def delays_messages(plan: Plan, k: int) -> bool:
    """Whether stage ``k``'s runner adds the link's per-message latency: every edge it sends
    on leaves its board (module docstring)."""
    board = stage_boards(plan)
    targets = plan.downstream(k)
    return bool(targets) and all(board[t] != board[k] for t in targets)
