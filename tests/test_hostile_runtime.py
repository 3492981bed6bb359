"""Bad input to the runtime, as an adversary would give it: every case ends in exit code 2,
exactly one line on stderr, no traceback, nothing already written changed, and no hang
(issue 15: runner arguments, a plan whose tensors no transport can carry, a data file that
blocks forever, ``emulate --keep FILE``, a core-only install, and floods that must not grow
memory or the log without bound)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from digitsplit import HWSCHED, RUNNER, export_digits_split, free_port, run
from memchannel import MemoryChannel

from hwsched.deployment import TensorSpec
from hwsched.runtime.frames import KIND_ACK, KIND_END, decode_message, encode_control, encode_data
from hwsched.runtime.reliable import MAX_HELD_WINDOWS, Receiver
from hwsched.runtime.sink import _SinkLoop

#: A process that has not ended by then hangs (the cases below end in about a second).
HANG_S = 60
HUGE = [4_000_000_000, 4_000_000_000]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return export_digits_split(tmp_path_factory.mktemp("digits") / "split")


@pytest.fixture
def place(split, tmp_path) -> Path:
    """A work directory holding a copy of the plan and a file written before the case ran."""
    shutil.copytree(split, tmp_path / "split")
    (tmp_path / "written.txt").write_text("written before\n")
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _assert_one_clean_line(done, *expected: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _huge_plan(place: Path) -> None:
    """Stage 0's output (and so stage 1's input and the hop between) of 4e9 × 4e9 floats."""
    path = place / "split" / "plan.json"
    plan = json.loads(path.read_text())
    plan["stages"][0]["outputs"][0]["shape"] = HUGE
    plan["stages"][1]["inputs"][0]["shape"] = HUGE
    plan["stages"][1]["outputs"][0]["shape"] = HUGE
    path.write_text(json.dumps(plan))


RUNNER_CASES = {
    "port beyond 65535": (["--sink", "--listen", "tcp://127.0.0.1:99999"], "99999"),
    "port 0": (["--source", "--next", "tcp://127.0.0.1:0"], "port 0"),
    "no port": (["--sink", "--listen", "tcp://127.0.0.1"], "tcp://HOST:PORT"),
    "unknown scheme": (["--sink", "--listen", "udp://127.0.0.1:5"], "endpoints are"),
    "baud not a number": (["--sink", "--listen", "serial://loop://?baud=fast"], "baud"),
    "window 0": (["--sink", "--listen", "tcp://127.0.0.1:5", "--window", "0"], "--window"),
    "max-runtime nan": (["--sink", "--listen", "tcp://127.0.0.1:5", "--max-runtime", "nan"],
                        "--max-runtime"),
    "max-runtime negative": (["--sink", "--listen", "tcp://127.0.0.1:5", "--max-runtime",
                              "-1"], "--max-runtime"),
    "resend-after inf": (["--sink", "--listen", "tcp://127.0.0.1:5", "--resend-after", "inf"],
                         "--resend-after"),
    "rate 0": (["--source", "--next", "tcp://127.0.0.1:5", "--rate", "0"], "--rate"),
    "frames negative": (["--source", "--next", "tcp://127.0.0.1:5", "--frames", "-1"],
                        "--frames"),
    "seed negative": (["--source", "--next", "tcp://127.0.0.1:5", "--seed", "-1"], "--seed"),
    "threads 0": (["--stage", "0", "--listen", "tcp://127.0.0.1:5", "--next",
                   "tcp://127.0.0.1:6", "--threads", "0"], "--threads"),
    "stage out of range": (["--stage", "7", "--listen", "tcp://127.0.0.1:5", "--next",
                            "tcp://127.0.0.1:6"], "--stage 7"),
    "sink without --listen": (["--sink"], "--listen"),
}


@pytest.mark.parametrize("case", sorted(RUNNER_CASES))
def test_runner_arguments(place, case):
    args, expected = RUNNER_CASES[case]
    before = _snapshot(place)
    done = run(RUNNER, ["split", *args, "--max-runtime", "30"] if "--max-runtime" not in args
               else ["split", *args], cwd=place, timeout_s=HANG_S)
    _assert_one_clean_line(done, "hwsched-runner: error:", expected)
    assert _snapshot(place) == before


@pytest.mark.parametrize("role", [["--sink", "--listen", "tcp://127.0.0.1:{port}"],
                                  ["--stage", "0", "--listen", "tcp://127.0.0.1:{port}",
                                   "--next", "tcp://127.0.0.1:{port2}"]],
                         ids=["sink", "stage"])
def test_a_tensor_no_transport_can_carry_is_an_error_not_a_hang(place, role):
    """It used to leave the first socket open (OverflowError opening the second), so the
    process hung in ZeroMQ's context termination, past --max-runtime."""
    _huge_plan(place)
    before = _snapshot(place)
    args = [a.format(port=free_port(), port2=free_port()) for a in role]
    done = run(RUNNER, ["split", *args, "--max-runtime", "5"], cwd=place, timeout_s=HANG_S)
    _assert_one_clean_line(done, "hwsched-runner: error:")
    assert _snapshot(place) == before


