#!/usr/bin/env python3
"""A long capture under steady load: does netprof's memory stay flat, and does it lose nothing?

A small C program calls a function at a fixed rate (default 50,000 calls/s) and counts its own
calls; ``netprof attach -u PROG:work -m -t`` records every call as a span for SECONDS (default
600). netprof's RSS is sampled every 10 s from /proc. At the end: the program's own call count
(the ground truth) next to the trace's spans, the loss netprof reports, and the RSS over time.

    sudo .venv/bin/python bench/soak.py [--seconds 600] [--rate 50000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACED_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }
__attribute__((noinline)) long work(long x) { asm volatile("" ::: "memory"); return x * 2 + 1; }
int main(int argc, char **argv) {
    long rate = atol(argv[1]), calls = 0, sum = 0;
    signal(SIGTERM, on_term);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!stop) {                       /* batches of 1 ms worth of calls, paced to the rate */
        for (long i = 0; i < rate / 1000; i++) sum += work(calls++);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double ahead = calls / (double)rate - ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9);
        if (ahead > 0) { struct timespec d = {0, (long)(ahead * 1e9)}; nanosleep(&d, NULL); }
    }
    printf("%ld\n", calls);
    return sum == 42;
}
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=int, default=50_000, help="calls per second")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netprof-soak-"))
    (work / "paced.c").write_text(PACED_C)
    program = work / "paced"
    # A frame pointer: work() starts with push %rbp, which the kernel emulates (no single-step, ~1 µs
    # a span instead of ~12), so one thread makes 50,000 calls/s with room to spare.
    subprocess.run(["gcc", "-O2", "-fno-omit-frame-pointer", "-o", str(program), str(work / "paced.c")], check=True)
    trace = work / "soak.trace"

    netprof = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "-u", f"{program}:work", "-m", "-t",
                                "-d", str(args.seconds + 3), "-o", str(trace)], stderr=subprocess.PIPE, text=True)
    while not (line := netprof.stderr.readline()).startswith("Tracing"):
        if not line:
            print(f"soak: netprof did not start: {netprof.stderr.read()}", file=sys.stderr)
            return 1
    target = subprocess.Popen([str(program), str(args.rate)], stdout=subprocess.PIPE, text=True)
    samples, start = [], time.monotonic()
    while (elapsed := time.monotonic() - start) < args.seconds:
        samples.append((elapsed, rss_mib(netprof.pid)))
        time.sleep(min(10.0, max(0.0, args.seconds - elapsed)))
    samples.append((time.monotonic() - start, rss_mib(netprof.pid)))
    target.terminate()
    calls = int(target.communicate()[0])
    summary = netprof.communicate()[1].strip().splitlines()[-1]

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import netprof as np_

    loaded = np_.load(trace)
    from netprof.format.layout import ENTRY, EXIT

    events = loaded.events  # counted, not built into spans: 60 M events would need ~10 GB as spans
    mine = events["probe"] == loaded.probe_ids("paced:work")[0]
    entries, exits = int((mine & (events["kind"] == ENTRY)).sum()), int((mine & (events["kind"] == EXIT)).sum())
    spans = min(entries, exits)
    rss = [r for _, r in samples]
    settled = rss[len(rss) // 10:]  # after the first tenth: the ring buffer's pages are all touched by then
    print(f"soak: {args.seconds:.0f} s at {args.rate:,} calls/s requested, {calls / args.seconds:,.0f} made")
    print(f"  calls (the program's own count) {calls:,}; in the trace {entries:,} entries and {exits:,} exits; "
          f"difference {calls - spans:,}")
    print(f"  netprof says: {summary}")
    print(f"  netprof RSS MiB: start {rss[0]:.1f}, after the first tenth {settled[0]:.1f}, "
          f"min {min(settled):.1f}, median {statistics.median(settled):.1f}, max {max(settled):.1f}, "
          f"end {rss[-1]:.1f}")
    print(f"  trace: {trace.stat().st_size / 2**20:.0f} MiB, problems: {loaded.problems or 'none'}")
    trace.unlink()
    return 0 if calls == entries == exits and "none lost" in summary else 1


if __name__ == "__main__":
    sys.exit(main())
