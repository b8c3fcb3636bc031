"""What the capture needs to know about the probe programs without building them (nothing here
imports the assembler, netprof.asm): where a span program reads its argument, the sizes of the
maps the programs write, the throughput program's key, the BTF offsets it is built with and the
tracepoints it attaches to. span_probe.py and packets.py build the programs from these."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..loader.sys import MACHINE

if TYPE_CHECKING:
    from ..asm.isa import MemType

BPF_RB_NO_WAKEUP = 1
MAX_PROBES = 4096  # size of the "lost" array: probe ids index it

# struct pt_regs (arch/x86/include/uapi/asm/ptrace.h, arch/arm64/include/uapi/asm/ptrace.h):
# where the first argument and the return value are, at function entry and return.
PT_REGS = {"x86_64": {"arg0": 112, "ret": 80}, "aarch64": {"arg0": 0, "ret": 0}}

_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Arg:
    """Where the probe reads the value it records: ``size`` bytes at ``offset`` in its context."""

    offset: int
    size: int = 8

    @property
    def type(self) -> MemType:
        from ..asm import U8, U16, U32, U64  # only to build a program

        return {1: U8, 2: U16, 4: U32, 8: U64}[self.size]

    @classmethod
    def of_field(cls, field) -> Arg | None:
        """A tracepoint record field (netprof.loader.attach.TracepointField) as an Arg, or None when
        there is none or it is not a plain 1, 2, 4 or 8-byte integer."""
        return cls(field.offset, field.size) if field is not None and field.size in _SIZES else None


def pt_regs(what: str) -> Arg:
    """The first argument ("arg0") or the return value ("ret") in this machine's pt_regs."""
    machine = MACHINE
    if machine not in PT_REGS:
        from ..loader.btf import vmlinux

        member = {"arg0": "di", "ret": "ax"}[what]
        return Arg(vmlinux().member_offset("struct pt_regs", member))
    return Arg(PT_REGS[machine][what])


THROUGHPUT_KEY_STRUCT = struct.Struct("<QIIII")  # {u64 bin; u32 ifindex; u32 netns; u32 direction; u32 pad}
THROUGHPUT_KEY = THROUGHPUT_KEY_STRUCT.size
THROUGHPUT_VALUE = 16  # {u64 packets; u64 bytes}

# Where packets enter the stack from a driver, one hit per packet the device received, before GRO
# merges them (net/core/dev.c and gro.c): a bridge, a tunnel or a veth peer passes its packets
# through one of these again, for its own device, as its own counters count them.
RX_TRACEPOINTS = ("netif_receive_skb_entry", "netif_receive_skb_list_entry", "napi_gro_receive_entry",
                  "napi_gro_frags_entry", "netif_rx_entry", "netif_rx_ni_entry")
# Where a device has taken a packet (net_dev_xmit: the device's own xmit returned): raw, so that
# the program gets the device itself (a veth has already handed the skb to its peer by then).
TX_TRACEPOINT = "net_dev_xmit"


@dataclass(frozen=True)
class Offsets:
    """What the throughput programs read, from the running kernel's BTF."""

    skb_dev: int
    skb_len: int
    skb_head: int
    skb_data: int
    skb_mac_header: int
    dev_ifindex: int
    dev_flags: int
    dev_hard_header_len: int
    dev_net: int       # net_device.nd_net.net: the namespace the device is in
    net_inum: int      # net.ns.inum: its inode, as /proc/PID/ns/net shows it

    @classmethod
    def from_btf(cls, btf) -> Offsets:
        skb, dev = "struct sk_buff", "struct net_device"
        return cls(btf.member_offset(skb, "dev"), btf.member_offset(skb, "len"), btf.member_offset(skb, "head"),
                   btf.member_offset(skb, "data"), btf.member_offset(skb, "mac_header"),
                   btf.member_offset(dev, "ifindex"), btf.member_offset(dev, "flags"),
                   btf.member_offset(dev, "hard_header_len"), btf.member_offset(dev, "nd_net.net"),
                   btf.member_offset("struct net", "ns.inum"))
