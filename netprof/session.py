"""A capture session: load the probes, attach them, drain the ring buffers in bulk into the trace
file, stop on duration, Ctrl-C or SIGTERM, detach everything, report what was captured and lost.

    with Session(kernel=["ip_rcv"], user=["/usr/bin/curl:main"], net=True, output="x.trace") as s:
        s.run(duration=10)
    print(s.summary)

Everything a user can get wrong is checked before anything is attached (SessionError, one line);
whatever fails later detaches what was attached so far.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loader import attach, elf, privileges
from .loader.maps import Map
from .loader.privileges import Cap, Need
from .loader.program import load
from .loader.ringbuf import RingBuffer
from .loader.syscall import AttachType, BpfError, MapType, ProgType
from .loader.xdp import attach_needs as xdp_attach_needs
from .probes import layout, packets, spans
from .probes.layout import ENTRY, EXIT, RX, TX
from . import outfile
from .tracefile import Kind, TraceWriter, new_header

log = logging.getLogger(__name__)

# The network stack's own entry/exit tracepoints: kernel spans on kernels without kprobes.
NET_SPANS = [
    ("netif_receive_skb", "net:netif_receive_skb_entry", "net:netif_receive_skb_exit"),
    ("napi_gro_receive", "net:napi_gro_receive_entry", "net:napi_gro_receive_exit"),
    ("netif_rx", "net:netif_rx_entry", "net:netif_rx_exit"),
    ("dev_xmit", "net:net_dev_start_xmit", "net:net_dev_xmit"),
]
NET_EVENTS = [("napi_poll", "napi:napi_poll", "work")]  # no entry tracepoint: an instant event

PACKET_RING = 1 << 25
POLL_SECONDS = 0.01
FIRST_POLL_SECONDS = 0.001  # until the first event: it shows up within a millisecond, not ten
THROUGHPUT_FLUSH_SECONDS = 0.1
# The throughput map: (10 ms bin, netns, interface, direction) keys not yet flushed; at 10 flushes a
# second that is room for ~3,000 interface directions. Beyond it, packets are counted as lost.
THROUGHPUT_ENTRIES = 1 << 16
FOLLOWED_PROCESSES = 1 << 16  # -p and its descendants
THROUGHPUT_LOSS = -1  # the loss counters' key for packets the throughput map had no room for


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
class Summary:
    seconds: float = 0.0
    events: int = 0
    packets: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    output: str = ""

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())


class Session:
    def __init__(self, kernel: list[str] = (), user: list[str] = (), net: bool = False,
                 tracepoints: list[str] = (), xdp: list[str] = (), throughput: bool = False,
                 memory: bool = False, pid: int | None = None, output: str | os.PathLike = "netprof.trace",
                 snaplen: int = 64, memory_interval: float = 0.01, bin_ms: float = 10.0,
                 xdp_mode: str = "auto", xdp_attach: str = "auto", status: bool = False, sockets: bool = False,
                 buffer_mib: int = 16, all_netns: bool = False, inherit: bool = True):
        self.kernel, self.user, self.net, self.tracepoints = list(kernel), list(user), net, list(tracepoints)
        self.xdp, self.throughput, self.memory, self.pid = list(dict.fromkeys(xdp)), throughput, memory, pid
        self.output, self.snaplen, self.memory_interval = Path(output), snaplen, memory_interval
        self.bin_ns, self.xdp_mode, self.status = int(bin_ms * 1e6), xdp_mode, status
        if xdp_attach not in ("auto", "bpf_link", "netlink"):
            raise SessionError(f"XDP attach method {xdp_attach!r} is not auto, bpf_link or netlink")
        self.xdp_attach = xdp_attach
        self.all_netns = all_netns  # throughput of every network namespace, not only this one
        self.inherit = inherit      # -p: also the processes it forks during the capture (as perf record -p)
        self._follow = pid is not None
        self.sockets = sockets  # with memory: also the kernel's socket buffer memory
        if buffer_mib < 1 or buffer_mib & (buffer_mib - 1) or buffer_mib > 4096:
            raise SessionError(f"ring buffer size {buffer_mib} MiB must be a power of two between 1 and 4096")
        self.ring_bytes = buffer_mib << 20
        if sockets:
            self.memory = memory = True
        if not (self.kernel or self.user or self.net or self.tracepoints or self.xdp or throughput or memory):
            raise SessionError("nothing to capture: name kernel functions (-k), user functions (-u), --net, "
                               "an interface (-x), --throughput or --memory")
        if snaplen <= 0 or snaplen % 8 or snaplen > 1024:
            raise SessionError(f"snap length {snaplen} must be a multiple of 8 between 8 and 1024")
        if not 0.001 <= memory_interval <= 60:  # false for nan too
            raise SessionError(f"memory interval {memory_interval} s must be between 1 ms and 60 s")
        self.probes: list[Probe] = []
        self.summary = Summary(output=str(self.output))
        self._stop = threading.Event()
        self._stack = contextlib.ExitStack()   # maps, ring buffers, the trace file
        self._links = contextlib.ExitStack()   # programs and attachments: closed first
        self._pending_loss = 0
        self._programs: list = []             # (probe id, program): the kernel counts their recursion misses
        self._missed: dict[int, tuple[int, int]] = {}  # id(program) -> (probe id, misses), last read
        self._writer: TraceWriter | None = None
        self._plan: list = []
        self._lost_seen: dict[int, int] = {}
        self._pids_seen: set[int] = set()
        self._netns_seen: set[int] = set()
        self._comms: dict[str, str] = {}  # pid -> comm, read when the pid is first seen
        self._user_probe_ids: list[int] = []

    # --- planning: everything checked before anything is attached ---------------------------------

    def _add(self, name: str, kind: str, mechanism: str, target: str = "", cost: float | None = None) -> Probe:
        if any(p.name == name for p in self.probes):
            name = f"{name}#{len(self.probes)}"  # two targets with one short name: keep them apart
        probe = Probe(len(self.probes), name, kind, mechanism, target, cost)
        self.probes.append(probe)
        return probe

    def _plan_kernel(self) -> None:
        if not self.kernel:
            return
        from .loader.features import features

        found = features()
        for function in self.kernel:
            why_not = []
            if found.has("fentry"):
                from .loader.btf import BtfError, vmlinux

                try:
                    fn = vmlinux().function(function)
                except BtfError as err:
                    why_not.append(str(err))
                else:
                    self._plan.append(("fentry", self._add(function, "kernel", "fentry", function), fn))
                    continue
            else:
                why_not.append("this kernel refuses fentry")
            if found.has("kprobe"):
                if _in_kallsyms(function):
                    self._plan.append(("kprobe", self._add(function, "kernel", "kprobe", function), function))
                    continue
                why_not.append(f"{function!r} is not in /proc/kallsyms (misspelt, inlined, or in a module that is "
                               "not loaded)")
            else:
                why_not.append("this kernel has no kprobes")
            raise SessionError(f"cannot probe kernel function {function!r}: {'; '.join(why_not)}; use --net "
                               "tracepoints, or run netprof in the vm/ guest")

    def _plan_user(self) -> None:
        for spec in self.user:
            try:
                target = elf.resolve_target(spec)
            except elf.ElfError as err:
                raise SessionError(str(err)) from None
            cost = elf.site_cost(target)
            name = f"{Path(target.path).name}:{target.symbol}"
            probe = self._add(name, "user", "uprobe", str(target), cost.approx_us if cost else None)
            if cost is not None and not cost.emulated:
                log.info("%s: its first instruction is %s", name, cost.description)
            self._plan.append(("uprobe", probe, target))

    def _plan_net(self) -> None:
        pairs = NET_SPANS if self.net else []
        for name, entry, exit_ in pairs:
            try:
                formats = (attach.tracepoint_format(*entry.split(":")), attach.tracepoint_format(*exit_.split(":")))
            except BpfError:
                log.warning("tracepoints %s/%s missing on this kernel: no %s spans", entry, exit_, name)
                continue
            probe = self._add(name, "net", "tracepoint", f"{entry} -> {exit_}")
            self._plan.append(("net", probe, (entry, exit_, formats)))
        events = list(NET_EVENTS) if self.net else []
        events += [(tp.split(":", 1)[1], tp, None) for tp in self.tracepoints]
        for name, tp, arg in events:
            category, _, event = tp.partition(":")
            try:
                fmt = attach.tracepoint_format(category, event)
            except BpfError as err:
                raise SessionError(str(err)) from None
            probe = self._add(name, "event", "tracepoint", tp)
            self._plan.append(("event", probe, (tp, fmt.get(arg) if arg else None)))

    def _plan_xdp(self) -> None:
        import socket

        for ifname in self.xdp:
            try:
                socket.if_nametoindex(ifname)
            except OSError:
                raise SessionError(f"no network interface {ifname!r} here (see: ip link)") from None
            probe = self._add(f"xdp:{ifname}", "xdp", "xdp", ifname)
            self._plan.append(("xdp", probe, ifname))

    # --- privileges: the capabilities asked for, not uid 0 ----------------------------------------

    def needs(self) -> list[Need]:
        """The capabilities this capture needs (measured: netprof/loader/privileges.py)."""
        needs = [Need(Cap.BPF, "maps and ring buffers")]
        if self.kernel:
            needs.append(Need(Cap.PERFMON, "kernel functions"))
        if self.net or self.tracepoints or self.throughput:
            needs.append(Need(Cap.PERFMON, "tracepoints"))
            needs += attach.tracefs_needs()
        if self.user:
            needs.append(Need(Cap.PERFMON, "uprobes"))
            if not attach.uprobes_permitted():
                needs.append(Need(Cap.SYS_ADMIN, "uprobes"))
        for ifname in self.xdp:
            needs += xdp_attach_needs(ifname, self.xdp_attach)
        return needs

    # --- setup ------------------------------------------------------------------------------------

    def __enter__(self) -> Session:
        try:
            privileges.require(self.needs())
        except privileges.PrivilegeError as err:
            raise SessionError(str(err)) from None
        try:  # before anything is attached
            outfile.check_target(self.output)
        except outfile.OutputError as err:
            raise SessionError(str(err)) from None
        self._plan_kernel()
        self._plan_user()
        self._plan_net()
        self._plan_xdp()
        try:
            self._setup()
        except BaseException:
            self._links.close()
            self._stack.close()
            raise
        return self

    def _setup(self) -> None:
        enter = self._stack.enter_context
        self.lost = enter(Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64,
                                     max_entries=spans.MAX_PROBES, name="netprof_lost"))
        self.events = enter(RingBuffer.create(self.ring_bytes, "netprof_events"))
        self.packets = enter(RingBuffer.create(PACKET_RING, "netprof_packets")) if self.xdp else None
        self.counts = enter(Map.create(MapType.PERCPU_HASH, key_size=packets.THROUGHPUT_KEY,
                                       value_size=packets.THROUGHPUT_VALUE, max_entries=THROUGHPUT_ENTRIES,
                                       name="netprof_counts")) if self.throughput else None
        self.overflow = enter(Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=1,
                                         name="netprof_tover")) if self.throughput else None
        self.control = enter(Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint32, max_entries=1,
                                        name="netprof_ctl"))
        maps = {"events": self.events.map, "lost": self.lost, "control": self.control}
        if self._follow:
            maps["follow"] = self._follow_process()
        for mechanism, probe, what in self._plan:
            getattr(self, f"_attach_{mechanism}")(probe, what, maps)
        if self.throughput:
            self._attach_throughput()
        self._user_probe_ids = [p.id for p in self.probes if p.kind == "user"]
        self._writer = TraceWriter(self.output, new_header(
            [p.row() for p in self.probes], self.snaplen, bin_ns=self.bin_ns, pid=self.pid,
            command=" ".join(sys.argv), interfaces=_interfaces(), netns=os.stat("/proc/self/ns/net").st_ino,
            all_netns=self.all_netns))
        self._stack.callback(self._writer.close)
        self.control[0] = 1  # every probe is attached: start recording (see spans.span_program)

    def _follow_process(self) -> Map:
        """The processes -p records, as a hash map the probes look up: the one given, and from now
        on each process it (or one of those) forks, unless inherit is off. The fork tracker is
        attached before any probe, so no child is forked unseen."""
        follow = self._links.enter_context(Map.create(MapType.HASH, key=ctypes.c_uint32, value=ctypes.c_uint64,
                                                      max_entries=FOLLOWED_PROCESSES, name="netprof_follow"))
        follow[self.pid] = 1
        if self.inherit:
            from .loader.btf import vmlinux

            program = spans.fork_program(vmlinux().member_offset("struct task_struct", "tgid"))
            prog = self._prog(program, ProgType.RAW_TRACEPOINT, "np_fork", {"follow": follow})
            self._link(attach.attach_raw_tracepoint(prog, "sched_process_fork"))
        return follow

    def _prog(self, program, prog_type: ProgType, name: str, maps: dict, probe: Probe | None = None, **kwargs):
        prog = self._links.enter_context(load(program, prog_type, name=name, maps=maps, **kwargs))
        if probe is not None:
            self._programs.append((probe.id, prog))
        return prog

    def _link(self, link) -> None:
        self._links.enter_context(link)

    def _attach_fentry(self, probe: Probe, fn, maps: dict) -> None:
        try:
            self._attach_fentry_programs(probe, fn, maps)
        except BpfError as err:
            from .loader.features import features

            if not (features().has("kprobe") and _in_kallsyms(probe.target)):
                raise
            log.info("fentry on %s refused (%s): using kprobes", probe.target, err)
            probe.mechanism = "kprobe"
            self._attach_kprobe(probe, probe.target, maps)

    def _attach_fentry_programs(self, probe: Probe, fn, maps: dict) -> None:
        nargs = fn.nargs
        ends = [(AttachType.TRACE_FENTRY, ENTRY, spans.Arg(0) if nargs else None),
                (AttachType.TRACE_FEXIT, EXIT, spans.Arg(8 * nargs))]
        for attach_type, kind, arg in ends:
            prog = self._prog(spans.span_program(probe.id, kind, arg, self.pid), ProgType.TRACING,
                              f"np_{probe.name}", maps, probe, expected_attach_type=attach_type, attach_btf_id=fn.id)
            self._link(attach.attach_tracing(prog))

    def _attach_kprobe(self, probe: Probe, function: str, maps: dict) -> None:
        for kind, arg, ret in ((ENTRY, spans.pt_regs("arg0"), False), (EXIT, spans.pt_regs("ret"), True)):
            prog = self._prog(spans.span_program(probe.id, kind, arg, self.pid), ProgType.KPROBE,
                              f"np_{probe.name}", maps, probe)
            self._link(attach.attach_kprobe(prog, function, ret=ret))

    def _attach_uprobe(self, probe: Probe, target: elf.UprobeTarget, maps: dict) -> None:
        for kind, arg, ret in ((ENTRY, spans.pt_regs("arg0"), False), (EXIT, spans.pt_regs("ret"), True)):
            # -p with its children: every process runs the uprobe, and the program keeps theirs (the
            # kernel's own per-process filter knows no children); -p --no-inherit: the kernel's filter.
            follow = self._follow and self.inherit
            prog = self._prog(spans.span_program(probe.id, kind, arg, follow), ProgType.KPROBE, f"np_{probe.name}",
                              maps, probe)
            self._link(attach.attach_uprobe(prog, target.path, target.offset, ret=ret,
                                            pid=self.pid if self.pid is not None and not follow else -1,
                                            description=f"{'uretprobe' if ret else 'uprobe'}:{target}"))

    def _attach_net(self, probe: Probe, what, maps: dict) -> None:
        entry, exit_, (entry_fmt, exit_fmt) = what
        for kind, tracepoint, fmt, field_names in ((ENTRY, entry, entry_fmt, ("len",)),
                                                   (EXIT, exit_, exit_fmt, ("ret", "rc", "len"))):
            arg = spans.Arg.of_field(next((fmt[n] for n in field_names if n in fmt), None))
            prog = self._prog(spans.span_program(probe.id, kind, arg, self.pid), ProgType.TRACEPOINT,
                              f"np_{probe.name}", maps, probe)
            self._link(attach.attach_tracepoint(prog, tracepoint))

    def _attach_event(self, probe: Probe, what, maps: dict) -> None:
        tracepoint, field_ = what
        program = spans.span_program(probe.id, ENTRY, spans.Arg.of_field(field_), self._follow)
        prog = self._prog(program, ProgType.TRACEPOINT, f"np_{probe.name}", maps, probe)
        self._link(attach.attach_tracepoint(prog, tracepoint))

    def _attach_xdp(self, probe: Probe, ifname: str, maps: dict) -> None:
        from .loader.xdp import attach_xdp

        prog = self._prog(packets.xdp_program(probe.id, self.snaplen), ProgType.XDP, "np_xdp",
                          {"packets": self.packets.map, "lost": self.lost}, probe)
        try:
            self._link(attach_xdp(prog, ifname, mode=self.xdp_mode, method=self.xdp_attach))
        except BpfError as err:
            raise SessionError(str(err)) from None

    def _attach_throughput(self) -> None:
        """Packets and bytes per (network namespace, interface, direction), counted where the
        interface's own counters count them (see packets.throughput_program)."""
        from .loader.btf import vmlinux

        offsets = packets.Offsets.from_btf(vmlinux())
        netns = 0 if self.all_netns else os.stat("/proc/self/ns/net").st_ino
        maps = {"counts": self.counts, "overflow": self.overflow}
        for direction, names in ((RX, packets.RX_TRACEPOINTS), (TX, (packets.TX_TRACEPOINT,))):
            prog = self._prog(packets.throughput_program(direction, offsets, netns, self.bin_ns),
                              ProgType.RAW_TRACEPOINT, "np_throughput", maps)
            for name in names:
                if name in packets.RX_TRACEPOINTS and not (attach.tracefs() / "events/net" / name).is_dir():
                    continue  # not in this kernel (netif_rx_ni_entry went in 5.18)
                self._link(attach.attach_raw_tracepoint(prog, name))

    # --- running ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask run() to finish (safe from a signal handler)."""
        self._stop.set()

    def run(self, duration: float | None = None) -> Summary:
        start = time.monotonic()
        next_memory = next_flush = next_status = start
        while not self._stop.is_set():
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            self.events.wait(POLL_SECONDS if self.summary.events else FIRST_POLL_SECONDS)
            self._drain()
            now = time.monotonic()
            if self.memory and now >= next_memory:
                self._sample_memory()
                next_memory = now + self.memory_interval
            if now >= next_flush:
                self._flush_throughput(final=False)
                self._check_loss()
                next_flush = now + THROUGHPUT_FLUSH_SECONDS
            if self.status and now >= next_status:
                self._show_status(now - start)
                next_status = now + 0.5
        self.summary.seconds = time.monotonic() - start
        return self.summary

    def _drain(self) -> None:
        records, count = self.events.read_packed(layout.SPAN.size)
        if count or self._pending_loss:
            self._writer.write(Kind.SPANS, records, count, lost=self._pending_loss)
            self._pending_loss = 0
            self.summary.events += count
            if count and self._user_probe_ids:
                self._note_user_pids(records)  # after the chunk is written: numpy is slow to import
        if self.packets is not None:
            batch, count = self.packets.read_packed(layout.xdp_packet(self.snaplen).size)
            if count:
                self._writer.write(Kind.XDP, batch, count)
                self.summary.packets += count

    def _note_user_pids(self, records: bytearray) -> None:
        """Remember the processes the user probes fired in, and their names while they run: the
        memory sampler follows their RSS, the viewer names their lanes."""
        import numpy as np  # only with user probes: numpy stays off the plain capture path

        spans = np.frombuffer(records, layout.SPAN.dtype())
        mine = spans["pid"][np.isin(spans["probe"], self._user_probe_ids)]
        for pid in set(np.unique(mine).tolist()) - self._pids_seen:
            with contextlib.suppress(OSError):
                self._comms[str(pid)] = Path(f"/proc/{pid}/comm").read_text().strip()
            self._pids_seen.add(pid)

    def _lost_by_probe(self) -> dict[int, int]:
        """Per probe: records the ring buffer had no room for, plus hits the kernel skipped because
        another BPF program was already running on that CPU (bpf_prog_info.recursion_misses)."""
        out = {}
        for probe in self.probes:
            total = sum(self.lost[probe.id])
            if total:
                out[probe.id] = total
        for probe_id, prog in self._programs:
            if prog.fd >= 0:
                self._missed[id(prog)] = (probe_id, prog.info().recursion_misses)
        for probe_id, missed in self._missed.values():
            if missed:
                out[probe_id] = out.get(probe_id, 0) + missed
        if self.overflow is not None and self.overflow[0]:
            out[THROUGHPUT_LOSS] = self.overflow[0]
        return out

    def _loss_name(self, probe_id: int) -> str:
        return "throughput (its map was full)" if probe_id == THROUGHPUT_LOSS else self.probes[probe_id].name

    def _check_loss(self) -> None:
        """Read the per-probe loss counters; the news goes into the next chunk and a LOSS chunk."""
        lost = self._lost_by_probe()
        if lost == self._lost_seen:
            return
        self._pending_loss += sum(lost.values()) - sum(self._lost_seen.values())
        self._lost_seen = lost
        self._writer.write_json(Kind.LOSS, {self._loss_name(i): n for i, n in lost.items()})

    def _sample_memory(self) -> None:
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        samples = [(now, layout.MEMORY_SYSTEM, _system_memory_used())]
        if self.sockets:
            samples.append((now, layout.MEMORY_SOCKETS, _socket_memory()))
        pids = set(self._pids_seen) | ({self.pid} if self.pid else set())
        for pid in sorted(pids):
            rss = _rss(pid)
            if rss is not None:
                samples.append((now, pid, rss))
        self._writer.write(Kind.MEMORY, b"".join(layout.MEMORY.pack(*sample) for sample in samples), len(samples))

    def _flush_throughput(self, final: bool) -> None:
        if self.counts is None:
            return
        current = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // self.bin_ns
        rows, done = [], []
        for key, values, n in self.counts.batches():
            counters = memoryview(values).cast("Q")  # per entry, per CPU: packets, bytes
            per_entry = len(counters) // n
            for i in range(n):
                raw_key = key[i * packets.THROUGHPUT_KEY:(i + 1) * packets.THROUGHPUT_KEY]
                bin_, ifindex, netns, direction, _ = packets.THROUGHPUT_KEY_STRUCT.unpack(raw_key)
                if not final and bin_ >= current - 1:
                    continue  # still filling
                mine = counters[i * per_entry:(i + 1) * per_entry]
                rows.append((bin_ * self.bin_ns, ifindex, direction, sum(mine[0::2]), sum(mine[1::2]), netns))
                self._netns_seen.add(netns)
                done.append(raw_key)
        for raw_key in done:
            with contextlib.suppress(KeyError):
                del self.counts[raw_key]
        if rows:
            self._writer.write(Kind.THROUGHPUT, b"".join(layout.THROUGHPUT.pack(*row) for row in sorted(rows)), len(rows))

    def _show_status(self, elapsed: float) -> None:
        rate = self.summary.events / elapsed if elapsed > 0 else 0
        lost = sum(self._lost_seen.values())
        print(f"\r{elapsed:7.1f} s  {self.summary.events:>11,} events  {rate:>11,.0f}/s  "
              f"{self.summary.packets:>9,} packets  lost {lost:,}   ", end="", file=sys.stderr, flush=True)

    # --- teardown ---------------------------------------------------------------------------------

    def __exit__(self, *exc: object) -> None:
        try:
            try:
                if getattr(self, "control", None) is not None and self.control.fd >= 0:
                    self.control[0] = 0  # stop every span probe at once, then detach at the kernel's pace
            finally:
                self._links.close()  # detach first: nothing arrives after the last drain
            if self._writer is not None and self._writer.fd >= 0:
                self._finish()
        finally:
            self._stack.close()
            if self.status:
                print(file=sys.stderr)

    def _finish(self) -> None:
        self._drain()
        self._flush_throughput(final=True)
        self._check_loss()
        self._drain()  # carries the last loss count
        self.summary.lost = {self._loss_name(i): n for i, n in self._lost_seen.items()}
        self._writer.write_json(Kind.NAMES, self._names())
        self._writer.write_json(Kind.END, {"seconds": self.summary.seconds, "events": self.summary.events,
                                           "packets": self.summary.packets, "lost": self.summary.lost})
        self.summary.bytes_written = self._writer.bytes


    def _names(self) -> dict:
        """What the records' numbers name: the processes seen (pid -> comm) and the network
        namespaces throughput was counted in (inode -> its name and interfaces)."""
        from .loader import netns

        processes = dict(self._comms)
        if self.pid and str(self.pid) not in processes:
            with contextlib.suppress(OSError):
                processes[str(self.pid)] = Path(f"/proc/{self.pid}/comm").read_text().strip()
        return {"processes": processes, "netns": netns.describe(self._netns_seen)}


