"""The sink: collects the last stage's outputs, in order, once each.

It acknowledges every frame on receipt (end of custody), reorders by sequence number and
*delivers* frames strictly in order. Per frame it records the end-to-end latency (host time of
delivery minus the source's first-send time), and top-1 accuracy when the source's dataset has
labels. Outputs can be saved (``.npz``, one stacked array per output tensor, in frame order).

The sink is also the run's independent check of an adaptive switch: it counts what it
delivered (each sequence number once, in order) and which alternative each frame ran on, from
the frames themselves rather than from the source's word, and it reports the last hop's
measured bandwidth upstream like a stage.
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import Plan, TensorSpec
from hwsched.errors import HwschedError, TransportError
from hwsched.fileio import atomic_write_bytes
from hwsched.handoff import to_float
from hwsched.runtime.controller import hop_specs_by_alternative, sizing_specs
from hwsched.runtime.frames import Report
from hwsched.runtime.process import (
    IDLE_WAIT_S,
    POLL_S,
    RunOptions,
    StopFlag,
    cpu_record,
    mark_ready,
    write_stats,
)
from hwsched.runtime.reliable import MAX_HELD_WINDOWS, Receiver
from hwsched.runtime.routing import hop_specs
from hwsched.runtime.transport import Channel, Waiter, open_channel, wait_readable
from hwsched.units import MS_PER_S

log = logging.getLogger("hwsched.runtime")
#: After the stream ends the sink keeps answering resends this long (a lost last ack).
LINGER_S = 0.3
#: How often the sink reports the last hop's bandwidth upstream.
REPORT_INTERVAL_S = 0.1


class _Collector:
    """Reorder buffer plus the per-frame records of delivered frames.

    The buffer holds at most ``max_waiting`` frames ahead of the next one to deliver, like a
    stage's receiver (:data:`~hwsched.runtime.reliable.MAX_HELD_WINDOWS` windows): a legitimate
    upstream has at most one window unacknowledged, so only a faulty or hostile peer fills it.
    The next frame in order is always taken (it delivers at once and never grows the buffer),
    so a full buffer cannot block the stream."""

    def __init__(self, labels: list[int] | None, max_waiting: int) -> None:
        self.waiting: dict[int, tuple[float, float, dict[str, np.ndarray], int]] = {}
        self.max_waiting = max_waiting
        self.next_seq = 0
        self.delivered: list[int] = []
        self.alternatives: list[int] = []
        self.latency_ms: list[float] = []
        self.delivered_s: list[float] = []
        self.outputs: dict[str, list[np.ndarray]] = {}
        self.labels = labels
        self.correct = 0

    def add(self, seq: int, origin_s: float, tensors: dict[str, np.ndarray],
            alternative: int = 0) -> bool:
        """Take frame ``seq`` and deliver what is now in order; False (not taken) when the
        buffer is full and ``seq`` is not the next frame."""
        if seq != self.next_seq and len(self.waiting) >= self.max_waiting:
            return False
        self.waiting[seq] = (origin_s, time.time(), {k: v.copy() for k, v in tensors.items()},
                             alternative)
        while self.next_seq in self.waiting:
            origin, received_s, arrays, alt = self.waiting.pop(self.next_seq)
            self._deliver(self.next_seq, origin, received_s, arrays, alt)
            self.next_seq += 1
        return True

    def _deliver(self, seq: int, origin_s: float, received_s: float,
                 arrays: dict[str, np.ndarray], alternative: int = 0) -> None:
        self.delivered.append(seq)
        self.alternatives.append(alternative)
        self.latency_ms.append((received_s - origin_s) * MS_PER_S)
        self.delivered_s.append(received_s)
        for name, array in arrays.items():
            self.outputs.setdefault(name, []).append(array)
        # the source wraps around its dataset (frame i is item i mod N), so do the labels
        if self.labels and len(arrays) == 1:
            prediction = int(np.argmax(next(iter(arrays.values())).reshape(-1)))
            self.correct += prediction == self.labels[seq % len(self.labels)]


class _SinkLoop:
    """What the sink does with arrivals: acknowledge on receipt what it takes (end of
    custody), leave unacknowledged what the full reorder buffer refuses (its sender resends
    it), and note the end of the stream."""

    def __init__(self, channel: Channel, specs: Mapping[str, TensorSpec], window: int,
                 labels: list[int] | None,
                 alternatives: Mapping[int, Mapping[str, TensorSpec]] | None = None,
                 hop: int = 0, reports: bool = True) -> None:
        self.receiver = Receiver(channel, specs, window=window, alternatives=alternatives)
        #: Whether the last hop's bandwidth goes upstream: a chain's stages forward it to the
        #: source (an adaptive plan's controller); a stage graph's stages read no reports, and
        #: each one woke the last stage, on its core, every 0.1 s for nothing.
        self.reports = reports
        #: Alternatives whose outputs differ in type (an int8 last stage in one): the saved
        #: outputs are then all dequantized to float32, so every frame's are comparable.
        self.as_float = dict(alternatives) if alternatives and _types_differ(alternatives) \
            else None
        self.collector = _Collector(labels, max_waiting=MAX_HELD_WINDOWS * window)
        self.total: int | None = None
        self.refused = 0
        self.hop = hop
        self.reports_sent = 0
        self.next_report_s = time.monotonic() + REPORT_INTERVAL_S

    @property
    def finished(self) -> bool:
        return self.total is not None and len(self.collector.delivered) >= self.total

    def step(self) -> None:
        # every message taken is acknowledged or released below, so a batch of max_held never
        # meets the receiver's own bound: one refusal, counted and logged once, per frame
        for message in self.receiver.messages(limit=self.receiver.max_held):
            if message.kind == "end":
                self.total = message.seq
            elif not self.collector.add(message.seq, message.origin_s, self._outputs(message),
                                        message.alternative):
                self._refuse(message.seq)
                continue
            self.receiver.done(message.seq)
        self._report()

    def _outputs(self, message) -> dict[str, np.ndarray]:
        if self.as_float is None:
            return dict(message.tensors)
        specs = self.as_float[message.alternative]
        return {name: to_float(array, specs[name]) for name, array in message.tensors.items()}

    def _report(self) -> None:
        """The last hop's bandwidth, upstream every interval (the sink computes nothing)."""
        meter = self.receiver.meter
        if not self.reports or meter.mbps is None or time.monotonic() < self.next_report_s:
            return
        self.next_report_s = time.monotonic() + REPORT_INTERVAL_S
        alt = self.collector.alternatives[-1] if self.collector.alternatives else 0
        self.receiver.report(self.reports_sent, Report(self.hop, self.hop, meter.exact_mbps, None,
                                                       alt, time.time(), meter.at_least_mbps))
        self.reports_sent += 1

    def wait_s(self, deadline_s: float) -> float:
        """How long the loop may sleep: until the next report or the deadline, at most
        :data:`IDLE_WAIT_S` (messages and signals wake it earlier); a probe train's wait is
        the receiver's to time, so while one is expected the loop checks every ``POLL_S``."""
        if self.receiver.probing:
            return POLL_S
        timers = [deadline_s, time.monotonic() + IDLE_WAIT_S]
        if self.reports and self.receiver.meter.mbps is not None:
            timers.append(self.next_report_s)
        return max(0.0, min(timers) - time.monotonic())

    def _refuse(self, seq: int) -> None:
        self.refused += 1
        self.receiver.release(seq)
        self.receiver.throttle.warning(
            "reorder", "sink: refused frame %d: %d frames already wait for frame %d",
            seq, len(self.collector.waiting), self.collector.next_seq)


