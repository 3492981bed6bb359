"""Link emulation: one network namespace per stage, veth pairs shaped with ``tc``.

Stage ``k`` runs in namespace ``NS_k``; hop ``k`` (stage ``k-1`` → ``k``) is a veth pair
``10.77.k.1`` (in ``NS_{k-1}``) ↔ ``10.77.k.2`` (in ``NS_k``), shaped in both directions with a
token-bucket filter (``tbf``) at the link's bandwidth. The source shares stage 0's namespace and
the sink the last stage's (camera and consumer sit on those boards), reaching them over the
namespace's own loopback. Addresses exist only inside the namespaces created here. This
kernel has no ``netem``, so the link's per-message latency is added by the sending runner
(``--link-delay-ms``). Needs root and iproute2; everything is deleted on exit.

A *bandwidth schedule* replays a fading link: :func:`parse_bandwidth_schedule` reads
``T0:MBPS[,T1:MBPS…]`` (seconds from the start of streaming : Mbit/s; ``HOP@T:MBPS`` changes
one hop only) and a :class:`BandwidthScheduler` thread re-shapes the veth pairs at those times
while the run streams, recording when each change really took effect.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hwsched.errors import BandwidthScheduleError, TransportError

#: Token bucket depth: 4 ms of traffic at the line rate, at least a few full frames.
BURST_S = 0.004
MIN_BURST_BYTES = 16_000
TBF_LATENCY_MS = 200
COMMAND_TIMEOUT_S = 10.0
LISTEN_PORT = 5555
#: Link rates are given in Mbit/s (decimal, as ``tc`` and link descriptors count).
BPS_PER_MBPS = 1e6
#: How often the scheduler looks whether streaming has started or ended.
POLL_S = 0.02
#: Seconds :meth:`BandwidthScheduler.stop` waits for a ``tc`` call in progress.
STOP_JOIN_S = 2 * COMMAND_TIMEOUT_S


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
    #: Prefix of the veth names (hop ``k`` is ``{tag}h{k}a`` ↔ ``{tag}h{k}b``).
    tag: str = "hws"

    @property
    def hops(self) -> int:
        """Shaped hops: one between each pair of consecutive stages."""
        return len(self.namespaces) - 1

    def hop_devices(self, hop: int) -> tuple[tuple[str, str], tuple[str, str]]:
        """(namespace, device) of both ends of ``hop`` (stage ``hop-1`` → stage ``hop``)."""
        name = f"{self.tag}h{hop}"
        return ((self.namespaces[hop - 1], f"{name}a"), (self.namespaces[hop], f"{name}b"))

    def set_rate(self, hop: int, bandwidth_bps: float) -> None:
        """Re-shape both directions of ``hop`` to ``bandwidth_bps`` (frames already queued
        drain at the new rate)."""
        for ns, dev in self.hop_devices(hop):
            _shape(ns, dev, bandwidth_bps, "change")

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
    links = EmulatedLinks(tuple(f"{tag}s{k}" for k in range(stages)), bandwidth_bps, tag)
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


def _shape(ns: str, dev: str, bandwidth_bps: float, verb: str = "add") -> None:
    burst = max(int(bandwidth_bps / 8 * BURST_S), MIN_BURST_BYTES)
    _run("ip", "netns", "exec", ns, "tc", "qdisc", verb, "dev", dev, "root", "tbf",
         "rate", f"{int(bandwidth_bps)}bit", "burst", str(burst),
         "latency", f"{TBF_LATENCY_MS}ms")


# -- bandwidth schedules -------------------------------------------------------------------------
@dataclass(frozen=True)
class BandwidthStep:
    """From ``at_s`` seconds after streaming starts, ``hop`` (None: every hop) is shaped to
    ``bandwidth_mbps``."""

    at_s: float
    bandwidth_mbps: float
    hop: int | None = None


@dataclass(frozen=True)
class AppliedStep:
    """A :class:`BandwidthStep` as it was applied: ``applied_at_s`` is when ``tc`` had
    re-shaped the last device, in seconds from the start of streaming (0 for a step at 0,
    applied before the first frame left)."""

    at_s: float
    bandwidth_mbps: float
    hop: int | None
    applied_at_s: float


def parse_bandwidth_schedule(text: str, option: str = "--bandwidth-schedule"
                             ) -> tuple[BandwidthStep, ...]:
    """The steps of ``T0:MBPS[,T1:MBPS…]`` (``HOP@T:MBPS`` for one hop), checked.

    Times are seconds from the start of streaming, written in order; a hop's times must
    increase (two hops may change at the same time). Each error names the offending item.

    >>> parse_bandwidth_schedule("0:1000, 5:20,2@9.5:1000")  # doctest: +NORMALIZE_WHITESPACE
    (BandwidthStep(at_s=0.0, bandwidth_mbps=1000.0, hop=None),
     BandwidthStep(at_s=5.0, bandwidth_mbps=20.0, hop=None),
     BandwidthStep(at_s=9.5, bandwidth_mbps=1000.0, hop=2))
    >>> parse_bandwidth_schedule("0:1000,5:0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hwsched.errors.BandwidthScheduleError: --bandwidth-schedule item '5:0': the rate must be ...
    """
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise BandwidthScheduleError(f"{option}: empty; give T:MBPS[,T:MBPS…], e.g. 0:1000,10:20")
    steps = tuple(_parse_step(item, option) for item in items)
    _check_order(steps, items, option)
    return steps


def _parse_step(item: str, option: str) -> BandwidthStep:
    def fail(problem: str) -> BandwidthScheduleError:
        return BandwidthScheduleError(f"{option} item {item!r}: {problem}")

    hop_text, at, rest = item.rpartition("@") if "@" in item else ("", "", item)
    at_text, colon, rate_text = rest.partition(":")
    if not colon or not at_text.strip() or not rate_text.strip():
        raise fail("use T:MBPS or HOP@T:MBPS (seconds from the start of streaming : Mbit/s)")
    hop = None
    if at:
        if not hop_text.strip().isdigit() or int(hop_text) < 1:
            raise fail(f"the hop must be a number ≥ 1 (hop k joins stage k-1 to stage k), "
                       f"got {hop_text.strip()!r}")
        hop = int(hop_text)
    at_s, rate = _number(at_text), _number(rate_text)
    if at_s is None or at_s < 0:
        raise fail(f"the time must be a number of seconds ≥ 0, got {at_text.strip()}")
    if rate is None or rate <= 0:
        raise fail(f"the rate must be a positive number of Mbit/s, got {rate_text.strip()}")
    return BandwidthStep(at_s, rate, hop)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_order(steps: Sequence[BandwidthStep], items: Sequence[str], option: str) -> None:
    """Written in time order, and no hop changed twice at one time (the step for every hop
    counts for each)."""
    for k in range(1, len(steps)):
        earlier, step = steps[k - 1], steps[k]
        if step.at_s < earlier.at_s:
            raise BandwidthScheduleError(
                f"{option} item {items[k]!r}: times must increase, but {step.at_s:g} s comes "
                f"after {earlier.at_s:g} s (item {items[k - 1]!r})")
        same_time = [j for j in range(k) if steps[j].at_s == step.at_s]
        for j in same_time:
            if None in (steps[j].hop, step.hop) or steps[j].hop == step.hop:
                raise BandwidthScheduleError(
                    f"{option} item {items[k]!r}: the same hop changes twice at "
                    f"{step.at_s:g} s (item {items[j]!r}); times of a hop must increase")


def check_schedule(steps: Sequence[BandwidthStep], link_emulation: bool,
                   hops: int | None = None, option: str = "--bandwidth-schedule") -> None:
    """Refuse a schedule that this run cannot replay (before anything starts); with ``hops``
    (the plan's hops between stages), also a step for a hop the plan lacks."""
    if not steps:
        return
    if not link_emulation:
        raise BandwidthScheduleError(f"{option} changes the shaped link's rate: it needs "
                                     "--link-emulation")
    for step in steps:
        if hops is not None and step.hop is not None and step.hop > hops:
            raise BandwidthScheduleError(
                f"{option} item '{step.hop}@{step.at_s:g}:{step.bandwidth_mbps:g}': the plan "
                f"has {hops} hop(s) between stages (1…{hops})")


def file_exists(path: os.PathLike[str] | str) -> Callable[[], bool]:
    """An end condition for :class:`BandwidthScheduler`: ``path`` exists (the sink's stats,
    written when the stream has ended)."""
    return lambda: os.path.exists(path)


def file_mtime_s(path: os.PathLike[str] | str) -> Callable[[], float | None]:
    """A start clock for :class:`BandwidthScheduler`: the host time ``path`` was written (the
    source's ready file: it is written the moment before the first frame is sent)."""
    def started_s() -> float | None:
        try:
            return os.stat(path).st_mtime
        except FileNotFoundError:
            return None
    return started_s


class BandwidthScheduler:
    """Replays a bandwidth schedule on emulated links while a run streams.

    A thread waits for the start of streaming (``started_s`` returns its host time, None
    until then), then applies each step when it falls due, until the stream has ended
    (``ended``: a step after the last frame would change nothing the run measured); steps at 0
    are applied by :meth:`start`, before the first frame can leave. Waiting is on an event, so
    :meth:`stop` ends it at once. A ``tc`` failure ends the replay and is raised by
    :meth:`stop`: a run whose link did not follow its schedule must not pass for one that did.
    """

    def __init__(self, links: EmulatedLinks, steps: Sequence[BandwidthStep],
                 started_s: Callable[[], float | None],
                 ended: Callable[[], bool] = lambda: False) -> None:
        self.links, self.steps, self.started_s, self.ended = links, tuple(steps), started_s, ended
        self.applied: list[AppliedStep] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._replay, name="bandwidth-schedule",
                                        daemon=True)

    def start(self) -> BandwidthScheduler:
        for step in self.steps:
            if step.at_s == 0:
                self._apply(step)
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> bool:
        """Wait until the replay is over (every step applied, stopped, or failed); False when
        it is still going after ``timeout_s``."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> tuple[AppliedStep, ...]:
        """End the replay; the steps applied so far (raises the replay's error, if any)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN_S)
        if self._error is not None:
            raise self._error
        return tuple(self.applied)

    def stop_quietly(self) -> None:
        """End the replay when the run already failed (its error is the one to report)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN_S)

    def _replay(self) -> None:
        try:
            start_s = self._wait_for_start()
            for step in self.steps:
                if start_s is None or not self._wait_until(start_s + step.at_s):
                    return
                if step.at_s > 0:
                    self._apply(step, start_s)
        except BaseException as error:  # raised again by stop()
            self._error = error

    def _wait_until(self, due_s: float) -> bool:
        """Wait for host time ``due_s``; False when stopped or the stream ended first."""
        while (remaining := due_s - time.time()) > 0:
            if self._stop.wait(min(remaining, POLL_S)) or self.ended():
                return False
        return not self._stop.is_set()

    def _wait_for_start(self) -> float | None:
        """Host time streaming started; None when stopped before it did."""
        while not self._stop.is_set():
            start_s = self.started_s()
            if start_s is not None:
                return start_s
            self._stop.wait(POLL_S)
        return None

    def _apply(self, step: BandwidthStep, start_s: float | None = None) -> None:
        hops = range(1, self.links.hops + 1) if step.hop is None else (step.hop,)
        for hop in hops:
            self.links.set_rate(hop, step.bandwidth_mbps * BPS_PER_MBPS)
        applied_s = 0.0 if start_s is None else time.time() - start_s
        self.applied.append(AppliedStep(step.at_s, step.bandwidth_mbps, step.hop, applied_s))
