"""Running a capture: drain the ring buffers into the trace file in bulk, sample memory, flush the
kernel's throughput bins, keep the loss counts, until the duration ends or stop() is called; then
write what the numbers name and the end record."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..loader.maps import Map
from ..loader.program import BpfProgram
from ..loader.ringbuf import RingBuffer
from ..format import layout
from ..probes import interface
from ..format.tracefile import Kind, TraceWriter
from .options import CaptureOptions
from .plan import Probe

POLL_SECONDS = 0.01
FIRST_POLL_SECONDS = 0.001  # until the first event: it shows up within a millisecond, not ten
THROUGHPUT_FLUSH_SECONDS = 0.1
THROUGHPUT_LOSS = -1  # the loss counters' key for packets the throughput map had no room for


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


@dataclass
class Sources:
    """What the runner reads: the rings, the kernel's counters, and the programs whose recursion
    misses count as loss."""

    events: RingBuffer
    lost: Map                                   # per probe, per CPU: records the ring had no room for
    packets: RingBuffer | None = None
    counts: Map | None = None                   # throughput, per (bin, netns, ifindex, direction)
    overflow: Map | None = None                 # packets the throughput map had no room for
    programs: list[tuple[int, BpfProgram]] = field(default_factory=list)
    loss_names: dict[int, str] = field(default_factory=dict)  # loss keys that name no probe


def _yield_to_traced_threads() -> None:
    """Run the drain as a batch thread: it still gets its fair share of a busy CPU, but its
    wake-ups every few milliseconds no longer preempt a traced thread on the same CPU, which
    would add the drain's time to whatever span that thread was in (measured: a 2 µs function's
    mean read up to 5 µs on 2 CPUs, its median unchanged)."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # this thread only


