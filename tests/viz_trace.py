"""A small synthetic capture with known spans, packets, throughput and memory, for the viewer tests."""

import numpy as np

from netprof.format import layout
from netprof.format.layout import ENTRY, EXIT
from netprof.format.tracefile import Kind, TraceWriter, new_header

PROBES = [{"id": 0, "name": "ip_rcv", "kind": "kernel", "mechanism": "kprobe"},
          {"id": 1, "name": "tcp_v4_rcv", "kind": "kernel", "mechanism": "kprobe"},
          {"id": 2, "name": "client:send_all", "kind": "user", "mechanism": "uprobe"}]
T0 = 10**12   # the capture's first timestamp (CLOCK_MONOTONIC ns)
LENGTH = 10**9  # one second

# (probe, cpu, pid, tid, start, end) in ns since T0
SPANS = [
    (0, 0, 100, 100, 100_000_000, 400_000_000),   # CPU 0, depth 0
    (1, 0, 100, 100, 150_000_000, 250_000_000),   # CPU 0, depth 1, inside ip_rcv
    (0, 1, 200, 200, 600_000_000, 900_000_000),   # CPU 1, depth 0
    (2, 1, 300, 301, 200_000_000, 700_000_000),   # user span, thread 301 of process 300
]
PACKET_AT = 500_000_000
ETHERNET = bytes.fromhex("ffffffffffff" "020000000001" "0800") + bytes(50)


def events() -> np.ndarray:
    rows = []
    for probe, cpu, pid, tid, start, end in SPANS:
        rows.append((T0 + start, 0, pid, tid, probe, cpu, ENTRY))
        rows.append((T0 + end, 0, pid, tid, probe, cpu, EXIT))
    rows.append((T0, 0, 1, 1, 0, 0, ENTRY))  # an instant span at the very start, far from the others
    rows.append((T0 + 1, 0, 1, 1, 0, 0, EXIT))
    rows.append((T0 + LENGTH, 0, 1, 1, 0, 0, ENTRY))
    rows.append((T0 + LENGTH + 1, 0, 1, 1, 0, 0, EXIT))
    out = np.array(rows, dtype=layout.SPAN.dtype())
    return out[np.argsort(out["ts"], kind="stable")]


def write(path, probes: list[dict] = PROBES) -> None:
    writer = TraceWriter(path, new_header(probes, 64, bin_ns=10_000_000, interfaces={"7": "veth0"}))
    writer.write(Kind.SPANS, events())
    packet = np.zeros(1, layout.xdp_packet(64).dtype())
    packet["ts"], packet["ifindex"], packet["len"], packet["caplen"] = T0 + PACKET_AT, 7, 64, 64
    packet["data"][0] = np.frombuffer(ETHERNET, np.uint8)
    writer.write(Kind.XDP, packet)
    bins = np.arange(0, LENGTH, 10_000_000)
    throughput = np.zeros(len(bins), layout.THROUGHPUT.dtype())
    throughput["ts"], throughput["ifindex"], throughput["bytes"], throughput["packets"] = T0 + bins, 7, 1000, 1
    writer.write(Kind.THROUGHPUT, throughput)
    memory = np.zeros(10, layout.MEMORY.dtype())
    memory["ts"], memory["bytes"] = T0 + np.arange(10) * 100_000_000, (np.arange(10) + 1) * 2**20
    writer.write(Kind.MEMORY, memory)
    writer.write(Kind.SPANS, b"", 0, lost=5)  # a loss reported at the end
    writer.write_json(Kind.NAMES, {"processes": {"300": "client"}, "netns": {}})
    writer.write_json(Kind.END, {"seconds": 1.0})  # a capture that finished
    writer.close()
