"""Record layouts as plain offsets and numpy formats, for the capture path and the trace reader.

The records are declared once, as construct Structs, in records.py; tools/gen_record_layouts.py
derives record_layouts.py from them, and a test fails if the two drift apart. Capture imports
only this: construct and numpy together cost more start-up time than loading and attaching
every probe.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import NamedTuple

from .record_layouts import MEMORY_SAMPLE, SPAN_EVENT, THROUGHPUT_SAMPLE, XDP_PACKET_HEAD

ENTRY, EXIT = 0, 1  # a span event's "kind"
RX, TX = 0, 1       # a throughput sample's "direction"
# A memory sample's "pid": a process's RSS, or one of these.
MEMORY_SYSTEM = 0               # MemTotal - MemAvailable
MEMORY_SOCKETS = 0xFFFF_FFFF    # the kernel's socket buffers: TCP and UDP memory, and IP fragments


def memory_source(pid: int) -> str:
    """What a memory sample's ``pid`` measures, in words."""
    return {MEMORY_SYSTEM: "system", MEMORY_SOCKETS: "socket buffers"}.get(int(pid), f"pid {int(pid)}")


class Layout(NamedTuple):
    size: int                              # bytes, a multiple of 8
    fields: dict[str, tuple[int, str]]     # name -> (offset, numpy format)

    def offset(self, name: str) -> int:
        return self.fields[name][0]

    def pack(self, *values: int) -> bytes:
        """One record of integer fields, ``values`` in field order."""
        return _packer(self.size, tuple(self.fields.values())).pack(*values)

    def dtype(self):
        """The numpy dtype with these fields, offsets and size (imports numpy)."""
        import numpy as np

        names = list(self.fields)
        return np.dtype({"names": names, "formats": [self.fields[n][1] for n in names],
                         "offsets": [self.fields[n][0] for n in names], "itemsize": self.size})


SPAN = Layout(*SPAN_EVENT)
THROUGHPUT = Layout(*THROUGHPUT_SAMPLE)
MEMORY = Layout(*MEMORY_SAMPLE)


@cache
def xdp_packet(snaplen: int) -> Layout:
    """One packet seen by XDP with its first ``snaplen`` bytes (a positive multiple of 8)."""
    if snaplen <= 0 or snaplen % 8:
        raise ValueError(f"snap length {snaplen} must be a positive multiple of 8")
    head_size, fields = XDP_PACKET_HEAD
    return Layout(head_size + snaplen, {**fields, "data": (head_size, f"({snaplen},)u1")})


@cache
def _packer(size: int, fields: tuple[tuple[int, str], ...]) -> struct.Struct:
    fmt, at = "<", 0
    for offset, numpy_format in sorted(fields):
        fmt += "x" * (offset - at) + _STRUCT_CODES[numpy_format[1:]]
        at = offset + int(numpy_format[2:])
    return struct.Struct(fmt + "x" * (size - at))


_STRUCT_CODES = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i1": "b", "i2": "h", "i4": "i", "i8": "q"}
