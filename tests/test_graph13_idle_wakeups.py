"""Idle runners sleep: a stage-graph runner and the sink wake for a message, a timer of their
own or a signal, never on a tick. On bench_placement's two-branch plan the join and the sink
share their core with a branch; their 50 ms ticks (a cold pass of the Python loop each) ran
inside the branch's compute (issue 13). Oracle: the kernel's count of the main thread's
voluntary context switches (each time it blocked) over an idle second — a count, not a time:
a loaded machine only stretches the second, which gives a ticking loop more wake-ups."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.test_placement_runtime import _Runners, dag_plan  # noqa: F401  (the fixture)

#: Wake-ups an idle runner may have in its idle window (a 50 ms tick has at least 20).
MAX_IDLE_WAKEUPS = 5
IDLE_WINDOW_S = 1.0
#: Left for the runners' connections to settle after they said ready.
SETTLE_S = 0.5
STOP_TIMEOUT_S = 30
#: How long the supervisor test's child runs, and the supervisor's wake-ups allowed meanwhile:
#: its 0.5 s wait and the child's end, plus switches for the GIL with the test's timer thread
#: (a 50 ms tick has at least 25 in that time, however slow its passes on a loaded machine).
SUPERVISED_S = 2.0
MAX_SUPERVISOR_WAKEUPS = 12


def _main_thread_switches(pid: int) -> int:
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("voluntary_ctxt_switches"))
    return int(line.split()[1])


def test_an_idle_join_stage_and_sink_do_not_tick(dag_plan, tmp_path):  # noqa: F811
    plan_dir, _ = dag_plan
    runners = _Runners(plan_dir, tmp_path)
    try:
        sink = runners.start("sink", "--sink", "--listen", runners.urls["sink"])
        join = runners.stage(3, "stage3")
        runners.wait_ready("sink", "stage3")
        time.sleep(SETTLE_S)
        before = {name: _main_thread_switches(p.pid) for name, p in
                  (("sink", sink), ("stage3", join))}
        started_s = time.monotonic()
        time.sleep(IDLE_WINDOW_S)
        after = {name: _main_thread_switches(p.pid) for name, p in
                 (("sink", sink), ("stage3", join))}
        assert time.monotonic() - started_s >= IDLE_WINDOW_S
        wakeups = {name: after[name] - before[name] for name in before}
        assert all(n <= MAX_IDLE_WAKEUPS for n in wakeups.values()), wakeups
        # a signal still ends the sleeping loops cleanly: stats written; the sink, which got
        # no frame, says so in its one line
        for child in (join, sink):
            child.send_signal(signal.SIGTERM)
        assert join.wait(timeout=STOP_TIMEOUT_S) == 0
        assert sink.wait(timeout=STOP_TIMEOUT_S) == 2
    finally:
        runners.close()
    assert (tmp_path / "stage3.json").is_file() and (tmp_path / "sink.json").is_file()
    assert "stream incomplete" in (tmp_path / "sink.log").read_text()


def _reports_sent(plan, frames: int, reports: bool | None = None) -> int:
    """Report messages a sink built for ``plan`` sends upstream while it receives ``frames``
    frames, its report interval passed before each (oracle: the messages decoded)."""
    import numpy as np
    from memchannel import MemoryChannel

    from hwsched.runtime.frames import decode_message, encode_data, restamp
    from hwsched.runtime.sink import sink_loop

    channel = MemoryChannel()
    sink = sink_loop(plan, channel, window=8)
    if reports is not None:
        sink.reports = reports
    specs = sink.receiver.specs
    for seq in range(frames):
        tensors = {n: np.zeros(s.shape, np.dtype(s.dtype)) for n, s in specs.items()}
        channel.inbox.append(restamp(encode_data(seq, time.time(), tensors, specs),
                                     time.time() - 0.001))
        sink.next_report_s = 0.0  # the interval has passed
        sink.step()
    return sum(decode_message(parts, {}).kind == "report" for parts in channel.sent)


def test_a_stage_graphs_sink_sends_no_bandwidth_reports(dag_plan):  # noqa: F811
    """A chain's stages forward the sink's reports to the source; a stage graph's read none,
    and every report woke the last stage on its core for nothing."""
    from hwsched.deployment import load_plan

    plan = load_plan(dag_plan[0])
    assert plan.is_graph
    assert _reports_sent(plan, frames=3) == 0
    assert _reports_sent(plan, frames=3, reports=True) > 0  # the set-up would show them


def test_the_emulation_supervisor_sleeps_until_a_child_ends(tmp_path):
    """The supervisor (unpinned, so on every stage's core) waits on its children's ends
    instead of a 50 ms tick. Oracle: the kernel's count of this thread's voluntary switches
    while it supervises one child that ends when told (after the test's own timer)."""
    import resource
    import subprocess
    import sys
    import threading

    from hwsched.runtime.emulate import EmulationConfig, _Processes, _supervise

    processes = _Processes(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    processes.children["child"] = child
    ender = threading.Timer(SUPERVISED_S, child.stdin.close)  # type: ignore[union-attr]
    started_s = time.monotonic()
    ender.start()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    try:
        _supervise(processes, EmulationConfig(), 0, lambda _: None)
    finally:
        ender.cancel()
        child.kill()
        child.wait()
    switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before
    assert time.monotonic() - started_s >= SUPERVISED_S
    assert switches <= MAX_SUPERVISOR_WAKEUPS, switches
