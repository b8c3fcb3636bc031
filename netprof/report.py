"""``netprof report``: what a trace holds, as tables: spans per probe, per CPU, loss, XDP packets,
throughput and memory. Built on netprof.load() and the vectorised span builder."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from . import spans as span_builder
from .tracefile import Kind, RawTrace, read


@dataclass
class Trace:
    """A loaded trace: each record kind as a numpy array, the probe table, loss, problems."""

    raw: RawTrace

    @property
    def header(self) -> dict:
        return self.raw.header

    @property
    def probes(self) -> list[dict]:
        return self.raw.header["probes"]

    @property
    def events(self) -> np.ndarray:
        return self.raw.records[Kind.SPANS]

    @property
    def packets(self) -> np.ndarray:
        return self.raw.records[Kind.XDP]

    @property
    def throughput(self) -> np.ndarray:
        return self.raw.records[Kind.THROUGHPUT]

    @property
    def memory(self) -> np.ndarray:
        return self.raw.records[Kind.MEMORY]

    @property
    def lost(self) -> dict[str, int]:
        return self.raw.loss

    @property
    def problems(self) -> list[str]:
        return self.raw.problems

    def probe_name(self, probe_id: int) -> str:
        return self.probes[probe_id]["name"] if probe_id < len(self.probes) else f"probe {probe_id}"

    @cached_property
    def instant_probes(self) -> np.ndarray:
        return np.array([p["id"] for p in self.probes if p["kind"] == "event"], np.uint16)

    @cached_property
    def spans(self) -> np.ndarray:
        """Spans of every entry/exit probe (instant events left out), sorted by start."""
        events = self.events
        if self.instant_probes.size:
            events = events[~np.isin(events["probe"], self.instant_probes)]
        times = self._time_range()
        return span_builder.build(events, *times) if events.size else np.empty(0, span_builder.SPAN)

    def _time_range(self) -> tuple[int | None, int | None]:
        stamps = [a["ts"] for a in (self.events, self.packets) if a.size]
        if not stamps:
            return None, None
        return int(min(s.min() for s in stamps)), int(max(s.max() for s in stamps))


def load(path: str | Path) -> Trace:
    """Read a trace file (every complete chunk; see ``Trace.problems`` for what was skipped)."""
    return Trace(read(path))


def _ns(value: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} ns"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def span_stats(trace: Trace) -> list[list[str]]:
    spans = trace.spans
    rows = []
    for probe in np.unique(spans["probe"]):
        mine = spans[spans["probe"] == probe]
        closed = mine[mine["flags"] == 0]
        durations = closed["duration"].astype(np.float64)
        if durations.size:
            p50, p99 = np.percentile(durations, [50, 99])
            stats = [_ns(durations.sum()), _ns(durations.mean()), _ns(p50), _ns(p99), _ns(durations.max())]
        else:
            stats = ["-"] * 5
        incomplete = len(mine) - len(closed)
        rows.append([trace.probe_name(int(probe)), f"{len(closed):,}", *stats,
                     f"{incomplete:,}" if incomplete else ""])
    return rows


def format_report(trace: Trace) -> str:
    out = [f"{trace.raw.path}: {trace.header.get('host', '?')}, kernel {trace.header.get('kernel', '?')}"]
    end = trace.raw.end
    if end:
        out[0] += f", {end.get('seconds', 0):.1f} s captured"
    for problem in trace.problems[:5]:
        out.append(f"warning: {problem}")
    if len(trace.problems) > 5:
        out.append(f"warning: ... and {len(trace.problems) - 5} more problems")
    spans = trace.spans
    if spans.size:
        out += ["", "spans per probe:",
                _table(["probe", "count", "total", "mean", "p50", "p99", "max", "open/orphan"], span_stats(trace))]
        cpus = np.unique(spans["cpu"])
        top = spans[spans["depth"] == 0]
        rows = [[str(int(c)), f"{int((spans['cpu'] == c).sum()):,}",
                 _ns(float(top["duration"][top["cpu"] == c].astype(np.float64).sum()))] for c in cpus]
        out += ["", "per CPU:", _table(["cpu", "spans", "busy (outermost spans)"], rows)]
    events = trace.events[np.isin(trace.events["probe"], trace.instant_probes)]
    if events.size:
        rows = [[trace.probe_name(int(p)), f"{int((events['probe'] == p).sum()):,}"]
                for p in np.unique(events["probe"])]
        out += ["", "events:", _table(["tracepoint", "count"], rows)]
    packets = trace.packets
    if packets.size:
        rows = []
        for ifindex in np.unique(packets["ifindex"]):
            mine = packets[packets["ifindex"] == ifindex]
            rows.append([_ifname(trace, int(ifindex)), f"{len(mine):,}", f"{int(mine['len'].sum()):,}"])
        out += ["", "XDP packets:", _table(["interface", "packets", "bytes"], rows)]
    tput = trace.throughput
    if tput.size:
        rows = []
        bin_s = trace.header.get("bin_ns", 10_000_000) / 1e9
        for ifindex in np.unique(tput["ifindex"]):
            for direction, name in ((0, "rx"), (1, "tx")):
                mine = tput[(tput["ifindex"] == ifindex) & (tput["direction"] == direction)]
                if mine.size:
                    peak = mine["bytes"].max() * 8 / bin_s
                    rows.append([_ifname(trace, int(ifindex)), name, f"{int(mine['packets'].sum()):,}",
                                 f"{int(mine['bytes'].sum()):,}", f"{peak / 1e6:,.1f} Mbit/s"])
        out += ["", "throughput:", _table(["interface", "dir", "packets", "bytes", "peak"], rows)]
    memory = trace.memory
    if memory.size:
        rows = []
        for pid in np.unique(memory["pid"]):
            mine = memory[memory["pid"] == pid]["bytes"]
            rows.append(["system" if pid == 0 else f"pid {int(pid)}", f"{len(mine):,}",
                         f"{mine.min() / 2**20:,.1f} MiB", f"{mine.max() / 2**20:,.1f} MiB"])
        out += ["", "memory:", _table(["what", "samples", "min", "max"], rows)]
    lost = trace.lost
    lost_chunks = sum(trace.raw.lost_by_kind.values())
    if lost or lost_chunks:
        rows = [[name, f"{count:,}"] for name, count in sorted(lost.items())]
        out += ["", f"LOST: {max(sum(lost.values()), lost_chunks):,} events the ring buffer had no room for:",
                _table(["probe", "lost"], rows)]
    else:
        out += ["", "lost: none"]
    return "\n".join(out)


def _ifname(trace: Trace, ifindex: int) -> str:
    """The interface's name where it was captured (the header records them: the capture may have
    run in another network namespace or on another machine)."""
    name = trace.header.get("interfaces", {}).get(str(ifindex))
    return f"{name} ({ifindex})" if name else f"ifindex {ifindex}"
