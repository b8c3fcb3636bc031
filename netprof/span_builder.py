"""Entry/exit events to spans, vectorised (no Python loop per event).

Matching is per thread: key = tid, except tid 0 (each CPU's idle task), keyed by CPU.
Interrupts nest inside the thread they interrupt, so each key's events are well nested; an
entry is matched with the next exit that brings its key back to the entry's level. Entries
never closed become open spans (to the end of capture), exits never opened become orphan
spans (from the start), both flagged. Parent and self time come from the nesting.

A span's id is its row in the array ``build`` returns and its ``parent`` is that id (-1: none):
``outermost`` and ``ancestors_among`` walk those links, for every span at once.
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Any

import numpy as np

from .format.layout import ENTRY

OPEN, ORPHAN, MISMATCHED = 1, 2, 4  # span flags

SPAN = np.dtype([("start", "<u8"), ("end", "<u8"), ("duration", "<u8"), ("self", "<u8"), ("depth", "<u4"),
                 ("cpu", "<u2"), ("probe", "<u2"), ("flags", "<u2"), ("pid", "<u4"), ("tid", "<u4"),
                 ("parent", "<i8"), ("arg", "<u8"), ("ret", "<u8")])


def build(events: np.ndarray, t_start: int | None = None, t_end: int | None = None) -> np.ndarray:
    """Spans (dtype SPAN, sorted by start) from entry/exit events (dtype SPAN_DTYPE)."""
    n = len(events)
    if n == 0:
        return np.empty(0, SPAN)
    t_start = int(events["ts"].min()) if t_start is None else t_start
    t_end = int(events["ts"].max()) if t_end is None else t_end

    # Events by thread, then time. Stable sorts on one key at a time beat lexsort several times
    # over (events arrive nearly in time order); whole records move as opaque bytes.
    index: Any = np.int32 if n < 1 << 31 else np.int64  # half the memory traffic of int64 indices
    dense = _dense(_thread_codes(events))            # small ints: numpy radix-sorts them
    order = np.argsort(events["ts"], kind="stable").astype(index)
    order = order[np.argsort(dense[order], kind="stable")]
    ev = _take(events, order)
    key = dense[order]
    del dense

    entry = ev["kind"] == ENTRY
    step = entry.astype(index) * 2 - 1               # +1 entry, -1 exit
    level = np.cumsum(step, dtype=index)
    first = np.r_[True, key[1:] != key[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n, dtype=index), 0))
    level -= (level - step)[group_start]             # level after each event, per thread
    at = level + ~entry                              # the level an entry opens / an exit closes
    del step, level

    # An entry is matched with the next exit at its level in its thread.
    low = int(at.min())
    pair_order = np.argsort(_small(key.astype(np.int64) * (int(at.max()) - low + 1) + (at - low)), kind="stable")
    k2, at2, entry2 = key[pair_order], at[pair_order], entry[pair_order]
    paired = entry2[:-1] & ~entry2[1:] & (k2[1:] == k2[:-1]) & (at2[1:] == at2[:-1])
    del k2, at2, entry2
    probe2 = ev["probe"][pair_order]
    mismatched = probe2[:-1][paired] != probe2[1:][paired]   # an exit lost in between
    del probe2
    opens, closes = pair_order[:-1][paired].astype(index), pair_order[1:][paired].astype(index)
    del pair_order, paired
    opener_of = np.full(n, -1, index)
    opener_of[closes] = opens
    # The parent links need only what is known now: work them out on another core (numpy lets
    # go of the GIL) while this one lays the spans out.
    parents = _pool().submit(_enclosing_entries, entry, group_start, opener_of)
    matched = np.zeros(n, bool)
    matched[opens] = matched[closes] = True
    lone_entries = np.flatnonzero(entry & ~matched).astype(index)
    lone_exits = np.flatnonzero(~entry & ~matched).astype(index)
    del matched

    none = np.full(len(lone_exits), -1, index)
    start_event = np.concatenate([opens, lone_entries, none])
    end_event = np.concatenate([closes, np.full(len(lone_entries), -1, index), lone_exits])
    source = np.where(start_event >= 0, start_event, end_event)
    flags = np.concatenate([np.zeros(len(opens), np.uint16), np.full(len(lone_entries), OPEN, np.uint16),
                            np.full(len(lone_exits), ORPHAN, np.uint16)])
    flags[: len(opens)] |= mismatched.astype(np.uint16) * MISMATCHED

    # Emit spans in the file order of the event that starts them (close to time order already), so
    # that sorting by start time is a near-sorted merge and the gathers below run nearly in sequence.
    position = np.full(n, -1, index)
    position[order[source]] = np.arange(len(source), dtype=index)
    emit = position[position >= 0]
    del position
    ts = ev["ts"]
    first_start = start_event[emit]
    final = emit[np.argsort(np.where(first_start >= 0, ts[np.maximum(first_start, 0)], t_start), kind="stable")]
    del first_start
    del emit
    se, ee, src = start_event[final], end_event[final], source[final]
    flags = flags[final]
    del start_event, end_event, source, final

    spans = np.empty(len(se), SPAN)  # every field is written below
    spans["start"] = np.where(se >= 0, ts[np.maximum(se, 0)], t_start)
    spans["end"] = np.where(ee >= 0, ts[np.maximum(ee, 0)], t_end)
    spans["duration"] = spans["end"] - np.minimum(spans["start"], spans["end"])
    spans["flags"] = flags
    # Depth: the level the span opened, shifted per thread so that the shallowest is 0 (orphan
    # exits can take a thread below the level it started at).
    thread_low = np.minimum.reduceat(at, np.flatnonzero(first))
    spans["depth"] = at[src] - thread_low[key[src]]
    of_source = _take(ev, src)                      # one gather of whole records, then plain copies
    for name in ("cpu", "pid", "tid", "probe"):
        spans[name] = of_source[name]
    del of_source
    spans["arg"] = np.where(se >= 0, ev["arg"][np.maximum(se, 0)], 0)
    spans["ret"] = np.where(ee >= 0, ev["arg"][np.maximum(ee, 0)], 0)

    # Parent: the span opened by the latest earlier entry one level up in the same thread. Failing
    # that, a span that is not the shallowest of its thread is inside a call entered before the
    # capture: the orphan whose exit is the next one level up.
    span_of_event = np.full(n, -1, index)           # the span each entry, and each orphan's exit, makes
    span_of_event[se[se >= 0]] = np.flatnonzero(se >= 0)
    span_of_event[ee[se < 0]] = np.flatnonzero(se < 0)
    parent_entry = parents.result()[np.maximum(se, 0)]
    spans["parent"] = np.where((se >= 0) & (parent_entry >= 0), span_of_event[parent_entry], -1)
    in_orphan = np.flatnonzero((spans["parent"] < 0) & (spans["depth"] > 0))
    if in_orphan.size and lone_exits.size:
        exit_above = _next_lone_exit(src[in_orphan], at[src[in_orphan]] - 1, lone_exits, at, key)
        spans["parent"][in_orphan] = np.where(exit_above >= 0, span_of_event[exit_above], -1)
    spans["self"] = self_times(spans["duration"], spans["parent"])
    return spans


def self_times(duration: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Each span's duration less its children's (``parent``: the row of each span's parent, -1
    none), never below 0."""
    has_parent = parent >= 0
    child_time = np.bincount(parent[has_parent], weights=duration[has_parent], minlength=len(duration))
    return np.maximum(duration.astype(np.float64) - child_time, 0).astype(np.uint64)


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="netprof-spans")


