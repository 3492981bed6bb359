"""The ``hwsched`` command line: a thin layer that parses, calls the library, and turns
library errors into one clear line and a non-zero exit.

Each subcommand lives in its own module under :mod:`hwsched.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code. Heavy imports (TensorFlow) happen inside those callables.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import NoReturn

from hwsched import __version__
from hwsched.errors import HwschedError

#: Subcommand modules in the order of the data flow, which is how ``hwsched --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "hwsched.cli.analyze",
    "hwsched.cli.models",
    "hwsched.cli.hardware",
    "hwsched.cli.export",
    "hwsched.cli.runtime",
    "hwsched.cli.power",
    "hwsched.cli.report",
)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the command (``hwsched emulate: error: …``), exit 2;
    ``add_subparsers`` makes every subcommand's parser of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hwsched",
        description="Hardware-aware layer scheduling of DNN inference across embedded platforms.",
    )
    parser.add_argument("--version", action="version", version=f"hwsched {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _dump_stacks_on_sigusr1()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:  # native log lines too (TensorFlow's, see hwsched.load.import_keras)
        os.environ.setdefault("HWSCHED_DEBUG", "1")
    try:
        with _terminate_as_interrupt():
            return int(args.func(args) or 0)
    except HwschedError as error:
        if args.debug:
            raise
        print(f"hwsched: error: {error}", file=sys.stderr)
        return error.exit_code
    except Terminated:
        print("hwsched: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("hwsched: interrupted", file=sys.stderr)
        return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a service manager, a CI runner's time-out) arriving while a command
    runs: raised where Ctrl-C would be, so every command unwinds the same way — ``emulate``
    stops its runners and removes its cgroups and namespaces, ``power record`` keeps what it
    recorded — and exits 143."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While a command runs, the first SIGINT or SIGTERM raises ``KeyboardInterrupt`` or
    :class:`Terminated` in the main thread and later ones are ignored, so that a second
    signal (a CI runner's SIGTERM seconds after its SIGINT, an impatient second ``kill``)
    cannot cut short the clean-up the first one started (runners stopped, cgroups removed);
    the previous handlers are back afterwards (``main`` may be called again in one process).
    A signal the parent set to be ignored stays ignored, as Python leaves an ignored SIGINT.
    Only the main thread may set handlers: from another one (a test embedding the CLI) this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = False

    def interrupt(signum: int, _frame: object) -> None:
        nonlocal interrupted
        if interrupted:
            return
        interrupted = True
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every thread's Python stack to stderr and goes on: how to see
    where a long ``emulate`` or ``analyze`` is (a test that waits in vain asks it so)."""
    import faulthandler
    import io

    if hasattr(signal, "SIGUSR1") and sys.stderr is not None:
        # a stderr without a descriptor (captured by a test, replaced) has nowhere to dump
        with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError, OSError):
            faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
