"""The source: feeds frames from a dataset or random data into stage 0.

``--data`` is ``random`` (seeded), ``digits`` (scikit-learn's digits test split, with labels),
or a dataset path read by :func:`hwsched.datasets.load_path`, export's loader too: an ``.npy``
file (``N × input shape``, one model input), an ``.npz`` file (one array per model input name,
optional ``labels``), or a folder of images (class sub-folders give labels; needs Pillow).
Frames go out at ``rate_hz`` or as fast as the pipeline's window admits (``None``),
each stamped with the host time it was first sent. The stream ends with an END message sent
only once every frame is acknowledged, i.e. has reached the sink.

With an adaptive plan the source decides which alternative each frame runs on
(:class:`Steering`): from a scripted schedule (``--switch-at SEQ:ALT``) and from the
controller's ``SWITCH`` messages, applied at the next frame sent. It forwards the reports that
come upstream to the controller and keeps them (with its switches) for the run's timeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hwsched.datasets import DatasetArrays, digits, fit_arrays, load_path
from hwsched.deployment import Plan, TensorSpec
from hwsched.errors import DatasetError, TransportError
from hwsched.handoff import from_float
from hwsched.runtime.controller import hop_specs_by_alternative, sizing_specs
from hwsched.runtime.frames import (
    KIND_END,
    KIND_SWITCH,
    FrameError,
    Report,
    decode_message,
    encode_control,
    encode_data,
    encode_report,
)
from hwsched.runtime.process import (
    IDLE_WAIT_S,
    POLL_S,
    RunOptions,
    StopFlag,
    cpu_record,
    mark_ready,
    write_stats,
)
from hwsched.runtime.reliable import Sender
from hwsched.runtime.routing import hop_specs
from hwsched.runtime.transport import Channel, Waiter, open_channel, wait_readable

log = logging.getLogger("hwsched.runtime")
#: Seconds the source waits for the END acknowledgement before giving up.
END_TIMEOUT_S = 30.0
#: A controller not heard from for this long is taken as gone (said once, in one line).
CONTROLLER_SILENT_S = 3.0
#: The source repeats its split to the controller this often (an announcement lost, or a
#: controller restarted since, is healed within it).
ANNOUNCE_S = 1.0
#: Reports kept for the timeline (about 10 per stage per second: an hour of a 5-stage run).
MAX_KEPT_REPORTS = 200_000


class Steering:
    """Which alternative each frame runs on, and who asked for each switch.

    A scripted schedule entry ``(seq, alt)`` applies to frame ``seq`` and after; a controller's
    command applies to the next frame sent. The controller is advice: if it stops answering,
    the source says so once and stays on its current split."""

    def __init__(self, alternatives: int, schedule: tuple[tuple[int, int], ...] = (),
                 controller: Channel | None = None) -> None:
        self.alternatives = alternatives
        self.schedule = list(schedule)
        self.controller = controller
        self.current = 0
        self.requested: int | None = None
        #: The number of the controller's latest decision taken (its switch messages carry
        #: it as their seq; a heartbeat repeats it; the announcements tell it, so a controller
        #: restarted mid-run numbers its decisions on from it).
        self.decision = 0
        self.switches: list[dict] = []
        self.reports: list[list] = []
        self.latest_mbps: dict[int, float] = {}
        self.heard_s = time.monotonic()  # a controller silent from the start is said too
        self.silent_logged = False
        self.forwarded = 0
        self.announced_s = -float("inf")
        self._announce()  # hello: the split the stream starts on

    def alternative(self, seq: int) -> int:
        """The alternative frame ``seq`` runs on (recording a switch when it changes)."""
        target, why = self.current, None
        while self.schedule and self.schedule[0][0] <= seq:
            target, why = self.schedule.pop(0)[1], "schedule"
        if self.requested is not None:
            target, why, self.requested = self.requested, "controller", None
        if target != self.current:
            self.switches.append({
                "at_frame": seq, "at_time_s": time.time(), "from": self.current, "to": target,
                "by": why, "measured_bandwidth_mbps": {str(h): v for h, v in
                                                       sorted(self.latest_mbps.items())},
                **({"decision": self.decision} if why == "controller" else {})})
            log.info("frame %d on: alternative %d (%s)", seq, target, why)
            self.current = target
            # the controller's own decisions too: one that crossed a scripted switch on its
            # way here is applied after it, while the controller heard of the scripted one last
            self._announce()
        return self.current

    def _announce(self) -> None:
        """Tell the controller the split the stream is on (it reasons from it), best effort:
        at the start, at every switch, and every :data:`ANNOUNCE_S` after (:meth:`service`),
        so a lost announcement or a controller restarted mid-run learns it; its seq is the
        number of the latest decision taken (:attr:`decision`)."""
        if self.controller is not None:
            self.controller.send(encode_control(KIND_SWITCH, self.decision, time.time(),
                                                self.current))
            self.announced_s = time.monotonic()

    def service(self, reports: list[Report]) -> None:
        """Keep and forward ``reports``; take the controller's commands."""
        for report in reports:
            if report.best_mbps is not None:
                self.latest_mbps[report.hop] = report.best_mbps
            if len(self.reports) < MAX_KEPT_REPORTS:
                self.reports.append([report.measured_s, report.stage, report.hop,
                                     report.best_mbps, report.busy_ms, report.alternative])
        if self.controller is None:
            return
        for report in reports:
            self.controller.send(encode_report(self.forwarded, report))  # best effort
            self.forwarded += 1
        self._commands()
        if self.requested is None and time.monotonic() - self.announced_s >= ANNOUNCE_S:
            self._announce()  # not while a decision waits: the controller believes that one

    def _commands(self) -> None:
        assert self.controller is not None
        while (received := self.controller.receive()) is not None:
            try:
                message = decode_message(received[1], {})
            except FrameError as error:
                log.warning("source: dropped a malformed controller message: %s", error)
                continue
            if message.kind != "switch" or not 0 <= message.alternative < self.alternatives:
                log.warning("source: ignored a %s message for alternative %d from the "
                            "controller", message.kind, message.alternative)
                continue
            self.heard_s, self.silent_logged = time.monotonic(), False
            if message.seq <= self.decision:
                # a heartbeat of the decision taken already (nothing newer): it may have
                # crossed a scripted switch on its way, and would undo it
                continue
            self.decision = message.seq
            # the latest decision wins: one back to the current split cancels one not sent
            self.requested = message.alternative if message.alternative != self.current else None
        if not self.silent_logged and time.monotonic() - self.heard_s > CONTROLLER_SILENT_S:
            log.warning("source: controller silent for %g s (stopped or killed?); staying on "
                        "alternative %d", CONTROLLER_SILENT_S, self.current)
            self.silent_logged = True

    def close(self) -> None:
        if self.controller is not None:
            self.controller.send(encode_control(KIND_END, self.forwarded))
            self.controller.close()


