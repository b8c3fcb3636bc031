"""Every record layout, declared once as a construct Struct; the numpy dtype that decodes them in
bulk is derived from it, never written twice. All little-endian, 8-byte aligned.

The capture path and the trace reader use layout.py, plain offsets generated from these by
tools/gen_record_layouts.py (construct and numpy are slow to import); a test checks they agree."""

from __future__ import annotations

from functools import cache

import numpy as np
from construct import Array, Bytes, FormatField, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

from .layout import ENTRY, EXIT, RX, TX

# A function entry or exit, kernel or user: written by the probes, one per hit.
SPAN_EVENT = Struct(
    "ts" / Int64ul,      # bpf_ktime_get_ns(): CLOCK_MONOTONIC
    "arg" / Int64ul,     # entry: first argument; exit: return value (0 where not cheap)
    "pid" / Int32ul,     # thread group id
    "tid" / Int32ul,     # thread id
    "probe" / Int16ul,   # index in the trace's probe table
    "cpu" / Int16ul,
    "kind" / Int8ul,     # ENTRY or EXIT
    Padding(3),
)

# Written by the session from the kernel's per-bin counters: one per (bin, interface, direction).
# An interface is (netns, ifindex): the same ifindex names different devices in two namespaces.
THROUGHPUT_SAMPLE = Struct(
    "ts" / Int64ul,      # start of the bin
    "ifindex" / Int32ul,
    "direction" / Int32ul,  # RX or TX
    "packets" / Int64ul,
    "bytes" / Int64ul,   # as the interface counters count them (/sys/class/net/IF/statistics)
    "netns" / Int32ul,   # the network namespace's inode (ls -iL /proc/PID/ns/net)
    Padding(4),
)

# Sampled by the session: system-wide memory in use, or one process's resident set.
MEMORY_SAMPLE = Struct(
    "ts" / Int64ul,
    "pid" / Int32ul,     # 0: the whole system (MemTotal - MemAvailable)
    Padding(4),
    "bytes" / Int64ul,
)


@cache
def xdp_packet(snaplen: int) -> Struct:
    """One packet seen by XDP, with its first ``snaplen`` bytes (a multiple of 8)."""
    if snaplen <= 0 or snaplen % 8:
        raise ValueError(f"snap length {snaplen} must be a positive multiple of 8")
    return Struct(
        "ts" / Int64ul,
        "ifindex" / Int32ul,
        "rx_queue" / Int32ul,
        "len" / Int32ul,     # length on the wire (data_end - data)
        "caplen" / Int16ul,  # bytes of it in "data"
        "cpu" / Int16ul,
        "data" / Bytes(snaplen),
    )


def dtype_of(struct: Struct) -> np.dtype:
    """The numpy dtype with the same fields, offsets and size as ``struct``."""
    names, formats, offsets, offset = [], [], [], 0
    for sub in struct.subcons:
        size = sub.sizeof()
        inner = getattr(sub, "subcon", sub)
        if sub.name is not None:
            names.append(sub.name)
            formats.append(_numpy_format(inner, size))
            offsets.append(offset)
        offset += size
    if offset % 8:
        raise ValueError(f"record of {offset} bytes is not 8-byte aligned")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


# struct format characters at their standard sizes ("<L" is 4 bytes; numpy's "L" is a C long).
_STRUCT_TO_NUMPY = {"B": "u1", "b": "i1", "H": "u2", "h": "i2", "I": "u4", "i": "i4", "L": "u4", "l": "i4",
                    "Q": "u8", "q": "i8", "e": "f2", "f": "f4", "d": "f8"}


def _numpy_format(sub, size: int) -> str | tuple:
    if isinstance(sub, FormatField):
        order = "<" if sub.fmtstr[0] in "<=" else ">"
        return order + _STRUCT_TO_NUMPY[sub.fmtstr[-1]]
    if isinstance(sub, Bytes):
        return ("u1", (size,))
    if isinstance(sub, Array):
        return (_numpy_format(sub.subcon, sub.subcon.sizeof()), (sub.count,))
    raise TypeError(f"no numpy form for {sub!r}")


SPAN_DTYPE = dtype_of(SPAN_EVENT)
THROUGHPUT_DTYPE = dtype_of(THROUGHPUT_SAMPLE)
MEMORY_DTYPE = dtype_of(MEMORY_SAMPLE)

__all__ = ["ENTRY", "EXIT", "MEMORY_DTYPE", "MEMORY_SAMPLE", "RX", "SPAN_DTYPE", "SPAN_EVENT", "THROUGHPUT_DTYPE",
           "THROUGHPUT_SAMPLE", "TX", "dtype_of", "xdp_packet"]
