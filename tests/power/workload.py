"""A CPU-burning stand-in for a pipeline stage: burns BUSY_S seconds of CPU time for each
frame's inference and writes the runtime's events JSONL.

The burst is measured in CPU time, not wall time: on a shared machine a burst then takes longer
but always holds the same work, so the energy a meter attributes to it does not depend on how
much of a core the scheduler happened to give it.

Usage: python workload.py EVENTS FRAMES BUSY_S GAP_S [LEAD_S]  (LEAD_S idle first, default 2·GAP_S)
"""

import json
import sys
import time


def main() -> None:
    path, frames, busy_s, gap_s = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:5])
    lead_s = float(sys.argv[5]) if len(sys.argv) > 5 else 2 * gap_s
    with open(path, "w") as out:
        # started up: from here it only sleeps until the first burst (a meter that starts
        # following it now sees clean idle, not the interpreter's start-up)
        with open(path + ".ready", "w"):
            pass
        time.sleep(lead_s)  # idle before the run, for the baseline
        for frame in range(frames):
            start_s, start_cpu_s = time.time(), time.process_time()
            while time.process_time() - start_cpu_s < busy_s:
                sum(i * i for i in range(500))
            end_s = time.time()
            # cpu_s is not part of the runtime's format (readers ignore extra fields): the CPU
            # time actually used, busy_s and a fraction of one loop pass.
            cpu_s = time.process_time() - start_cpu_s
            event = {"frame": frame, "stage": 0, "start_s": start_s, "end_s": end_s, "cpu_s": cpu_s}
            out.write(json.dumps(event) + "\n")
            out.flush()
            time.sleep(gap_s)
        time.sleep(gap_s)


if __name__ == "__main__":
    main()