def frame(dataset: DatasetArrays, i: int, specs: Mapping[str, TensorSpec]
          ) -> dict[str, np.ndarray]:
    """Frame ``i`` (wrapping around), shaped and typed as the plan's input specs."""
    out = {}
    for name, spec in specs.items():
        value = dataset.inputs[name][i % len(dataset)].reshape(spec.shape)
        typed = value if value.dtype == np.dtype(spec.dtype) else from_float(
            value.astype(np.float32), spec)
        out[name] = np.ascontiguousarray(typed, dtype=spec.dtype)
    return out


def frame_label(dataset: DatasetArrays, i: int) -> int | None:
    return None if dataset.labels is None else int(dataset.labels[i % len(dataset.labels)])


def load_dataset(spec: str, inputs: Mapping[str, TensorSpec], frames: int,
                 seed: int = 0) -> DatasetArrays:
    if spec == "random":
        return _random(inputs, frames, seed)
    if spec == "digits":
        data = digits("test")
        return fit_arrays({"digits": data.images}, data.labels, _shapes(inputs), "digits")
    path = Path(spec)
    if path.suffix in (".npy", ".npz") or path.is_dir():
        return load_path(path, _shapes(inputs))  # never empty: the loader refuses that
    raise DatasetError(f"--data {spec!r}: use random, digits, FILE.npy, FILE.npz or an image DIR")


def _shapes(inputs: Mapping[str, TensorSpec]) -> dict[str, tuple[int, ...]]:
    return {name: spec.shape for name, spec in inputs.items()}


