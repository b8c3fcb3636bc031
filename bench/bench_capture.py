#!/usr/bin/env python3
"""Capture benchmarks, netprof next to bpftrace and bcc on the same workload in the same run:

(a) cost per probed call of a user function (uprobe + uretprobe), from the workload's own run
    time with and without the probes, on two builds of the same program: one with endbr64 at
    every function's start (gcc -O2 -fcf-protection=full, as Ubuntu, Fedora and RHEL build), where
    netprof probes past the endbr64 by default, and one without (-fcf-protection=none). netprof
    records both events of every call to its trace file, and the benchmark checks that the trace
    holds one span per call (lost ones are reported); bpftrace and bcc keep a latency histogram
    in the kernel (less work per call);
(b) events per second written to disk by netprof attach, and how many were lost;
(c) time from launching the tool to the first event delivered (netprof: written to the trace
    file; bpftrace and bcc: printed), and the tool's peak RSS.

Needs root and gcc; bpftrace (Debian package bpftrace) and bcc (python3-bpfcc, with kernel
headers: see bench_ringbuf.py) are measured where they run, and skipped with the reason where
they do not. Medians of BENCH_RUNS runs (default 3).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from peers import DEBIAN_DIST_PACKAGES, bcc_problem, bpftrace_problem, wait_for

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CALLS = 200_000
SYSCALLS = 3_000_000
ROOT = Path(__file__).resolve().parent.parent
ENDBR64 = bytes.fromhex("f30f1efa")

# work() saves a register and calls leaf(): its first instruction (after endbr64, where there is
# one) is a push, which the kernel emulates for a uprobe instead of single-stepping it.
WORKLOAD_C = r"""
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
__attribute__((noipa)) int leaf(int x) { asm volatile("" ::: "memory"); return x + 1; }
__attribute__((noinline)) int work(int x) { int a = leaf(x); asm volatile("" ::: "memory"); return a * x + leaf(a); }
int main(int argc, char **argv) {
    long n = atol(argv[2]), sum = 0;
    if (!strcmp(argv[1], "calls")) for (long i = 0; i < n; i++) sum += work(i);
    if (!strcmp(argv[1], "forever")) for (;;) { sum += work(1); usleep(200); }
    if (!strcmp(argv[1], "getpid")) for (long i = 0; i < n; i++) sum += syscall(SYS_getpid);
    return sum == 42;
}
"""
BUILDS = {"endbr64": "-fcf-protection=full", "plain": "-fcf-protection=none"}

BCC_LATENCY = r"""
BPF_HASH(start, u32, u64);
BPF_HISTOGRAM(dist);
int entry(struct pt_regs *ctx) { u32 tid = bpf_get_current_pid_tgid(); u64 ts = bpf_ktime_get_ns();
    start.update(&tid, &ts); return 0; }
int ret(struct pt_regs *ctx) { u32 tid = bpf_get_current_pid_tgid(); u64 *tsp = start.lookup(&tid);
    if (tsp) { dist.increment(bpf_log2l(bpf_ktime_get_ns() - *tsp)); start.delete(&tid); } return 0; }
