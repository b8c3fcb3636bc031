"""Level of detail: what to draw for a view of millions of spans, in time that depends on the
pixels on screen rather than on the spans in the trace.

Spans at least a pixel wide are drawn one by one. Narrower ones are merged into cells: for bucket
widths of 1, 4, 16, ... ns, each (row, bucket) holding a span start becomes one cell, coloured
after its longest span. A view of p ns per pixel reads the level whose buckets are between p/4
and p wide, so it draws at most four cells per pixel and row, whatever the zoom.

The index is built once (sorting and reductions in numpy, each level from the one below) and
every query is a few searchsorted calls per row: no Python loop over spans or cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def gather(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenated ranges [lo[i], hi[i]) as one index array."""
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if not total:
        return np.empty(0, np.int64)
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) + np.repeat(lo - offsets, counts)


@dataclass
class _Class:
    """Spans of one duration class, sorted by (row, start), with each row's running maximum end."""

    index: np.ndarray       # into the spans given to LodIndex
    start_key: np.ndarray   # row << shift | start
    reach_key: np.ndarray   # row << shift | max(end of this and every earlier span of the row)
    rows: np.ndarray        # the rows present, ascending
    longest: int            # the longest duration in the class


@dataclass
class _Level:
    bucket_bits: int        # buckets are 1 << bucket_bits ns wide
    key: np.ndarray         # row << shift | bucket, ascending, unique
    value: np.ndarray       # duration << 16 | group of the longest span starting in the cell
    busy: np.ndarray        # ns: the summed durations of the spans starting in the cell
    rows: np.ndarray


@dataclass
class Drawn:
    """What one view draws: whole spans (indices into the index's spans) and merged cells."""

    spans: np.ndarray
    cell_start: np.ndarray  # ns, like the spans' start
    cell_end: np.ndarray
    cell_row: np.ndarray
    cell_group: np.ndarray  # group of the longest span in the cell (what its colour comes from)
    cell_busy: np.ndarray   # ns of spans in the cell: how much of its pixel they fill
    ns_per_px: float


def _merge_cells(start, end, row, value, busy, t0: float, p: float):
    """At most one cell per pixel column and row: the group of the longest span, the time of
    all. Cells come sorted by (row, start)."""
    if not start.size:
        return start, end, row, value & 0xFFFF, busy
    column = np.floor((start - t0) / p).astype(np.int64)
    first = np.flatnonzero(np.r_[True, (row[1:] != row[:-1]) | (column[1:] != column[:-1])])
    last = np.r_[first[1:], len(start)] - 1
    return (start[first], end[last], row[first], np.maximum.reduceat(value, first) & 0xFFFF,
            np.add.reduceat(busy, first))