def _random(inputs: Mapping[str, TensorSpec], frames: int, seed: int) -> DatasetArrays:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, spec in inputs.items():
        shape = (max(frames, 1), *spec.shape[1:])
        if np.issubdtype(np.dtype(spec.dtype), np.integer) and spec.quantization is None:
            info = np.iinfo(spec.dtype)
            arrays[name] = rng.integers(info.min, info.max, size=shape, endpoint=True,
                                        dtype=spec.dtype)
        else:
            arrays[name] = rng.random(shape, dtype=np.float32)
    return DatasetArrays(arrays, None)


def run_source(plan: Plan, next_hop: str, options: RunOptions, *, frames: int,
               data: str = "random", rate_hz: float | None = None, seed: int = 0,
               switch_at: tuple[tuple[int, int], ...] = (),
               controller: str | None = None) -> dict:
    """Send ``frames`` frames into the pipeline and end the stream; returns the stats.
    ``switch_at`` and ``controller`` steer an adaptive plan (see :class:`Steering`)."""
    stop = StopFlag()
    specs = hop_specs(plan, 0)
    by_alt = hop_specs_by_alternative(plan, 0)
    dataset = load_dataset(data, specs, frames, seed)
    channel = open_channel(next_hop, listen=False, hwm=options.hwm, curve=options.curve(),
                           specs=sizing_specs(plan, 0))
    steering = Steering(len(by_alt), switch_at, None if controller is None else open_channel(
        controller, listen=False, hwm=options.hwm, curve=None, specs={}))
    sender = Sender(channel, window=options.window, resend_after_s=options.resend_after_s,
                    delay_s=options.link_delay_s)
    mark_ready(options.ready)
    deadline = options.deadline_s()
    started_s, cpu_started_s = time.time(), time.process_time()
    sent, ended = 0, False
    waiter = Waiter([channel], wake_fds=(stop.wake_fd,))
    #: A controller's commands are read on a pass of the loop: it keeps the tick.
    idle_s = POLL_S if controller is not None else IDLE_WAIT_S
    try:
        while not stop.set and time.monotonic() < deadline and not ended:
            sender.acks()
            steering.service(sender.take_reports())
            if sent < frames and sender.has_room() and _due(started_s, sent, rate_hz):
                alt = steering.alternative(sent)
                tensors = frame(dataset, sent, by_alt[alt])
                sender.send(sent, encode_data(sent, time.time(), tensors, by_alt[alt], alt))
                sent += 1
            elif sent == frames and sender.idle:
                ended = _end_stream(sender, frames, channel, stop)
            else:
                waiter.wait(_wait_s(sender, started_s, sent, rate_hz,
                                    min(idle_s, deadline - time.monotonic())))
            sender.service()
    finally:
        steering.close()
        channel.close()
    stats = {"role": "source", "frames": sent, "ended": ended, "wall_s": time.time() - started_s,
             "started_at_s": started_s,
             "labels": None if dataset.labels is None else [frame_label(dataset, i)
                                                            for i in range(frames)],
             "downstream": sender.counters.to_dict(), "switches": steering.switches,
             "reports": steering.reports, **cpu_record(cpu_started_s, sent)}
    write_stats(options.stats, stats)
    if not ended:
        raise TransportError(f"source: stream not finished ({sent}/{frames} frames sent, "
                             f"{len(sender.outstanding)} unacknowledged)")
    return stats


def _due(started_s: float, sent: int, rate_hz: float | None) -> bool:
    return rate_hz is None or time.time() >= started_s + sent / rate_hz


def _wait_s(sender: Sender, started_s: float, sent: int, rate_hz: float | None,
            idle_s: float = POLL_S) -> float:
    """Until the next frame is due, the next (re)send, or ``idle_s``; acknowledgements and
    signals wake the loop earlier."""
    waits = [idle_s]
    if rate_hz is not None and sender.has_room():
        waits.append(started_s + sent / rate_hz - time.time())
    due = sender.next_due_s()
    if due is not None:
        waits.append(due - time.monotonic())
    return max(0.0, min(waits))


def _end_stream(sender: Sender, frames: int, channel, stop: StopFlag) -> bool:
    sender.send(frames, encode_control(KIND_END, frames, time.time()))
    limit = time.monotonic() + END_TIMEOUT_S
    while not stop.set and time.monotonic() < limit:
        if frames in sender.acks():
            return True
        sender.service()
        wait_readable([channel], POLL_S)
    return False
