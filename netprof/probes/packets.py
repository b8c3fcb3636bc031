"""Packet probes: every packet XDP sees (with its first bytes), and throughput counted in the
kernel per time bin, so a busy interface costs a map update per packet, not an event.

The XDP program always returns XDP_PASS: profiling never changes traffic.
"""

from __future__ import annotations

from ..asm import (
    FP,
    W2,
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
    And,
    AtomicAdd,
    Call,
    Div,
    Frame,
    Helper,
    Ja,
    JEq,
    JGt,
    JLe,
    JLt,
    JNe,
    Label,
    Load,
    LoadImm64,
    LoadMapPtr,
    LoadMapValue,
    Mov,
    Program,
    Return,
    Store,
    Sub,
)
from ..format.layout import RX, xdp_packet
from .interface import (  # noqa: F401 (where they were)
    BPF_RB_NO_WAKEUP, RX_TRACEPOINTS, THROUGHPUT_KEY, THROUGHPUT_KEY_STRUCT, THROUGHPUT_VALUE, TX_TRACEPOINT, Offsets,
)
from .span_probe import count_lost

XDP_PASS = 2
BPF_NOEXIST = 1
# struct xdp_md (include/uapi/linux/bpf.h): data, data_end, data_meta, ingress_ifindex, rx_queue_index
XDP_MD = {"data": 0, "data_end": 4, "ingress_ifindex": 12, "rx_queue_index": 16}


def xdp_program(probe: int, snaplen: int) -> Program:
    """Reserve a packet record in "packets", fill it, copy up to ``snaplen`` bytes with
    bpf_xdp_load_bytes, submit without waking the reader; count what did not fit in "lost"."""
    size, fields = xdp_packet(snaplen)
    at = {name: offset for name, (offset, _) in fields.items()}
    frame = Frame()
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
        count_lost(probe, frame),
        Label("pass"),
        Return(XDP_PASS),
    )


NETDEV_TX_OK = 0
MAC_HEADER_UNSET = 0xFFFF  # skb->mac_header when no MAC header was set (include/linux/skbuff.h)
IFF_LOOPBACK = 0x8  # include/uapi/linux/if.h


def _read(size: int, slot: int, base, offset: int) -> list:
    """*(fp + slot) = the ``size`` bytes at ``base`` + ``offset`` in kernel memory (zero if unreadable)."""
    return [Store(FP, slot, 0, U64), Mov(R1, FP), Add(R1, slot), Mov(R2, size), Mov(R3, base), Add(R3, offset),
            Call(Helper.probe_read_kernel)]


def throughput_program(direction: int, o: Offsets, netns: int, bin_ns: int) -> Program:
    """A raw tracepoint program: counts[bin, ifindex, netns, direction] += (1 packet, its bytes) in
    the per-CPU hash "counts", for the device that received (RX: args[0] is the skb) or sent (TX,
    net_dev_xmit: skb, rc, dev, len) it, counted as the interface counters count them: RX with
    the MAC header the driver already pulled, TX only what the device took (rc NETDEV_TX_OK).
    Loopback is the exception: it counts what it hands back to the stack after eth_type_trans()
    pulled the Ethernet header (drivers/net/loopback.c), so its bytes lack the header both ways.
    ``netns``: only devices in that namespace (0: every namespace). When "counts" is full, the
    one-entry array "overflow" counts the packets that found no room."""
    frame = Frame()
    key = frame.slot(THROUGHPUT_KEY)
    pointer = frame.slot(8)              # a pointer read from the kernel
    scalar = frame.slot(8)               # a scalar read from the kernel
    zero = frame.slot(THROUGHPUT_VALUE)  # the value of a new entry
    if direction == RX:
        device_and_length = [
            Load(R6, R1, 0, U64),                                              # skb
            *_read(8, pointer, R6, o.skb_dev), Load(R7, FP, pointer, U64), JEq(R7, 0, "out"),  # dev
            *_read(4, scalar, R6, o.skb_len), Load(R8, FP, scalar, U32),         # len, without the MAC header
            *_read(4, scalar, R7, o.dev_flags), Load(R1, FP, scalar, U32), And(R1, IFF_LOOPBACK),
            JNe(R1, 0, "counted"),                                             # loopback: without it
            *_read(2, scalar, R6, o.skb_mac_header), Load(R9, FP, scalar, U16),
            JEq(R9, MAC_HEADER_UNSET, "counted"),
            *_read(8, scalar, R6, o.skb_head), Load(R1, FP, scalar, U64), Add(R9, R1),  # head + mac_header
            *_read(8, scalar, R6, o.skb_data), Load(R1, FP, scalar, U64),
            JLe(R1, R9, "counted"), Sub(R1, R9), JGt(R1, 256, "counted"),     # data - (head + mac_header)
            Add(R8, R1),
            Label("counted"),
        ]
    else:
        device_and_length = [
            Load(R2, R1, 8, U64), JNe(W2, NETDEV_TX_OK, "out"),               # rc
            Load(R7, R1, 16, U64), JEq(R7, 0, "out"),                          # dev
            Load(R8, R1, 24, U32),                                             # skb_len, with the MAC header
            *_read(4, scalar, R7, o.dev_flags), Load(R1, FP, scalar, U32), And(R1, IFF_LOOPBACK),
            JEq(R1, 0, "counted"),
            *_read(2, scalar, R7, o.dev_hard_header_len), Load(R1, FP, scalar, U16),  # loopback: without it
            JGt(R1, R8, "counted"), Sub(R8, R1),
            Label("counted"),
        ]
    return Program(
        *device_and_length,
        *_read(8, pointer, R7, o.dev_net), Load(R6, FP, pointer, U64),
        *_read(4, scalar, R6, o.net_inum), Load(R6, FP, scalar, U32),           # the device's netns inode
        [LoadImm64(R1, netns), JNe(R6, R1, "out")] if netns else [],   # inodes pass 2**31: not an imm32
        *_read(4, scalar, R7, o.dev_ifindex), Load(R7, FP, scalar, U32),
        Call(Helper.ktime_get_ns), Div(R0, bin_ns), Store(FP, key, R0, U64),
        Store(FP, key + 8, R7, U32), Store(FP, key + 12, R6, U32),
        Store(FP, key + 16, direction, U32), Store(FP, key + 20, 0, U32),
        LoadMapPtr(R1, "counts"), Mov(R2, FP), Add(R2, key), Call(Helper.map_lookup_elem),
        JEq(R0, 0, "create"),
        Label("count"),
        Load(R1, R0, 0, U64), Add(R1, 1), Store(R0, 0, R1, U64),
        Load(R2, R0, 8, U64), Add(R2, R8), Store(R0, 8, R2, U64),
        Ja("out"),
        Label("create"),                                                      # first packet of this bin here
        Store(FP, zero, 0, U64), Store(FP, zero + 8, 0, U64),
        LoadMapPtr(R1, "counts"), Mov(R2, FP), Add(R2, key), Mov(R3, FP), Add(R3, zero), Mov(R4, BPF_NOEXIST),
        Call(Helper.map_update_elem),
        LoadMapPtr(R1, "counts"), Mov(R2, FP), Add(R2, key), Call(Helper.map_lookup_elem),
        JNe(R0, 0, "count"),
        LoadMapValue(R1, "overflow"), Mov(R2, 1), AtomicAdd(R1, 0, R2),        # no room: counted as lost
        Label("out"),
        Return(0),
    )
