"""A capture session: plan the probes, attach them, drain the ring buffers in bulk into the trace
file, stop on duration, Ctrl-C or SIGTERM, detach everything, report what was captured and lost.

    with Session(kernel=["ip_rcv"], user=["/usr/bin/python3:Py_BytesMain"], net=True, output="x.trace") as s:
        s.run(duration=10)
    print(s.summary)

Everything a user can get wrong is checked before anything is attached (SessionError, one line);
whatever fails later detaches what was attached so far. The parts live in netprof.capture:
options (what to record), plan, attachers, runner.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from . import outfile
from .capture.attachers import Attacher
from .capture.command import Command, CommandError
from .capture.options import CaptureOptions, OptionError
from .capture.plan import Planner, Probe, SessionError
from .capture.runner import Runner, Sources, Summary
from .loader import attach, privileges
from .loader.maps import Map
from .loader.privileges import Cap, Need
from .loader.ringbuf import RingBuffer
from .loader.syscall import MapType
from .loader.xdp import attach_needs as xdp_attach_needs
from .probes import interface
from .format.tracefile import TraceWriter, new_header

__all__ = ["CaptureOptions", "Probe", "Session", "SessionError", "Summary"]

PACKET_RING = 1 << 25
# The throughput map: (10 ms bin, netns, interface, direction) keys not yet flushed; at 10 flushes a
# second that is room for ~3,000 interface directions. Beyond it, packets are counted as lost.
THROUGHPUT_ENTRIES = 1 << 16
FOLLOWED_PROCESSES = 1 << 16  # -p and its descendants


class Session:
    """``Session(CaptureOptions(...))``, or the same settings as keywords: ``Session(net=True)``."""

    def __init__(self, options: CaptureOptions | None = None, *, status: bool = False, bin_ms: float = 10.0,
                 **settings: Any):
        try:
            self.options = options if options is not None else CaptureOptions(**settings)
        except OptionError as err:
            raise SessionError(str(err)) from None
        except TypeError as err:  # a keyword that is no setting
            raise SessionError(f"Session: {err}") from None
        o = self.options
        if o.sockets:
            o.memory = True
        if o.command and o.pid is not None:
            raise SessionError("give -p PID or a command to run, not both")
        if not (o.kernel or o.user or o.net or o.tracepoints or o.xdp or o.throughput or o.memory):
            raise SessionError("nothing to capture: name kernel functions (-k), user functions (-u), --net, "
                               "an interface (-x), --throughput or --memory")
        if not (isinstance(bin_ms, (int, float)) and 0.001 <= bin_ms <= 1000):  # false for nan too
            raise SessionError(f"throughput bin of {bin_ms} ms: expected 0.001 to 1000 ms")
        self.output, self.status, self.bin_ns = Path(o.output), status, int(bin_ms * 1e6)
        self.probes: list[Probe] = []
        self.notes: list[str] = []  # one line each, for the user before the capture starts
        self.summary = Summary(output=str(self.output))
        self._stack = contextlib.ExitStack()   # maps, ring buffers, the trace file
        self._links = contextlib.ExitStack()   # programs and attachments: closed first
        self._runner: Runner | None = None
        self._stop_asked = False
        self.control: Map | None = None
        self.command: Command | None = None  # with a command: it, started, held before its exec until run()

    # --- privileges: the capabilities asked for, not uid 0 ----------------------------------------

    def needs(self) -> list[Need]:
        """The capabilities this capture needs (measured: netprof/loader/privileges.py)."""
        o = self.options
        needs = [Need(Cap.BPF, "maps and ring buffers")]
        if o.kernel:
            needs.append(Need(Cap.PERFMON, "kernel functions"))
        if o.net or o.tracepoints or o.throughput:
            needs.append(Need(Cap.PERFMON, "tracepoints"))
            needs += attach.tracefs_needs()
        if o.user:
            needs.append(Need(Cap.PERFMON, "uprobes"))
            if not attach.uprobes_permitted():
                needs.append(Need(Cap.SYS_ADMIN, "uprobes"))
        for ifname in o.xdp:
            needs += xdp_attach_needs(ifname, o.xdp_attach)
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
        if self.options.command:
            try:
                self.command = Command(self.options.command)
                pid = self.command.start()  # held before its exec: followed like -p from its first instruction
            except CommandError as err:
                raise SessionError(str(err)) from None
            self._stack.callback(self.command.abandon)  # never released (setup failed): it exits, unrun
            self.options = dataclasses.replace(self.options, pid=pid, no_inherit=False)
        planner = Planner(self.options)
        plans = planner.plan()
        self.probes, self.notes = planner.probes, planner.notes
        try:
            self._setup(plans)
        except BaseException:
            self._links.close()
            self._stack.close()
            raise
        return self

    def _setup(self, plans: list) -> None:
        o, enter = self.options, self._stack.enter_context
        events = enter(RingBuffer.create(o.buffer << 20, "netprof_events"))
        lost = enter(Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64,
                                max_entries=interface.MAX_PROBES, name="netprof_lost"))
        sources = Sources(events, lost)
        self.control = enter(Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint32, max_entries=1,
                                        name="netprof_ctl"))
        maps = {"events": events.map, "lost": lost, "control": self.control}
        if o.xdp:
            sources.packets = enter(RingBuffer.create(PACKET_RING, "netprof_packets"))
            maps["packets"] = sources.packets.map
        attacher = Attacher(o, self._links, maps)
        if o.pid is not None:
            maps["follow"] = follow = enter(Map.create(MapType.HASH, key=ctypes.c_uint32, value=ctypes.c_uint64,
                                                       max_entries=FOLLOWED_PROCESSES, name="netprof_follow"))
            follow[_process_of(o.pid)] = 1  # a thread id given to -p means its process
            if not o.no_inherit:
                attacher.follow_processes(follow)  # before any probe: no child is forked unseen
        for plan in plans:
            attacher.attach(plan)
        if o.throughput:
            sources.counts = enter(Map.create(MapType.PERCPU_HASH, key_size=interface.THROUGHPUT_KEY,
                                              value_size=interface.THROUGHPUT_VALUE, max_entries=THROUGHPUT_ENTRIES,
                                              name="netprof_counts"))
            sources.overflow = enter(Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64,
                                                max_entries=1, name="netprof_tover"))
            attacher.throughput(sources.counts, sources.overflow, self.bin_ns)
        sources.programs, sources.loss_names = attacher.programs, attacher.loss_names
        writer = TraceWriter(self.output, new_header(
            [p.row() for p in self.probes], o.snaplen, bin_ns=self.bin_ns, pid=o.pid,
            command=" ".join(sys.argv), interfaces=_interfaces(), netns=os.stat("/proc/self/ns/net").st_ino,
            all_netns=o.all_netns))
        self._stack.callback(writer.close)
        self._runner = Runner(o, self.probes, sources, writer, self.summary, self.bin_ns, self.status)
        if self._stop_asked:
            self._runner.stopped.set()
        self.control[0] = 1  # every probe is attached: start recording (see span_probe.span_program)

    # --- running ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask run() to finish (safe from a signal handler, also while attaching)."""
        self._stop_asked = True
        if self._runner is not None:
            self._runner.stopped.set()

    def run(self, duration: float | None = None) -> Summary:
        """Record until ``duration`` ends, stop() is called or the command (if any) exits."""
        if self._runner is None:
            raise RuntimeError("run() a Session inside its with block")
        if self.command is not None and self.command.process is not None and not self.command.exited.is_set():
            self.command.release(on_exit=self.stop)
        return self._runner.run(duration)

    # --- teardown ---------------------------------------------------------------------------------

    def __exit__(self, *exc: object) -> None:
        try:
            try:
                if self.control is not None and self.control.fd >= 0:
                    self.control[0] = 0  # stop every span probe at once, then detach at the kernel's pace
            finally:
                self._links.close()  # detach first: nothing arrives after the last drain
            if self._runner is not None and self._runner.writer.fd >= 0:
                if self.command is not None and self.command.process is not None:
                    self._runner.name_process(self.command.pid, self.command.name)
                self._runner.finish()
        finally:
            self._stack.close()
            if self.status:
                print(file=sys.stderr)


def _process_of(pid: int) -> int:
    """The process (thread group) that ``pid`` belongs to: itself, unless it names a thread."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    return pid


def _interfaces() -> dict[str, str]:
    """{ifindex: name} of this network namespace (from sysfs: the socket module is slow to import)."""
    out = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/sys/class/net"):
            with contextlib.suppress(OSError, ValueError), open(f"/sys/class/net/{name}/ifindex") as f:
                out[str(int(f.read()))] = name
    return dict(sorted(out.items(), key=lambda item: int(item[0])))