"""
BCC_FIRST = r"""
BPF_RINGBUF_OUTPUT(events, 8);
int entry(struct pt_regs *ctx) { u64 ts = bpf_ktime_get_ns(); events.ringbuf_output(&ts, sizeof(ts), 0); return 0; }
"""


def bcc_script(program: str, mode: str, path: str) -> str:
    return textwrap.dedent(f"""
        import sys
        sys.path.append({DEBIAN_DIST_PACKAGES!r})
        from bcc import BPF
        b = BPF(text={program!r})
        b.attach_uprobe(name={path!r}, sym="work", fn_name="entry")
        if {mode!r} == "latency":
            b.attach_uretprobe(name={path!r}, sym="work", fn_name="ret")
            print("ready", flush=True)
            sys.stdin.read()
        else:
            def hit(ctx, data, size):
                import os
                print("hit", flush=True)
                os._exit(0)  # an exception in a ctypes callback is only printed
            b["events"].open_ring_buffer(hit)
            while True:
                b.ring_buffer_poll(100)
    """)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def per_call_cost(workload: Path, tool: str, tmp: Path) -> tuple[float, int | None, int | None]:
    """(extra µs per call of work() with ``tool`` attached, and for netprof: the spans its trace
    holds and the events it lost)."""
    target = f"{workload}:work"
    base = statistics.median(timed([str(workload), "calls", str(CALLS)]) for _ in range(3))
    trace = tmp / "calls.trace"
    trace.unlink(missing_ok=True)
    if tool == "netprof":
        proc = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "-u", target, "-o", str(trace)],
                                stderr=subprocess.PIPE, text=True)
        wait_for(proc, proc.stderr, "Tracing")
    elif tool == "bpftrace":
        program = (f"uprobe:{workload}:work {{ @s[tid] = nsecs; }} "
                   f"uretprobe:{workload}:work /@s[tid]/ {{ @h = hist(nsecs - @s[tid]); delete(@s[tid]); }}")
        proc = subprocess.Popen(["bpftrace", "-e", program], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        wait_for(proc, proc.stdout, "Attaching")
        time.sleep(0.5)
    else:
        proc = subprocess.Popen([sys.executable, "-c", bcc_script(BCC_LATENCY, "latency", str(workload))],
                                stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        wait_for(proc, proc.stdout, "ready")
    try:
        probed = timed([str(workload), "calls", str(CALLS)])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    cost = (probed - base) / CALLS * 1e6
    if tool != "netprof":
        return cost, None, None
    spans, _, lost = trace_counts(trace)
    return cost, spans, lost


TRACE_COUNTS = """
import sys
import netprof
trace = netprof.load(sys.argv[1])
print(int((trace.all_spans["flags"] == 0).sum()), trace.events.size, sum(trace.lost.values()))
"""


def trace_counts(path: Path) -> tuple[int, int, int]:
    """(complete spans, that is neither open, orphan nor mismatched; events; events lost) in the
    trace at ``path``, read by another process: numpy and the trace would raise this one's peak
    RSS, which every tool it starts afterwards inherits (ru_maxrss survives fork and exec)."""
    done = subprocess.run([sys.executable, "-c", TRACE_COUNTS, str(path)], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    spans, events, lost = (int(word) for word in done.stdout.split())
    return spans, events, lost


def starts_with_endbr64(binary: Path) -> bool:
    sys.path.insert(0, str(ROOT))
    from netprof.loader import elf

    target = elf.resolve(str(binary), "work")
    with open(binary, "rb") as f:
        f.seek(target.offset)
        return f.read(4) == ENDBR64


def first_event(workload: Path, tool: str, tmp: Path) -> tuple[float, float]:
    """(seconds from launch to the first event delivered, the tool's peak RSS in MiB)."""
    runner = subprocess.Popen([str(workload), "forever", "0"])
    try:
        trace = tmp / "first.trace"
        trace.unlink(missing_ok=True)
        start = time.perf_counter()
        if tool == "netprof":
            proc = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "-u", f"{workload}:work", "-o",
                                     str(trace)], stderr=subprocess.DEVNULL)
            while not (trace.exists() and b"NPCK\x02\x00" in trace.read_bytes()):
                time.sleep(0.001)
        elif tool == "bpftrace":
            proc = subprocess.Popen(["bpftrace", "-e", f'uprobe:{workload}:work {{ printf("hit\\n"); exit(); }}'],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            wait_for(proc, proc.stdout, "hit")
        else:
            proc = subprocess.Popen([sys.executable, "-c", bcc_script(BCC_FIRST, "first", str(workload))],
                                    stdout=subprocess.PIPE, text=True)
            wait_for(proc, proc.stdout, "hit")
        elapsed = time.perf_counter() - start
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(proc.pid, 0)
        return elapsed, usage.ru_maxrss / 1024
    finally:
        runner.kill()
        runner.wait()


def events_to_disk(workload: Path, tmp: Path) -> tuple[float, int, int]:
    """netprof attach on sys_enter_getpid while the workload makes SYSCALLS getpid calls:
    (events/s written, events written, events lost)."""
    trace = tmp / "rate.trace"
    proc = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "tracepoint:syscalls:sys_enter_getpid",
                             "-o", str(trace)], stderr=subprocess.PIPE, text=True)
    wait_for(proc, proc.stderr, "Tracing")
    elapsed = timed([str(workload), "getpid", str(SYSCALLS)])
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    _, written, lost = trace_counts(trace)
    return written / elapsed, written, lost


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_capture: needs root")
    if shutil.which("gcc") is None:
        sys.exit("bench_capture: needs gcc (apt-get install gcc)")
    tmp = Path(tempfile.mkdtemp(prefix="netprof-bench-"))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def interleaved(tools: list[str], measure) -> dict[str, list]:
    """RUNS results of ``measure(tool)`` per tool, the tools taking turns: a machine that gets
    busier during the benchmark weighs on every tool alike."""
    results: dict[str, list] = {tool: [] for tool in tools}
    for _ in range(RUNS):
        for tool in tools:
            results[tool].append(measure(tool))
    return results


