"""``hwsched-runner``: run one role of a pipeline on this board.

    hwsched-runner DIR --stage K --listen tcp://0.0.0.0:5555 --next tcp://board2:5555
    hwsched-runner DIR --stage 1 --listen serial:///dev/ttyUSB0?baud=921600 --next tcp://...
    hwsched-runner DIR --source --next tcp://board1:5555 --frames 1000 --data digits
    hwsched-runner DIR --sink --listen tcp://0.0.0.0:5600 --data digits --outputs out.npz
    hwsched-runner DIR --controller --listen tcp://127.0.0.1:5700 --hold 1 --margin 0.1
    hwsched-runner DIR --source --next tcp://board1:5555 --controller-at tcp://127.0.0.1:5700

The runner binds only the ``--listen`` address it is given, checks the stage file's sha256
against ``DIR/plan.json`` before loading it, and imports no TensorFlow. ``--curve-keys DIR``
turns on CurveZMQ: ``DIR/self.key_secret`` is this runner's keypair, ``DIR/authorized/*.key``
the peers allowed to send to it, ``DIR/next.key`` the public key of the ``--next`` runner.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from hwsched.deployment import check_alternatives, load_plan
from hwsched.errors import HwschedError, RunError
from hwsched.extras import require
from hwsched.runtime.defaults import DEFAULT_HWM, DEFAULT_RESEND_AFTER_S, DEFAULT_WINDOW
from hwsched.runtime.process import RunOptions, check_writable, keep_freed_memory, pin_to_cpus
from hwsched.units import MS_PER_S

#: Past ``--max-runtime`` the role's own loop gets this long to stop cleanly (write its stats,
#: let the last acknowledgements leave) before the watchdog ends the process.
WATCHDOG_GRACE_S = 3.0
#: Exit code of a runner stopped by its watchdog or by bad input (as every hwsched error).
ERROR_EXIT_CODE = 2
PROG = "hwsched-runner"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``hwsched-runner: error: …``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ERROR_EXIT_CODE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number_argument(kind: Callable[[str], float], least: float,
                    strict: bool) -> Callable[[str], float]:
    """An argparse type: a finite ``kind`` above ``least`` (or at least it, ``strict=False``)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < least or (strict and value == least):
            bound = f"more than {least:g}" if strict else f"at least {least:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number, {bound}")
        return value
    return parse


_COUNT = number_argument(int, 1, strict=False)
_POSITIVE_S = number_argument(float, 0.0, strict=True)


