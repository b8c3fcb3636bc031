#!/usr/bin/env python3
"""Count packets per IP protocol with XDP: a per-CPU array indexed by the IPv4 protocol number.

    sudo python examples/xdp_protocols.py eth0 -d 5
"""

import argparse
import ctypes
import socket
import sys
import time

from netprof.asm import (FP, R0, R1, R2, R3, R4, U8, U16, U32, U64, Add, Call, Frame, Helper, JEq, JGt, JNe, Label,
                         Load, LoadMapPtr, Mov, Program, Return, Store)
from netprof.loader.maps import Map
from netprof.loader.program import load
from netprof.loader.syscall import MapType, ProgType
from netprof.loader.xdp import attach_xdp

NOT_IPV4 = 256
PROTOCOL = Frame().slot(4)                                 # the map's u32 key, on the stack

PROGRAM = Program(
    Load(R2, R1, 0, U32), Load(R3, R1, 4, U32),            # xdp_md->data, data_end
    Mov(R4, NOT_IPV4),
    Mov(R1, R2), Add(R1, 14 + 20), JGt(R1, R3, "count"),   # too short for Ethernet + IPv4
    Load(R1, R2, 12, U16), JNe(R1, 0x0008, "count"),       # ethertype 0x0800, read little-endian
    Load(R4, R2, 23, U8),                                  # the IPv4 protocol
    Label("count"),
    Store(FP, PROTOCOL, R4, U32), LoadMapPtr(R1, "protocols"), Mov(R2, FP), Add(R2, PROTOCOL),
    Call(Helper.map_lookup_elem), JEq(R0, 0, "pass"),
    Load(R1, R0, 0, U64), Add(R1, 1), Store(R0, 0, R1, U64),  # per-CPU slot: no atomic needed
    Label("pass"),
    Return(2),                                              # XDP_PASS
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("interface")
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    names = {num: name[8:] for name, num in vars(socket).items() if name.startswith("IPPROTO_")}
    with Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=NOT_IPV4 + 1,
                    name="protocols") as counts, \
            load(PROGRAM, ProgType.XDP, name="xdp_protocols", maps={"protocols": counts}) as prog, \
            attach_xdp(prog, args.interface):
        print(f"Counting packets on {args.interface} for {args.duration:g} s. Hit Ctrl-C to end.", file=sys.stderr)
        try:
            time.sleep(args.duration)
        except KeyboardInterrupt:
            pass
        totals = {key: sum(value) for key, value in counts.items() if sum(value)}
    print(f"{'protocol':>10} {'packets':>10}")
    for key, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        name = "non-IPv4" if key == NOT_IPV4 else names.get(key, str(key))
        print(f"{name:>10} {total:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
