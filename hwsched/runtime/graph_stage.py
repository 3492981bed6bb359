"""A stage of a stage-graph plan: join inputs from several upstreams, fan outputs out.

Every edge of the plan is its own hop with the chain's reliable delivery (its own channel, a
:class:`~hwsched.runtime.reliable.Sender` upstream and :class:`~hwsched.runtime.reliable.Receiver`
here): acknowledged, resent, de-duplicated, windowed. A frame is computed once every upstream
delivered its sequence number (the join), and its outputs go to every downstream (the fan-out),
each receiving only the tensors of its edge. Custody carries over: a frame is acknowledged to
*every* upstream only once *every* downstream acknowledged it, so a stage killed mid-stream
loses nothing: each upstream still holds the frame and resends it to the restarted stage.

The end of the stream is forwarded once it arrived from every upstream and every frame is
acknowledged downstream. Hop keys: a stage index, or ``"source"`` / ``"sink"``.
"""

from __future__ import annotations

import heapq
import logging
import statistics
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsched.deployment import Plan, TensorSpec, check_stage_file
from hwsched.errors import PlanError, TransportError
from hwsched.handoff import apply_handoff, convert, handoff
from hwsched.runtime.frames import KIND_END, Message, encode_control, encode_data
from hwsched.runtime.interpreter import _signature_name, load_signature_runner
from hwsched.runtime.ordering import SequenceGate
from hwsched.runtime.process import (
    IDLE_WAIT_S,
    ComputeSample,
    EventLog,
    RunOptions,
    StopFlag,
    cpu_record,
    mark_ready,
    model_cpu_clock,
    write_stats,
)
from hwsched.runtime.reliable import Receiver, Sender
from hwsched.runtime.routing import model_input_specs
from hwsched.runtime.stage import END_GRACE_S, END_LINGER_SLACK_S  # the chain stage's timings
from hwsched.runtime.transport import Channel, Waiter, open_channel
from hwsched.tiles.regions_np import bounds_shape, check_bounds, check_cover, incoming, outgoing
from hwsched.units import MS_PER_S

log = logging.getLogger("hwsched.runtime")
SOURCE, SINK = "source", "sink"
HopKey = int | str


def upstreams(plan: Plan, index: int) -> tuple[HopKey, ...]:
    return (SOURCE,) if index == 0 else plan.upstream(index)


def downstreams(plan: Plan, index: int) -> tuple[HopKey, ...]:
    return (*plan.downstream(index), *((SINK,) if index == len(plan.stages) - 1 else ()))


def fan_out_order(plan: Plan, index: int) -> tuple[HopKey, ...]:
    """Stage ``index``'s downstreams in the order its fan-out sends to them: those on other
    boards first, then those on its own (and the sink, which runs beside the last stage).
    Handing a frame to a runner on the same core wakes it, and the scheduler lets it run at
    once, before this runner's next send: a downstream on another board queued behind it
    would wait a scheduler slice (milliseconds) for a frame whose other branch it runs in
    parallel with.

    A plan without boards keeps the plan's order (every stage its own board)."""
    own = plan.stages[index].board

    def same_board(key: HopKey) -> bool:
        return key == SINK or (own is not None and plan.stages[int(key)].board == own)

    return tuple(sorted(downstreams(plan, index), key=same_board))


def edge_specs(plan: Plan, source: HopKey, target: HopKey) -> dict[str, TensorSpec]:
    """Tensors on the edge ``source -> target`` in the spec their producer made them."""
    if source == SOURCE:
        return model_input_specs(plan)
    produced = {spec.name: spec for spec in plan.stage(int(source)).outputs}
    if target == SINK:
        return produced
    edge = next((e for e in plan.edges if e.from_stage == source and e.to_stage == target), None)
    if edge is None:
        raise PlanError(f"plan has no edge from stage {source} to stage {target}")
    missing = [t for t in edge.tensors if t not in produced]
    if missing:
        raise PlanError(f"edge {source}→{target} carries {missing[0]!r}, which stage {source} "
                        "does not output")
    return {name: _on_edge(produced[name], edge.region(name), f"edge {source}→{target}")
            for name in edge.tensors}


