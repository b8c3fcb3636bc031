"""Packet probes: every packet XDP sees (with its first bytes), and throughput counted in the
kernel per time bin, so a busy interface costs a map update per packet, not an event.

The XDP program always returns XDP_PASS: profiling never changes traffic.
"""

from __future__ import annotations

import struct

from ..asm import (
    FP,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R8,
    R9,
    U16,
    U32,
    U64,
    Add,
    Call,
    Div,
    Helper,
    Ja,
    JEq,
    JGt,
    JLt,
    Label,
    Load,
    LoadMapPtr,
    Mov,
    Program,
    Return,
    Store,
    Sub,
)
from .layout import xdp_packet
from .spans import BPF_RB_NO_WAKEUP, count_lost

XDP_PASS = 2
BPF_NOEXIST = 1
# struct xdp_md (include/uapi/linux/bpf.h): data, data_end, data_meta, ingress_ifindex, rx_queue_index
XDP_MD = {"data": 0, "data_end": 4, "ingress_ifindex": 12, "rx_queue_index": 16}


def xdp_program(probe: int, snaplen: int) -> Program:
    """Reserve a packet record in "packets", fill it, copy up to ``snaplen`` bytes with
    bpf_xdp_load_bytes, submit without waking the reader; count what did not fit in "lost"."""
    size, fields = xdp_packet(snaplen)
    at = {name: offset for name, (offset, _) in fields.items()}
    return Program(
        Mov(R6, R1),
        Call(Helper.ktime_get_ns), Mov(R7, R0),
        LoadMapPtr(R1, "packets"), Mov(R2, size), Mov(R3, 0), Call(Helper.ringbuf_reserve),
        JEq(R0, 0, "full"),
        Mov(R8, R0),
        Store(R8, at["ts"], R7, U64),
        Load(R1, R6, XDP_MD["ingress_ifindex"], U32), Store(R8, at["ifindex"], R1, U32),
        Load(R1, R6, XDP_MD["rx_queue_index"], U32), Store(R8, at["rx_queue"], R1, U32),
        Load(R2, R6, XDP_MD["data"], U32), Load(R3, R6, XDP_MD["data_end"], U32),
        Sub(R3, R2), Store(R8, at["len"], R3, U32),          # length of the frame
        Mov(R9, R3), JGt(R9, snaplen, "clamp"), Ja("clamped"),
        Label("clamp"), Mov(R9, snaplen),
        Label("clamped"),
        Store(R8, at["caplen"], R9, U16),
        Call(Helper.get_smp_processor_id), Store(R8, at["cpu"], R0, U16),
        JLt(R9, 1, "submit"),  # not "== 0": older verifiers learn the lower bound only from this
        Mov(R1, R6), Mov(R2, 0), Mov(R3, R8), Add(R3, at["data"]), Mov(R4, R9),
        Call(Helper.xdp_load_bytes),
        Label("submit"),
        Mov(R1, R8), Mov(R2, BPF_RB_NO_WAKEUP), Call(Helper.ringbuf_submit),
        Ja("pass"),
        Label("full"),
        count_lost(probe),
        Label("pass"),
        Return(XDP_PASS),
    )


THROUGHPUT_KEY_STRUCT = struct.Struct("<QII")  # {u64 bin; u32 ifindex; u32 direction}
THROUGHPUT_KEY = THROUGHPUT_KEY_STRUCT.size
THROUGHPUT_VALUE = 16  # {u64 packets; u64 bytes}


def throughput_program(direction: int, len_field: tuple[int, int], skbaddr_offset: int, dev_offset: int,
                       ifindex_offset: int, bin_ns: int) -> Program:
    """On a net tracepoint: counts[bin, skb->dev->ifindex, direction] += (1 packet, len bytes)
    in the per-CPU hash "counts". ``len_field`` is (offset, size) of the record's length field."""
    len_offset, len_size = len_field
    key, dev, zero = -THROUGHPUT_KEY, -THROUGHPUT_KEY - 8, -THROUGHPUT_KEY - 8 - THROUGHPUT_VALUE
    return Program(
        Mov(R6, R1),
        Call(Helper.ktime_get_ns), Div(R0, bin_ns), Store(FP, key, R0, U64),
        Store(FP, key + 8, 0, U32), Store(FP, key + 12, direction, U32),
        Mov(R1, FP), Add(R1, dev), Mov(R2, 8),
        Load(R3, R6, skbaddr_offset, U64), Add(R3, dev_offset),
        Call(Helper.probe_read_kernel),                                   # skb->dev
        Load(R3, FP, dev, U64), JEq(R3, 0, "keyed"),
        Mov(R1, FP), Add(R1, key + 8), Mov(R2, 4), Add(R3, ifindex_offset),
        Call(Helper.probe_read_kernel),                                   # skb->dev->ifindex
        Label("keyed"),
        LoadMapPtr(R1, "counts"), Mov(R2, FP), Add(R2, key), Call(Helper.map_lookup_elem),
        JEq(R0, 0, "create"),
        Label("count"),
        Load(R1, R0, 0, U64), Add(R1, 1), Store(R0, 0, R1, U64),
        Load(R1, R6, len_offset, {2: U16, 4: U32, 8: U64}[len_size]),
        Load(R2, R0, 8, U64), Add(R2, R1), Store(R0, 8, R2, U64),
        Ja("out"),
        Label("create"),                                                  # first packet of this bin here
        Store(FP, zero, 0, U64), Store(FP, zero + 8, 0, U64),
        LoadMapPtr(R1, "counts"), Mov(R2, FP), Add(R2, key), Mov(R3, FP), Add(R3, zero), Mov(R4, BPF_NOEXIST),
        Call(Helper.map_update_elem),
        LoadMapPtr(R1, "counts"), Mov(R2, FP), Add(R2, key), Call(Helper.map_lookup_elem),
        JEq(R0, 0, "out"),
        Ja("count"),
        Label("out"),
        Return(0),
    )
