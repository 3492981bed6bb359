"""``hwsched power``: record a power meter, measure energy per inference, emulate a meter,
calibrate a platform from measurement."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from rich.table import Table

from hwsched.cli.common import positive_float, stderr_console, stdout_console
from hwsched.errors import PowerError
from hwsched.fileio import write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "power", help="power meters: record, energy per inference, emulate, calibrate"
    )
    commands = parser.add_subparsers(dest="power_command", metavar="ACTION", required=True)
    _register_record(commands)
    _register_energy(commands)
    _register_emulate(commands)
    _register_calibrate(commands)


def _register_record(commands: argparse._SubParsersAction) -> None:
    from hwsched.power.meters import METERS

    parser = commands.add_parser(
        "record",
        help="log a power meter over serial into a power log",
        description="Log a power meter into a CSV power log (see power_logs/README.md). "
        "Without --duration it records until Ctrl-C, then prints a summary.",
    )
    parser.add_argument("--port", required=True, help="serial port or pyserial URL")
    parser.add_argument("--meter", required=True, choices=sorted(METERS))
    parser.add_argument("--out", required=True, type=Path, help="power log to write")
    parser.add_argument(
        "--force", action="store_true", help="overwrite --out if it exists and is not empty"
    )
    parser.add_argument("--duration", type=positive_float, metavar="SECONDS")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument(
        "--columns",
        help="the meter's CSV column names in order, e.g. ms,bus_V,shunt_mV,current_mA,power_mW",
    )
    parser.add_argument("--rail", help="tegrastats rail to read (default VDD_IN, then POM_5V_IN)")
    parser.add_argument(
        "--stall-timeout",
        type=positive_float,
        default=2.0,
        metavar="SECONDS",
        help="reopen the port after this long without data (default 2)",
    )
    parser.set_defaults(func=run_record)


def _register_energy(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "energy",
        help="energy per inference from power logs and the runner's events",
        description="Energy per inference (total and above idle), average and peak power. "
        "Give one log per board to attribute energy to each stage.",
    )
    parser.add_argument("logs", nargs="+", type=Path, metavar="LOG")
    parser.add_argument("--events", required=True, type=Path, help="the runner's events JSONL")
    parser.add_argument(
        "--stage",
        type=int,
        nargs="+",
        help="stage each LOG measured (default: 0, 1, … with several logs; all stages with one)",
    )
    parser.add_argument(
        "--idle-mw",
        type=float,
        nargs="+",
        metavar="P",
        help="idle power instead of measuring it outside the inference windows (one, or per log)",
    )
    parser.add_argument("--windows", type=int, default=5, help="measurement windows (default 5)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    parser.set_defaults(func=run_energy)


def _register_emulate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "emulate",
        help="a virtual INA219 on a pty whose power follows the CPU use of processes",
    )
    parser.add_argument(
        "--pty", action="store_true", required=True, help="serve on a pseudo-terminal"
    )
    parser.add_argument("--rate-hz", type=positive_float, default=100.0)
    parser.add_argument(
        "--pid", type=int, nargs="+", default=[], help="processes to follow (default: machine)"
    )
    parser.add_argument("--idle-mw", type=float, default=2000.0)
    parser.add_argument("--active-mw", type=float, default=3500.0, help="power at one busy core")
    parser.add_argument("--noise-mw", type=float, default=0.0)
    parser.add_argument("--duration", type=positive_float, metavar="SECONDS")
    parser.set_defaults(func=run_emulate)


def _register_calibrate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="measured power values of a platform, for 'hwsched analyze --power-calibration'",
        description="Write the measured active/idle power and energy per inference of a "
        "platform to a small YAML file. 'hwsched analyze --power-calibration FILE' uses it in "
        "place of the descriptor's active and idle power; nothing loads it automatically.",
    )
    parser.add_argument("log", type=Path, metavar="LOG")
    parser.add_argument("--events", required=True, type=Path)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--stage", type=int, help="the stage this board ran (default: all)")
    parser.add_argument("--idle-mw", type=float, metavar="P")
    parser.add_argument("--out", type=Path, help="default power_logs/PLATFORM.power.yaml")
    parser.set_defaults(func=run_calibrate)


# --- record ----------------------------------------------------------------------------------


def run_record(args: argparse.Namespace) -> int:
    from hwsched.extras import require

    require("power", "hwsched power record")
    from hwsched.power.meters import parse_columns
    from hwsched.power.record import Recorder

    columns = parse_columns(args.columns) if args.columns else None
    recorder = Recorder(
        args.port,
        args.meter,
        args.out,
        baud=args.baud,
        columns=columns,
        rail=args.rail,
        stall_timeout_s=args.stall_timeout,
        overwrite=args.force,
    )
    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
    stderr_console().print(f"recording {args.meter} on {args.port} → {args.out} {until}")
    summary = recorder.run(args.duration)  # SIGTERM stops it as Ctrl-C does (hwsched.cli)
    stdout_console().print(record_table(summary))
    if summary.samples == 0:
        raise PowerError(f"no samples from {args.port} ({args.meter}); check port, baud, meter")
    return 0


def record_table(summary) -> Table:
    table = Table(title=f"power log {summary.out}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rate = "-" if summary.sample_rate_hz is None else f"{summary.sample_rate_hz:.1f} Hz"
    rows = [
        ("meter / port", f"{summary.meter} / {summary.port}"),
        ("duration", f"{summary.duration_s:.1f} s"),
        ("samples", f"{summary.samples} at {rate}"),
        ("mean power", _mw(summary.mean_power_mw)),
        ("peak power", _mw(summary.peak_power_mw)),
        ("energy", f"{summary.energy_mj:.1f} mJ"),
    ]
    for fit in summary.clock_fits:
        rows.append(
            ("meter clock", f"drift {fit.drift_ppm:+.0f} ppm, delay p95 {fit.delay_p95_ms:.1f} ms")
        )
    for name, count in summary.counters().items():
        if name != "samples":
            rows.append((name.replace("_", " "), str(count)))
    for row in rows:
        table.add_row(*row)
    return table


def _mw(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} mW"


# --- energy ----------------------------------------------------------------------------------


def _stages_for(logs: list[Path], stages: list[int] | None) -> list[int | None]:
    if stages is None:
        return [None] if len(logs) == 1 else list(range(len(logs)))
    if len(stages) != len(logs):
        raise PowerError(f"--stage has {len(stages)} values for {len(logs)} logs; give one per log")
    return list(stages)


def run_energy(args: argparse.Namespace) -> int:
    from hwsched.power.energy import pipeline_energy, read_events
    from hwsched.power.logfile import read_log

    if args.windows < 1:
        raise PowerError(f"--windows must be at least 1, got {args.windows}")
    from hwsched.power.energy import check_idle_power_mw

    for idle in args.idle_mw or ():
        check_idle_power_mw(idle, "--idle-mw")
    stages = _stages_for(args.logs, args.stage)
    events = read_events(args.events)
    logs = [(stage, read_log(path)) for stage, path in zip(stages, args.logs, strict=True)]
    result = pipeline_energy(logs, events, idle_power_mw=args.idle_mw, windows=args.windows)
    stdout_console().print(energy_table(result))
    if args.json:
        write_json(args.json, result.to_dict())
    return 0


def energy_table(result) -> Table:
    table = Table(title="energy per inference (median over windows)", title_justify="left")
    for name in (
        "stage",
        "log",
        "inferences",
        "E/inf mJ",
        "dyn E/inf mJ",
        "idle mW",
        "avg mW",
        "peak mW",
    ):
        table.add_column(name, justify="left" if name in ("stage", "log") else "right")
    for report in result.stages:
        table.add_row(
            "all" if report.stage is None else str(report.stage),
            Path(report.log).name,
            str(report.inferences),
            f"{report.energy_per_inference_mj:.2f}",
            f"{report.dynamic_energy_per_inference_mj:.2f}",
            f"{report.idle_power_mw:.1f}" + (" (given)" if report.idle_source == "given" else ""),
            f"{report.average_power_mw:.1f}",
            f"{report.peak_power_mw:.1f}",
        )
    if len(result.stages) > 1:
        table.add_row(
            "total",
            "",
            str(result.inferences),
            f"{result.total('energy_per_inference_mj'):.2f}",
            f"{result.total('dynamic_energy_per_inference_mj'):.2f}",
            f"{result.total('idle_power_mw'):.1f}",
            f"{result.total('average_power_mw'):.1f}",
            "",
        )
    skipped = sum(report.uncovered_frames for report in result.stages)
    if skipped:
        table.caption = f"{skipped} frame(s) outside the logs' time span were left out"
    return table


# --- emulate ---------------------------------------------------------------------------------


def run_emulate(args: argparse.Namespace) -> int:
    from hwsched.power.energy import check_idle_power_mw
    from hwsched.power.virtual import VirtualMeter

    check_idle_power_mw(args.idle_mw, "--idle-mw")
    check_idle_power_mw(args.active_mw, "--active-mw")
    check_idle_power_mw(args.noise_mw, "--noise-mw")

    meter = VirtualMeter(
        args.pid,
        rate_hz=args.rate_hz,
        idle_mw=args.idle_mw,
        active_mw=args.active_mw,
        noise_mw=args.noise_mw,
    )
    with meter:
        print(meter.port, flush=True)  # stdout carries only the path, for scripts to read
        following = f"PIDs {' '.join(map(str, args.pid))}" if args.pid else "the whole machine"
        stderr_console().print(
            f"virtual INA219 at {args.rate_hz:g} Hz following {following}; "
            + ("Ctrl-C to stop" if args.duration is None else f"for {args.duration:g} s")
        )
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
            meter.wait(args.duration)
    stderr_console().print(f"{meter.lines_written} lines written, {meter.dropped_lines} dropped")
    return 0


# --- calibrate -------------------------------------------------------------------------------


def run_calibrate(args: argparse.Namespace) -> int:
    from hwsched.power.calibrate import (
        calibration_from_report,
        default_calibration_path,
        write_calibration,
    )
    from hwsched.power.energy import check_idle_power_mw, energy_report, read_events
    from hwsched.power.logfile import read_log

    check_idle_power_mw(args.idle_mw, "--idle-mw")
    report = energy_report(
        read_log(args.log), read_events(args.events), stage=args.stage, idle_power_mw=args.idle_mw
    )
    calibration = calibration_from_report(report, args.platform, args.events)
    path = write_calibration(calibration, args.out or default_calibration_path(args.platform))
    console = stdout_console()
    console.print(
        f"{args.platform}: active {calibration.active_power_mw:.1f} mW, idle "
        f"{calibration.idle_power_mw:.1f} mW, {calibration.energy_per_inference_mj:.2f} mJ per "
        f"inference ({calibration.dynamic_energy_per_inference_mj:.2f} mJ above idle)"
    )
    console.print(f"wrote {path}", soft_wrap=True)
    return 0
