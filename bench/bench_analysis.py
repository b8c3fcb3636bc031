#!/usr/bin/env python3
"""Analysis at scale: load + span building + report for synthetic traces of 100 k, 1 M and 10 M
entry/exit events (16 probes, 2 to 8 CPUs, nesting up to depth 20), each measured in a fresh
process (peak RSS included), median of 3. The prototype this replaces took up to 20 minutes for 10 s of
capture; the target here is under 5 s and 2 GB for 10 M events, growing linearly.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from netprof.format.records import ENTRY, EXIT, SPAN_DTYPE  # noqa: E402
from netprof.format.tracefile import Kind, TraceWriter, new_header  # noqa: E402

PROBES = 16
MAX_DEPTH = 20
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "100000,1000000,10000000").split(",")]


def thread_events(n: int, tid: int, cpu: int, rng: np.random.Generator, t0: int) -> np.ndarray:
    """A well-nested stream of ``n`` events (n even) for one thread: a random walk of the depth,
    reflected into [0, MAX_DEPTH], closed at the end."""
    half = n // 2
    steps = rng.choice([1, -1], size=n - 2 * MAX_DEPTH)
    walk = np.concatenate([[0], np.cumsum(steps)])
    depth = MAX_DEPTH - np.abs(np.mod(walk, 2 * MAX_DEPTH) - MAX_DEPTH)
    # close whatever is open at the end, then trim to n events
    tail = np.arange(depth[-1] - 1, -1, -1) if depth[-1] > 0 else np.empty(0, np.int64)
    depth = np.concatenate([depth, tail])[: 2 * half + 1]
    if depth[-1] != 0:
        depth = np.concatenate([depth, np.arange(depth[-1] - 1, -1, -1)])
    kind = np.where(np.diff(depth) > 0, ENTRY, EXIT)
    level = np.where(kind == ENTRY, depth[1:], depth[:-1])  # the level each event opens or closes
    events = np.zeros(len(kind), SPAN_DTYPE)
    events["ts"] = t0 + np.cumsum(rng.integers(20, 2000, size=len(kind)))
    events["kind"], events["tid"], events["pid"], events["cpu"] = kind, tid, tid or 1, cpu
    probe = rng.integers(0, PROBES, size=len(kind)).astype(np.uint16)
    order = np.lexsort((np.arange(len(kind)), level))  # by level, then time: entry, its exit, ...
    opened = order[kind[order] == ENTRY]
    closed = order[kind[order] == EXIT]
    probe[closed] = probe[opened]
    events["probe"] = probe
    return events


def synthetic(total: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cpus = int(rng.integers(2, 9))
    threads = max(cpus * 4, 8)
    per = (total // threads) // 2 * 2
    parts = [thread_events(per, 0 if i < cpus else 1000 + i, i % cpus, rng, 10**12) for i in range(threads)]
    events = np.concatenate(parts)
    return events[np.argsort(events["ts"], kind="stable")]


def write(events: np.ndarray, path: Path) -> None:
    probes = [{"id": i, "name": f"probe_{i}", "kind": "kernel", "mechanism": "kprobe"} for i in range(PROBES)]
    writer = TraceWriter(path, new_header(probes, 64))
    for start in range(0, len(events), 1 << 16):
        writer.write(Kind.SPANS, events[start:start + (1 << 16)])
    writer.write_json(Kind.END, {"seconds": 1.0})  # a capture that finished
    writer.close()


def measure(path: str) -> None:
    """Child process: load, build spans, compute the report's statistics; print JSON."""
    from netprof.report import format_report
    from netprof.trace import load

    t0 = time.perf_counter()
    trace = load(path, progress=False)
    t1 = time.perf_counter()
    spans = trace.spans()
    t2 = time.perf_counter()
    text = format_report(trace)
    t3 = time.perf_counter()
    assert "probe_15" in text
    print(json.dumps({"events": int(trace.events.size), "spans": len(spans), "load": t1 - t0, "spans_s": t2 - t1,
                      "report": t3 - t2, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        measure(sys.argv[2])
        return
    tmp = Path(tempfile.mkdtemp(prefix="netprof-bench-"))
    print(f"{'events':>12} {'spans':>11} {'load':>8} {'spans':>8} {'report':>8} {'total':>8} {'peak RSS':>9} "
          f"{'ns/event':>9}")
    for size in SIZES:
        path = tmp / f"{size}.trace"
        write(synthetic(size), path)
        runs = []
        for _ in range(3):
            out = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True,
                                 check=True)
            runs.append(json.loads(out.stdout))
        r = sorted(runs, key=lambda x: x["load"] + x["spans_s"] + x["report"])[len(runs) // 2]
        total = r["load"] + r["spans_s"] + r["report"]
        print(f"{r['events']:>12,} {r['spans']:>11,} {r['load']:>7.2f}s {r['spans_s']:>7.2f}s {r['report']:>7.2f}s "
              f"{total:>7.2f}s {r['rss']:>7.0f} MiB {total / r['events'] * 1e9:>8.0f}", flush=True)
        path.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
