#!/usr/bin/env python3
"""How close span durations come to the truth, netprof next to bpftrace in the same run.

The truth is the traced program's own clock: tests/data/self_timed.c times its functions from
inside (clock_gettime around a busy-wait), nested three deep with 10 children per parent, built
as Ubuntu, Fedora and RHEL build (-O2 -fcf-protection: every function starts with endbr64). It
runs unprobed for the truth, then under each tool. netprof: the raw means, and the means its
analysis gives after taking off the probe cost it measured on this kernel (netprof calibrate).
bpftrace: the mean of uretprobe time minus uprobe time, per function (its probes sit on the
endbr64, which the kernel single-steps; it gives no median). Means and medians of the durations,
each the median of RUNS runs; needs root and gcc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peers import bpftrace_problem, wait_for

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
CALLS = 100  # calls of top(): 1,000 of mid(), 10,000 of leaf()
LEVELS = ("top", "mid", "leaf")
SOURCE = Path(__file__).resolve().parent.parent / "tests/data/self_timed.c"


# With two CPUs or more, the traced program runs on one and the tools on the others, as one
# profiles on a server: a tool's reader would otherwise take turns on the traced thread's CPU
# (netprof's drains, ~1 ms every 10 ms at these rates), inside whatever span was running.
CPUS = sorted(os.sched_getaffinity(0))
TRACED = {CPUS[-1]}
TOOLS = set(CPUS[:-1]) or TRACED


Figures = dict[str, tuple[float, float]]  # per level: (mean, median) ns


def own_clock(program: Path, leaf_ns: int) -> Figures:
    """(mean, median) duration per level, as the program's own clock saw it."""
    out = subprocess.run([str(program), str(CALLS), str(leaf_ns)], check=True, capture_output=True, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, TRACED)).stdout
    return {name: (float(mean), float(median)) for name, mean, median in (line.split() for line in out.splitlines())}


def netprof(program: Path, leaf_ns: int, tmp: Path) -> tuple[Figures, Figures]:
    """(corrected, raw) (mean, median) per level, in ns."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from netprof.trace import load

    out = tmp / "self_timed.trace"
    out.unlink(missing_ok=True)
    said = tmp / "attach.err"
    with open(said, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "netprof", "attach",
                                 *(a for f in LEVELS for a in ("-u", f"{program}:{f}")), "-o", str(out)], stderr=err,
                                preexec_fn=lambda: os.sched_setaffinity(0, TOOLS))
    try:
        with open(said) as err:
            wait_for(proc, err, "Tracing")
        own_clock(program, leaf_ns)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    trace = load(out)
    spans = trace.all_spans
    raw = trace.raw_times()[0]
    corrected, as_recorded = {}, {}
    for level in LEVELS:
        [probe] = trace.probe_ids(f"{program.name}:{level}")
        mine = (spans["probe"] == probe) & (spans["flags"] == 0)
        corrected[level] = (float(spans["duration"][mine].mean()), float(np.median(spans["duration"][mine])))
        as_recorded[level] = (float(raw[mine].mean()), float(np.median(raw[mine])))
    return corrected, as_recorded


def bpftrace(program: Path, leaf_ns: int) -> dict[str, float]:
    script = " ".join(f"uprobe:{program}:{f} {{ @s_{f}[tid] = nsecs; }} "
                      f"uretprobe:{program}:{f} /@s_{f}[tid]/ {{ @{f} = avg(nsecs - @s_{f}[tid]); delete(@s_{f}[tid]); }}"
                      for f in LEVELS)
    proc = subprocess.Popen(["bpftrace", "-e", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, TOOLS))
    try:
        wait_for(proc, proc.stdout, "Attaching")
        time.sleep(0.5)
        own_clock(program, leaf_ns)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    return {name: float(value) for name, value in re.findall(r"^@(\w+): (\d+)", out, re.M) if name in LEVELS}


def error(value: float, truth: float) -> str:
    return f"{(value - truth) / truth * 100:+6.1f} %"


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_correction: needs root")
    tmp = Path(tempfile.mkdtemp(prefix="netprof-bench-"))
    program = tmp / "self_timed"
    subprocess.run(["gcc", "-O2", "-fcf-protection=full", "-o", str(program), str(SOURCE)], check=True)
    problem = bpftrace_problem()
    print(subprocess.run([sys.executable, "-m", "netprof", "calibrate"], capture_output=True, text=True,
                         check=True).stdout)
    print(f"self_timed {CALLS} calls of top (x10 mid, x100 leaf), -O2 -fcf-protection; medians of {RUNS} runs"
          + (f"; bpftrace skipped: {problem}" if problem else ""))
    for leaf_ns in (2000, 10000):
        truths = [own_clock(program, leaf_ns) for _ in range(RUNS)]
        runs = [netprof(program, leaf_ns, tmp) for _ in range(RUNS)]
        peer = None if problem else [bpftrace(program, leaf_ns) for _ in range(RUNS)]
        print(f"\nleaf busy-waits {leaf_ns / 1000:.0f} µs; µs, and the error against the truth:")
        print(f"  {'function':8} {'':6} {'truth':>8}  {'netprof corrected':>19}  {'netprof raw':>19}"
              + ("  bpftrace" if peer else ""))
        for k in LEVELS:
            for i, stat in enumerate(("mean", "median")):
                truth = statistics.median(t[k][i] for t in truths)
                corrected = statistics.median(r[0][k][i] for r in runs)
                raw = statistics.median(r[1][k][i] for r in runs)
                line = (f"  {k if not i else '':8} {stat:6} {truth / 1e3:8.2f}  {corrected / 1e3:9.2f} ({error(corrected, truth)})"
                        f"  {raw / 1e3:9.2f} ({error(raw, truth)})")
                if peer and stat == "mean":
                    value = statistics.median(r[k] for r in peer if k in r)
                    line += f"  {value / 1e3:9.2f} ({error(value, truth)})"
                print(line, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
