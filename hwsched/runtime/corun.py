"""Co-running load for ``hwsched profile --co-run``: one process per other core that invokes
the segment being timed in a loop, so the timed core shares caches and memory bandwidth the way
it does when every core runs a pipeline stage.

    python -m hwsched.runtime.corun --cpu 1 [--threads 1] [--max-seconds 600]

Reads ``.tflite`` paths from stdin, one per line: it loads each, invokes it once, writes
``ready`` to stdout, and then invokes it back to back until the next path arrives. It ends on
EOF (the profiler is done, or died), or after ``--max-seconds`` whatever happens. A line
``go`` invokes the loaded model once, and stops the loop until the next path: a paired,
paced profile starts its partner's invocations this way (``go`` lines read together run
once: a partner that fell behind does not work off a backlog).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hwsched.runtime.interpreter import load_signature_runner

#: Longest wait for a command while no model is loaded yet.
IDLE_POLL_S = 0.05
DEFAULT_MAX_SECONDS = 600.0
READ_BYTES = 4096
#: The line that makes a paced co-runner invoke once.
GO = "go"


def random_feeds(runner: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float inputs (zeros for integer ones) for every input of a signature runner."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, detail in runner.get_input_details().items():
        dtype = np.dtype(detail["dtype"])
        shape = tuple(int(d) for d in detail["shape"])
        feeds[name] = (rng.random(shape, dtype=np.float32).astype(dtype)
                       if dtype.kind == "f" else np.zeros(shape, dtype))
    return feeds


class _Commands:
    """Lines from stdin, read without blocking (raw fd: no buffering hides a waiting line)."""

    def __init__(self) -> None:
        self.fd, self.pending, self.closed = sys.stdin.fileno(), b"", False

    def poll(self, timeout_s: float) -> list[str]:
        readable, _, _ = select.select([self.fd], [], [], timeout_s)
        if readable:
            chunk = os.read(self.fd, READ_BYTES)
            self.closed = not chunk
            self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        return [line.decode() for line in lines if line.strip()]


def _pending_work(lines: Sequence[str]) -> list[str]:
    """The commands worth running among ``lines`` read at once: every path, in order, and
    one ``go`` for any number after the last path. A partner slower than the timed stage
    falls behind its ``go`` lines; running each would keep it busy long after the timing
    (the next segment's load waiting on the backlog) instead of starting with the next
    timed invocation.

    >>> _pending_work(["go", "a.tflite", "go", "go", "go"])
    ['a.tflite', 'go']
    >>> _pending_work(["go", "go", "b.tflite"])
    ['b.tflite']
    """
    stripped = [line.strip() for line in lines]
    paths = [line for line in stripped if line != GO]
    last_path = max((i for i, line in enumerate(stripped) if line != GO), default=-1)
    return paths + ([GO] if GO in stripped[last_path + 1:] else [])


def serve(threads: int, max_seconds: float) -> None:
    """Run the commands: a path loads a model (then loops), ``go`` invokes once (paced
    pairing, ``hwsched profile``'s ``gap_ms``: from the first ``go`` on, no more looping)."""
    commands = _Commands()
    deadline = time.monotonic() + max_seconds
    runner, feeds, looping = None, {}, False
    while not commands.closed and time.monotonic() < deadline:
        lines = commands.poll(0.0 if looping else IDLE_POLL_S)
        for line in _pending_work(lines):
            if line == GO and runner is not None:
                looping = False
                runner(**feeds)
            elif line != GO:
                with open(line, "rb") as handle:
                    runner = load_signature_runner(content=handle.read(), threads=threads)
                feeds, looping = random_feeds(runner), True
                runner(**feeds)
                sys.stdout.write("ready\n")
                sys.stdout.flush()
        if not lines and looping:
            runner(**feeds)  # type: ignore[misc]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwsched.runtime.corun",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", type=int, required=True, help="pin to this CPU")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {args.cpu})
    serve(args.threads, args.max_seconds)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
