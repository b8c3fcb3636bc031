"""``netprof report``: what a trace holds, as tables: spans per probe, per CPU, loss, XDP packets,
throughput and memory. Built on netprof.load() and the vectorised span builder."""

from __future__ import annotations

import numpy as np

from .loss import loss_line
from .format.layout import memory_source
from .trace import Trace, load  # noqa: F401 - load is part of this module's interface
from .units import mbit_per_s, mib


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


def by_pattern(spans):
    """``spans`` with each probe that a glob or short name chose folded into one row per pattern:
    (spans whose ``probe`` is a group number, the group names)."""
    from .trace import Spans

    names: list[str] = []
    group_of = np.zeros(max((p["id"] for p in spans.trace.probes), default=0) + 1, np.uint16)
    for p in spans.trace.probes:
        name = p.get("pattern") or p["name"]
        if name not in names:
            names.append(name)
        group_of[p["id"]] = names.index(name)
    folded = spans.array.copy()
    folded["probe"] = group_of[np.minimum(folded["probe"], len(group_of) - 1)]
    return Spans(folded, spans.trace, spans.ids), names


def span_stats(spans, names: list[str] | None = None) -> list[list[str]]:
    """A row per probe (or per name of ``names``, where ``probe`` holds its index); where
    durations are corrected, the raw mean last."""
    rows = []
    raw_means = _raw_means(spans) if spans.trace.corrected else None
    for s in spans.stats():
        stats = [_ns(s[k]) for k in ("total", "self", "mean", "p50", "p90", "p99", "max")] if s["count"] else ["-"] * 7
        name = names[int(s["probe"])] if names is not None else spans.trace.probe_name(int(s["probe"]))
        rows.append([name, f"{int(s['count']):,}", *stats, f"{int(s['incomplete']):,}" if s["incomplete"] else ""])
        if raw_means is not None:
            rows[-1].append(_ns(raw_means[int(s["probe"])]) if s["count"] else "-")
    return rows


def _raw_means(spans) -> dict[int, float]:
    """Mean raw duration of the complete spans, per probe."""
    raw = spans.trace.raw_times()[0]
    complete = spans.array["flags"] == 0
    probes = spans.array["probe"][complete]
    total = np.bincount(probes, weights=raw[spans.id[complete]])
    count = np.bincount(probes)
    return {int(p): float(total[p] / count[p]) for p in np.flatnonzero(count)}


def format_report(trace: Trace, start: float | None = None, end: float | None = None,
                  ignored_cpus: tuple[int, ...] = (), probes: list[str] | None = None,
                  pids: list[int] | None = None, fold_patterns: bool = False) -> str:
    out = [f"{trace.raw.path}: {trace.header.get('host', '?')}, kernel {trace.header.get('kernel', '?')}"]
    finished = trace.raw.end
    if finished:
        out[0] += f", {finished.get('seconds', 0):.1f} s captured"
    for problem in trace.problems[:5]:
        out.append(f"warning: {problem}")
    if len(trace.problems) > 5:
        out.append(f"warning: ... and {len(trace.problems) - 5} more problems")
    spans = trace.spans(probe=probes, pid=pids, start=start, end=end, ignored_cpus=ignored_cpus)
    if len(spans):
        headers = ["probe", "count", "total", "self", "mean", "p50", "p90", "p99", "max", "open/orphan"]
        out += ["", "spans per probe:"]
        if trace.corrected:
            headers.append("raw mean")
            out.append("(durations without netprof's probe cost, as measured on the capturing kernel; raw mean: as "
                       "recorded; --raw for all as recorded)")
        if fold_patterns:
            headers[0] = "probe or pattern"
        out.append(_table(headers, span_stats(*by_pattern(spans)) if fold_patterns else span_stats(spans)))
        busy = spans.busy_per_cpu()
        counts = np.bincount(spans.array["cpu"])
        rows = [[str(c), f"{int(counts[c]):,}", _ns(float(busy.get(c, 0)))] for c in np.flatnonzero(counts).tolist()]
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
        interfaces = np.unique(tput[["netns", "ifindex"]])
        for netns, ifindex in interfaces.tolist():
            for direction, name in ((0, "rx"), (1, "tx")):
                mine = tput[(tput["netns"] == netns) & (tput["ifindex"] == ifindex) & (tput["direction"] == direction)]
                if mine.size:
                    label = f"{trace.interface_name(netns, ifindex)} ({ifindex})"
                    rows.append([label, name, f"{int(mine['packets'].sum()):,}",
                                 f"{int(mine['bytes'].sum()):,}", mbit_per_s(mine["bytes"].max() / bin_s)])
        out += ["", "throughput:", _table(["interface", "dir", "packets", "bytes", "peak"], rows)]
    memory = trace.memory
    if memory.size:
        rows = []
        for pid in np.unique(memory["pid"]):
            mine = memory[memory["pid"] == pid]["bytes"]
            comm = trace.process_name(int(pid))
            rows.append([f"{comm} ({int(pid)})" if comm else memory_source(pid), f"{len(mine):,}",
                         mib(mine.min()), mib(mine.max())])
        out += ["", "memory:", _table(["what", "samples", "min", "max"], rows)]
    lost = trace.lost
    lost_chunks = sum(trace.raw.lost_by_kind.values())
    if lost or lost_chunks:
        rows = [[name, f"{count:,}"] for name, count in sorted(lost.items())]
        unnamed = max(lost_chunks - sum(lost.values()), 0)  # counted per chunk, not per probe
        out += ["", loss_line({**lost, **({"unattributed": unnamed} if unnamed else {})}) + ":",
                _table(["probe", "lost"], rows)]
    else:
        out += ["", loss_line({})]
    return "\n".join(out)


def _ifname(trace: Trace, ifindex: int) -> str:
    """The interface's name where it was captured (the header records them: the capture may have
    run in another network namespace or on another machine)."""
    name = trace.header.get("interfaces", {}).get(str(ifindex))
    return f"{name} ({ifindex})" if name else f"ifindex {ifindex}"