def sink_loop(plan: Plan, channel: Channel, window: int, labels: list[int] | None = None
              ) -> _SinkLoop:
    """The sink's loop for ``plan`` on ``channel``; it reports the last hop's bandwidth
    upstream only on a chain (a stage graph's stages read no reports)."""
    hop = len(plan.stages)
    return _SinkLoop(channel, hop_specs(plan, hop), window, labels,
                     hop_specs_by_alternative(plan, hop) if plan.alternatives else None, hop,
                     reports=not plan.is_graph)


def run_sink(plan: Plan, listen: str, options: RunOptions, *, labels: list[int] | None = None,
             outputs_path: Path | None = None) -> dict[str, Any]:
    stop = StopFlag()
    hop = len(plan.stages)
    channel = open_channel(listen, listen=True, hwm=options.hwm, curve=options.curve(),
                           specs=sizing_specs(plan, hop))
    sink = sink_loop(plan, channel, options.window, labels)
    started_s, cpu_started_s = time.time(), time.process_time()
    try:
        mark_ready(options.ready, channel.bound_url)
        deadline = options.deadline_s()
        waiter = Waiter([channel], wake_fds=(stop.wake_fd,))
        while not stop.set and time.monotonic() < deadline and not sink.finished:
            waiter.wait(sink.wait_s(deadline))
            sink.step()
        cpu = cpu_record(cpu_started_s, len(sink.collector.delivered))
        _linger(sink.receiver, channel, stop)
    finally:
        channel.close()
    collector = sink.collector
    stats = {**_stats(collector, sink.receiver, sink.total, started_s), "refused": sink.refused,
             **cpu}
    if outputs_path is not None and collector.outputs:
        _save_outputs(Path(outputs_path), {k: np.stack(v) for k, v in collector.outputs.items()})
    write_stats(options.stats, stats)
    return stats