class Runner:
    def __init__(self, options: CaptureOptions, probes: list[Probe], sources: Sources, writer: TraceWriter,
                 summary: Summary, bin_ns: int, status: bool = False):
        self.options, self.probes, self.sources, self.writer = options, probes, sources, writer
        self.summary, self.bin_ns, self.status = summary, bin_ns, status
        self.stopped = threading.Event()
        self._pending_loss = 0
        self._missed: dict[int, tuple[int, int]] = {}  # id(program) -> (probe id, misses), last read
        self._lost_seen: dict[int, int] = {}
        self._pids_seen: set[int] = set()
        self._netns_seen: set[int] = set()
        self._comms: dict[str, str] = {}  # pid -> comm, read when the pid is first seen
        self._user_probe_ids = [p.id for p in probes if p.kind == "user"]

    def run(self, duration: float | None = None) -> Summary:
        _yield_to_traced_threads()
        start = time.monotonic()
        next_memory = next_flush = next_status = start
        interval = self.options.memory_interval / 1000
        while not self.stopped.is_set():
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            self.sources.events.wait(POLL_SECONDS if self.summary.events else FIRST_POLL_SECONDS)
            self.drain()
            now = time.monotonic()
            if self.options.memory and now >= next_memory:
                self._sample_memory()
                next_memory = now + interval
            if now >= next_flush:
                self._flush_throughput(final=False)
                self._check_loss()
                next_flush = now + THROUGHPUT_FLUSH_SECONDS
            if self.status and now >= next_status:
                self._show_status(now - start)
                next_status = now + 0.5
        self.summary.seconds = time.monotonic() - start
        return self.summary

    def drain(self) -> None:
        records, count = self.sources.events.read_packed(layout.SPAN.size)
        if count or self._pending_loss:
            self.writer.write(Kind.SPANS, records, count, lost=self._pending_loss)
            self._pending_loss = 0
            self.summary.events += count
            if count and self._user_probe_ids:
                self._note_user_pids(records)  # after the chunk is written: numpy is slow to import
        if self.sources.packets is not None:
            batch, count = self.sources.packets.read_packed(layout.xdp_packet(self.options.snaplen).size)
            if count:
                self.writer.write(Kind.XDP, batch, count)
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
            total = sum(self.sources.lost[probe.id])
            if total:
                out[probe.id] = total
        for probe_id, prog in self.sources.programs:
            if prog.fd >= 0:
                self._missed[id(prog)] = (probe_id, prog.info().recursion_misses)
        for probe_id, missed in self._missed.values():
            if missed:
                out[probe_id] = out.get(probe_id, 0) + missed
        overflow = self.sources.overflow
        if overflow is not None and overflow.fd >= 0 and overflow[0]:
            out[THROUGHPUT_LOSS] = out.get(THROUGHPUT_LOSS, 0) + overflow[0]
        return out

    def _loss_name(self, probe_id: int) -> str:
        if probe_id == THROUGHPUT_LOSS:
            return "throughput (its map was full, or another BPF program ran on the CPU)"
        if probe_id in self.sources.loss_names:
            return self.sources.loss_names[probe_id]
        return self.probes[probe_id].name

    def _check_loss(self) -> None:
        """Read the per-probe loss counters; the news goes into the next chunk and a LOSS chunk."""
        lost = self._lost_by_probe()
        if lost == self._lost_seen:
            return
        self._pending_loss += sum(lost.values()) - sum(self._lost_seen.values())
        self._lost_seen = lost
        self.writer.write_json(Kind.LOSS, {self._loss_name(i): n for i, n in lost.items()})

    def _sample_memory(self) -> None:
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        samples = [(now, layout.MEMORY_SYSTEM, system_memory_used())]
        if self.options.sockets:
            samples.append((now, layout.MEMORY_SOCKETS, socket_memory()))
        pids = set(self._pids_seen) | ({self.options.pid} if self.options.pid else set())
        for pid in sorted(pids):
            rss = process_rss(pid)
            if rss is not None:
                samples.append((now, pid, rss))
        self.writer.write(Kind.MEMORY, b"".join(layout.MEMORY.pack(*sample) for sample in samples), len(samples))

    def _flush_throughput(self, final: bool) -> None:
        counts = self.sources.counts
        if counts is None:
            return
        current = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // self.bin_ns
        rows, done = [], []
        for key, values, n in counts.batches():
            counters = memoryview(values).cast("Q")  # per entry, per CPU: packets, bytes
            per_entry = len(counters) // n
            for i in range(n):
                raw_key = key[i * interface.THROUGHPUT_KEY:(i + 1) * interface.THROUGHPUT_KEY]
                bin_, ifindex, netns, direction, _ = interface.THROUGHPUT_KEY_STRUCT.unpack(raw_key)
                if not final and bin_ >= current - 1:
                    continue  # still filling
                mine = counters[i * per_entry:(i + 1) * per_entry]
                rows.append((bin_ * self.bin_ns, ifindex, direction, sum(mine[0::2]), sum(mine[1::2]), netns))
                self._netns_seen.add(netns)
                done.append(raw_key)
        for raw_key in done:
            with contextlib.suppress(KeyError):
                del counts[raw_key]
        if rows:
            self.writer.write(Kind.THROUGHPUT, b"".join(layout.THROUGHPUT.pack(*row) for row in sorted(rows)),
                              len(rows))

    def _show_status(self, elapsed: float) -> None:
        rate = self.summary.events / elapsed if elapsed > 0 else 0
        lost = sum(self._lost_seen.values())
        print(f"\r{elapsed:7.1f} s  {self.summary.events:>11,} events  {rate:>11,.0f}/s  "
              f"{self.summary.packets:>9,} packets  lost {lost:,}   ", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        """After everything is detached: the last records, loss, names and the end record."""
        self.drain()
        self._flush_throughput(final=True)
        self._check_loss()
        self.drain()  # carries the last loss count
        self.summary.lost = {self._loss_name(i): n for i, n in self._lost_seen.items()}
        self.writer.write_json(Kind.NAMES, self._names())
        self.writer.write_json(Kind.END, {"seconds": self.summary.seconds, "events": self.summary.events,
                                          "packets": self.summary.packets, "lost": self.summary.lost})
        self.summary.bytes_written = self.writer.bytes

    def name_process(self, pid: int, comm: str) -> None:
        """What to call ``pid`` if it was gone before its name could be read."""
        self._comms.setdefault(str(pid), comm)

    def _names(self) -> dict:
        """What the records' numbers name: the processes seen (pid -> comm) and the network
        namespaces throughput was counted in (inode -> its name and interfaces)."""
        from ..loader import netns

        processes = dict(self._comms)
        pid = self.options.pid
        if pid and str(pid) not in processes:
            with contextlib.suppress(OSError):
                processes[str(pid)] = Path(f"/proc/{pid}/comm").read_text().strip()
        return {"processes": processes, "netns": netns.describe(self._netns_seen)}


def system_memory_used() -> int:
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
    return fields["MemTotal"] - fields.get("MemAvailable", fields.get("MemFree", 0))


_PAGE = os.sysconf("SC_PAGE_SIZE")


def socket_memory() -> int:
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


def process_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