def _thread_codes(events: np.ndarray) -> np.ndarray:
    """One non-negative code per thread: the tid, or past the largest tid, one per CPU for tid 0."""
    tid = events["tid"]
    top = int(tid.max()) + 1
    return np.where(tid == 0, events["cpu"].astype(np.uint32) + top, tid)


def _dense(keys: np.ndarray) -> np.ndarray:
    """Keys renumbered 0..k-1 in their order, in the smallest unsigned type that holds them."""
    low, high = int(keys.min()), int(keys.max())
    if high - low < 1 << 24:  # a lookup table beats sorting for tids (pid_max is at most 4 M)
        shifted = keys - keys.dtype.type(low) if low else keys
        present = np.zeros(high - low + 1, bool)
        present[shifted] = True
        ranks = _small(np.cumsum(present) - 1)
        return ranks[shifted]
    return _small(np.unique(keys, return_inverse=True)[1].ravel())


def _small(values: np.ndarray) -> np.ndarray:
    """Non-negative ints in uint16 where they fit (numpy's stable sort is a radix sort there)."""
    top = int(values.max()) if values.size else 0
    return values.astype(np.uint16 if top < 1 << 16 else np.uint32 if top < 1 << 32 else np.int64)


def _take(records: np.ndarray, order: np.ndarray) -> np.ndarray:
    """records[order], moving each record as one block of bytes (twice as fast as field by field)."""
    blocks = records.view(np.dtype((np.void, records.dtype.itemsize)))
    return blocks[order].view(records.dtype)


