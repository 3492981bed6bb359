"""A stage runner: receive a frame's tensors, run the stage's model, send the result on.

Single-threaded loop: read whatever arrived (new frames queue in seq order; duplicates are
answered by :class:`~hwsched.runtime.reliable.Receiver`), pass acknowledgements from
downstream upstream (custody), compute one frame when the outgoing window has room, then let
the sender transmit and resend. ZeroMQ's I/O thread moves bytes while the model computes.

An adaptive plan's stage loads its stage file of *every* alternative before it reports ready,
and runs each frame with the model of the alternative the frame names: the source decides,
frames keep their sequence order through the same queue, so a switch mid-stream loses,
duplicates or reorders nothing. The stage measures its incoming hop's bandwidth and its own
busy time and sends them upstream as reports (with the ones from downstream) every
:data:`REPORT_INTERVAL_S`. When its outgoing hop is not saturated and a split that sends more
bytes would win on a faster link, it probes the hop's capacity (:mod:`hwsched.runtime.probe`);
while a probe from upstream is on its way it computes nothing, so it times the probe fairly.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwsched.compression import HopCodec
from hwsched.deployment import Plan, TensorSpec
from hwsched.errors import TransportError
from hwsched.runtime.controller import (
    DEFAULT_MARGIN,
    alternative_costs,
    alternative_plans,
    hop_specs_by_alternative,
    sizing_specs,
)
from hwsched.runtime.frames import (
    KIND_END,
    Message,
    Report,
    encode_control,
    encode_data,
    spec_bytes,
)
from hwsched.runtime.interpreter import StageModel
from hwsched.runtime.ordering import SequenceGate
from hwsched.runtime.probe import ProbePlanner
from hwsched.runtime.process import (
    IDLE_WAIT_S,
    POLL_S,
    EventLog,
    RunOptions,
    StopFlag,
    cpu_record,
    mark_ready,
    model_cpu_clock,
    write_stats,
)
from hwsched.runtime.reliable import Receiver, Sender
from hwsched.runtime.routing import hop_codec
from hwsched.runtime.transport import Channel, Waiter, open_channel
from hwsched.units import MS_PER_S

log = logging.getLogger("hwsched.runtime")
#: How long a stage that forwarded the end of the stream waits for its acknowledgement.
END_GRACE_S = 3.0
#: Beyond one resend interval (and the link delay both ways), how long a stage whose stream
#: ended keeps answering upstream before it exits (see :meth:`_StageLoop._stream_ended`).
END_LINGER_SLACK_S = 0.5
#: How often a stage sends its measurements (and those from downstream) upstream.
REPORT_INTERVAL_S = 0.1
#: Weight of a new frame's busy time in the smoothed busy time a stage reports.
BUSY_EWMA_ALPHA = 0.3


def run_stage(plan: Plan, plan_dir: Path, index: int, listen: str, next_hop: str,
              options: RunOptions, threads: int = 1) -> dict[str, Any]:
    """Serve stage ``index`` until the stream ends (or the deadline / a signal); returns and
    writes the stage's stats."""
    stop = StopFlag()
    curve = options.curve()
    # Everything opened is closed on every path, also when opening the next thing fails: a
    # ZeroMQ socket left open would keep the process from exiting. The channels (cheap, and
    # sized from the plan alone) open before the model loads; frames arriving meanwhile wait
    # in the transport or are resent.
    with contextlib.ExitStack() as opened:
        upstream = open_channel(listen, listen=True, hwm=options.hwm, curve=curve,
                                specs=sizing_specs(plan, index))
        opened.callback(upstream.close)
        downstream = open_channel(next_hop, listen=False, hwm=options.hwm, curve=curve,
                                  specs=sizing_specs(plan, index + 1))
        opened.callback(downstream.close)
        models = {alt: StageModel(alt_plan, plan_dir, index, threads=threads)
                  for alt, alt_plan in alternative_plans(plan).items()}
        if plan.stages[index].stateful:
            log.warning("stage %d is stateful: its resource variables start from their initial "
                        "values (after a restart its outputs differ from an uninterrupted run)",
                        index)
        codecs = {alt: (hop_codec(alt_plan, index), hop_codec(alt_plan, index + 1))
                  for alt, alt_plan in alternative_plans(plan).items()}
        loop = _StageLoop(models, upstream, downstream, options, index,
                          hop_specs_by_alternative(plan, index), codecs=codecs,
                          stateful=plan.stages[index].stateful,
                          probe=probe_planner(plan, index, DEFAULT_MARGIN
                                              if options.margin is None else options.margin))
        opened.callback(loop.events.close)
        mark_ready(options.ready, upstream.bound_url)
        loop.serve(stop)
    stats = loop.stats()
    write_stats(options.stats, stats)
    return stats