def _cpu_list(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated CPU list") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan_dir", type=Path, metavar="DIR", help="exported plan directory")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--stage", type=int, metavar="K", help="run stage K")
    role.add_argument("--source", action="store_true", help="feed frames into stage 0")
    role.add_argument("--sink", action="store_true", help="collect the last stage's outputs")
    role.add_argument("--controller", action="store_true",
                      help="adaptive plans: pick the split from the measurements the source "
                      "forwards (beside the source)")
    parser.add_argument("--listen", metavar="URL", help="where to receive (bound exactly here)")
    parser.add_argument("--next", dest="next_hop", metavar="URL", help="where to send")
    parser.add_argument("--listen-from", action="append", metavar="J=URL",
                        help="stage-graph plans: where to receive the edge from stage J (or "
                        "source=URL); repeat per incoming edge")
    parser.add_argument("--next-to", action="append", metavar="J=URL",
                        help="stage-graph plans: where to send the edge to stage J (or "
                        "sink=URL); repeat per outgoing edge")
    parser.add_argument("--threads", type=_COUNT, default=1, help="interpreter threads (1)")
    parser.add_argument("--delegate", metavar="edgetpu|gpu|none|PATH[:k=v,…]",
                        help="stages: LiteRT delegate to load instead of the plan's (none: CPU)")
    parser.add_argument("--curve-keys", type=Path, metavar="DIR", help="CurveZMQ key directory")
    parser.add_argument("--cpus", type=_cpu_list, help="pin this process to these CPUs")
    parser.add_argument("--events", type=Path, help="per-frame events JSONL (stages)")
    parser.add_argument("--stats", type=Path, help="write a stats JSON here on exit")
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=_COUNT, default=DEFAULT_WINDOW,
                        help=f"frames in flight per hop ({DEFAULT_WINDOW})")
    parser.add_argument("--hwm", type=_COUNT, default=DEFAULT_HWM,
                        help=f"ZeroMQ high-water mark ({DEFAULT_HWM})")
    parser.add_argument("--resend-after", type=_POSITIVE_S, default=DEFAULT_RESEND_AFTER_S,
                        metavar="S", help="resend unacknowledged frames after S seconds")
    parser.add_argument("--link-delay-ms", type=number_argument(float, 0.0, strict=False),
                        default=0.0,
                        help="hold each outgoing message this long (link latency emulation)")
    parser.add_argument("--max-runtime", type=_POSITIVE_S, metavar="S",
                        help="stop after S seconds (a watchdog ends a runner stuck past it)")
    parser.add_argument("--keep-serving", action="store_true",
                        help="stages: keep serving after the end of a stream")
    parser.add_argument("--frames", type=number_argument(int, 0, strict=False), default=100,
                        help="source: frames to send (100)")
    parser.add_argument("--data", default="random",
                        help="source/sink: random, digits, FILE.npy, FILE.npz or an image DIR")
    parser.add_argument("--rate", type=_POSITIVE_S, metavar="HZ",
                        help="source: frames per second")
    parser.add_argument("--seed", type=number_argument(int, 0, strict=False), default=0,
                        help="source: random data seed (0 or more)")
    parser.add_argument("--outputs", type=Path, help="sink: save outputs to this .npz")
    parser.add_argument("--controller-at", metavar="URL",
                        help="source: the controller's address (adaptive plans)")
    parser.add_argument("--switch-at", metavar="SEQ:ALT[,…]",
                        help="source: run frames from SEQ on on alternative ALT (scripted)")
    parser.add_argument("--hold", type=number_argument(float, 0.0, strict=False), metavar="S",
                        help="controller: a better split must stay best this long (1 s; "
                        "0.3 of it, at least 0.3 s, when the bandwidth is 4x beyond the "
                        "current split's range)")
    parser.add_argument("--margin", type=number_argument(float, 0.0, strict=False), metavar="F",
                        help="controller: and beat the current one by this fraction (0.1); "
                        "stage: probe its link only when that could switch")
    parser.add_argument("-v", "--verbose", action="store_true", help="log resends")
    return parser


def _options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        window=args.window, resend_after_s=args.resend_after,
        link_delay_s=args.link_delay_ms / MS_PER_S, hwm=args.hwm, curve_keys=args.curve_keys,
        events=args.events, stats=args.stats, ready=args.ready, max_runtime_s=args.max_runtime,
        exit_after_end=not args.keep_serving, started_s=args.started_s, margin=args.margin,
    )


def _require(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) is None:
            flag = "--next" if name == "next_hop" else f"--{name}"
            raise RunError(f"this role needs {flag} URL")


def _check_endpoints(args: argparse.Namespace) -> None:
    """Parse ``--listen``/``--next`` before the plan and the model are loaded."""
    from hwsched.runtime.transport import parse_endpoint

    for flag, text in (("--listen", args.listen), ("--next", args.next_hop),
                       ("--controller-at", args.controller_at)):
        if text is not None:
            try:
                parse_endpoint(text, listen=flag == "--listen")
            except HwschedError as error:
                raise type(error)(f"{flag} {error}") from None


