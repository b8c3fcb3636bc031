#!/usr/bin/env python3
"""Ring-buffer drain throughput: netprof's bulk reader next to bcc's Python ring-buffer callback.

The producer is the same for both: a socket-filter program run in the kernel by
BPF_PROG_TEST_RUN (repeat=N) from a second thread, writing one 32-byte record per run with
bpf_ringbuf_output(BPF_RB_NO_WAKEUP) and counting every record the ring had no room for.
The consumer drains on the other core. Two runs each: the producer flat out (records/s drained,
loss), then paced at 1 M records/s (loss must be 0). Needs root; bcc from Debian's python3-bpfcc,
which compiles with kernel headers: on a kernel without its own headers package, point
/lib/modules/$(uname -r)/build and /source at Debian's linux-headers-*-amd64 and -common (the
program uses no kernel structure, so any version will do).
Target: at least 5 M records/s drained, none lost at 1 M/s.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from netprof.asm import (  # noqa: E402
    FP, R0, R1, R2, R3, R4, U32, U64, Add, AtomicAdd, Call, Helper, JEq, Label, LoadMapPtr, Mov, Program, Return,
    Store,
)
from netprof.loader.maps import Map  # noqa: E402
from netprof.loader.program import load  # noqa: E402
from netprof.loader.ringbuf import RingBuffer  # noqa: E402
from netprof.loader.syscall import MapType, ProgType, prog_test_run  # noqa: E402
from peers import DEBIAN_DIST_PACKAGES, bcc_problem  # noqa: E402

RING = 1 << 22          # 4 MiB for both readers
SECONDS = 3.0
PACED_RATE = 1_000_000  # records/s
RECORD = np.dtype([("ts", "<u8"), ("cpu", "<u4"), ("pad", "<u4"), ("a", "<u8"), ("b", "<u8")])
PACKET = bytes(64)
BCC_PROBLEM: str | None = "not checked"  # why bcc cannot run here (peers.bcc_problem), None when it can

BCC_PROGRAM = r"""
struct rec { u64 ts; u32 cpu; u32 pad; u64 a; u64 b; };
BPF_RINGBUF_OUTPUT(events, %d);
BPF_PERCPU_ARRAY(lost, u64, 1);
int produce(struct __sk_buff *skb) {
    struct rec r = {};
    r.ts = bpf_ktime_get_ns();
    r.cpu = bpf_get_smp_processor_id();
    r.a = 7; r.b = 9;
    if (events.ringbuf_output(&r, sizeof(r), BPF_RB_NO_WAKEUP)) {
        u32 key = 0;
        u64 *n = lost.lookup(&key);
        if (n) (*n)++;
    }
    return 0;
}
""" % (RING // 4096)


def netprof_producer(rb: RingBuffer, lost: Map):
    program = Program(
        Call(Helper.ktime_get_ns), Store(FP, -32, R0, U64),
        Call(Helper.get_smp_processor_id), Store(FP, -24, R0, U32), Store(FP, -20, 0, U32),
        Store(FP, -16, 7, U64), Store(FP, -8, 9, U64),
        LoadMapPtr(R1, "events"), Mov(R2, FP), Add(R2, -32), Mov(R3, 32), Mov(R4, 1),  # BPF_RB_NO_WAKEUP
        Call(Helper.ringbuf_output), JEq(R0, 0, "out"),
        Store(FP, -36, 0, U32), LoadMapPtr(R1, "lost"), Mov(R2, FP), Add(R2, -36),
        Call(Helper.map_lookup_elem), JEq(R0, 0, "out"), Mov(R1, 1), AtomicAdd(R0, 0, R1),
        Label("out"), Return(0),
    )
    return load(program, ProgType.SOCKET_FILTER, name="bench_rb", maps={"events": rb.map, "lost": lost})


class Producer(threading.Thread):
    """Runs the program ``rate`` times a second (None: flat out) until stopped; counts runs."""

    def __init__(self, prog_fd: int, rate: int | None):
        super().__init__(daemon=True)
        self.prog_fd, self.rate, self.runs = prog_fd, rate, 0
        self.stop = threading.Event()

    def run(self) -> None:
        batch = 20_000 if self.rate is None else self.rate // 200
        start = time.perf_counter()
        while not self.stop.is_set():
            prog_test_run(self.prog_fd, PACKET, repeat=batch)  # ctypes drops the GIL during the call
            self.runs += batch
            if self.rate is not None:
                ahead = self.runs / self.rate - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)


def measure(prog_fd: int, drain, lost_total, rate: int | None) -> dict:
    producer = Producer(prog_fd, rate)
    # bcc's consume() returns only once the ring is empty, which a faster producer never lets
    # happen: a timer, not the drain loop, ends the production.
    timer = threading.Timer(SECONDS, producer.stop.set)
    drained = 0
    start = time.perf_counter()
    producer.start()
    timer.start()
    while not producer.stop.is_set():
        got = drain()
        drained += got
        if not got:
            time.sleep(0.0005)
    producer.stop.set()
    producer.join()
    while (got := drain()):
        drained += got
    elapsed = time.perf_counter() - start
    return {"runs": producer.runs, "drained": drained, "lost": lost_total(), "seconds": elapsed,
            "rate": drained / elapsed}


def bench_netprof(rate: int | None) -> dict:
    with RingBuffer.create(RING, "bench_events") as rb, \
            Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=1,
                       name="bench_lost") as lost:
        with netprof_producer(rb, lost) as prog:
            result = measure(prog.fd, lambda: rb.read(RECORD).size, lambda: sum(lost[0]), rate)
    return result


def bench_bcc(rate: int | None) -> dict | None:
    if BCC_PROBLEM is not None:
        return None
    sys.path.append(DEBIAN_DIST_PACKAGES)
    from bcc import BPF

    b = BPF(text=BCC_PROGRAM)
    fn = b.load_func("produce", BPF.SOCKET_FILTER)
    count = [0]

    def callback(ctx, data, size):
        count[0] += 1

    b["events"].open_ring_buffer(callback)

    def drain() -> int:
        before = count[0]
        b.ring_buffer_consume()
        return count[0] - before

    try:
        return measure(fn.fd, drain, lambda: sum(b["lost"][0]), rate)
    finally:
        b.cleanup()


def show(name: str, result: dict | None, problem: str | None = None) -> None:
    if result is None:
        print(f"  {name:34s} skipped: {problem}")
        return
    loss = result["lost"] / max(result["runs"], 1)
    print(f"  {name:34s} {result['rate'] / 1e6:6.2f} M records/s  {result['rate'] * 32 / 1e6:7.1f} MB/s  "
          f"produced {result['runs'] / 1e6:6.2f} M  lost {result['lost']:>9} ({loss:.2%})")


def main() -> None:
    global BCC_PROBLEM
    if os.geteuid() != 0:
        sys.exit("bench_ringbuf: needs root (it loads BPF programs)")
    BCC_PROBLEM = bcc_problem()
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    print(f"ring buffer of {RING >> 20} MiB, 32-byte records, {SECONDS:.0f} s a run, median of {runs} runs")
    for label, rate in (("flat out", None), (f"paced at {PACED_RATE / 1e6:.0f} M/s", PACED_RATE)):
        print(f"producer {label}:")
        for name, bench in (("netprof RingBuffer.read (numpy)", bench_netprof),
                            ("bcc ring_buffer_consume (callback)", bench_bcc)):
            results = [bench(rate) for _ in range(runs)]
            if results[0] is None:
                show(name, None, BCC_PROBLEM)
                continue
            middle = sorted(results, key=lambda r: r["rate"])[len(results) // 2]
            middle = dict(middle, lost=statistics.median(r["lost"] for r in results))
            show(name, middle)


if __name__ == "__main__":
    main()
