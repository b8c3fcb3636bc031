#!/usr/bin/env python3
"""Time spent in each softirq, per CPU, from the irq:softirq_entry/exit tracepoints.

    sudo python examples/softirq_time.py -d 5
"""

import argparse
import ctypes
import sys
import time

from netprof.asm import (FP, R0, R1, R2, R6, R7, U32, U64, Add, Call, Frame, Helper, JEq, JGe, Label, Load,
                         LoadMapPtr, Mov, Program, Return, Store, Sub)
from netprof.loader import attach
from netprof.loader.maps import Map, possible_cpus
from netprof.loader.program import load
from netprof.loader.syscall import MapType, ProgType

VECTORS = ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"]


def program(vec_offset: int, at_entry: bool) -> Program:
    """Entry: start[vec] = now. Exit: total[vec] += now - start[vec]; count[vec] += 1 (per-CPU maps)."""
    vec = Frame().slot(4)
    body = [
        Mov(R6, R1), Load(R7, R6, vec_offset, U32), JGe(R7, len(VECTORS), "out"),
        Store(FP, vec, R7, U32), Call(Helper.ktime_get_ns), Mov(R6, R0),
        LoadMapPtr(R1, "start"), Mov(R2, FP), Add(R2, vec), Call(Helper.map_lookup_elem), JEq(R0, 0, "out"),
    ]
    if at_entry:
        body += [Store(R0, 0, R6, U64)]
    else:
        body += [
            Load(R1, R0, 0, U64), JEq(R1, 0, "out"), Sub(R6, R1), Store(R0, 0, 0, U64),
            LoadMapPtr(R1, "total"), Mov(R2, FP), Add(R2, vec), Call(Helper.map_lookup_elem), JEq(R0, 0, "out"),
            Load(R1, R0, 0, U64), Add(R1, R6), Store(R0, 0, R1, U64),
            Load(R1, R0, 8, U64), Add(R1, 1), Store(R0, 8, R1, U64),
        ]
    return Program(body, Label("out"), Return(0))


class Total(ctypes.Structure):
    _fields_ = [("ns", ctypes.c_uint64), ("count", ctypes.c_uint64)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    vec = attach.tracepoint_format("irq", "softirq_entry")["vec"].offset
    with Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=len(VECTORS),
                    name="start") as start, \
            Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=Total, max_entries=len(VECTORS),
                       name="total") as total, \
            load(program(vec, True), ProgType.TRACEPOINT, name="softirq_entry", maps={"start": start}) as p1, \
            load(program(vec, False), ProgType.TRACEPOINT, name="softirq_exit",
                 maps={"start": start, "total": total}) as p2, \
            attach.attach_tracepoint(p1, "irq:softirq_entry"), attach.attach_tracepoint(p2, "irq:softirq_exit"):
        print(f"Tracing softirqs for {args.duration:g} s. Hit Ctrl-C to end.", file=sys.stderr)
        try:
            time.sleep(args.duration)
        except KeyboardInterrupt:
            pass
        rows = [(VECTORS[v], cpu, t.ns, t.count) for v in range(len(VECTORS))
                for cpu, t in enumerate(total[v]) if t.count]
    print(f"{'softirq':>9} {'cpu':>4} {'total us':>10} {'count':>8} {'mean us':>8}")
    for name, cpu, ns, count in rows:
        print(f"{name:>9} {cpu:>4} {ns / 1e3:>10.1f} {count:>8} {ns / count / 1e3:>8.2f}")
    print(f"{possible_cpus()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