#: Output files a runner cannot write: a parent that is a file, or a directory in the way.
#: The plan directory is missing too: the output is checked first (cheap before slow), so the
#: error names the flag, not plan.json.
OUTPUT_CASES = {
    "events under a file": (["--stage", "0", "--listen", "tcp://127.0.0.1:5", "--next",
                             "tcp://127.0.0.1:6", "--events", "written.txt/e.jsonl"], "--events"),
    "stats under a file": (["--sink", "--listen", "tcp://127.0.0.1:5", "--stats",
                            "written.txt/s.json"], "--stats"),
    "outputs over a directory": (["--sink", "--listen", "tcp://127.0.0.1:5", "--outputs",
                                  "split"], "--outputs"),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
@pytest.mark.parametrize("plan_dir", ["split", "missing"])
def test_an_output_the_runner_cannot_write_is_refused_first(place, case, plan_dir):
    args, flag = OUTPUT_CASES[case]
    before = _snapshot(place)
    done = run(RUNNER, [plan_dir, *args, "--max-runtime", "30"], cwd=place, timeout_s=HANG_S)
    _assert_one_clean_line(done, "hwsched-runner: error:", flag)
    assert _snapshot(place) == before


def test_max_runtime_holds_when_the_main_thread_is_stuck(place):
    """A data file that is a FIFO nobody writes blocks the source in open() before any loop
    runs; the watchdog ends it anyway."""
    os.mkfifo(place / "frames.npy")
    before = _snapshot(place)
    done = run(RUNNER, ["split", "--source", "--next", f"tcp://127.0.0.1:{free_port()}",
                        "--data", "frames.npy", "--max-runtime", "1"], cwd=place,
               timeout_s=HANG_S)
    _assert_one_clean_line(done, "--max-runtime 1 s")
    assert _snapshot(place) == before


def test_emulate_keep_over_a_file(place):
    before = _snapshot(place)
    done = run(HWSCHED, ["emulate", "split", "--keep", "written.txt"], cwd=place,
               timeout_s=HANG_S)
    _assert_one_clean_line(done, "--keep written.txt", "not a directory")
    assert _snapshot(place) == before


@pytest.mark.parametrize("args", [["--stall-timeout", "0"], ["--stall-timeout", "nan"],
                                  ["--frames", "0"], ["--rate", "0"], ["--rate", "-5"],
                                  ["--rate", "nan"]], ids=lambda a: " ".join(a))
def test_emulate_arguments(place, args):
    before = _snapshot(place)
    done = run(HWSCHED, ["emulate", "split", *args], cwd=place, timeout_s=HANG_S)
    _assert_one_clean_line(done, "hwsched emulate: error:", args[0])
    assert _snapshot(place) == before


@pytest.mark.parametrize("plan_dir", ["split", "missing"])
def test_emulate_json_that_cannot_be_written_is_refused_before_the_run(place, plan_dir):
    """Checked before the plan (cheap before slow): it was found only after the whole run."""
    before = _snapshot(place)
    done = run(HWSCHED, ["emulate", plan_dir, "--frames", "5", "--json", "written.txt/r.json"],
               cwd=place, timeout_s=HANG_S)
    _assert_one_clean_line(done, "--json")
    assert _snapshot(place) == before


def test_emulate_power_with_restart_is_refused(place):
    """A restarted stage is a new process the virtual meter does not follow: its energy
    would be left out without a word."""
    before = _snapshot(place)
    done = run(HWSCHED, ["emulate", "split", "--frames", "5", "--restart", "--power"],
               cwd=place, timeout_s=HANG_S)
    _assert_one_clean_line(done, "--power", "--restart")
    assert _snapshot(place) == before


# -- a core-only install: pip install hwsched, no extras ---------------------------------------
#: Makes the runner and power extras' modules unimportable, as on a core-only install.
CORE_ONLY = (
    "import sys\n"
    "class _NoExtras:\n"
    "    BLOCKED = {'zmq', 'serial', 'ai_edge_litert', 'tflite_runtime'}\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in self.BLOCKED:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, _NoExtras())\n"
)


def test_the_core_only_hook_really_blocks_the_extras():
    done = run(HWSCHED, ["--version"], prelude=CORE_ONLY + "import zmq\n")
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


CORE_ONLY_CASES = {
    "runner stage": (RUNNER, ["split", "--stage", "0", "--listen", "tcp://127.0.0.1:5",
                              "--next", "tcp://127.0.0.1:6"], "hwsched[runner]"),
    "runner sink": (RUNNER, ["split", "--sink", "--listen", "tcp://127.0.0.1:5"],
                    "hwsched[runner]"),
    "emulate": (HWSCHED, ["emulate", "split"], "hwsched[runner]"),
    "power record": (HWSCHED, ["power", "record", "--port", "loop://", "--meter", "ina219",
                               "--out", "power.log", "--duration", "1"], "hwsched[power]"),
}


@pytest.mark.parametrize("case", sorted(CORE_ONLY_CASES))
def test_core_only_install_names_the_extra(place, case):
    program, args, extra = CORE_ONLY_CASES[case]
    before = _snapshot(place)
    done = run(program, args, prelude=CORE_ONLY, cwd=place, timeout_s=HANG_S)
    _assert_one_clean_line(done, f"pip install '{extra}'")
    assert _snapshot(place) == before


@pytest.mark.parametrize("program, args", [(RUNNER, ["--help"]), (HWSCHED, ["--help"]),
                                           (HWSCHED, ["emulate", "--help"]),
                                           (HWSCHED, ["power", "record", "--help"])],
                         ids=["runner", "hwsched", "emulate", "power record"])
def test_core_only_install_help_works(program, args):
    done = run(program, args, prelude=CORE_ONLY, timeout_s=HANG_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and not done.stderr


# -- floods, counted (not timed) on an in-memory channel ---------------------------------------
SPECS = {"x": TensorSpec("x", (1, 2), "float32")}
WINDOW = 8
#: Far-future frames a hostile peer floods the sink with (the issue used 200,000; memory and
#: log lines grew with every one).
FLOOD = 20_000


def _frame(seq: int) -> list[bytes]:
    return encode_data(seq, 0.0, {"x": np.full((1, 2), seq % 1000, np.float32)}, SPECS)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_far_future_frames_do_not_grow_the_sink_or_its_log(caplog):
    channel = MemoryChannel()
    sink = _SinkLoop(channel, SPECS, WINDOW, labels=None)
    channel.inbox.extend(_frame(10**9 + i) for i in range(FLOOD))
    caplog.set_level(logging.WARNING, logger="hwsched.runtime")
    peak = 0
    while channel.inbox:
        sink.step()
        peak = max(peak, len(sink.collector.waiting))
    bound = MAX_HELD_WINDOWS * WINDOW
    assert peak <= bound
    # what was refused was not acknowledged: its sender (if real) sends it again
    acked = [decode_message(parts, {}).seq for parts in channel.sent]
    assert len(acked) == bound and sink.refused == FLOOD - bound
    assert len(_warnings(caplog)) <= 2 * FLOOD.bit_length()  # logarithmic, not one per frame
    # the real stream still flows through the full buffer, every frame once and in order
    channel.sent.clear()
    channel.inbox.extend([*(_frame(i) for i in range(50)), encode_control(KIND_END, 50)])
    while channel.inbox:
        sink.step()
    assert sink.finished and sink.collector.delivered == list(range(50))
    assert sorted(decode_message(p, {}).seq for p in channel.sent) == list(range(51))


def test_a_refused_frame_is_taken_when_it_is_sent_again():
    channel = MemoryChannel()
    sink = _SinkLoop(channel, SPECS, 1, labels=None)  # a buffer of MAX_HELD_WINDOWS frames
    future = [_frame(s) for s in range(1, MAX_HELD_WINDOWS + 2)]
    channel.inbox.extend(future)
    while channel.inbox:
        sink.step()
    assert sink.refused == 1  # frame MAX_HELD_WINDOWS + 1 did not fit
    channel.inbox.extend([_frame(0), future[-1], encode_control(KIND_END, len(future) + 1)])
    while channel.inbox:
        sink.step()
    assert sink.finished and sink.collector.delivered == list(range(len(future) + 1))


def test_a_flood_of_malformed_frames_logs_logarithmically(caplog):
    channel = MemoryChannel()
    receiver = Receiver(channel, SPECS, window=WINDOW)
    channel.inbox.extend([b"not a frame"] for _ in range(FLOOD))
    channel.inbox.extend(encode_control(KIND_ACK, s) for s in range(FLOOD))
    caplog.set_level(logging.WARNING, logger="hwsched.runtime")
    while channel.inbox:
        assert receiver.messages() == []
    assert receiver.counters.rejected == 2 * FLOOD
    assert len(_warnings(caplog)) <= 2 * FLOOD.bit_length()


def test_the_watchdog_ends_with_main(tmp_path):
    """A runner called in-process that returns (here: on an error) must not leave its
    ``--max-runtime`` watchdog armed: it would ``os._exit`` the caller seconds later."""
    import threading

    from hwsched.runtime.cli import WATCHDOG_GRACE_S
    from hwsched.runtime.cli import main as runner_main

    before = set(threading.enumerate())
    code = runner_main([str(tmp_path / "no-plan"), "--stage", "0", "--listen",
                        "tcp://127.0.0.1:0", "--next", "tcp://127.0.0.1:9",
                        "--max-runtime", "0.5"])
    assert code == 2
    armed = [t for t in set(threading.enumerate()) - before
             if isinstance(t, threading.Timer) and not t.finished.is_set()]
    assert not armed, f"watchdog still armed; it would end this process in {WATCHDOG_GRACE_S} s"