def run(tmp: Path) -> None:
    (tmp / "workload.c").write_text(WORKLOAD_C)
    workloads = {}
    for build, flag in BUILDS.items():
        workloads[build] = tmp / f"workload-{build}"
        subprocess.run(["gcc", "-O2", flag, "-o", str(workloads[build]), str(tmp / "workload.c")], check=True)
    if not starts_with_endbr64(workloads["endbr64"]) or starts_with_endbr64(workloads["plain"]):
        sys.exit("bench_capture: this gcc does not put endbr64 where -fcf-protection asks (or puts it everywhere)")
    problems = {"bpftrace": bpftrace_problem(), "bcc": bcc_problem()}
    tools = ["netprof"] + [tool for tool, problem in problems.items() if problem is None]
    print(f"workload: {CALLS:,} calls of work() (uprobe + uretprobe); medians of {RUNS} runs")
    for tool, problem in problems.items():
        if problem:
            print(f"  {tool} skipped: {problem}")
    print("(a) extra cost per probed call (the tools take turns, run by run):")
    for build, flag in BUILDS.items():
        print(f"  gcc -O2 {flag} ({build}):")
        by_tool = interleaved(tools, lambda tool: per_call_cost(workloads[build], tool, tmp))
        for tool, results in by_tool.items():
            line = f"    {tool:9s} {statistics.median(r[0] for r in results):7.2f} µs per call"
            if tool == "netprof":
                spans, lost = min(r[1] or 0 for r in results), max(r[2] or 0 for r in results)
                every = "every call captured" if spans == CALLS else f"CALLS MISSED: {CALLS - spans:,}"
                line += f"   {every} (fewest spans in a run {spans:,} of {CALLS:,}, most lost {lost:,})"
            print(line, flush=True)
    print("(c) launch to first event delivered (plain build):")
    for tool, times in interleaved(tools, lambda tool: first_event(workloads["plain"], tool, tmp)).items():
        print(f"  {tool:9s} {statistics.median(r[0] for r in times) * 1000:7.0f} ms   "
              f"peak RSS {statistics.median(r[1] for r in times):6.0f} MiB", flush=True)
    print("(b) events written to disk (tracepoint sys_enter_getpid, one event per call):")
    rates = [events_to_disk(workloads["plain"], tmp) for _ in range(RUNS)]
    rate, written, lost = sorted(rates)[len(rates) // 2]
    print(f"  netprof   {rate / 1e6:7.2f} M events/s  ({written:,} written, {lost:,} lost)")


if __name__ == "__main__":
    main()