def _linger(receiver: Receiver, channel, stop: StopFlag) -> None:
    until = time.monotonic() + LINGER_S
    while not stop.set and time.monotonic() < until:
        wait_readable([channel], POLL_S)
        for message in receiver.messages():
            receiver.done(message.seq)


def _stats(collector: _Collector, receiver: Receiver, total: int | None,
           started_s: float) -> dict[str, Any]:
    delivered = collector.delivered
    labeled = collector.labels is not None and bool(delivered)
    return {
        **delivery_counts(delivered),
        "alternatives": collector.alternatives,
        "role": "sink",
        "frames": len(delivered),
        "expected_frames": total,
        "complete": total is not None and len(delivered) == total,
        "in_order": delivered == list(range(len(delivered))),
        "sequence": delivered,
        "latency_ms": collector.latency_ms,
        "delivered_s": collector.delivered_s,
        "latency_p50_ms": statistics.median(collector.latency_ms) if delivered else None,
        "accuracy": collector.correct / len(delivered) if labeled else None,
        "upstream": receiver.counters.to_dict(),
        "bandwidth_mbps": receiver.meter.mbps,
        "wall_s": time.time() - started_s,
    }


def _types_differ(alternatives: Mapping[int, Mapping[str, TensorSpec]]) -> bool:
    kinds = {tuple((name, spec.dtype, spec.quantization) for name, spec in sorted(specs.items()))
             for specs in alternatives.values()}
    return len(kinds) > 1


def delivery_counts(delivered: list[int]) -> dict[str, int]:
    """What the sink handed on, counted from the delivered sequence numbers alone: distinct
    frames, deliveries of a frame already delivered, and deliveries of a frame numbered below
    one delivered before it.

    >>> delivery_counts([0, 1, 1, 3, 2])
    {'frames_delivered': 4, 'frames_duplicated': 1, 'frames_out_of_order': 1}
    """
    seen: set[int] = set()
    duplicated = out_of_order = 0
    highest = -1
    for seq in delivered:
        duplicated += seq in seen
        out_of_order += seq < highest and seq not in seen
        seen.add(seq)
        highest = max(highest, seq)
    return {"frames_delivered": len(seen), "frames_duplicated": duplicated,
            "frames_out_of_order": out_of_order}


def _save_outputs(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the outputs beside ``path`` and rename into place: never a half-written file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except HwschedError as error:
        raise TransportError(str(error)) from None
