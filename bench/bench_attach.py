#!/usr/bin/env python3
"""Attaching many user functions, netprof next to bpftrace in the same run.

A program of 1000 functions f0..f999 (gcc -O1), each called a few times. For 10, 100 and 1000 of
them (a glob each tool expands itself): the time from launching the tool to the traced program's
end, run by the tool (netprof attach ... -- PROG; bpftrace -c PROG), which covers resolving the
functions, loading, attaching, the run and detaching; and netprof's count of spans against the
calls made. netprof's perf-event path (--uprobe-attach perf_event: two programs and two events a
function) is measured for 10 and 100 only, bpftrace for 1000 once. Medians of RUNS runs; needs
root and gcc.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import bpftrace_problem

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
FUNCTIONS = 1000
GLOBS = {10: "f[0-9]", 100: "f[0-9][0-9]", 1000: "f[0-9]*"}  # f0-f9, f10-f99 (90: all two-digit ones), all


def calls(i: int) -> int:
    return i % 7 + 1


def build(tmp: Path) -> Path:
    lines = [f'__attribute__((noinline)) int f{i}(int x) {{ asm volatile("" ::: "memory"); return x + {i}; }}'
             for i in range(FUNCTIONS)]
    lines.append("int main(void) { int s = 0;")
    lines += [f"  for (int k = 0; k < {calls(i)}; k++) s += f{i}(k);" for i in range(FUNCTIONS)]
    lines.append("  return s == 42; }")
    (tmp / "many.c").write_text("\n".join(lines))
    subprocess.run(["gcc", "-O1", "-o", str(tmp / "many"), str(tmp / "many.c")], check=True)
    return tmp / "many"


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - start, done


def netprof(program: Path, n: int, how: str, tmp: Path) -> tuple[float, int]:
    out = tmp / "many.trace"
    out.unlink(missing_ok=True)
    seconds, done = timed([sys.executable, "-m", "netprof", "attach", "-u", f"{program}:{GLOBS[n]}",
                           "--uprobe-attach", how, "-o", str(out), "--", str(program)])
    if done.returncode:
        raise RuntimeError(done.stderr)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from netprof.trace import load

    return seconds, len(load(out).all_spans)


def bpftrace(program: Path, n: int) -> float:
    # bpftrace 0.17 globs with * only (and f* takes in frame_dummy, which it then refuses): a list
    first = 10 if n == 100 else 0
    probes = ",".join(f"uprobe:{program}:f{i}" for i in range(first, n))
    script = f"{probes} {{ @n = count(); }}"
    seconds, done = timed(["env", f"BPFTRACE_MAX_PROBES={2 * FUNCTIONS}", "bpftrace", "-e", script, "-c", str(program)])
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1:])
    return seconds


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_attach: needs root")
    tmp = Path(tempfile.mkdtemp(prefix="netprof-bench-"))
    program = build(tmp)
    problem = bpftrace_problem()
    print(f"launch to the end of a traced run of {program.name}, medians of {RUNS} runs"
          + (f"; bpftrace skipped: {problem}" if problem else ""))
    print(f"  {'functions':>9}  {'netprof (uprobe_multi)':>24}  {'netprof (perf_event)':>22}  {'bpftrace':>9}")
    for n in GLOBS:
        expected = sum(calls(i) for i in range(FUNCTIONS) if __import__("fnmatch").fnmatchcase(f"f{i}", GLOBS[n]))
        multi = [netprof(program, n, "uprobe_multi", tmp) for _ in range(RUNS)]
        spans = {s for _, s in multi}
        line = f"  {n:9}  {statistics.median(t for t, _ in multi):8.2f} s ({'all' if spans == {expected} else spans} " \
               f"of {expected:,} calls)"
        if n <= 100:
            perf = [netprof(program, n, "perf_event", tmp) for _ in range(RUNS)]
            line += f"  {statistics.median(t for t, _ in perf):20.2f} s"
        else:
            line += f"  {'(not run)':>22}"
        if not problem:
            try:  # 1000 functions take bpftrace minutes: once
                line += f"  {statistics.median(bpftrace(program, n) for _ in range(RUNS if n < 1000 else 1)):7.2f} s"
            except RuntimeError as err:  # a peer that fails here is reported, not a crash
                line += f"  failed: {err}"
        print(line, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
