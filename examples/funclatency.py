#!/usr/bin/env python3
"""A log2 histogram of a user function's latency, kept in a kernel map (like bcc's funclatency).

    sudo python examples/funclatency.py /usr/bin/python3:PyEval_EvalCode -d 10
"""

import argparse
import ctypes
import sys
import time

from netprof.asm import (FP, R0, R1, R2, R3, R4, R6, R7, U32, U64, Add, Call, Frame, Helper, If, JEq, JNe, Label,
                         Load, LoadMapPtr, Mov, Program, Return, Rsh, Store, Sub)
from netprof.loader import attach, elf
from netprof.loader.maps import Map
from netprof.loader.program import load
from netprof.loader.syscall import MapType, ProgType

BUCKETS = 64

def entry_program() -> Program:
    """start[tid] = now."""
    frame = Frame()
    tid, now = frame.slot(8), frame.slot(8)
    return Program(
        Call(Helper.get_current_pid_tgid), Store(FP, tid, R0, U64),
        Call(Helper.ktime_get_ns), Store(FP, now, R0, U64),
        LoadMapPtr(R1, "start"), Mov(R2, FP), Add(R2, tid), Mov(R3, FP), Add(R3, now), Mov(R4, 0),
        Call(Helper.map_update_elem),
        Return(0),
    )


def log2_steps():
    """r7 = floor(log2(r6)) for r6 > 0, by six halvings of the search (no loop)."""
    steps = [Mov(R7, 0)]
    for shift in (32, 16, 8, 4, 2, 1):
        steps += [Mov(R1, R6), Rsh(R1, shift), If(JNe(R1, 0, 0), [Mov(R6, R1), Add(R7, shift)])]
    return steps


def exit_program() -> Program:
    """hist[log2(now - start[tid])] += 1."""
    frame = Frame()
    tid, bucket = frame.slot(8), frame.slot(4)
    return Program(
        Call(Helper.ktime_get_ns), Mov(R6, R0),
        Call(Helper.get_current_pid_tgid), Store(FP, tid, R0, U64),
        LoadMapPtr(R1, "start"), Mov(R2, FP), Add(R2, tid), Call(Helper.map_lookup_elem),
        JEq(R0, 0, "out"),                                     # entered before we attached
        Load(R1, R0, 0, U64), Sub(R6, R1),
        LoadMapPtr(R1, "start"), Mov(R2, FP), Add(R2, tid), Call(Helper.map_delete_elem),
        log2_steps(),
        Store(FP, bucket, R7, U32), LoadMapPtr(R1, "hist"), Mov(R2, FP), Add(R2, bucket),
        Call(Helper.map_lookup_elem), JEq(R0, 0, "out"),
        Load(R1, R0, 0, U64), Add(R1, 1), Store(R0, 0, R1, U64),
        Label("out"),
        Return(0),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="PATH:SYMBOL")
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        target = elf.resolve_target(args.target)
    except elf.ElfError as err:
        print(f"funclatency: {err}", file=sys.stderr)
        return 2
    with Map.create(MapType.HASH, key=ctypes.c_uint64, value=ctypes.c_uint64, max_entries=10240,
                    name="start") as start, \
            Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=BUCKETS,
                       name="hist") as hist, \
            load(entry_program(), ProgType.KPROBE, name="lat_entry", maps={"start": start}) as p1, \
            load(exit_program(), ProgType.KPROBE, name="lat_exit", maps={"start": start, "hist": hist}) as p2, \
            attach.attach_uprobe(p1, target.path, target.offset), \
            attach.attach_uprobe(p2, target.path, target.offset, ret=True):
        print(f"Tracing {target} for {args.duration:g} s. Hit Ctrl-C to end.", file=sys.stderr)
        try:
            time.sleep(args.duration)
        except KeyboardInterrupt:
            pass
        counts = [sum(hist[i]) for i in range(BUCKETS)]
    used = [i for i, n in enumerate(counts) if n]
    peak = max(counts) or 1
    print(f"{'nsecs':>24} : count    distribution")
    for i in range(used[0], used[-1] + 1) if used else ():
        low, high = (1 << i), (1 << (i + 1)) - 1
        print(f"{low:>11} -> {high:<11}: {counts[i]:<8} |{'*' * (counts[i] * 40 // peak):<40}|")
    print(f"total {sum(counts)} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
