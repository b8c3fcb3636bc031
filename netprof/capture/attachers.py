"""Turning plans into programs in the kernel: each plan type has its attacher, which loads the
span (or packet, or throughput) programs and attaches them through loader links, all owned by
one ExitStack so that closing it detaches everything."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Any

from ..loader import attach
from ..loader.maps import Map
from ..loader.program import BpfProgram, load
from ..loader.syscall import AttachType, BpfError, ProgType
from ..probes import cache, interface
from ..format.layout import ENTRY, EXIT, RX, TX
from .options import CaptureOptions
from .runner import THROUGHPUT_LOSS
from .plan import (EventPlan, FentryPlan, KprobeMultiPlan, KprobePlan, NetPairPlan, Probe, SessionError,
                   UprobeMultiPlan, UprobePlan, XdpPlan, in_kallsyms)

log = logging.getLogger(__name__)


class Attacher:
    """Loads and attaches, into ``links``; ``maps`` are what the span programs write to (events,
    lost, control, and follow with -p). ``programs`` lists (probe id, program): the kernel counts
    their recursion misses, which are loss too."""

    def __init__(self, options: CaptureOptions, links: contextlib.ExitStack, maps: dict[str, Any]):
        self.options, self.links, self.maps = options, links, maps
        self.follow = options.pid is not None
        self.programs: list[tuple[int, BpfProgram]] = []
        self.loss_names: dict[int, str] = {}  # loss keys below THROUGHPUT_LOSS: programs many probes share

    def _prog(self, program, prog_type: ProgType, name: str, maps: dict, probe: Probe | None = None,
              loss_key: int | None = None, **kwargs) -> BpfProgram:
        """Load ``program``; its recursion misses count as loss of ``probe`` (or of ``loss_key``)."""
        prog = self.links.enter_context(load(program, prog_type, name=name, maps=maps, **kwargs))
        key = probe.id if probe is not None else loss_key
        if key is not None:
            self.programs.append((key, prog))
        return prog

    def _link(self, link) -> None:
        self.links.enter_context(link)

    @functools.singledispatchmethod
    def attach(self, plan) -> None:
        raise TypeError(f"no attacher for {type(plan).__name__}")

    @attach.register
    def _(self, plan: FentryPlan) -> None:
        links, programs = self.links, len(self.programs)
        try:
            with contextlib.ExitStack() as both:  # fentry and fexit, or neither: no lone entry program stays
                self.links = both
                try:
                    self._fentry(plan)
                finally:
                    self.links = links
                links.enter_context(both.pop_all())
        except BpfError as err:
            del self.programs[programs:]
            from ..loader.features import features

            if not (features().has("kprobe") and in_kallsyms(plan.probe.target)):
                raise
            log.info("fentry on %s refused (%s): using kprobes", plan.probe.target, err)
            plan.probe.mechanism = "kprobe"
            self.attach(KprobePlan(plan.probe, plan.probe.target))

    def _fentry(self, plan: FentryPlan) -> None:
        nargs = plan.function.nargs
        ends = [(AttachType.TRACE_FENTRY, ENTRY, interface.Arg(0) if nargs else None),
                (AttachType.TRACE_FEXIT, EXIT, interface.Arg(8 * nargs))]
        for attach_type, kind, arg in ends:
            prog = self._prog(cache.program("span_probe.span_program", plan.probe.id, kind, arg, self.follow),
                              ProgType.TRACING, f"np_{plan.probe.name}", self.maps, plan.probe,
                              expected_attach_type=attach_type,
                              attach_btf_id=plan.function.id)
            self._link(attach.attach_tracing(prog))

    @attach.register
    def _(self, plan: KprobePlan) -> None:
        for kind, arg, ret in ((ENTRY, interface.pt_regs("arg0"), False), (EXIT, interface.pt_regs("ret"), True)):
            prog = self._prog(cache.program("span_probe.span_program", plan.probe.id, kind, arg, self.follow),
                              ProgType.KPROBE, f"np_{plan.probe.name}", self.maps, plan.probe)
            self._link(attach.attach_kprobe(prog, plan.function, ret=ret))

    @attach.register
    def _(self, plan: UprobePlan) -> None:
        # -p with its children: every process runs the uprobe, and the program keeps theirs (the
        # kernel's own per-process filter knows no children); -p --no-inherit: the kernel's filter.
        follow = self.follow and not self.options.no_inherit
        pid = self.options.pid if self.options.pid is not None and not follow else -1
        for kind, arg, ret in ((ENTRY, interface.pt_regs("arg0"), False), (EXIT, interface.pt_regs("ret"), True)):
            prog = self._prog(cache.program("span_probe.span_program", plan.probe.id, kind, arg, follow),
                              ProgType.KPROBE, f"np_{plan.probe.name}", self.maps, plan.probe)
            self._link(attach.attach_uprobe(prog, plan.target.path, plan.target.offset, ret=ret, pid=pid,
                                            description=f"{'uretprobe' if ret else 'uprobe'}:{plan.target}"))

    @attach.register
    def _(self, plan: KprobeMultiPlan) -> None:
        loss_key = self._shared_loss_key("kernel functions (kprobe_multi: another BPF program ran on the CPU)")
        cookies = [p.id for p in plan.probes]
        for kind, arg, ret in ((ENTRY, interface.pt_regs("arg0"), False), (EXIT, interface.pt_regs("ret"), True)):
            prog = self._prog(cache.program("span_probe.span_program", None, kind, arg, self.follow), ProgType.KPROBE,
                              "np_kmulti", self.maps, loss_key=loss_key,
                              expected_attach_type=AttachType.TRACE_KPROBE_MULTI)
            self._link(attach.attach_kprobe_multi(prog, plan.functions, cookies, ret=ret))

    def _shared_loss_key(self, name: str) -> int:
        """A loss key of its own for a program many probes share: a recursion miss cannot say which
        of them it missed."""
        key = THROUGHPUT_LOSS - 1 - len(self.loss_names)
        self.loss_names[key] = name
        return key

    @attach.register
    def _(self, plan: UprobeMultiPlan) -> None:
        follow = self.follow and not self.options.no_inherit
        pid = self.options.pid if self.options.pid is not None and not follow else 0
        offsets, cookies = [t.offset for t in plan.targets], [p.id for p in plan.probes]
        name = os.path.basename(plan.path)
        loss_key = self._shared_loss_key(f"{name} (uprobe_multi: another BPF program ran on the CPU)")
        for kind, arg, ret in ((ENTRY, interface.pt_regs("arg0"), False), (EXIT, interface.pt_regs("ret"), True)):
            prog = self._prog(cache.program("span_probe.span_program", None, kind, arg, follow), ProgType.KPROBE,
                              f"np_{name}", self.maps, loss_key=loss_key,
                              expected_attach_type=AttachType.TRACE_UPROBE_MULTI)
            self._link(attach.attach_uprobe_multi(prog, plan.path, offsets, cookies, ret=ret, pid=pid))

    @attach.register
    def _(self, plan: NetPairPlan) -> None:
        entry_fmt, exit_fmt = plan.formats
        for kind, tracepoint, fmt, field_names in ((ENTRY, plan.entry, entry_fmt, ("len",)),
                                                   (EXIT, plan.exit, exit_fmt, ("ret", "rc", "len"))):
            arg = interface.Arg.of_field(next((fmt[n] for n in field_names if n in fmt), None))
            prog = self._prog(cache.program("span_probe.span_program", plan.probe.id, kind, arg, self.follow),
                              ProgType.TRACEPOINT, f"np_{plan.probe.name}", self.maps, plan.probe)
            self._link(attach.attach_tracepoint(prog, tracepoint))

    @attach.register
    def _(self, plan: EventPlan) -> None:
        program = cache.program("span_probe.span_program", plan.probe.id, ENTRY, interface.Arg.of_field(plan.field),
                                self.follow)
        prog = self._prog(program, ProgType.TRACEPOINT, f"np_{plan.probe.name}", self.maps, plan.probe)
        self._link(attach.attach_tracepoint(prog, plan.tracepoint))

    @attach.register
    def _(self, plan: XdpPlan) -> None:
        from ..loader.xdp import attach_xdp

        prog = self._prog(cache.program("packets.xdp_program", plan.probe.id, self.options.snaplen), ProgType.XDP,
                          "np_xdp", {"packets": self.maps["packets"], "lost": self.maps["lost"]}, plan.probe)
        try:
            self._link(attach_xdp(prog, plan.ifname, mode=self.options.xdp_mode, method=self.options.xdp_attach))
        except BpfError as err:
            raise SessionError(str(err)) from None

    def follow_processes(self, follow: Map) -> None:
        """Keep the -p map of followed processes: each process a followed one forks joins it (the
        tracker is attached before any probe, so no child is forked unseen)."""
        from ..loader.btf import vmlinux

        program = cache.program("span_probe.fork_program", vmlinux().member_offset("struct task_struct", "tgid"))
        prog = self._prog(program, ProgType.RAW_TRACEPOINT, "np_fork", {"follow": follow})
        self._link(attach.attach_raw_tracepoint(prog, "sched_process_fork"))

    def throughput(self, counts: Map, overflow: Map, bin_ns: int) -> None:
        """Packets and bytes per (network namespace, interface, direction), counted where the
        interface's own counters count them (see packets.throughput_program)."""
        from ..loader.btf import vmlinux

        offsets = interface.Offsets.from_btf(vmlinux())
        netns = 0 if self.options.all_netns else os.stat("/proc/self/ns/net").st_ino
        maps = {"counts": counts, "overflow": overflow}
        for direction, names in ((RX, interface.RX_TRACEPOINTS), (TX, (interface.TX_TRACEPOINT,))):
            prog = self._prog(cache.program("packets.throughput_program", direction, offsets, netns, bin_ns),
                              ProgType.RAW_TRACEPOINT, "np_throughput", maps, loss_key=THROUGHPUT_LOSS)
            for name in names:
                if name in interface.RX_TRACEPOINTS and not (attach.tracefs() / "events/net" / name).is_dir():
                    continue  # not in this kernel (netif_rx_ni_entry went in 5.18)
                self._link(attach.attach_raw_tracepoint(prog, name))
