"""``hwsched emulate DIR`` and ``hwsched profile MODEL``: measure pipelines and segments on
this machine (the runner itself is ``hwsched-runner``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from hwsched.cli.common import (
    positive_float,
    positive_int,
    progress_status,
    stderr_console,
    stdout_console,
)
from hwsched.fileio import write_json
from hwsched.runtime.defaults import DEFAULT_STALL_TIMEOUT_S

DEFAULT_FRAMES = 200


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_emulate(subparsers)
    _register_profile(subparsers)


def _register_emulate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emulate", help="run an exported plan as a local pipeline and measure it",
        description="Start source, every stage and sink of DIR/plan.json as separate processes "
        "on this machine (stage k pinned to core k mod cores) and measure throughput, per-stage "
        "busy time, transport and end-to-end latency against the plan's prediction.")
    parser.add_argument("plan_dir", type=Path, metavar="DIR")
    parser.add_argument("--frames", type=positive_int, default=DEFAULT_FRAMES,
                        help=f"frames to stream (default: {DEFAULT_FRAMES})")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--link-emulation", action="store_true",
                        help="each stage in its own network namespace, veth links shaped with "
                        "tc to the plan's link (root, iproute2)")
    parser.add_argument("--link", metavar="LINK", help="link descriptor for --link-emulation "
                        "(default: the plan's)")
    parser.add_argument("--bandwidth-schedule", metavar="T:MBPS[,T:MBPS…]",
                        help="with --link-emulation: change the shaped link's rate to MBPS "
                        "Mbit/s at T seconds from the start of streaming (HOP@T:MBPS: hop HOP "
                        "only, hop k joining stage k-1 to stage k), e.g. 0:1000,10:20,20:1000")
    parser.add_argument("--power", action="store_true",
                        help="follow the stages with a virtual power meter and report energy")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="interpreter threads per stage (default: 1)")
    parser.add_argument("--data", default="random",
                        help="random, digits, FILE.npy, FILE.npz or an image DIR")
    parser.add_argument("--outputs", type=Path, metavar="OUT.npz",
                        help="keep every frame's model outputs from the sink here (frame order, "
                        "keyed by the model's output names)")
    parser.add_argument("--rate", type=positive_float, metavar="HZ",
                        help="source rate (default: ASAP)")
    parser.add_argument("--window", type=positive_int, default=8,
                        help="frames in flight per hop (default: 8)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep logs, events and stats of every process here")
    parser.add_argument("--restart", action="store_true",
                        help="restart a stage that dies and go on (resent frames make it "
                        "lossless) instead of ending the run")
    parser.add_argument("--stall-timeout", type=positive_float, metavar="S",
                        default=DEFAULT_STALL_TIMEOUT_S,
                        help="end the run when no frame was computed for S seconds, and at "
                        "least two resend intervals (default: "
                        f"{DEFAULT_STALL_TIMEOUT_S:g})")
    parser.add_argument("--board-speed", metavar="auto|F[,F…]",
                        help="cap stage k at fraction F of a core (cgroup CPU controller, "
                        "root) to emulate slower boards; auto: each board's compute rate over "
                        "the fastest board's")
    _delegate_option(parser, "every stage: LiteRT delegate instead of the plan's (none: CPU)")
    _adaptive_options(parser)
    parser.set_defaults(func=run_emulate)


def _adaptive_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapt", action=argparse.BooleanOptionalAction, default=None,
                        help="adaptive plans: let a controller switch splits from measurements "
                        "(default: on when the plan has alternatives)")
    parser.add_argument("--switch-at", metavar="SEQ:ALT[,…]",
                        help="adaptive plans: run frames from SEQ on on alternative ALT "
                        "(scripted switches)")
    parser.add_argument("--hold", type=positive_float, default=1.0, metavar="S",
                        help="controller: a better split must stay best this long (default: 1; "
                        "0.3 of it, at least 0.3 s, when the bandwidth is 4x beyond the "
                        "current split's range)")
    parser.add_argument("--margin", type=positive_float, default=0.1, metavar="F",
                        help="controller: and beat the current one by this fraction "
                        "(default: 0.1)")


def _delegate_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--delegate", metavar="edgetpu|gpu|none|PATH[:k=v,…]", help=text)


def _use_delegate(args: argparse.Namespace) -> None:
    """Checks ``--delegate`` and hands it to every interpreter of this process and its
    children (the runners) through ``HWSCHED_DELEGATE``."""
    if args.delegate:
        import os

        from hwsched.litert import DELEGATE_ENV, DelegateSpec

        DelegateSpec.parse(args.delegate)
        os.environ[DELEGATE_ENV] = args.delegate


def _register_profile(subparsers: argparse._SubParsersAction) -> None:
    from hwsched.runtime.profile import DEFAULT_RUNS, DEFAULT_SEGMENTS, DEFAULT_WARMUP

    parser = subparsers.add_parser(
        "profile", help="time a model's segments on this machine (calibrates analyze)",
        description="Convert MODEL's segments between cut points to TFLite (with export's "
        "stage builder and converter) and time them with LiteRT (warm-up, then medians). "
        "Writes the measured-profile JSON that 'hwsched analyze --profile FILE' uses.")
    parser.add_argument("model", help="zoo name or model file")
    parser.add_argument("--weights", metavar="FILE", help="trained weights for a zoo model")
    parser.add_argument("--threads", type=positive_int, default=1, help="LiteRT threads (1)")
    parser.add_argument("--segments", type=positive_int, default=DEFAULT_SEGMENTS,
                        help="pieces to time, cut at MAC-balanced single-tensor cuts "
                        f"({DEFAULT_SEGMENTS})")
    parser.add_argument("--runs", type=positive_int, default=DEFAULT_RUNS,
                        help=f"timed runs ({DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help=f"untimed runs first ({DEFAULT_WARMUP})")
    parser.add_argument("--co-run", action="store_true",
                        help="time each segment while every other core runs a copy of it "
                        "(the load a pipeline puts on the chip); pins the timing to one core")
    parser.add_argument("--platform", default="host",
                        help="platform name the profile is for (default: host)")
    parser.add_argument("--descriptor", type=Path, metavar="FILE",
                        help="also write a platform descriptor with that name, its "
                        "per-invocation overhead the profile's measured one")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="profile JSON (default: MODEL.profile.json)")
    parser.add_argument("--board-speed", type=float, metavar="F",
                        help="time at fraction F of a core (cgroup CPU cap, root), as "
                        "'emulate --board-speed' runs a slower board's stage")
    parser.add_argument("--chained", action="store_true",
                        help="time the segments in a chain, every frame running all of them in "
                        "turn (as a stage does), not each one again and again, whose weights "
                        "then stay in cache; with --co-run beside a copy of the whole model")
    parser.add_argument("--gap-ms", type=_gap_ms, default=0.0, metavar="MS",
                        help="idle MS before each timed invocation (paced, as a pipeline fed "
                        "one frame at a time computes: slower than back to back; make a "
                        "profile for '--objective latency' this way); warm-up stays back to "
                        "back; recorded as gap_ms (default 0)")
    parser.add_argument("--pacing-variants", action="store_true",
                        help="with --gap-ms: also time every segment and the whole model back "
                        "to back, and every segment paced beside a copy on every other core "
                        "(back_to_back_ms, co_run_ms, whole_back_to_back_ms), so analyze "
                        "charges the wake after idle once per stage and prices stages that "
                        "compute at once on one chip co-run")
    _delegate_option(parser, "time the segments on this LiteRT delegate")
    parser.add_argument("--hop-cost", type=Path, metavar="FILE",
                        help="also measure the runner's hand-off cost between two cores of this "
                        "machine (sending core, receiving core, wire; per frame and per byte), "
                        "then with both ends on one core (its same_core section, for stages "
                        "sharing a CPU), back to back (for a paced cost: 'python -m "
                        "hwsched.runtime.hopcost --gap-ms 50 --same-core'), and write it to "
                        "FILE, for 'hwsched analyze --runtime-cost FILE'")
    parser.set_defaults(func=run_profile)


def _gap_ms(text: str) -> float:
    """``--gap-ms``: a finite number of ms >= 0 (argparse names the option in its error)."""
    from hwsched.runtime.cli import number_argument

    return number_argument(float, 0.0, strict=False)(text)


def run_emulate(args: argparse.Namespace) -> int:
    from hwsched.extras import require

    require("runner", "hwsched emulate")  # every role is a hwsched-runner
    from hwsched.deployment import load_plan
    from hwsched.runtime.cpucap import parse_speeds
    from hwsched.runtime.emulate import EmulationConfig, emulate
    from hwsched.runtime.interpreter import check_engine
    from hwsched.runtime.process import check_writable

    rates = _bandwidth_schedule(args)  # syntax and order, before anything is loaded
    check_writable("--json", args.json)  # before the run, not after it

    speeds = () if args.board_speed is None else parse_speeds(args.board_speed)
    from hwsched.runtime.controller import parse_switch_schedule

    schedule = parse_switch_schedule(args.switch_at or "")
    _use_delegate(args)
    plan = load_plan(args.plan_dir)
    for stage in plan.stages:
        check_engine(stage)  # a stage priced on an engine hwsched does not run: one line
    _warn_folded_cores(plan)
    config = EmulationConfig(frames=args.frames, data=args.data, rate_hz=args.rate,
                             threads=args.threads, window=args.window,
                             link_emulation=args.link_emulation, link=args.link,
                             power=args.power, keep_dir=args.keep, restart=args.restart,
                             stall_timeout_s=args.stall_timeout, board_speed=speeds,
                             adapt=args.adapt, switch_at=schedule, hold_s=args.hold,
                             margin=args.margin, bandwidth_schedule=rates)
    with progress_status(stderr_console(), "starting") as update:
        result = emulate(args.plan_dir, config, progress=update)
    stdout_console().print(emulation_table(result))
    _warn_state_resets(plan, result)
    if getattr(args, "outputs", None):
        _write_outputs(args.outputs, result.outputs)
    if args.json:
        write_json(args.json, result.to_dict())
    if not (result.complete and result.in_order):
        stderr_console().print("[red]the sink did not receive every frame in order[/red]")
        return 1
    return 0


def _bandwidth_schedule(args: argparse.Namespace):
    from hwsched.runtime.linkemu import check_schedule, parse_bandwidth_schedule

    if args.bandwidth_schedule is None:
        return ()
    schedule = parse_bandwidth_schedule(args.bandwidth_schedule)
    check_schedule(schedule, args.link_emulation)  # the hops once the plan is read
    return schedule


def _warn_folded_cores(plan) -> None:
    """A plan's ``cores`` beyond this host's CPUs are folded onto them (modulo): say which
    stages then share CPUs the plan gave to different boards, before the run."""
    import os

    from hwsched.runtime.graph_emulate import folded_cores

    for line in folded_cores(plan, sorted(os.sched_getaffinity(0))):
        stderr_console().print(f"[yellow]warning: {line}[/yellow]")


def _warn_state_resets(plan, result) -> None:
    """A restarted stateful stage lost its state (nothing resends it): say so after the run,
    where it stays on screen."""
    stateful = {stage.index for stage in plan.stages if stage.stateful}
    for stage in result.stages:
        if stage.index in stateful and stage.restarts:
            stderr_console().print(
                f"[yellow]warning: stage {stage.index} is stateful and was restarted "
                f"{stage.restarts} time(s): its resource variables started again from their "
                "initial values, so its outputs after the restart differ from an uninterrupted "
                "run[/yellow]")


def _write_outputs(path: Path, outputs) -> None:
    import io

    import numpy as np

    from hwsched.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **outputs)
    atomic_write_bytes(path, buffer.getvalue())


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def emulation_table(result) -> Table:
    table = Table(title=f"{result.model}: {result.stages_count}-stage pipeline, "
                  f"{result.frames} frames", title_justify="left")
    for column in ("quantity", "measured", "predicted"):
        table.add_column(column, justify="left" if column == "quantity" else "right")
    p = result.predicted_throughput_ips
    error = "" if result.throughput_error is None else f" ({result.throughput_error:+.1%})"
    table.add_row("throughput (inf/s)", f"{result.throughput_ips:.1f}{error}",
                  "–" if p is None else f"{p:.1f}")
    table.add_row("latency p50 (ms)", _ms(result.latency_ms["p50"]),
                  _ms(result.predicted_latency_ms))
    table.add_row("latency p99 (ms)", _ms(result.latency_ms["p99"]), "")
    for stage in result.stages:
        capped = "" if stage.board_speed is None else f" capped at {stage.board_speed:.0%},"
        table.add_row(f"stage {stage.index} busy (ms) ({stage.platform}, cpu "
                      f"{','.join(map(str, stage.cpus))},{capped} {stage.utilization:.0%} busy"
                      + (f", restarted {stage.restarts}×" if stage.restarts else "") + ")",
                      _ms(stage.busy_ms), _ms(stage.predicted_ms))
    for hop in result.hops:
        table.add_row(f"{hop.name} send (ms), {hop.payload_bytes_per_frame / 1024:.1f} KiB/frame"
                      + (f", {hop.resent} resent" if hop.resent else ""),
                      _ms(hop.send_ms), _ms(hop.predicted_ms))
    table.add_row("transport + queueing (ms, p50 − busy)", _ms(result.transport_ms), "")
    if result.accuracy is not None:
        table.add_row("top-1 accuracy", f"{result.accuracy:.1%}", "")
    if result.power:
        table.add_row("energy per inference (mJ, virtual meter)",
                      f"{result.power['energy_per_inference_mj']:.2f}", "")
    if result.adaptive or result.switches:
        table.add_row("frames sent / delivered / duplicated / out of order (sink)",
                      f"{result.frames_sent} / {result.frames_delivered} / "
                      f"{result.frames_duplicated} / {result.frames_out_of_order}", "")
    for switch in result.switches:
        mbps = switch.measured_bandwidth_mbps
        table.add_row(f"switch at frame {switch.at_frame} ({switch.at_s:.2f} s"
                      + ("" if mbps is None else f", {mbps:.1f} Mbit/s measured") + ")",
                      f"cuts {list(switch.from_cut_positions)} → {list(switch.to_cut_positions)}",
                      "")
    return table


def run_profile(args: argparse.Namespace) -> int:
    from hwsched.documents.profile import ProfileDocument
    from hwsched.export.profiling import profile_model
    from hwsched.hardware import check_name
    from hwsched.load import load_model
    from hwsched.runtime.profile import write_host_descriptor

    check_name(args.platform, "--platform")  # it names the descriptor written; before loading
    if args.pacing_variants and (not args.gap_ms or args.chained or args.co_run):
        from hwsched.errors import ProfileError

        raise ProfileError("--pacing-variants needs --gap-ms MS > 0, and no --chained or "
                           "--co-run (it times each segment paced alone, back to back and "
                           "co-run apart)")
    if args.co_run or args.pacing_variants:  # co-runners on the other CPUs: before loading
        from hwsched.runtime.profile import check_co_run_cpus

        check_co_run_cpus(args.threads, "--co-run" if args.co_run else "--pacing-variants")
    if args.hop_cost:
        from hwsched.runtime.process import check_writable

        check_writable("--hop-cost", args.hop_cost)

    _use_delegate(args)
    with progress_status(stderr_console(), f"loading {args.model}") as update:
        loaded = load_model(args.model, args.weights, progress=update)
        profile = profile_model(loaded, threads=args.threads, segments=args.segments,
                                platform=args.platform, warmup=args.warmup, runs=args.runs,
                                co_run=args.co_run, progress=update,
                                board_speed=args.board_speed, chained=args.chained,
                                gap_ms=args.gap_ms, variants=args.pacing_variants)
    out = args.out or Path(f"{loaded.graph.name}.profile.json")
    write_json(out, ProfileDocument.from_dict(profile, str(out)).to_dict())
    if args.descriptor:  # with the measured cost of one more invocation (one stage of every
        # layer then costs the whole model as timed): what the chained benchmarks plan with
        from hwsched.costs.profile import parse_profile

        overhead = parse_profile(profile, str(out)).invocation_overhead_ms
        written = write_host_descriptor(args.platform, args.descriptor,
                                        invoke_overhead_ms=overhead)
        if overhead is None:  # one piece timed (a .tflite model, --segments 1, no cut point)
            from hwsched.hardware import load_platform

            stderr_console().print(
                f"note: {out} times the model in one piece, so no per-invocation overhead was "
                f"measured; {args.descriptor} keeps rpi4's "
                f"{load_platform(written).invoke_overhead_ms:g} ms")
    load = ", other cores co-running" if args.co_run else ""
    load += f", paced {args.gap_ms:g} ms apart" if args.gap_ms else ""
    table = Table(title=f"{loaded.graph.name} on {args.platform}, {args.threads} thread(s){load}",
                  title_justify="left")
    for column in ("segment", "first layer", "last layer", "median ms", "IQR ms"):
        table.add_column(column)
    for i, s in enumerate(profile["segments"]):
        table.add_row(str(i), s["first_layer"], s["last_layer"], f"{s['latency_ms']:.3f}",
                      f"{s['iqr_ms']:.3f}")
    stdout_console().print(table)
    stdout_console().print(f"total {profile['total_latency_ms']:.2f} ms; wrote {out}")
    if args.hop_cost:
        _measure_hop_cost(args.hop_cost)
    return 0


def _measure_hop_cost(path: Path) -> None:
    """``profile --hop-cost``: measured back to back (no idle between frames), so its wire
    parts, the same-core one included, are near zero; a paced cost for one frame's latency
    comes from ``python -m hwsched.runtime.hopcost --gap-ms 50 --same-core``."""
    from hwsched.runtime.hopcost import measure_runtime_cost_with_same_core

    with progress_status(stderr_console(), "measuring the hand-off cost between two cores, "
                         "then on one, back to back"):
        cost = measure_runtime_cost_with_same_core()
    write_json(path, cost.to_dict())  # with its same_core section
    stdout_console().print(
        f"hand-off per frame: sending core {cost.sender_ms(0):.3f} ms + "
        f"{cost.sender_ms(1 << 20) - cost.sender_ms(0):.3f} ms/MiB, receiving core "
        f"{cost.receiver_ms(0):.3f} ms + {cost.receiver_ms(1 << 20) - cost.receiver_ms(0):.3f} "
        f"ms/MiB; a 1 MiB hop's wire part {cost.wire_ms(1 << 20):.3f} ms across two cores, "
        f"{cost.same_core.wire_ms(1 << 20):.3f} ms with both ends on one; wrote {path}")