def _in_kallsyms(function: str) -> bool:
    try:
        with open("/proc/kallsyms") as f:
            return any(line.split()[2] == function for line in f if function in line)
    except OSError:
        return True  # cannot tell: let the attach say


def _interfaces() -> dict[str, str]:
    """{ifindex: name} of this network namespace (from sysfs: the socket module is slow to import)."""
    out = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/sys/class/net"):
            with contextlib.suppress(OSError, ValueError), open(f"/sys/class/net/{name}/ifindex") as f:
                out[str(int(f.read()))] = name
    return dict(sorted(out.items(), key=lambda item: int(item[0])))


def _system_memory_used() -> int:
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
    return fields["MemTotal"] - fields.get("MemAvailable", fields.get("MemFree", 0))


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _socket_memory() -> int:
    """Bytes of socket buffers the kernel holds: the pages charged to TCP and UDP sockets (sk_buffs
    queued for sending or reading, their truesize) and IP fragments awaiting reassembly."""
    total = 0
    with contextlib.suppress(OSError), open("/proc/net/sockstat") as f:
        for line in f:
            proto, _, rest = line.partition(":")
            fields = rest.split()
            pairs = dict(zip(fields[::2], fields[1::2], strict=False))
            if proto in ("TCP", "UDP") and "mem" in pairs:
                total += int(pairs["mem"]) * _PAGE
            elif proto == "FRAG" and "memory" in pairs:
                total += int(pairs["memory"])
    return total


def _rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