def _on_edge(spec: TensorSpec, region, what: str) -> TensorSpec:
    """The spec of what an edge carries of a tensor: its region's shape when it has one."""
    if region is None:
        return spec
    shape = bounds_shape(region)
    if tuple(spec.shape) != shape:  # the sender holds the whole tensor and slices it
        check_bounds(region, spec.shape, f"{what}, tensor {spec.name!r}")
    return replace(spec, shape=shape)


def edge_regions(plan: Plan, source: HopKey, target: HopKey) -> dict[str, Any]:
    """Regions of the tensors on an edge (fused tiles); empty when it carries whole tensors."""
    if source == SOURCE or target == SINK:
        return {}
    edge = next((e for e in plan.edges if e.from_stage == source and e.to_stage == target), None)
    if edge is None or not edge.regions:
        return {}
    return {n: r for n, r in zip(edge.tensors, edge.regions, strict=True) if r is not None}


class GraphStageModel:
    """A loaded stage: ``run(arrived)`` takes the joined tensors of all incoming edges and
    returns every output of the stage."""

    def __init__(self, plan: Plan, plan_dir: Path, index: int, threads: int = 1) -> None:
        self.threads = threads
        self.stage = plan.stage(index)
        self.runner = load_signature_runner(check_stage_file(plan_dir, self.stage),
                                            threads=threads)
        self.in_specs = {u: edge_specs(plan, u, index) for u in upstreams(plan, index)}
        self.out_specs = {d: edge_specs(plan, index, d) for d in fan_out_order(plan, index)}
        self.wire = {n: s for specs in self.in_specs.values() for n, s in specs.items()}
        missing = [s.name for s in self.stage.inputs if s.name not in self.wire]
        if missing:
            raise PlanError(f"stage {index} reads {missing[0]!r}, which no edge into it carries")
        inputs = list(self.runner.get_input_details())
        outputs = list(self.runner.get_output_details())
        self.feeds = [(_signature_name(s, inputs, "input", index), s) for s in self.stage.inputs]
        #: Each whole input's hand-off from its edge's encoding, decided once, not per frame.
        self.steps = {s.name: handoff(self.wire[s.name], s) for s in self.stage.inputs}
        self.fetches = {s.name: _signature_name(s, outputs, "output", index)
                        for s in self.stage.outputs}
        self.in_regions = {u: edge_regions(plan, u, index) for u in self.in_specs}
        self.out_regions = {d: edge_regions(plan, index, d) for d in self.out_specs}
        self.stitched = self._check_stitches()

    def _check_stitches(self) -> dict[str, Any]:
        """Inputs that arrive in pieces (a gather): each piece's region per upstream, proven to
        cover the input exactly once before a frame runs."""
        pieces: dict[str, dict[HopKey, Any]] = {}
        for upstream, regions in self.in_regions.items():
            for name, region in regions.items():
                pieces.setdefault(name, {})[upstream] = region
        specs = {s.name: s for s in self.stage.inputs}
        stitched = {}
        for name, by_upstream in pieces.items():
            if tuple(specs[name].shape) == bounds_shape(next(iter(by_upstream.values()))):
                continue  # one region that is the whole input (a tile's input)
            check_cover(specs[name].shape, list(by_upstream.values()),
                        f"stage {self.stage.index}, input {name!r}")
            stitched[name] = by_upstream
        return stitched

    def join(self, messages: Mapping[HopKey, Message]) -> dict[str, np.ndarray]:
        """The inputs of one frame from every upstream's message; pieces of a stitched input
        are each handed off from their own upstream's encoding, then placed by region."""
        arrived = {n: a for m in messages.values() for n, a in m.tensors.items()}
        specs = {s.name: s for s in self.stage.inputs}
        for name, regions in self.stitched.items():
            pieces = [(regions[u], convert(messages[u].tensors[name], self.in_specs[u][name],
                                           specs[name])) for u in regions]
            arrived[name] = incoming(specs[name].shape, pieces, f"stage {self.stage.index}")
        return arrived

    def sent(self, downstream: HopKey, outputs: Mapping[str, np.ndarray]
             ) -> Mapping[str, np.ndarray]:
        """What goes to ``downstream``: each tensor, or its region when the edge carries one."""
        regions = self.out_regions.get(downstream)
        if not regions:
            return outputs
        return {n: outgoing(a, regions.get(n)) for n, a in outputs.items()}

    def encoded(self, seq: int, origin_s: float, outputs: Mapping[str, np.ndarray]
                ) -> dict[HopKey, list[bytes]]:
        """The message for every downstream (:func:`encode_fan_out`)."""
        return encode_fan_out(self, seq, origin_s, outputs)

    def run(self, arrived: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {sig: arrived[s.name] if s.name in self.stitched
                 else apply_handoff(arrived[s.name], self.steps[s.name], s.dtype)
                 for sig, s in self.feeds}
        results = self.runner(**feeds)
        return {name: results[sig] for name, sig in self.fetches.items()}


def encode_fan_out(model: Any, seq: int, origin_s: float, outputs: Mapping[str, np.ndarray]
                   ) -> dict[HopKey, list[bytes]]:
    """The message for every downstream of ``model`` (its ``out_specs`` and ``sent``).
    Downstreams that take the same whole tensors (a branch point: the stem's output to both
    branches) share one encoding: encoding copies each tensor, and on the fan-out that copy
    is on every branch's critical path."""
    by_payload: dict[tuple, list[bytes]] = {}
    messages = {}
    for key, specs in model.out_specs.items():
        arrays = model.sent(key, outputs)
        if arrays is not outputs:  # regions of the tensors: this edge's own
            messages[key] = encode_data(seq, origin_s, arrays, specs)
            continue
        payload = tuple(specs.items())
        if payload not in by_payload:
            by_payload[payload] = encode_data(seq, origin_s, outputs, specs)
        messages[key] = by_payload[payload]
    return messages


def run_graph_stage(plan: Plan, plan_dir: Path, index: int, listen: Mapping[HopKey, str],
                    send_to: Mapping[HopKey, str], options: RunOptions,
                    threads: int = 1) -> dict[str, Any]:
    """Serve stage ``index`` of a stage-graph plan until the stream ends; ``listen`` and
    ``send_to`` give the address of every incoming and outgoing edge."""
    model = GraphStageModel(plan, plan_dir, index, threads=threads)
    _check_addresses(index, listen, model.in_specs, "--listen-from")
    _check_addresses(index, send_to, model.out_specs, "--next-to")
    curve = options.curve()
    ins = {u: open_channel(listen[u], listen=True, hwm=options.hwm, curve=curve, specs=specs)
           for u, specs in model.in_specs.items()}
    outs = {d: open_channel(send_to[d], listen=False, hwm=options.hwm, curve=curve, specs=specs)
            for d, specs in model.out_specs.items()}
    loop = _GraphStageLoop(model, ins, outs, options, index,
                           stateful=plan.stages[index].stateful)
    mark_ready(options.ready)
    try:
        loop.serve(StopFlag())
    finally:
        loop.events.close()
        for channel in (*ins.values(), *outs.values()):
            channel.close()
    stats = loop.stats()
    write_stats(options.stats, stats)
    return stats


def _check_addresses(index: int, given: Mapping[HopKey, str], wanted: Mapping, flag: str) -> None:
    missing = [k for k in wanted if k not in given]
    if missing:
        raise TransportError(
            f"stage {index}: give {flag} {missing[0]}=URL (edges: "
            f"{', '.join(str(k) for k in wanted)})"
        )


class _GraphStageLoop:
    def __init__(self, model: GraphStageModel, ins: Mapping[HopKey, Channel],
                 outs: Mapping[HopKey, Channel], options: RunOptions, index: int,
                 stateful: bool = False) -> None:
        self.model, self.index, self.options = model, index, options
        self.channels = [*ins.values(), *outs.values()]
        self.receivers = {u: Receiver(c, model.in_specs[u], window=options.window)
                          for u, c in ins.items()}
        self.senders = {d: Sender(c, window=options.window, resend_after_s=options.resend_after_s,
                                  delay_s=options.link_delay_s) for d, c in outs.items()}
        self.partial: dict[int, dict[HopKey, Message]] = {}
        #: When each part of a pending frame was read (host time), for the events file.
        self.read_s: dict[int, dict[HopKey, float]] = {}
        self.ready: list[int] = []
        self.inflight: dict[int, set[HopKey]] = {}
        self.ends: dict[HopKey, Message] = {}
        self.end_forwarded, self.end_acked = False, set()
        self.end_grace_s = float("inf")
        self.linger_until_s: float | None = None
        self.linger_s = options.resend_after_s + 2 * options.link_delay_s + END_LINGER_SLACK_S
        #: A stateful stage computes its frames in sequence order (hwsched.runtime.ordering).
        self.order = SequenceGate(stateful, self.linger_s, f"stage {index}")
        self._answered = 0
        self.finished = False
        self.events = EventLog(options.events)
        self.busy_s: list[float] = []
        self.started_s = time.time()
        #: CPU of the joins and invocations (the invoking thread's; the process's with
        #: interpreter worker threads), against the process's since :meth:`serve`: the rest
        #: is the runtime's (:func:`~hwsched.runtime.process.cpu_record`).
        self.compute_cpu_s = 0.0
        self.cpu_started_s: float | None = None

    def serve(self, stop: StopFlag) -> None:
        deadline = self.options.deadline_s()
        self.cpu_started_s = time.process_time()
        waiter = Waiter(self.channels, wake_fds=(stop.wake_fd,))
        while not stop.set and not self.finished and time.monotonic() < deadline:
            waiter.wait(self._wait_s())
            self.step()

    def step(self) -> None:
        self._take_arrivals()
        self._pass_acks()
        if self._next_ready() and all(s.has_room() for s in self.senders.values()):
            self._compute_one()
        self._forward_end()
        for sender in self.senders.values():
            sender.service()
        self._linger()

    def _wait_s(self) -> float:
        """How long the loop may sleep: until its next timer (a send or resend due, the end's
        grace, the linger, a stateful stage's wait for a missing frame, the deadline), at most
        :data:`IDLE_WAIT_S`; messages and signals wake it earlier. No tick: an idle runner
        that woke every few ms took its core from a stage computing there."""
        if all(s.has_room() for s in self.senders.values()) and self._next_ready():
            return 0.0
        timers = [d for s in self.senders.values() if (d := s.next_due_s()) is not None]
        timers += [self.end_grace_s, self.options.deadline_s()]
        timers += [t for t in (self.linger_until_s, self.order.due_s()) if t is not None]
        return max(0.0, min(IDLE_WAIT_S, min(timers) - time.monotonic()))

    def _next_ready(self) -> bool:
        return self.order.ready(self.ready[0] if self.ready else None)

    def _take_arrivals(self) -> None:
        """The join: a frame is ready once every upstream delivered it."""
        for key, receiver in self.receivers.items():
            for message in receiver.messages():
                if message.kind == "end":
                    self.ends[key] = message
                    continue
                parts = self.partial.setdefault(message.seq, {})
                parts[key] = message
                self.read_s.setdefault(message.seq, {})[key] = time.time()
                if len(parts) == len(self.receivers):
                    heapq.heappush(self.ready, message.seq)

    def _pass_acks(self) -> None:
        """Custody: acknowledge upstream once every downstream acknowledged."""
        for key, sender in self.senders.items():
            for seq in sender.acks():
                if self.end_forwarded and self._end_seq() == seq:
                    self.end_acked.add(key)
                    continue
                waiting = self.inflight.get(seq)
                if waiting is None:
                    continue
                waiting.discard(key)
                if not waiting:
                    del self.inflight[seq]
                    self._release(seq)
        if self.end_forwarded and self.end_acked == set(self.senders):
            self._stream_ended()

    def _release(self, seq: int) -> None:
        for receiver in self.receivers.values():
            receiver.done(seq)

    def _compute_one(self) -> None:
        seq = heapq.heappop(self.ready)
        self.order.computed(seq)
        messages = self.partial.pop(seq)
        origin_s = min(m.origin_s for m in messages.values())
        # the join (gathering, stitching tiles) is timed with the invocation, as busy time
        clock = model_cpu_clock(self.model)
        before, cpu_s = ComputeSample.now(), clock()
        start_s = time.time()
        outputs = self.model.run(self.model.join(messages))
        end_s = time.time()
        spent = ComputeSample.now().since(before)
        self.compute_cpu_s += clock() - cpu_s
        messages_out = encode_fan_out(self.model, seq, origin_s, outputs)
        for key, sender in self.senders.items():
            sender.send(seq, messages_out[key])
        self.inflight[seq] = set(self.senders)
        if not self.senders:
            self._release(seq)
        self.busy_s.append(end_s - start_s)
        read_s = self.read_s.pop(seq, {})
        self.events.write(seq, self.index, start_s, end_s, sent_s=time.time(),
                          read_s={str(k): t for k, t in read_s.items()},
                          wire_s={str(k): m.sent_s for k, m in messages.items()},
                          **spent.to_event())

    def _end_seq(self) -> int:
        return next(iter(self.ends.values())).seq

    def _forward_end(self) -> None:
        complete = len(self.ends) == len(self.receivers)
        quiet = not self.ready and not self.partial and not self.inflight
        if complete and not self.end_forwarded and quiet and all(
                s.idle for s in self.senders.values()):
            end = next(iter(self.ends.values()))
            for sender in self.senders.values():
                sender.send(end.seq, encode_control(KIND_END, end.seq, end.origin_s))
            self.end_forwarded = True
            self._release(end.seq)
            self.end_grace_s = time.monotonic() + END_GRACE_S
            log.info("end of stream (seq %d) forwarded to %d downstream(s)", end.seq,
                     len(self.senders))
            if not self.senders:
                self._stream_ended()
        if self.end_forwarded and time.monotonic() > self.end_grace_s:
            log.warning("end of stream not acknowledged downstream; ending it anyway")
            self._stream_ended()

    def _stream_ended(self) -> None:
        self.ends, self.end_forwarded, self.end_acked = {}, False, set()
        self.end_grace_s = float("inf")
        if not self.options.exit_after_end:
            for receiver in self.receivers.values():
                receiver.new_stream()
            self.order.reset()
        else:
            self.linger_until_s = time.monotonic() + self.linger_s
            self._answered = self._duplicates()

    def _duplicates(self) -> int:
        return sum(r.counters.duplicates for r in self.receivers.values())

    def _linger(self) -> None:
        if self.linger_until_s is None:
            return
        if self._duplicates() != self._answered:
            self._answered = self._duplicates()
            self.linger_until_s = time.monotonic() + self.linger_s
        if time.monotonic() >= self.linger_until_s:
            self.finished = True

    def stats(self) -> dict[str, Any]:
        busy_ms = [s * MS_PER_S for s in self.busy_s]
        ups = {str(k): r.counters.to_dict() for k, r in self.receivers.items()}
        downs = {str(k): s.counters.to_dict() for k, s in self.senders.items()}
        return {
            "role": "stage",
            "stage": self.index,
            "frames": len(busy_ms),
            "busy_ms": statistics.median(busy_ms) if busy_ms else None,
            "busy_ms_mean": statistics.fmean(busy_ms) if busy_ms else None,
            "busy_total_s": sum(self.busy_s),
            "wall_s": time.time() - self.started_s,
            "upstream": _summed(ups.values()),
            "downstream": _summed(downs.values()),
            "edges_in": ups,
            "edges_out": downs,
            "finished": self.finished,
            **cpu_record(self.cpu_started_s, len(busy_ms), self.compute_cpu_s),
        }


def _summed(counters) -> dict[str, float]:
    total: dict[str, float] = {}
    for item in counters:
        for key, value in item.items():
            total[key] = total.get(key, 0) + value
    return total


def parse_hop_addresses(items: list[str] | None, flag: str) -> dict[HopKey, str]:
    """``["1=tcp://…", "source=tcp://…"]`` -> ``{1: "tcp://…", "source": "tcp://…"}``."""
    result: dict[HopKey, str] = {}
    for item in items or ():
        key, sep, url = item.partition("=")
        if not sep or not url:
            raise TransportError(f"{flag} {item!r}: give STAGE=URL (or source=URL / sink=URL)")
        result[key if key in (SOURCE, SINK) else _stage_key(key, flag)] = url
    return result


def _stage_key(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TransportError(f"{flag} {text!r}: a stage index, 'source' or 'sink'") from None
