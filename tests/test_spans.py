"""Span building on constructed event streams with known answers."""

import numpy as np
import pytest

from netprof.format.records import ENTRY, EXIT, SPAN_DTYPE
from netprof.span_builder import MISMATCHED, OPEN, ORPHAN, ancestors_among, build, outermost


def events(*rows):
    """rows: (ts, kind, probe, tid, cpu)."""
    return np.array([(ts, 7, 100, tid, probe, cpu, kind) for ts, kind, probe, tid, cpu in rows], dtype=SPAN_DTYPE)


def as_tuples(spans):
    return [(int(s["start"]), int(s["end"]), int(s["probe"]), int(s["depth"]), int(s["flags"])) for s in spans]


def test_empty_and_single_event():
    assert len(build(np.empty(0, SPAN_DTYPE))) == 0
    (span,) = build(events((5, ENTRY, 1, 10, 0)))
    assert (span["start"], span["end"], span["flags"]) == (5, 5, OPEN)


def test_nesting_depth_parent_and_self_time():
    spans = build(events((1, ENTRY, 1, 10, 0), (2, ENTRY, 2, 10, 0), (4, EXIT, 2, 10, 0), (5, ENTRY, 3, 10, 0),
                         (8, EXIT, 3, 10, 0), (10, EXIT, 1, 10, 0)))
    assert as_tuples(spans) == [(1, 10, 1, 0, 0), (2, 4, 2, 1, 0), (5, 8, 3, 1, 0)]
    assert list(spans["parent"]) == [-1, 0, 0]
    assert list(spans["self"]) == [9 - 2 - 3, 2, 3]


def test_recursion():
    spans = build(events((1, ENTRY, 1, 10, 0), (2, ENTRY, 1, 10, 0), (3, ENTRY, 1, 10, 0), (4, EXIT, 1, 10, 0),
                         (5, EXIT, 1, 10, 0), (6, EXIT, 1, 10, 0)))
    assert as_tuples(spans) == [(1, 6, 1, 0, 0), (2, 5, 1, 1, 0), (3, 4, 1, 2, 0)]
    assert list(spans["parent"]) == [-1, 0, 1]


def test_threads_are_kept_apart_and_interleave():
    spans = build(events((1, ENTRY, 1, 10, 0), (2, ENTRY, 1, 11, 1), (3, EXIT, 1, 10, 0), (4, EXIT, 1, 11, 1)))
    assert as_tuples(spans) == [(1, 3, 1, 0, 0), (2, 4, 1, 0, 0)]
    assert list(spans["tid"]) == [10, 11]


def test_migration_between_cpus_still_matches():
    spans = build(events((1, ENTRY, 1, 10, 0), (9, EXIT, 1, 10, 1)))
    assert as_tuples(spans) == [(1, 9, 1, 0, 0)]
    assert spans["cpu"][0] == 0  # where it started


def test_idle_task_is_one_stack_per_cpu():
    # tid 0 on two CPUs at once: separate stacks, not one confused stack.
    spans = build(events((1, ENTRY, 1, 0, 0), (2, ENTRY, 1, 0, 1), (3, EXIT, 1, 0, 1), (4, EXIT, 1, 0, 0)))
    assert as_tuples(spans) == [(1, 4, 1, 0, 0), (2, 3, 1, 0, 0)]
    assert sorted(spans["cpu"]) == [0, 1]


def test_interrupt_nests_inside_the_interrupted_thread():
    spans = build(events((1, ENTRY, 1, 10, 0), (2, ENTRY, 5, 10, 0), (3, EXIT, 5, 10, 0), (4, EXIT, 1, 10, 0)))
    assert as_tuples(spans) == [(1, 4, 1, 0, 0), (2, 3, 5, 1, 0)]


def test_unmatched_entries_and_exits_are_flagged():
    spans = build(events((2, EXIT, 1, 10, 0), (3, ENTRY, 2, 10, 0), (4, EXIT, 2, 10, 0), (5, ENTRY, 3, 10, 0)),
                  t_start=0, t_end=9)
    assert as_tuples(spans) == [(0, 2, 1, 0, ORPHAN), (3, 4, 2, 0, 0), (5, 9, 3, 0, OPEN)]


def test_calls_entered_before_the_capture_are_parents_too():
    # Inside A, inside B when the capture starts: c in B, then B returns, then d in A, then A returns.
    spans = build(events((2, ENTRY, 3, 10, 0), (3, EXIT, 3, 10, 0), (4, EXIT, 2, 10, 0), (5, ENTRY, 4, 10, 0),
                         (6, EXIT, 4, 10, 0), (7, EXIT, 1, 10, 0)), t_start=0, t_end=9)
    assert as_tuples(spans) == [(0, 4, 2, 1, ORPHAN), (0, 7, 1, 0, ORPHAN), (2, 3, 3, 2, 0), (5, 6, 4, 1, 0)]
    assert list(spans["parent"]) == [1, -1, 0, 1]
    assert list(spans["self"]) == [4 - 1, 7 - 4 - 1, 1, 1]


def test_walks_up_the_parent_links():
    parent = np.array([-1, 0, 1, 2, -1, 4, 2, 6, 7])
    chosen = np.array([1, 0, 1, 1, 0, 1, 0, 1, 0], bool)
    assert list(outermost(parent)) == [0, 0, 0, 0, 4, 4, 0, 0, 0]
    assert list(ancestors_among(parent, chosen)) == [0, 1, 1, 2, 0, 0, 2, 2, 3]


def test_lost_exit_is_reported_as_mismatch_not_hidden():
    spans = build(events((1, ENTRY, 1, 10, 0), (2, ENTRY, 2, 10, 0), (3, EXIT, 1, 10, 0)))
    flagged = {int(s["probe"]): int(s["flags"]) for s in spans}
    assert flagged[2] & MISMATCHED and flagged[1] == OPEN


@pytest.mark.parametrize("seed", range(5))
def test_random_well_nested_streams_rebuild_exactly(seed):
    rng = np.random.default_rng(seed)
    rows, truth, parents, ts = [], [], {}, 0
    for tid in (1, 2, 3):
        stack = []
        for _ in range(300):
            ts += int(rng.integers(1, 5))
            if stack and (len(stack) > 20 or rng.random() < 0.5):
                probe, start = stack.pop()
                rows.append((ts, EXIT, probe, tid, 0))
                truth.append((start, ts, probe, len(stack), 0))
                parents[start] = stack[-1][1] if stack else None
            else:
                probe = int(rng.integers(0, 16))
                stack.append((probe, ts))
                rows.append((ts, ENTRY, probe, tid, 0))
        while stack:
            ts += 1
            probe, start = stack.pop()
            rows.append((ts, EXIT, probe, tid, 0))
            truth.append((start, ts, probe, len(stack), 0))
            parents[start] = stack[-1][1] if stack else None
    order = rng.permutation(len(rows))
    spans = build(events(*[rows[i] for i in order]))
    assert sorted(as_tuples(spans)) == sorted(truth)
    found = {int(s["start"]): (int(spans["start"][s["parent"]]) if s["parent"] >= 0 else None) for s in spans}
    assert found == parents
    children = {}
    for s in spans:
        if s["parent"] >= 0:
            children[int(s["parent"])] = children.get(int(s["parent"]), 0) + int(s["duration"])
    assert [int(s["self"]) for s in spans] == [int(s["duration"]) - children.get(i, 0) for i, s in enumerate(spans)]