class LodIndex:
    """``start``/``end``: ns (non-negative integers, relative to the capture's start); ``row``:
    small non-negative integers (where a span is drawn); ``group``: what it is (< 65536, e.g. its
    probe), handed back for the cells it is the longest span of."""

    def __init__(self, start: np.ndarray, end: np.ndarray, row: np.ndarray, group: np.ndarray):
        self.start = np.asarray(start, np.int64)
        self.end = np.maximum(np.asarray(end, np.int64), self.start)
        self.row = np.asarray(row, np.int64)
        self.group = np.asarray(group, np.int64)
        n = len(self.start)
        horizon = int(self.end.max()) + 1 if n else 1
        self.shift = max(horizon.bit_length(), 1)
        if n and int(self.row.max()) >= 1 << (62 - self.shift):
            raise ValueError(f"{int(self.row.max())} rows over {horizon} ns do not fit the index keys")
        self.horizon = horizon
        duration = self.end - self.start
        # duration class c holds durations in [4**c, 4**(c+1)) (class 0 also holds 0..3)
        klass = np.zeros(n, np.int64)
        nonzero = duration > 0
        klass[nonzero] = (np.log2(duration[nonzero]).astype(np.int64)) // 2
        # by (class, row, start): an int64 key of row and start, then the class (a radix sort of
        # small integers); faster than np.lexsort's three passes
        self.by_row_start = np.argsort((self.row << self.shift) | self.start, kind="stable")
        order = self.by_row_start[np.argsort(klass[self.by_row_start], kind="stable")]
        bounds = np.searchsorted(klass[order], np.arange(klass.max() + 2 if n else 1))
        self.classes: dict[int, _Class] = {}
        for c in range(len(bounds) - 1):
            idx = order[bounds[c]:bounds[c + 1]]
            if idx.size:
                self.classes[c] = self._make_class(idx, duration)
        self.levels = self._make_levels(order, klass, duration, bounds)

    def _make_class(self, idx: np.ndarray, duration: np.ndarray) -> _Class:
        rows = self.row[idx] << self.shift
        reach = np.maximum.accumulate(rows | self.end[idx])  # rows ascend: the maximum restarts per row
        return _Class(idx, rows | self.start[idx], reach, np.unique(self.row[idx]), int(duration[idx].max()))

    def _make_levels(self, order, klass, duration, bounds) -> list[_Level]:
        levels: list[_Level] = []
        key = value = busy = np.empty(0, np.int64)
        time_mask = (1 << self.shift) - 1
        level = 0
        while True:
            bits = 2 * level
            if key.size:  # the level below, coarsened: keys stay sorted
                key = (key & ~time_mask) | ((key & time_mask) >> 2)
            if level < len(bounds) - 1:  # spans of class `level` first appear here
                idx = order[bounds[level]:bounds[level + 1]]
                if idx.size:
                    new_key = (self.row[idx] << self.shift) | (self.start[idx] >> bits)
                    new_value = (duration[idx] << 16) | self.group[idx]
                    key, value = np.concatenate([key, new_key]), np.concatenate([value, new_value])
                    busy = np.concatenate([busy, duration[idx]])
                    by_key = np.argsort(key, kind="stable")
                    key, value, busy = key[by_key], value[by_key], busy[by_key]
            if key.size:
                first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
                value = np.maximum.reduceat(value, first)
                busy = np.add.reduceat(busy, first)
                key = key[first]
            rows = key >> self.shift  # sorted: its distinct values without another sort
            levels.append(_Level(bits, key, value, busy, rows[np.r_[True, rows[1:] != rows[:-1]]] if rows.size else rows))
            if (1 << bits) >= self.horizon and level >= len(bounds) - 2:
                return levels
            level += 1

    def query(self, t0: float, t1: float, width_px: int, rows: tuple[int, int] | None = None) -> Drawn:
        """What to draw for [t0, t1] across ``width_px`` pixels, in rows [rows[0], rows[1]) (all if None)."""
        p = max((t1 - t0) / max(width_px, 1), 1e-9)
        lo_t = int(min(max(t0, 0), self.horizon))
        hi_t = int(min(max(t1, 0), self.horizon))

        def shown(present: np.ndarray) -> np.ndarray:
            return present if rows is None else present[(present >= rows[0]) & (present < rows[1])]

        spans = []
        for cls in self.classes.values():
            if cls.longest < p:
                continue
            base = shown(cls.rows) << self.shift
            lo = np.searchsorted(cls.reach_key, base | lo_t, "right")
            hi = np.searchsorted(cls.start_key, base | hi_t, "right")
            picked = cls.index[gather(lo, hi)]
            picked = picked[(self.end[picked] >= lo_t) & (self.end[picked] - self.start[picked] >= p)]
            spans.append(picked)
        spans = np.concatenate(spans) if spans else np.empty(0, np.int64)
        level = self.levels[min(max(int(np.floor(np.log2(max(p, 1.0)) / 2)), 0), len(self.levels) - 1)]
        bits = level.bucket_bits
        base = shown(level.rows) << self.shift
        cells = gather(np.searchsorted(level.key, base | (lo_t >> bits), "left"),
                       np.searchsorted(level.key, base | (hi_t >> bits), "right"))
        key = level.key[cells]
        start = (key & ((1 << self.shift) - 1)) << bits
        start, end, row, group, busy = _merge_cells(start, start + (1 << bits), key >> self.shift,
                                                    level.value[cells], level.busy[cells], t0, p)
        return Drawn(spans, start, end, row, group, busy, p)

    def __len__(self) -> int:
        return len(self.start)
