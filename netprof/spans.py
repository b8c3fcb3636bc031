"""Entry/exit events to spans, vectorised (no Python loop per event).

Matching is per thread: key = tid, except tid 0 (each CPU's idle task), keyed by CPU.
Interrupts nest inside the thread they interrupt, so each key's events are well nested; an
entry is matched with the next exit that brings its key back to the entry's level. Entries
never closed become open spans (to the end of capture), exits never opened become orphan
spans (from the start), both flagged. Parent and self time come from the nesting.
"""

from __future__ import annotations

import numpy as np

from .probes.records import ENTRY

OPEN, ORPHAN, MISMATCHED = 1, 2, 4  # span flags

SPAN = np.dtype([("start", "<u8"), ("end", "<u8"), ("duration", "<u8"), ("self", "<u8"), ("depth", "<u2"),
                 ("cpu", "<u2"), ("probe", "<u2"), ("flags", "<u2"), ("pid", "<u4"), ("tid", "<u4"),
                 ("parent", "<i8"), ("arg", "<u8"), ("ret", "<u8")])


def thread_keys(events: np.ndarray) -> np.ndarray:
    """tid, or -(cpu + 1) for the idle task (tid 0) on each CPU."""
    tid = events["tid"].astype(np.int64)
    return np.where(tid == 0, -(events["cpu"].astype(np.int64) + 1), tid)


def build(events: np.ndarray, t_start: int | None = None, t_end: int | None = None) -> np.ndarray:
    """Spans (dtype SPAN, sorted by start) from entry/exit events (dtype SPAN_DTYPE)."""
    n = len(events)
    if n == 0:
        return np.empty(0, SPAN)
    t_start = int(events["ts"].min()) if t_start is None else t_start
    t_end = int(events["ts"].max()) if t_end is None else t_end

    key = thread_keys(events)
    order = np.lexsort((np.arange(n), events["ts"], key))
    key, ev = key[order], events[order]
    entry = ev["kind"] == ENTRY
    step = np.where(entry, 1, -1).astype(np.int64)
    level = np.cumsum(step)
    first = np.r_[True, key[1:] != key[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    before_group = (level - step)[group_start]       # running level just before each key's first event
    level = level - before_group                     # level after each event, per key
    at = np.where(entry, level, level + 1)           # the level an entry opens / an exit closes

    pair_order = np.lexsort((np.arange(n), at, key))
    k2, at2, entry2 = key[pair_order], at[pair_order], entry[pair_order]
    same = (k2[1:] == k2[:-1]) & (at2[1:] == at2[:-1])
    paired = entry2[:-1] & ~entry2[1:] & same
    opens = pair_order[:-1][paired]
    closes = pair_order[1:][paired]
    matched = np.zeros(n, bool)
    matched[opens] = matched[closes] = True
    lone_entries = np.flatnonzero(entry & ~matched)
    lone_exits = np.flatnonzero(~entry & ~matched)

    count = len(opens) + len(lone_entries) + len(lone_exits)
    spans = np.zeros(count, SPAN)
    a, b = len(opens), len(opens) + len(lone_entries)
    for part, starts, ends, flags in ((slice(0, a), opens, closes, 0),
                                      (slice(a, b), lone_entries, None, OPEN),
                                      (slice(b, count), None, lone_exits, ORPHAN)):
        src = starts if starts is not None else ends
        out = spans[part]
        out["start"] = ev["ts"][starts] if starts is not None else t_start
        out["end"] = ev["ts"][ends] if ends is not None else t_end
        out["cpu"], out["pid"], out["tid"], out["probe"] = ev["cpu"][src], ev["pid"][src], ev["tid"][src], \
            ev["probe"][src]
        out["arg"] = ev["arg"][starts] if starts is not None else 0
        out["ret"] = ev["arg"][ends] if ends is not None else 0
        out["flags"] = flags
        if starts is not None and ends is not None:
            out["flags"] |= np.where(ev["probe"][starts] != ev["probe"][ends], MISMATCHED, 0).astype(np.uint16)
    depth_level = np.concatenate([at[opens], at[lone_entries], at[lone_exits]]) - 1
    span_keys = np.concatenate([key[opens], key[lone_entries], key[lone_exits]])
    spans["duration"] = spans["end"] - np.minimum(spans["start"], spans["end"])
    # Orphan exits can push a key below level 0: shift each key so that its shallowest span is depth 0.
    lowest = _group_min(span_keys, depth_level)
    spans["depth"] = depth_level - lowest

    by_start = np.lexsort((spans["depth"], spans["start"]))
    spans, span_keys = spans[by_start], span_keys[by_start]
    spans["parent"] = _parents(span_keys, spans["depth"].astype(np.int64), spans["start"])
    child_time = np.bincount(spans["parent"][spans["parent"] >= 0], weights=spans["duration"][spans["parent"] >= 0],
                             minlength=len(spans))
    spans["self"] = np.maximum(spans["duration"].astype(np.float64) - child_time, 0).astype(np.uint64)
    return spans


def _group_min(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each element, the minimum of ``values`` over elements with the same key."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    lows = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(lows, inverse, values)
    return lows[inverse]


def _parents(keys: np.ndarray, depth: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Index of each span's parent: the latest span one level up, same key, started no later."""
    n = len(keys)
    if n == 0:
        return np.empty(0, np.int64)
    groups, group_of = np.unique(np.stack([keys, depth]), axis=1, return_inverse=True)
    group_of = group_of.ravel()
    rank = np.empty(n, np.int64)
    rank[np.lexsort((np.arange(n), start))] = np.arange(n)   # spans are sorted by start already
    composite = group_of.astype(np.int64) * (n + 1) + rank
    order = np.argsort(composite, kind="stable")
    sorted_composite = composite[order]
    # The group of (key, depth - 1) for every span, or -1 when there is none.
    lookup = {(int(k), int(d)): g for g, (k, d) in enumerate(groups.T)}
    up = np.array([lookup.get((int(k), int(d) - 1), -1) for k, d in groups.T], np.int64)[group_of]
    query = up * (n + 1) + rank
    pos = np.searchsorted(sorted_composite, query, side="right") - 1
    found = (up >= 0) & (pos >= 0)
    found &= np.where(found, sorted_composite[np.clip(pos, 0, None)] // (n + 1) == up, False)
    parents = np.where(found, order[np.clip(pos, 0, None)], -1)
    return parents