def _next_lone_exit(after: np.ndarray, level: np.ndarray, lone_exits: np.ndarray, at: np.ndarray,
                    key: np.ndarray) -> np.ndarray:
    """For each event ``after`` (events sorted by thread, then time), the first of ``lone_exits``
    after it in its thread that closes ``level`` (-1: none). Where the level is one the thread
    reaches, there is one: the thread had to come down to it through an exit, and with no entry
    there before, an exit without an entry."""
    n = len(at)
    low = int(at[lone_exits].min())
    by_level = (at[lone_exits] - low).astype(np.int64) * n + lone_exits   # by level, then thread and time
    order = np.argsort(by_level)
    first = np.searchsorted(by_level[order], (level - low).astype(np.int64) * n + after + 1)
    found = lone_exits[order[np.minimum(first, len(order) - 1)]]
    return np.where((first < len(order)) & (at[found] == level) & (key[found] == key[after]), found, -1)


def _enclosing_entries(entry: np.ndarray, group_start: np.ndarray, opener_of: np.ndarray) -> np.ndarray:
    """For each entry event, the index of the entry that opened its enclosing span (-1 if none).

    Look at the event just before an entry, in its thread: an entry there is the parent; an exit
    there closed a sibling, whose parent is ours. Chains of siblings are followed by pointer
    jumping: work proportional to the events times the log of the longest chain.
    """
    n = len(entry)
    index = opener_of.dtype
    parent = np.full(n, -1, index)
    pointer = np.full(n, -1, index)
    idx = np.flatnonzero(entry).astype(index)
    prev = idx - 1
    has_prev = prev >= group_start[idx]
    prev_entry = entry[np.maximum(prev, 0)]
    direct = has_prev & prev_entry
    parent[idx[direct]] = prev[direct]
    via = idx[has_prev & ~prev_entry]
    sibling = opener_of[via - 1]                    # -1: the sibling's start was not captured
    todo = via[sibling >= 0]
    pointer[todo] = sibling[sibling >= 0]
    pending = np.zeros(n, bool)
    pending[todo] = True
    while todo.size:
        target = pointer[todo]
        ready = ~pending[target]
        parent[todo[ready]] = parent[target[ready]]
        pending[todo[ready]] = False
        todo = todo[~ready]
        pointer[todo] = pointer[pointer[todo]]      # skip ahead along the chain
    return parent


def outermost(parent: np.ndarray) -> np.ndarray:
    """Each span's outermost enclosing span (its own id where it has no parent), by pointer
    jumping: work proportional to the spans times the log of the deepest nesting."""
    root = np.where(parent >= 0, parent, np.arange(len(parent)))
    while True:
        further = root[root]
        if np.array_equal(further, root):
            return root
        root = further


def ancestors_among(parent: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """How many of each span's enclosing spans are ``chosen`` (a bool per span), by pointer
    jumping as in ``outermost``."""
    count = chosen.astype(np.int32)    # of the spans from each one up to, not including, jump
    jump = parent.copy()
    todo = np.flatnonzero(jump >= 0)
    while todo.size:
        via = jump[todo]
        count[todo] += count[via]      # both gathered before written: each round sees the last one's
        jump[todo] = jump[via]
        todo = todo[jump[todo] >= 0]
    return count - chosen
