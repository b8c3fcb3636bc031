"""Planning a capture: each probe it asks for becomes one small typed plan, and everything a user
can get wrong (a function the kernel cannot probe, a symbol that is not there, a tracepoint or
an interface that does not exist) is found here, before anything is attached."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..loader import attach, elf
from . import selection
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
    # Measured on this kernel (netprof.calibrate), for uprobes: what a probed call costs its caller
    # in all, and the part of that inside the span; the analysis takes them off the durations.
    cost_ns: float | None = None
    in_span_ns: float | None = None
    pattern: str | None = None  # the -u spec (a glob, a short name) that named it, where it was not PATH:SYMBOL

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
class KprobeMultiPlan:
    """Kernel functions through one kprobe_multi link for their entries and one for their returns."""

    probes: list[Probe]
    functions: list[str]


@dataclass
class UprobePlan:
    probe: Probe
    target: elf.UprobeTarget


@dataclass
class UprobeMultiPlan:
    """The user functions of one file, through one uprobe_multi link for their entries and one for
    their returns: a program each, the probe id as each function's BPF cookie."""

    probes: list[Probe]
    path: str
    targets: list[elf.UprobeTarget]


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


Plan = FentryPlan | KprobePlan | KprobeMultiPlan | UprobePlan | UprobeMultiPlan | NetPairPlan | EventPlan | XdpPlan


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
        self._group_uprobes()
        self._net()
        self._xdp()
        return self.plans

    def _group_uprobes(self) -> None:
        """One UprobeMultiPlan per file where the kernel has uprobe_multi links (and --uprobe-attach
        allows them), in place of a perf-event UprobePlan per function."""
        how = self.options.uprobe_attach
        uprobes = [p for p in self.plans if isinstance(p, UprobePlan)]
        if not uprobes or how == "perf_event":
            return
        from ..loader.features import features

        if not features().has("uprobe_multi"):
            if how == "uprobe_multi":
                raise SessionError("--uprobe-attach uprobe_multi: this kernel has no uprobe_multi links (Linux 6.6, "
                                   "with the process filter of 6.9); use --uprobe-attach perf_event")
            return
        by_file: dict[str, list[UprobePlan]] = {}
        for plan in uprobes:
            by_file.setdefault(plan.target.path, []).append(plan)
        kept: list[Plan] = [p for p in self.plans if not isinstance(p, UprobePlan)]
        for path, plans in by_file.items():
            for plan in plans:
                plan.probe.mechanism = "uprobe_multi"
            kept.append(UprobeMultiPlan([p.probe for p in plans], path, [p.target for p in plans]))
        self.plans = kept

    def _add(self, name: str, kind: str, mechanism: str, target: str = "", cost: Any = None) -> Probe:
        if any(p.name == name for p in self.probes):
            name = f"{name}#{len(self.probes)}"  # two targets with one short name: keep them apart
        probe = Probe(len(self.probes), name, kind, mechanism, target, *((cost.cost_ns, cost.in_span_ns) if cost else ()))
        self.probes.append(probe)
        return probe

    def _kernel(self) -> None:
        if not self.options.kernel:
            return
        from ..loader.features import features

        found = features()
        how = self.options.kernel_attach
        multi: KprobeMultiPlan | None = None
        for function, pattern in self._kernel_functions():
            # auto: a glob's functions through one kprobe_multi link where there is one; a named
            # function through fentry (the cheapest call), then a kprobe
            order = ((how,) if how != "auto" else
                     ("kprobe_multi", "fentry", "kprobe") if pattern else ("fentry", "kprobe", "kprobe_multi"))
            why_not = []
            for mechanism in order:
                if not found.has(mechanism):
                    why_not.append({"fentry": "this kernel refuses fentry", "kprobe": "this kernel has no kprobes",
                                    "kprobe_multi": "this kernel has no kprobe_multi links"}[mechanism])
                    continue
                if mechanism == "fentry":
                    from ..loader.btf import BtfError, vmlinux

                    try:
                        fn = vmlinux().function(function)
                    except BtfError as err:
                        why_not.append(str(err))
                        continue
                    self.plans.append(FentryPlan(self._kernel_probe(function, "fentry", pattern), fn))
                elif not in_kallsyms(function):
                    why_not.append(f"{function!r} is not in /proc/kallsyms (misspelt, inlined, or in a module that is "
                                   "not loaded)")
                    continue
                elif mechanism == "kprobe":
                    self.plans.append(KprobePlan(self._kernel_probe(function, "kprobe", pattern), function))
                else:
                    if multi is None:
                        multi = KprobeMultiPlan([], [])
                        self.plans.append(multi)
                    multi.probes.append(self._kernel_probe(function, "kprobe_multi", pattern))
                    multi.functions.append(function)
                break
            else:
                raise SessionError(f"cannot probe kernel function {function!r}: {'; '.join(dict.fromkeys(why_not))}; "
                                   "use --net tracepoints, or run netprof in the vm/ guest")

    def _kernel_probe(self, function: str, mechanism: str, pattern: str | None) -> Probe:
        probe = self._add(function, "kernel", mechanism, function)
        probe.pattern = pattern
        return probe

    def _user(self) -> None:
        costs = None
        if self.options.user:
            import time

            from ..calibrate import costs as calibration

            fresh = None if calibration.measuring else calibration.cached()
            started = time.monotonic()
            costs = fresh if fresh is not None else calibration.current(refresh=True)  # measured, once a boot
            if fresh is None and costs is not None:
                self.notes.append(f"measured what a probe costs on this kernel, once a boot, in "
                                  f"{time.monotonic() - started:.1f} s (netprof calibrate shows it)")
        chosen = self._user_functions()
        stepped: list[tuple[str, str]] = []
        for function in chosen:
            target = function.target
            name = f"{Path(target.path).name}:{function.name}"
            cheaper = None if self.options.exact_entry or target.symbol_offset else elf.cheaper_site(target, costs)
            if cheaper is not None:  # past the endbr64: the same registers and stack, a cheaper instruction
                log.info("%s: probed at %s+%#x, past its endbr64 (--exact-entry to probe %s itself)", name,
                         target.symbol, cheaper.symbol_offset, target.symbol)
                target = cheaper
            site = elf.site(target)
            cost = costs.for_instruction(site.code) if costs is not None and site is not None else None
            probe = self._add(name, "user", "uprobe", str(target), cost)
            probe.pattern = function.pattern
            if site is not None and not (cost.emulated if cost is not None else site.emulated):
                measured = (f": {cost.cost_ns / 1000:.1f} µs a call, measured, {cost.in_span_ns / 1000:.1f} µs of "
                            "it inside its spans (report and view take it off)") if cost is not None else ""
                stepped.append((name, f"the kernel single-steps its probed instruction ({site.description}, "
                                      f"{site.insn_hex}){measured}"))
            self.plans.append(UprobePlan(probe, target))
        if len(stepped) <= 5:
            self.notes += [f"{name}: {what}" for name, what in stepped]
        else:  # a glob's worth: one line, the list at -vv
            for name, what in stepped:
                log.info("%s: %s", name, what)
            first, what = stepped[0]
            self.notes.append(f"{len(stepped):,} of the {len(chosen):,} user functions start with an instruction the "
                              f"kernel single-steps (-vv lists them); {first}, for one: {what}")

    def _kernel_functions(self) -> list[tuple[str, str | None]]:
        """(function, the glob that named it or None) for every -k name, each once; SessionError for
        a glob that names none, or for more than --max-probes in all."""
        from . import kernel_functions

        chosen: dict[str, str | None] = {}
        for name in self.options.kernel:
            if not kernel_functions.is_glob(name):
                chosen.setdefault(name, None)
                continue
            found = kernel_functions.select(name, tuple(self.options.exclude))
            if not found.functions:
                left = f" ({found.note(name)})" if found.left_out else ""
                raise SessionError(f"no kernel function that can be probed matches {name!r}{left}")
            if (note := found.note(name)) is not None:
                self.notes.append(note)
            for function in found.functions:
                chosen.setdefault(function, name)
            if len(chosen) > self.options.max_probes:
                raise SessionError(f"{name!r} makes {len(chosen):,} kernel functions to probe, more than --max-probes "
                                   f"{self.options.max_probes:,}: narrow it (--exclude GLOB) or raise --max-probes")
        return list(chosen.items())

    def _user_functions(self) -> list[selection.UserFunction]:
        """Every function the -u specs name, each once; SessionError for a spec that names none, or
        for more than --max-probes in all."""
        o = self.options
        pid = o.pid if not o.command else None  # a command's own files are not mapped yet
        chosen: dict[tuple[str, int], selection.UserFunction] = {}
        for spec in o.user:
            try:
                functions = selection.user_functions(spec, pid, tuple(o.exclude))
            except selection.SelectionError as err:
                raise SessionError(str(err)) from None
            for function in functions:
                chosen.setdefault((function.target.path, function.target.offset), function)
            if len(chosen) > o.max_probes:
                raise SessionError(f"{spec!r} makes {len(chosen):,} user functions to probe, more than --max-probes "
                                   f"{o.max_probes:,}: narrow it (--exclude GLOB) or raise --max-probes")
        return list(chosen.values())

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
