"""Exports: Perfetto / Chrome trace JSON, pcap of the XDP packets, CSV or Parquet of spans.

Perfetto (ui.perfetto.dev) opens the JSON with one process per CPU whose threads carry the call
trees whose outermost span started on that CPU, user functions' call trees (kernel functions they
call included) under their real process and thread, counter tracks for throughput and memory, and
an instant event for every XDP packet. A call tree stays on one track, even where its thread moved
to another CPU, so Perfetto nests every span under its ``parent``; each slice's args carry its
``id`` and ``parent`` (as in netprof's CSV and Parquet).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from . import outfile
from .format.layout import MEMORY_SOCKETS, MEMORY_SYSTEM
from .trace import Spans, Trace

PCAP_NS_MAGIC = 0xA1B23C4D   # pcap with nanosecond timestamps
LINKTYPE_ETHERNET = 1
CPU_PID_BASE = 1_000_000_000  # Perfetto process ids for the per-CPU groups (above any real pid)
XDP_PID = CPU_PID_BASE - 1
COUNTER_PID = CPU_PID_BASE - 2


def perfetto(trace: Trace, path: str | Path, spans: Spans | None = None) -> dict[str, int]:
    """Write Chrome trace-event JSON; returns how many events of each kind were written."""
    spans = spans if spans is not None else trace.spans()
    origin = trace.time_range[0]
    names = [json.dumps(p["name"]) for p in trace.probes]
    counts = {"spans": 0, "counters": 0, "packets": 0}
    with outfile.writing(path, "w") as f:
        f.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        meta = [{"ph": "M", "name": "process_name", "pid": XDP_PID, "args": {"name": "XDP packets"}},
                {"ph": "M", "name": "process_name", "pid": COUNTER_PID, "args": {"name": "throughput and memory"}}]
        a = spans.array
        pids = _span_tracks(trace, spans)
        for pid in np.unique(pids[pids >= CPU_PID_BASE]).tolist():
            meta.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"CPU {pid - CPU_PID_BASE}"}})
            meta.append({"ph": "M", "name": "process_sort_index", "pid": pid,
                         "args": {"sort_index": pid - CPU_PID_BASE}})
        for event in meta:
            f.write(json.dumps(event) + ",\n")
        # Parents before their children, also where both start at once (outer orphans, for one).
        order = np.lexsort((a["depth"], a["start"]))
        starts = (a["start"] - origin) / 1e3
        # The timeline keeps the spans' raw extents, so that children stay inside their parents;
        # durations without netprof's probe cost go in the args.
        durations = (a["end"] - np.minimum(a["start"], a["end"])) / 1e3
        ids = spans.id
        corrected = ',"corrected_ns":{}' if trace.corrected else ""
        for i in order.tolist():
            f.write(f'{{"ph":"X","name":{names[a["probe"][i]]},"pid":{pids[i]},"tid":{a["tid"][i]},'
                    f'"ts":{starts[i]:.3f},"dur":{durations[i]:.3f},"args":{{"id":{ids[i]},"parent":{a["parent"][i]},'
                    f'"arg":{a["arg"][i]},"ret":{a["ret"][i]},"self_ns":{a["self"][i]},"flags":{a["flags"][i]}'
                    f'{corrected.format(a["duration"][i])}}}}},\n')
        counts["spans"] = len(a)
        bin_ns = trace.header.get("bin_ns", 10_000_000)
        for (netns, ifindex, direction), (times, values) in trace.series("throughput", bin_ns).items():
            name = f"{trace.interface_name(netns, ifindex)} {'rx' if direction == 0 else 'tx'}"
            for t, v in zip((times - origin) / 1e3, values, strict=True):
                f.write(f'{{"ph":"C","name":"throughput {name}","pid":{COUNTER_PID},"ts":{t:.3f},'
                        f'"args":{{"bits/s":{v * 8:.0f}}}}},\n')
                counts["counters"] += 1
        memory = trace.memory
        for pid in np.unique(memory["pid"]):
            mine = memory[memory["pid"] == pid]
            label = {MEMORY_SYSTEM: "memory used (system)", MEMORY_SOCKETS: "socket buffers"}.get(
                int(pid), f"RSS pid {int(pid)}")
            for t, v in zip((mine["ts"] - origin) / 1e3, mine["bytes"], strict=True):
                f.write(f'{{"ph":"C","name":"{label}","pid":{COUNTER_PID},"ts":{t:.3f},"args":{{"bytes":{v}}}}},\n')
                counts["counters"] += 1
        packets = trace.packets
        for p, t in zip(packets, (packets["ts"] - origin) / 1e3, strict=True):
            ethernet = bytes(p["data"][:14]).hex()
            f.write(f'{{"ph":"i","s":"t","name":"packet","pid":{XDP_PID},"tid":{p["ifindex"]},"ts":{t:.3f},'
                    f'"args":{{"len":{p["len"]},"queue":{p["rx_queue"]},"ethernet":"{ethernet}"}}}},\n')
            counts["packets"] += 1
        f.write('{"ph":"M","name":"trace_end","pid":0,"args":{}}\n]}\n')
    return counts


def _span_tracks(trace: Trace, spans: Spans) -> np.ndarray:
    """The Perfetto process of each span, the tid being its own: that of the outermost span of its
    call tree (its real process for a user function, else CPU_PID_BASE + the CPU it started on;
    the idle task, tid 0 on every CPU, always the latter)."""
    every = trace.all_spans
    root = spans.outermost()
    own_thread = np.isin(every["probe"][root], trace.user_probes) & (spans.array["tid"] != 0)
    return np.where(own_thread, spans.array["pid"], CPU_PID_BASE + every["cpu"][root].astype(np.int64))


def pcap(trace: Trace, path: str | Path) -> int:
    """Write the XDP packets as pcap (nanosecond timestamps on the wall clock, as captured,
    ``caplen`` of each): readable by tcpdump, tshark and Wireshark. Returns the packet count."""
    packets = trace.packets
    snaplen = int(trace.header.get("snaplen", 64))
    wall = packets["ts"].astype(np.int64) + int(trace.clock.get("realtime", 0))
    with outfile.writing(path) as f:
        f.write(struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
        header = struct.Struct("<IIII")
        for p, t in zip(packets, wall, strict=True):
            caplen = int(p["caplen"])
            f.write(header.pack(int(t // 1_000_000_000), int(t % 1_000_000_000), caplen, int(p["len"])))
            f.write(p["data"][:caplen].tobytes())
    return len(packets)
