"""Span durations without netprof's own cost: each span loses the part of its probes' cost that
falls inside it, and each ancestor the whole cost of every probed call below it.

A uprobe span's probes cost its caller ``cost_ns`` per call, ``in_span_ns`` of it between the
span's two timestamps (measured on the kernel that captured the trace: netprof.calibrate; the
trace's probe table keeps both). So a span's raw duration is its true duration, plus its own
``in_span_ns``, plus the ``cost_ns`` of every recorded call in its subtree. Probes without a
measured cost (tracepoints, kernel functions) add nothing here: their spans stay as measured.
"""

from __future__ import annotations

import numpy as np

from .span_builder import OPEN, ORPHAN, self_times


def probe_costs(probes: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """(cost_ns, in_span_ns), indexed by probe id; None when no probe of the trace has a measured cost."""
    if not any("cost_ns" in p for p in probes):
        return None
    size = max((p["id"] for p in probes), default=-1) + 1
    cost, in_span = np.zeros(size), np.zeros(size)
    for p in probes:
        cost[p["id"]] = float(p.get("cost_ns", 0.0))
        in_span[p["id"]] = float(p.get("in_span_ns", 0.0))
    return cost, in_span


def correct(spans: np.ndarray, cost: np.ndarray, in_span: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corrected (duration, self) of ``spans`` (dtype span_builder.SPAN, all of a trace: ``parent``
    is a row), in ns, never below 0. Vectorised: one pass per nesting level, deepest first."""
    n = len(spans)
    probe = np.minimum(spans["probe"], len(cost) - 1) if len(cost) else np.zeros(n, np.intp)
    own = cost[probe] if len(cost) else np.zeros(n)
    below = np.zeros(n)  # the cost of the probed calls in each span's subtree, itself left out
    parent, depth = spans["parent"], spans["depth"]
    by_depth = np.argsort(depth, kind="stable")
    bounds = np.searchsorted(depth[by_depth], np.arange(int(depth.max(initial=0)) + 2))
    for level in range(len(bounds) - 2, 0, -1):
        rows = by_depth[bounds[level]:bounds[level + 1]]
        rows = rows[parent[rows] >= 0]
        np.add.at(below, parent[rows], below[rows] + own[rows])
    both_ends = (spans["flags"] & (OPEN | ORPHAN)) == 0  # an incomplete span has only one of its probes inside
    bias = np.where(both_ends, in_span[probe] if len(in_span) else 0.0, 0.0)
    duration = np.maximum(spans["duration"] - bias - below, 0).round().astype(np.uint64)
    return duration, self_times(duration, parent)
