"""Planning a capture: each probe it asks for becomes one small typed plan, and everything a user
can get wrong (a function the kernel cannot probe, a symbol that is not there, a tracepoint or
an interface that does not exist) is found here, before anything is attached."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..loader import attach, elf
from ..loader.syscall import BpfError
from .options import CaptureOptions

log = logging.getLogger(__name__)

# The network stack's own entry/exit tracepoints: kernel spans on kernels without kprobes.
NET_SPANS = [
    ("netif_receive_skb", "net:netif_receive_skb_entry", "net:netif_receive_skb_exit"),
    ("napi_gro_receive", "net:napi_gro_receive_entry", "net:napi_gro_receive_exit"),
    ("netif_rx", "net:netif_rx_entry", "net:netif_rx_exit"),
    ("dev_xmit", "net:net_dev_start_xmit", "net:net_dev_xmit"),
]
NET_EVENTS = [("napi_poll", "napi:napi_poll", "work")]  # no entry tracepoint: an instant event


class SessionError(Exception):
    """Bad input or an impossible request: one line, what was wrong and what to do."""


@dataclass
class Probe:
    """One row of the trace's probe table."""

    id: int
    name: str
    kind: str          # "kernel", "user", "net" (tracepoint pair), "event" (one tracepoint), "xdp"
    mechanism: str     # "fentry", "kprobe", "uprobe", "tracepoint", "xdp"
    target: str = ""
    cost_us: float | None = None  # uprobes: the expected cost of a hit at this site

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class FentryPlan:
    probe: Probe
    function: Any  # the function's BTF (netprof.loader.btf): its id and argument count


@dataclass
class KprobePlan:
    probe: Probe
    function: str


@dataclass
class UprobePlan:
    probe: Probe
    target: elf.UprobeTarget


@dataclass
class NetPairPlan:
    """A span from one tracepoint to another (the network stack's entry/exit pairs)."""

    probe: Probe
    entry: str
    exit: str
    formats: tuple[dict, dict]  # their records' fields (attach.tracepoint_format)


@dataclass
class EventPlan:
    """An instant event: one tracepoint, and the record field it keeps as its argument."""

    probe: Probe
    tracepoint: str
    field: attach.TracepointField | None


@dataclass
class XdpPlan:
    probe: Probe
    ifname: str


Plan = FentryPlan | KprobePlan | UprobePlan | NetPairPlan | EventPlan | XdpPlan


class Planner:
    """The probe table and one plan per probe, for ``options``; SessionError at the first problem."""

    def __init__(self, options: CaptureOptions):
        self.options = options
        self.probes: list[Probe] = []
        self.plans: list[Plan] = []
        self.notes: list[str] = []  # what the user should know before the capture starts (one line each)

    def plan(self) -> list[Plan]:
        self._kernel()
        self._user()
        self._net()
        self._xdp()
        return self.plans

    def _add(self, name: str, kind: str, mechanism: str, target: str = "", cost: float | None = None) -> Probe:
        if any(p.name == name for p in self.probes):
            name = f"{name}#{len(self.probes)}"  # two targets with one short name: keep them apart
        probe = Probe(len(self.probes), name, kind, mechanism, target, cost)
        self.probes.append(probe)
        return probe

    def _kernel(self) -> None:
        if not self.options.kernel:
            return
        from ..loader.features import features

        found = features()
        for function in self.options.kernel:
            why_not = []
            if found.has("fentry"):
                from ..loader.btf import BtfError, vmlinux

                try:
                    fn = vmlinux().function(function)
                except BtfError as err:
                    why_not.append(str(err))
                else:
                    self.plans.append(FentryPlan(self._add(function, "kernel", "fentry", function), fn))
                    continue
            else:
                why_not.append("this kernel refuses fentry")
            if found.has("kprobe"):
                if in_kallsyms(function):
                    self.plans.append(KprobePlan(self._add(function, "kernel", "kprobe", function), function))
                    continue
                why_not.append(f"{function!r} is not in /proc/kallsyms (misspelt, inlined, or in a module that is "
                               "not loaded)")
            else:
                why_not.append("this kernel has no kprobes")
            raise SessionError(f"cannot probe kernel function {function!r}: {'; '.join(why_not)}; use --net "
                               "tracepoints, or run netprof in the vm/ guest")

    def _user(self) -> None:
        for spec in self.options.user:
            try:
                target = elf.resolve_target(spec)
            except elf.ElfError as err:
                raise SessionError(str(err)) from None
            name = f"{Path(target.path).name}:{target.symbol}"
            cheaper = None if self.options.exact_entry or target.symbol_offset else elf.cheaper_site(target)
            if cheaper is not None:  # past the endbr64: the same registers and stack, an emulated instruction
                log.info("%s: probed at %s+%#x, past its endbr64 (--exact-entry to probe %s itself)", name,
                         target.symbol, cheaper.symbol_offset, target.symbol)
                target = cheaper
            cost = elf.site_cost(target)
            probe = self._add(name, "user", "uprobe", str(target), cost.approx_us if cost else None)
            if cost is not None and not cost.emulated:
                first = cost.description.split(", single-stepped")[0]
                self.notes.append(f"{name}: the kernel single-steps its probed instruction ({first}): about "
                                  f"{cost.approx_us:.0f} µs a call, which its spans include")
            self.plans.append(UprobePlan(probe, target))

    def _net(self) -> None:
        for name, entry, exit_ in NET_SPANS if self.options.net else []:
            try:
                formats = (attach.tracepoint_format(*entry.split(":")), attach.tracepoint_format(*exit_.split(":")))
            except BpfError:
                log.warning("tracepoints %s/%s missing on this kernel: no %s spans", entry, exit_, name)
                continue
            self.plans.append(NetPairPlan(self._add(name, "net", "tracepoint", f"{entry} -> {exit_}"), entry, exit_,
                                          formats))
        events: list[tuple[str, str, str | None]] = list(NET_EVENTS) if self.options.net else []
        events += [(tp.split(":", 1)[1], tp, None) for tp in self.options.tracepoints]
        for name, tracepoint, arg in events:
            category, _, event = tracepoint.partition(":")
            try:
                fmt = attach.tracepoint_format(category, event)
            except BpfError as err:
                raise SessionError(str(err)) from None
            self.plans.append(EventPlan(self._add(name, "event", "tracepoint", tracepoint), tracepoint,
                                        fmt.get(arg) if arg else None))

    def _xdp(self) -> None:
        if not self.options.xdp:
            return
        import socket  # slow to import: only when XDP is asked for

        for ifname in dict.fromkeys(self.options.xdp):
            try:
                socket.if_nametoindex(ifname)
            except OSError:
                raise SessionError(f"no network interface {ifname!r} here (see: ip link)") from None
            self.plans.append(XdpPlan(self._add(f"xdp:{ifname}", "xdp", "xdp", ifname), ifname))


def in_kallsyms(function: str) -> bool:
    try:
        with open("/proc/kallsyms") as f:
            return any(line.split()[2] == function for line in f if function in line)
    except OSError:
        return True  # cannot tell: let the attach say