def probe_planner(plan: Plan, index: int, margin: float) -> ProbePlanner | None:
    """Who decides when stage ``index`` probes its outgoing hop: only an adaptive plan's stage
    with a next stage (the hop to the sink stays on the board), pricing the alternatives as the
    controller does (``margin``: its hysteresis margin), with train messages no larger than the
    hop admits (the receiver's transport drops larger ones)."""
    if not plan.alternatives or index + 1 >= len(plan.stages):
        return None
    largest = max((spec_bytes(s) for s in sizing_specs(plan, index + 1).values()), default=1)
    return ProbePlanner(index + 1, alternative_costs(plan), largest, margin=margin)


class _StageLoop:
    def __init__(self, models: StageModel | Mapping[int, StageModel], upstream: Channel,
                 downstream: Channel, options: RunOptions, index: int,
                 in_specs: Mapping[int, Mapping[str, TensorSpec]] | None = None,
                 codecs: tuple[HopCodec, HopCodec] | Mapping[int, tuple[HopCodec, HopCodec]]
                 | None = None, stateful: bool = False,
                 probe: ProbePlanner | None = None) -> None:
        """``models``: the stage's model per alternative (one model: a fixed plan's);
        ``codecs``: per alternative, how its tensors come off and go on the wire (link
        compression, :mod:`hwsched.compression`); ``probe``: when to probe the outgoing hop
        (None: never)."""
        models = dict(models) if isinstance(models, Mapping) else {0: models}
        self.models, self.index, self.options = models, index, options
        self.model = models[min(models)]
        self.codecs = dict(codecs) if isinstance(codecs, Mapping) else {min(models): codecs}
        self.upstream, self.downstream = upstream, downstream
        self.receiver = Receiver(upstream, self.model.in_specs, window=options.window,
                                 alternatives=in_specs if len(models) > 1 else None)
        self.sender = Sender(downstream, window=options.window,
                             resend_after_s=options.resend_after_s, delay_s=options.link_delay_s)
        self.queue: list[tuple[int, float, Message]] = []
        self.end: Message | None = None
        self.end_forwarded = False
        self.end_grace_s = float("inf")
        #: Set when the stream ended: answer upstream resends until then, then stop.
        self.linger_until_s: float | None = None
        self._answered = 0  # upstream duplicates answered when the linger (re)started
        self.linger_s = (options.resend_after_s + 2 * options.link_delay_s
                         + END_LINGER_SLACK_S)
        #: A stateful stage waits for a missing frame as long as its resend may take: one
        #: resend interval, the link delay both ways, and a margin.
        self.order = SequenceGate(stateful, self.linger_s, f"stage {index}")
        self.finished = False
        self.events = EventLog(options.events)
        self.busy_s: list[float] = []
        self.encode_s: list[float] = []
        self.started_s = time.time()
        self.busy_ms: float | None = None  # smoothed, on self.alternative
        self.alternative = min(models)
        self.frames_by_alternative: dict[int, int] = {}
        self.reports_sent = 0
        self.next_report_s = time.monotonic() + REPORT_INTERVAL_S
        self.steps_reported = 0
        self.busy_total_s = 0.0
        #: CPU time of the model invocations (:func:`model_cpu_clock`) and of the whole process (its
        #: ZeroMQ I/O threads too) since :meth:`serve` began: the difference is what the
        #: runtime itself costs this stage's core per frame (:func:`cpu_record`).
        self.compute_cpu_s = 0.0
        self.cpu_started_s: float | None = None
        self.probe = probe

    def serve(self, stop: StopFlag) -> None:
        deadline = self.options.deadline_s()
        self.cpu_started_s = time.process_time()
        waiter = Waiter([self.upstream, self.downstream], wake_fds=(stop.wake_fd,))
        while not stop.set and not self.finished and time.monotonic() < deadline:
            waiter.wait(self._wait_s())
            self.step()

    def step(self) -> None:
        """One pass of the loop: take arrivals and acks, compute one frame, send what is due."""
        self._take_arrivals()
        self._pass_acks()
        if self._may_compute():
            self._compute_one()
        self._forward_end()
        self.sender.service()
        self._report()
        self._probe()
        self._linger()

    def _may_compute(self) -> bool:
        """Room downstream, a frame ready, and no probe from upstream on its way."""
        return self.sender.has_room() and self._next_ready() and not self.receiver.probing

    def _wait_s(self) -> float:
        """How long the loop may sleep: until its next timer (a send or resend due, the end's
        grace, the linger, a stateful stage's wait for a missing frame, the deadline), at most
        :data:`IDLE_WAIT_S`; messages and signals wake it earlier. No tick: an idle runner
        that woke every few ms took its core from the stage computing beside it, as the
        stage graph's runners did (:mod:`hwsched.runtime.graph_stage`). Reports go out on the
        first pass after their interval (frames keep the loop passing; an idle stage has
        nothing new to report). An adaptive plan's stage keeps the :data:`POLL_S` tick (its
        reports steer the controller, its probe planner is asked on a pass of the loop), and
        so does one waiting for a probe train from upstream (the wait's end is the receiver's
        to time)."""
        if self._may_compute():
            return 0.0
        timers = [self.end_grace_s, self.options.deadline_s()]
        timers += [t for t in (self.sender.next_due_s(), self.linger_until_s,
                               self.order.due_s()) if t is not None]
        steering = len(self.models) > 1 or self.receiver.probing
        longest = POLL_S if steering else IDLE_WAIT_S
        return max(0.0, min(longest, min(timers) - time.monotonic()))

    def _next_ready(self) -> bool:
        """Whether the lowest queued frame may be computed now (a stateful stage computes its
        frames in sequence order: :mod:`hwsched.runtime.ordering`)."""
        return self.order.ready(self.queue[0][0] if self.queue else None)

    def _take_arrivals(self) -> None:
        for message in self.receiver.messages(busy_s=self.busy_total_s):
            if message.kind == "end":
                log.info("end of stream (seq %d) received", message.seq)
                self.end, self.end_forwarded = message, False
            else:
                heapq.heappush(self.queue, (message.seq, time.time(), message))

    def _pass_acks(self) -> None:
        for seq in self.sender.acks():
            if self.end is not None and seq == self.end.seq:
                log.info("end of stream (seq %d) acknowledged downstream", seq)
                self._stream_ended()
            else:
                self.receiver.done(seq)  # custody: our result is downstream, release upstream

    def _compute_one(self) -> None:
        seq, _arrived_s, message = heapq.heappop(self.queue)
        alt = message.alternative
        model = self.models[alt]
        inbound, outbound = self.codecs.get(alt) or (None, None)
        self.order.computed(seq)
        # link compression is the link's cost (as the planner charges it), not the model's
        arrived = inbound.unpack(message.tensors) if inbound else message.tensors
        clock = model_cpu_clock(model)
        start_s, cpu_s = time.time(), clock()
        outputs = model.run(arrived)
        end_s = time.time()
        self.compute_cpu_s += clock() - cpu_s
        wire = outbound.pack(outputs) if outbound else outputs
        parts = encode_data(seq, message.origin_s, wire, model.out_specs, alternative=alt)
        self.encode_s.append(time.time() - end_s)
        self.sender.send(seq, parts)
        self.busy_s.append(end_s - start_s)
        self.busy_total_s += end_s - start_s
        self._note_busy(alt, (end_s - start_s) * MS_PER_S)
        self.events.write(seq, self.index, start_s, end_s, alternative=alt,
                          bandwidth_mbps=self.receiver.meter.mbps, busy_ms=self.busy_ms)

    def _note_busy(self, alt: int, busy_ms: float) -> None:
        """Smoothed busy time per frame, restarted when the frames' alternative changes (the
        stage computes another slice of the model then)."""
        self.frames_by_alternative[alt] = self.frames_by_alternative.get(alt, 0) + 1
        if alt != self.alternative or self.busy_ms is None:
            self.alternative, self.busy_ms = alt, busy_ms
        else:
            self.busy_ms = BUSY_EWMA_ALPHA * busy_ms + (1 - BUSY_EWMA_ALPHA) * self.busy_ms

    def _report(self) -> None:
        """Pass reports from downstream upstream at once, and add ours every interval."""
        for report in self.sender.take_reports():
            if self.probe is not None:
                self.probe.note(report)
            self._send_report(report)
        meter = self.receiver.meter
        # a step of the link (HopMeter.steps) is reported at once: the controller's short hold
        # starts from the first report of it
        if time.monotonic() < self.next_report_s and meter.steps == self.steps_reported:
            return
        self.next_report_s = time.monotonic() + REPORT_INTERVAL_S
        self.steps_reported = meter.steps
        if meter.mbps is not None or self.busy_ms is not None:
            own = Report(self.index, self.index, meter.exact_mbps, self.busy_ms,
                         self.alternative, time.time(), meter.at_least_mbps)
            if self.probe is not None:
                self.probe.note(own)
            self._send_report(own)

    def _probe(self) -> None:
        """Probe the outgoing hop when :class:`~hwsched.runtime.probe.ProbePlanner` says."""
        if self.probe is None or self.end is not None:
            return
        train = self.probe.due(time.monotonic(), self.alternative)
        if train is not None:
            self.sender.start_probe(train)

    def _send_report(self, report: Report) -> None:
        self.receiver.report(self.reports_sent, report)
        self.reports_sent += 1

    def _forward_end(self) -> None:
        # Upstream sends END only when all its frames are acknowledged, so nothing of ours is
        # still queued; forward it once our own window is empty too.
        if self.end is not None and not self.end_forwarded and not self.queue and self.sender.idle:
            self.sender.send(self.end.seq, encode_control(KIND_END, self.end.seq,
                                                          self.end.origin_s))
            self.end_forwarded = True
            # Every frame is acknowledged downstream already, so the end needs no custody:
            # release the upstream now and stop once the end is acknowledged, or after a grace
            # period (a lost last acknowledgement must not keep a finished stage alive).
            self.receiver.done(self.end.seq)
            self.end_grace_s = time.monotonic() + END_GRACE_S
            log.info("end of stream (seq %d) forwarded", self.end.seq)
        if self.end_forwarded and time.monotonic() > self.end_grace_s:
            log.warning("end of stream not acknowledged downstream; ending it anyway")
            self._stream_ended()

    def _stream_ended(self) -> None:
        """Stop, or with ``--keep-serving`` be ready for a new stream, which starts at seq 0
        again: the receiver forgets the finished sequence numbers.

        Stop only after answering upstream for one resend interval more. The end was
        acknowledged upstream when it was forwarded, often a millisecond earlier: exiting now
        closes the connection, and a ZeroMQ DEALER with ``IMMEDIATE`` discards what it
        received but its owner has not read yet when its connection drops, so that
        acknowledgement could be lost and the upstream would resend the end to nobody (a
        source then waits in vain). Lingering, the upstream reads it, or resends the end and
        is acknowledged again (the receiver still knows the end as finished)."""
        self.end, self.end_forwarded, self.end_grace_s = None, False, float("inf")
        if not self.options.exit_after_end:
            self.receiver.new_stream()
            self.order.reset()
        else:
            self.linger_until_s = time.monotonic() + self.linger_s
            self._answered = self.receiver.counters.duplicates

    def _linger(self) -> None:
        if self.linger_until_s is None:
            return
        if self.receiver.counters.duplicates != self._answered:  # upstream resent: answered,
            self._answered = self.receiver.counters.duplicates  # give it time to read that
            self.linger_until_s = time.monotonic() + self.linger_s
        if time.monotonic() >= self.linger_until_s:
            self.finished = True

    def stats(self) -> dict[str, Any]:
        busy_ms = [s * MS_PER_S for s in self.busy_s]
        return {
            "role": "stage",
            "stage": self.index,
            "frames": len(busy_ms),
            "busy_ms": statistics.median(busy_ms) if busy_ms else None,
            "busy_ms_mean": statistics.fmean(busy_ms) if busy_ms else None,
            "busy_total_s": sum(self.busy_s),
            "encode_ms": statistics.median(self.encode_s) * MS_PER_S if self.encode_s else None,
            "send_total_s": self.sender.counters.send_s,
            "wall_s": time.time() - self.started_s,
            "upstream": self.receiver.counters.to_dict(),
            "downstream": self.sender.counters.to_dict(),
            "finished": self.finished,
            "frames_by_alternative": {str(k): v for k, v in
                                      sorted(self.frames_by_alternative.items())},
            "bandwidth_mbps": self.receiver.meter.mbps,
            "reports_sent": self.reports_sent,
            **cpu_record(self.cpu_started_s, len(busy_ms), self.compute_cpu_s),
        }


def check_stage_args(plan: Plan, index: int) -> None:
    if not 0 <= index < len(plan.stages):
        raise TransportError(f"--stage {index}: the plan has stages 0..{len(plan.stages) - 1}")
