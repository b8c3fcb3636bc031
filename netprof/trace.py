"""A loaded trace for analysis: every record kind as a numpy array, spans built once, filters,
statistics and resampled series, all vectorised.

    import netprof
    trace = netprof.load("run.trace")
    trace.spans(probe="ip_rcv").durations()          # numpy array of nanoseconds
    trace.spans(cpu=0, start=1e9, end=2e9).stats()    # per probe: count, total, self, p50, p99 ...
    trace.series("throughput", resolution=1e7)      # per (netns, interface, direction), 10 ms bins

Every span has an ``id``, its row in ``trace.all_spans`` (the whole trace's spans), which every
filter and export keeps, and a ``parent``: the id of the span it nests in, -1 for none. Report,
viewer and exports all read this one set of spans.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from . import correction, outfile
from . import span_builder
from .format.layout import MEMORY_SOCKETS, MEMORY_SYSTEM, RX, TX  # noqa: F401 - what the keys of series() mean
from .span_builder import MISMATCHED, OPEN, ORPHAN, SPAN  # noqa: F401 - span flags and the spans' dtype
from .format.tracefile import Kind, RawTrace, read

STATS = np.dtype([("probe", "<u2"), ("count", "<u8"), ("incomplete", "<u8"), ("total", "<u8"), ("self", "<u8"),
                  ("mean", "<f8"), ("p50", "<f8"), ("p90", "<f8"), ("p99", "<f8"), ("max", "<u8")])


def _groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct values, each element's group index, group sizes) of small non-negative ints,
    by counting instead of sorting."""
    counts = np.bincount(values)
    present = np.flatnonzero(counts)
    lookup = np.zeros(len(counts), np.uint16 if len(present) < 1 << 16 else np.int64)  # uint16: radix sorts
    lookup[present] = np.arange(len(present))
    return present.astype(values.dtype), lookup[values], counts[present]


FLAG_WORDS = {OPEN: "open at the end", ORPHAN: "entry before the capture", MISMATCHED: "exit missing"}


def flag_words(flags: int) -> list[str]:
    """What a span's ``flags`` say, in words (none for a complete span)."""
    return [words for bit, words in FLAG_WORDS.items() if flags & bit]


def _compact_ids(rows: np.ndarray, total: int) -> np.ndarray:
    """Row numbers of a trace's spans in int32 where the trace has fewer than 2**31 spans."""
    return rows.astype(np.int32 if total < 1 << 31 else np.int64, copy=False)


