"""The shipped digits_cnn exported in two fp32 stages, its unsplit outputs (the oracle), and
helpers for tests that run ``hwsched`` and ``hwsched-runner`` as processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
HWSCHED = "import sys; from hwsched.cli import main; sys.exit(main(sys.argv[1:]))"
RUNNER = "import sys; from hwsched.runtime.cli import main; sys.exit(main(sys.argv[1:]))"


def export_digits_split(out: Path) -> Path:
    """digits_cnn in two fp32 stages (so the chain equals the Keras model to float rounding)."""
    from hwsched.cli import main

    argv = ["export", "digits_cnn", "--candidate", "1", "--stages", "2",
            "--platforms", "rpi4,jetson_nano", "--precision", "fp32", "--out", str(out)]
    assert main(argv) == 0
    return out


def unsplit_outputs(frames: int) -> np.ndarray:
    """The whole Keras model on the first ``frames`` digits test images, one at a time (the
    model is built at batch 1), as ``(frames, 1, classes)`` like the sink's outputs."""
    import keras

    from hwsched.datasets import digits

    model = keras.models.load_model(ROOT / "models" / "digits_cnn.keras")
    images = digits("test").images[:frames]
    return np.stack([np.asarray(model(images[i:i + 1])) for i in range(frames)])


def wait_for(condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something other than None (an event, never a
    fixed sleep standing in for one)."""
    limit = time.monotonic() + timeout_s
    while (value := condition()) is None:
        assert time.monotonic() < limit, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.02)
    return value


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def command(program: str, args: Sequence[str], prelude: str = "") -> list[str]:
    """argv running ``hwsched`` (program=HWSCHED) or ``hwsched-runner`` (RUNNER) in a fresh
    interpreter, after ``prelude``."""
    return [sys.executable, "-c", prelude + program, *args]


def run(program: str, args: Sequence[str], *, prelude: str = "", timeout_s: float = 120,
        env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run(command(program, args, prelude), capture_output=True, text=True,
                          timeout=timeout_s, env=env, cwd=cwd)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