def run(args: argparse.Namespace) -> int:
    require("runner", PROG)
    _check_endpoints(args)
    for flag, path in (("--events", args.events), ("--stats", args.stats),
                       ("--outputs", args.outputs)):
        check_writable(flag, path)
    pin_to_cpus(args.cpus)
    keep_freed_memory()  # per-frame tensors reuse memory (page faults cost more than copies)
    if args.delegate:
        from hwsched.litert import DELEGATE_ENV, DelegateSpec

        DelegateSpec.parse(args.delegate)  # a malformed spec fails before anything starts
        os.environ[DELEGATE_ENV] = args.delegate
    plan = load_plan(args.plan_dir)
    check_alternatives(plan, args.plan_dir)  # a stale alternative fails before streaming
    options = _options(args)
    if args.source:
        from hwsched.runtime.controller import alternative_plans, parse_switch_schedule
        from hwsched.runtime.source import run_source

        _require(args, "next_hop")
        schedule = parse_switch_schedule(args.switch_at or "", len(alternative_plans(plan)))
        run_source(plan, args.next_hop, options, frames=args.frames, data=args.data,
                   rate_hz=args.rate, seed=args.seed, switch_at=schedule,
                   controller=args.controller_at)
    elif args.controller:
        from hwsched.runtime.controller import DEFAULT_HOLD_S, DEFAULT_MARGIN, run_controller

        _require(args, "listen")
        run_controller(plan, args.listen, options,
                       hold_s=DEFAULT_HOLD_S if args.hold is None else args.hold,
                       margin=DEFAULT_MARGIN if args.margin is None else args.margin)
    elif args.sink:
        from hwsched.runtime.routing import hop_specs
        from hwsched.runtime.sink import run_sink
        from hwsched.runtime.source import load_dataset

        _require(args, "listen")
        labels = None
        if args.data != "random":
            dataset = load_dataset(args.data, hop_specs(plan, 0), args.frames)
            labels = None if dataset.labels is None else [int(x) for x in dataset.labels]
        stats = run_sink(plan, args.listen, options, labels=labels, outputs_path=args.outputs)
        if not stats["complete"]:
            raise RunError(f"sink: stream incomplete ({stats['frames']} frames delivered)")
    elif plan.is_graph:
        _run_graph_stage(args, plan, options)
    else:
        from hwsched.runtime.stage import check_stage_args, run_stage

        _require(args, "listen", "next_hop")
        check_stage_args(plan, args.stage)
        run_stage(plan, args.plan_dir, args.stage, args.listen, args.next_hop, options,
                  threads=args.threads)
    return 0


def _run_graph_stage(args: argparse.Namespace, plan, options: RunOptions) -> None:
    """A stage of a stage-graph plan: one address per incoming and outgoing edge; a lone
    ``--listen`` / ``--next`` serves a stage with one edge in / out."""
    from hwsched.runtime.graph_stage import (
        downstreams,
        parse_hop_addresses,
        run_graph_stage,
        upstreams,
    )
    from hwsched.runtime.stage import check_stage_args

    check_stage_args(plan, args.stage)
    listen = parse_hop_addresses(args.listen_from, "--listen-from")
    send_to = parse_hop_addresses(args.next_to, "--next-to")
    ups, downs = upstreams(plan, args.stage), downstreams(plan, args.stage)
    if args.listen and len(ups) == 1:
        listen.setdefault(ups[0], args.listen)
    if args.next_hop and len(downs) == 1:
        send_to.setdefault(downs[0], args.next_hop)
    run_graph_stage(plan, args.plan_dir, args.stage, listen, send_to, options,
                    threads=args.threads)


def start_watchdog(max_runtime_s: float | None) -> threading.Timer | None:
    """End the process ``WATCHDOG_GRACE_S`` after ``--max-runtime`` whatever its main thread is
    doing. The roles' loops check the deadline themselves, but a runner can be stuck where no
    loop runs: opening a data file that is a FIFO, a blocking close, a native call that never
    returns. ``os._exit`` needs no cooperation from the stuck thread."""
    if max_runtime_s is None:
        return None

    def expire() -> None:
        sys.stderr.write(f"{PROG}: error: still running {WATCHDOG_GRACE_S:g} s after "
                         f"--max-runtime {max_runtime_s:g} s; stopped\n")
        sys.stderr.flush()
        os._exit(ERROR_EXIT_CODE)

    timer = threading.Timer(max_runtime_s + WATCHDOG_GRACE_S, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.started_s = time.monotonic()  # --max-runtime counts from here, for loop and watchdog
    watchdog = start_watchdog(args.max_runtime)
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID prints where a runner is stuck
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s hwsched-runner: %(message)s", stream=sys.stderr)
    logging.getLogger("hwsched.runtime.interpreter").setLevel(logging.INFO)  # what was loaded
    try:
        return run(args)
    except HwschedError as error:
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        if watchdog is not None:  # main returned: the process (maybe a caller's) lives on
            watchdog.cancel()
        if "hwsched.runtime.transport" in sys.modules:  # never imported without the extra
            from hwsched.runtime.transport import shutdown

            shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