@dataclass
class Spans:
    """A selection of spans (``array``: dtype netprof.span_builder.SPAN) of one trace, with their ids
    (``ids``: rows in ``trace.all_spans``; None where the selection is all of them, in order)."""

    array: np.ndarray
    trace: Trace
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key):
        return self.id if isinstance(key, str) and key == "id" else self.array[key]

    @property
    def id(self) -> np.ndarray:
        """Each span's id: its row in the whole trace's spans, as its children's ``parent`` says."""
        if self.ids is None:
            return _compact_ids(np.arange(len(self.array)), len(self.array))
        return self.ids

    def where(self, keep: np.ndarray) -> Spans:
        """The spans for which ``keep`` (a bool per span) holds, ids kept."""
        rows = np.flatnonzero(keep) if self.ids is None else self.ids[keep]
        return Spans(self.array[keep], self.trace, _compact_ids(rows, len(self.trace.all_spans)))

    @property
    def is_user(self) -> np.ndarray:
        """A bool per span: a user function's (uprobe), not the kernel's."""
        return np.isin(self.array["probe"], self.trace.user_probes)

    def kind_depth(self) -> np.ndarray:
        """Each span's depth among spans of its own kind, user or kernel: a kernel function called
        from a user function is at kernel depth 0 (while its ``depth`` is 1)."""
        depth = self.array["depth"].astype(np.int64)
        if not self.trace.user_probes.size:
            return depth
        every = self.trace.all_spans
        user = np.isin(every["probe"], self.trace.user_probes)
        user_above = span_builder.ancestors_among(every["parent"], user)
        if self.ids is not None:
            user, user_above = user[self.ids], user_above[self.ids]
        return np.where(user, user_above, depth - user_above)

    def outermost(self) -> np.ndarray:
        """The id of each span's outermost enclosing span (its own where it has no parent)."""
        roots = span_builder.outermost(self.trace.all_spans["parent"])
        return roots if self.ids is None else roots[self.ids]

    def durations(self) -> np.ndarray:
        """Nanoseconds, of complete spans only (open and orphan spans are cut by the capture)."""
        return self.complete().array["duration"]

    def complete(self) -> Spans:
        return self.where(self.array["flags"] == 0)

    def stats(self) -> np.ndarray:
        """Per probe: count, incomplete, total, self, mean, p50, p90, p99, max (ns); vectorised."""
        a = self.array
        if not len(a):
            return np.empty(0, STATS)
        complete = a["flags"] == 0
        probes, inverse, counts = _groups(a["probe"])
        out = np.zeros(len(probes), STATS)
        out["probe"] = probes
        out["count"] = np.bincount(inverse, weights=complete, minlength=len(probes)).astype(np.uint64)
        out["incomplete"] = counts - out["count"]
        out["total"] = np.bincount(inverse, weights=np.where(complete, a["duration"], 0), minlength=len(probes))
        out["self"] = np.bincount(inverse, weights=np.where(complete, a["self"], 0), minlength=len(probes))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"] = np.where(out["count"] > 0, out["total"] / np.maximum(out["count"], 1), np.nan)
        # Quantiles by nearest rank (the lower one), with a partial sort per probe instead of a full sort.
        group = inverse[complete]
        durations = a["duration"][complete]
        by_probe = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[by_probe], np.arange(len(probes) + 1))
        for p in range(len(probes)):
            d = durations[by_probe[bounds[p]:bounds[p + 1]]]
            if not d.size:
                out["p50"][p] = out["p90"][p] = out["p99"][p] = np.nan
                continue
            ranks = [int(q * (d.size - 1)) for q in (0.5, 0.9, 0.99)] + [d.size - 1]
            d = np.partition(d, ranks)
            out["p50"][p], out["p90"][p], out["p99"][p], out["max"][p] = d[ranks]
        return out

    def busy_per_cpu(self) -> dict[int, int]:
        """Nanoseconds covered by outermost spans, per CPU."""
        top = self.array[self.array["depth"] == 0]
        cpus, inverse, _ = _groups(top["cpu"])
        busy = np.bincount(inverse, weights=top["duration"], minlength=len(cpus)).astype(np.int64)
        return dict(zip(cpus.tolist(), busy.tolist(), strict=True))

    def to_csv(self, path: str | Path) -> None:
        """One row per span, ``id`` first; ``parent`` is the id of the enclosing span (-1: none)."""
        names = ["id", "start", "end", "duration", "self", "depth", "cpu", "pid", "tid", "probe", "name", "flags",
                 "parent", "arg", "ret"]
        probe_names = np.array([p["name"] for p in self.trace.probes] or [""], dtype=object)
        a = self.array
        columns = [self.id if n == "id" else probe_names[np.minimum(a["probe"], len(probe_names) - 1)]
                   if n == "name" else a[n] for n in names]
        with outfile.writing(path, "w") as f:
            f.write(",".join(names) + "\n")
            for row in zip(*(c.tolist() for c in columns), strict=True):
                f.write(",".join(map(str, row)) + "\n")

    def to_parquet(self, path: str | Path) -> None:
        """As ``to_csv``: an ``id`` column, and ``parent`` holding the enclosing span's id."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise RuntimeError("Parquet needs pyarrow: pip install pyarrow (or export CSV)") from None
        table = pa.table({"id": self.id} | {name: self.array[name] for name in self.array.dtype.names or ()})
        names = [p["name"] for p in self.trace.probes]
        table = table.append_column("name", pa.array([names[i] if i < len(names) else "" for i in self.array["probe"]]))
        with outfile.writing(path) as f:
            pq.write_table(table, f)


class Trace:
    """What a trace file holds (see netprof.load)."""

    def __init__(self, raw: RawTrace, raw_durations: bool = False):
        self.raw = raw
        self.raw_durations = raw_durations  # spans as measured, netprof's own probe cost left in
        if raw.end is None:
            raw.problems.insert(0, self._incomplete())

    def _incomplete(self) -> str:
        """The problem of a trace without its end record: what it means, and where the records stop."""
        first, last = self.time_range
        said = "incomplete: the capture did not finish (no end record: it was killed, or is still running)"
        if not last:
            return said + "; it holds no records"
        realtime = self.header.get("clock", {}).get("realtime")
        when = ""
        if realtime is not None:
            import datetime

            wall = datetime.datetime.fromtimestamp((last + realtime) / 1e9, datetime.timezone.utc)
            when = f" at {wall:%Y-%m-%d %H:%M:%S.%f} UTC,"
        return f"{said}; its records end{when} {(last - first) / 1e9:.3f} s after its first"

    @property
    def header(self) -> dict:
        return self.raw.header

    @property
    def probes(self) -> list[dict]:
        return self.raw.header["probes"]

    @property
    def clock(self) -> dict:
        """Offsets from the capture's CLOCK_MONOTONIC timestamps to wall clock and boot time."""
        return self.raw.header.get("clock", {})

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

    def loss_marks(self) -> np.ndarray:
        """Where the kernel dropped records: (ts, lost) per chunk that reported a loss, ts being the
        first record delivered after the loss (the end of the capture when none came)."""
        out = []
        for kind, index, lost in self.raw.loss_marks:
            stamps = self.raw.records[kind]["ts"]
            ts = int(stamps[index]) if index < len(stamps) else self.time_range[1]
            out.append((ts, lost))
        return np.array(out, dtype=[("ts", "<u8"), ("lost", "<u8")])

    @property
    def problems(self) -> list[str]:
        return self.raw.problems

    def probe_name(self, probe_id: int) -> str:
        return self.probes[probe_id]["name"] if probe_id < len(self.probes) else f"probe {probe_id}"

    def probe_ids(self, names: str | Iterable[str]) -> list[int]:
        wanted = {names} if isinstance(names, str) else set(names)
        found = [p["id"] for p in self.probes if p["name"] in wanted]
        unknown = wanted - {p["name"] for p in self.probes}
        if unknown:
            known = ", ".join(p["name"] for p in self.probes)
            raise KeyError(f"no probe {sorted(unknown)[0]!r} in this trace (it has: {known})")
        return found

    @cached_property
    def instant_probes(self) -> np.ndarray:
        return np.array([p["id"] for p in self.probes if p["kind"] == "event"], np.uint16)

    @cached_property
    def user_probes(self) -> np.ndarray:
        """The ids of the probes on user functions (uprobes)."""
        return np.array([p["id"] for p in self.probes if p["kind"] == "user"], np.uint16)

    @cached_property
    def time_range(self) -> tuple[int, int]:
        """First and last timestamp of the capture (ns, CLOCK_MONOTONIC)."""
        stamps = [a["ts"] for a in (self.events, self.packets, self.throughput, self.memory) if a.size]
        if not stamps:
            return 0, 0
        return int(min(s.min() for s in stamps)), int(max(s.max() for s in stamps))

    @cached_property
    def all_spans(self) -> np.ndarray:
        """Spans of every entry/exit probe (instant events left out), sorted by start: a span's id
        is its row here."""
        events = self.events
        if self.instant_probes.size:
            events = events[~np.isin(events["probe"], self.instant_probes)]
        if not events.size:
            return np.empty(0, span_builder.SPAN)
        spans = span_builder.build(events, *self.time_range)
        costs = self._probe_costs
        if costs is not None and not self.raw_durations:
            spans["duration"], spans["self"] = correction.correct(spans, *costs)
        return spans

    @cached_property
    def _probe_costs(self) -> tuple[np.ndarray, np.ndarray] | None:
        return correction.probe_costs(self.probes)

    @property
    def corrected(self) -> bool:
        """Whether span durations (``duration``, ``self``) are corrected for netprof's own probe
        cost (netprof.correction): where the capture measured it, unless loaded with ``raw_durations``.
        ``end - start`` stays the span's raw extent on the timeline."""
        return not self.raw_durations and self._probe_costs is not None

    def raw_times(self) -> tuple[np.ndarray, np.ndarray]:
        """(duration, self) of every span as measured, probe cost left in (a row per ``all_spans`` row)."""
        spans = self.all_spans
        duration = spans["end"] - np.minimum(spans["start"], spans["end"])
        return duration, span_builder.self_times(duration, spans["parent"])

    def spans(self, probe: str | Iterable[str] | None = None, cpu: int | Iterable[int] | None = None,
              pid: int | Iterable[int] | None = None, start: float | None = None, end: float | None = None,
              ignored_cpus: Iterable[int] = ()) -> Spans:
        """Spans, optionally of some probes, CPUs, processes, or overlapping [start, end) ns since
        the start of the capture (the prototype's ``-f START-END``). Each keeps its id and parent,
        whether or not the parent is among them."""
        a = self.all_spans
        if probe is None and cpu is None and pid is None and start is None and end is None and not ignored_cpus:
            return Spans(a, self)  # no copy of what may be gigabytes
        keep = np.ones(len(a), bool)
        if probe is not None:
            keep &= np.isin(a["probe"], self.probe_ids(probe))
        if cpu is not None:
            keep &= np.isin(a["cpu"], _ints(cpu))
        if pid is not None:
            keep &= np.isin(a["pid"], _ints(pid))
        if ignored_cpus:
            keep &= ~np.isin(a["cpu"], list(ignored_cpus))
        origin = self.time_range[0]
        if start is not None:
            keep &= a["end"] >= origin + int(start)
        if end is not None:
            keep &= a["start"] < origin + int(end)
        return Spans(a, self).where(keep)

    def interface_name(self, netns: int, ifindex: int) -> str:
        """An interface as the capture saw it: its name in the capturing network namespace
        ("veth0"), NAME@NAMESPACE in another ("veth0@blue", or @netns:INODE when it has no name
        under /run/netns), if<ifindex> when the name is not known."""
        own = self.header.get("netns")
        if own is None or netns in (own, 0):
            return self.header.get("interfaces", {}).get(str(ifindex)) or f"if{ifindex}"
        namespace = self.raw.names["netns"].get(str(netns), {})
        name = namespace.get("interfaces", {}).get(str(ifindex)) or f"if{ifindex}"
        return f"{name}@{namespace.get('name') or f'netns:{netns}'}"

    def process_name(self, pid: int) -> str | None:
        """The process's name (comm) when the capture saw it run, else None."""
        return self.raw.names["processes"].get(str(pid))

    def series(self, kind: str, resolution: float) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
        """Throughput ("throughput": bytes/s per (netns, ifindex, direction)) or memory ("memory": bytes per
        pid) resampled to ``resolution`` ns (throughput: never finer than the capture's kernel bins;
        neither in more than MAX_SERIES_BINS bins: a multiple of ``resolution`` where it would be):
        {key: (bin start times, values)}."""
        if not (math.isfinite(resolution) and resolution >= 1):
            raise ValueError(f"series resolution {resolution} ns: expected a finite number of at least 1")
        origin = self.time_range[0]
        keys: tuple[str, ...]
        if kind == "throughput":
            data, keys, value = self.throughput, ("netns", "ifindex", "direction"), "bytes"
            # The kernel counted in bins of bin_ns: finer bins would put a whole bin's bytes in one.
            resolution = max(resolution, self.header.get("bin_ns", 0))
        elif kind == "memory":
            data, keys, value = self.memory, ("pid",), "bytes"
        else:
            raise ValueError(f"series of {kind!r}: throughput or memory")
        out: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        if not data.size:
            return out
        resolution = _coarse_enough(resolution, int(data["ts"].max()) - origin)
        bins = ((data["ts"] - origin) // int(resolution)).astype(np.int64)
        group = np.stack([data[k].astype(np.int64) for k in keys])
        for key in np.unique(group, axis=1).T:
            mine = np.all(group.T == key, axis=1)
            b, v = bins[mine], data[value][mine].astype(np.float64)
            width = int(b.max()) + 1
            if kind == "throughput":
                values = np.bincount(b, weights=v, minlength=width) / (resolution / 1e9)
            else:  # the last sample in each bin, carried forward over empty bins
                values = np.full(width, np.nan)
                values[b] = v
                filled = np.where(~np.isnan(values), np.arange(width), 0)
                values = values[np.maximum.accumulate(filled)]
            out[tuple(int(k) for k in key)] = (origin + np.arange(width) * int(resolution), values)
        return out


MAX_SERIES_BINS = 1 << 22  # 32 MiB of float64 a series: 11 hours in the viewer's 10 ms bins


def _coarse_enough(resolution: float, span_ns: int) -> float:
    """``resolution``, or the smallest multiple of it that covers ``span_ns`` in MAX_SERIES_BINS bins."""
    return resolution * max(1, math.ceil((span_ns + 1) / (resolution * MAX_SERIES_BINS)))


def _ints(values: int | Iterable[int]) -> list[int]:
    """One number or several, as a list (the filters take either)."""
    return [int(values)] if isinstance(values, (int, np.integer)) else [int(v) for v in values]


def _reuse_freed_memory() -> None:
    """Ask glibc to keep freed blocks for reuse instead of unmapping every array over 32 MiB.

    Span building makes dozens of temporary arrays of the trace's size; mapped afresh each time,
    their page faults cost more than the work on them (10 M events: 9.1 s down to 5.8 s). The
    price is that this process keeps its peak heap until it exits: fine for analysis.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc's malloc.h
_LARGE_TRACE = 64 << 20


def load(path: str | Path, progress: bool | None = None, raw_durations: bool = False) -> Trace:
    """Read a trace file: every complete chunk; ``trace.problems`` says what was cut or skipped.
    A progress bar shows on stderr for large files when stderr is a terminal. Span durations are
    corrected for netprof's own probe cost where the capture measured it (``raw_durations``: not)."""
    path = Path(path)
    if path.exists() and path.stat().st_size > _LARGE_TRACE:
        _reuse_freed_memory()
    if progress is None:
        progress = sys.stderr.isatty() and path.exists() and path.stat().st_size > 256 << 20
    if not progress:
        return Trace(read(path), raw_durations)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"loading {path.name}", total=path.stat().st_size)
        return Trace(read(path, on_progress=lambda done: bar.update(task, completed=done)), raw_durations)
