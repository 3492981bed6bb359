"""The sink: collects the last stage's outputs, in order, once each.

It acknowledges every frame on receipt (end of custody), reorders by sequence number and
*delivers* frames strictly in order. Per frame it records the end-to-end latency (host time of
delivery minus the source's first-send time), and top-1 accuracy when the source's dataset has
labels. Outputs can be saved (``.npz``, one stacked array per output tensor, in frame order).
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import Plan
from hwsched.errors import HwschedError, TransportError
from hwsched.fileio import atomic_write_bytes
from hwsched.runtime.process import POLL_S, RunOptions, StopFlag, mark_ready, write_stats
from hwsched.runtime.reliable import Receiver
from hwsched.runtime.routing import hop_specs
from hwsched.runtime.transport import open_channel, wait_readable

log = logging.getLogger("hwsched.runtime")
MS_PER_S = 1000.0
#: After the stream ends the sink keeps answering resends this long (a lost last ack).
LINGER_S = 0.3


class _Collector:
    """Reorder buffer plus the per-frame records of delivered frames."""

    def __init__(self, labels: list[int] | None) -> None:
        self.waiting: dict[int, tuple[float, float, dict[str, np.ndarray]]] = {}
        self.next_seq = 0
        self.delivered: list[int] = []
        self.latency_ms: list[float] = []
        self.delivered_s: list[float] = []
        self.outputs: dict[str, list[np.ndarray]] = {}
        self.labels = labels
        self.correct = 0

    def add(self, seq: int, origin_s: float, tensors: dict[str, np.ndarray]) -> None:
        self.waiting[seq] = (origin_s, time.time(), {k: v.copy() for k, v in tensors.items()})
        while self.next_seq in self.waiting:
            origin, received_s, arrays = self.waiting.pop(self.next_seq)
            self._deliver(self.next_seq, origin, received_s, arrays)
            self.next_seq += 1

    def _deliver(self, seq: int, origin_s: float, received_s: float,
                 arrays: dict[str, np.ndarray]) -> None:
        self.delivered.append(seq)
        self.latency_ms.append((received_s - origin_s) * MS_PER_S)
        self.delivered_s.append(received_s)
        for name, array in arrays.items():
            self.outputs.setdefault(name, []).append(array)
        if self.labels is not None and seq < len(self.labels) and len(arrays) == 1:
            prediction = int(np.argmax(next(iter(arrays.values())).reshape(-1)))
            self.correct += prediction == self.labels[seq]


def run_sink(plan: Plan, listen: str, options: RunOptions, *, labels: list[int] | None = None,
             outputs_path: Path | None = None) -> dict[str, Any]:
    stop = StopFlag()
    specs = hop_specs(plan, len(plan.stages))
    channel = open_channel(listen, listen=True, hwm=options.hwm, curve=options.curve(),
                           specs=specs)
    receiver = Receiver(channel, specs, window=options.window)
    collector = _Collector(labels)
    total: int | None = None
    mark_ready(options.ready, channel.bound_url)
    deadline = options.deadline_s()
    started_s = time.time()
    try:
        while not stop.set and time.monotonic() < deadline:
            if total is not None and len(collector.delivered) >= total:
                break
            wait_readable([channel], POLL_S)
            for message in receiver.messages():
                if message.kind == "end":
                    total = message.seq
                else:
                    collector.add(message.seq, message.origin_s, dict(message.tensors))
                receiver.done(message.seq)
        _linger(receiver, channel, stop)
    finally:
        channel.close()
    stats = _stats(collector, receiver, total, started_s)
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
        "wall_s": time.time() - started_s,
    }


def _save_outputs(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the outputs beside ``path`` and rename into place: never a half-written file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except HwschedError as error:
        raise TransportError(str(error)) from None
