"""Span ids and parents through every filter and export, on random streams: threads that migrate
between CPUs, the idle task on each CPU, kernel and user functions nested in each other, calls
already open when the capture started or still open when it ended, and lost events."""

import csv
import json
from decimal import Decimal

import numpy as np
import pytest

import netprof
from netprof import export
from netprof.format.records import ENTRY, EXIT, SPAN_DTYPE
from netprof.format.tracefile import Kind, TraceWriter, new_header

T0 = 10**12
CPUS = 4
KERNEL = [f"k{i}" for i in range(5)]
USER = ["app:f0", "app:f1", "app:f2"]
PROBES = ([{"id": i, "name": name, "kind": "kernel", "mechanism": "kprobe"} for i, name in enumerate(KERNEL)]
          + [{"id": len(KERNEL) + i, "name": name, "kind": "user", "mechanism": "uprobe"}
             for i, name in enumerate(USER)]
          + [{"id": len(KERNEL) + len(USER), "name": "napi_poll", "kind": "event", "mechanism": "tracepoint"}])
SPAN_PROBES = len(KERNEL) + len(USER)
EVENT_PROBE = SPAN_PROBES
SEEDS = range(6)


def thread_events(rng, pid, tid, cpu):
    """One thread's calls as (ts, arg, pid, tid, probe, cpu, kind) rows: a random walk of its stack
    that starts inside calls entered before the capture and may end with calls still open."""
    rows, stack = [], [None] * int(rng.integers(0, 4))   # None: entered before the capture
    t = T0 + int(rng.integers(0, 500))
    for _ in range(int(rng.integers(40, 250))):
        t += int(rng.integers(1, 2000))
        if tid and rng.random() < 0.05:
            cpu = int(rng.integers(0, CPUS))                 # migrated (the idle task never does)
        if rng.random() < 0.03:
            rows.append((t, 0, pid, tid, EVENT_PROBE, cpu, ENTRY))
        elif stack and (len(stack) > 10 or rng.random() < 0.5):
            probe = stack.pop()
            rows.append((t, 1, pid, tid, int(rng.integers(0, SPAN_PROBES)) if probe is None else probe, cpu, EXIT))
        else:
            probe = int(rng.integers(0, SPAN_PROBES))
            stack.append(probe)
            rows.append((t, 2, pid, tid, probe, cpu, ENTRY))
    return rows


def random_trace(path, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for cpu in range(CPUS):
        rows += thread_events(rng, 0, 0, cpu)
    for tid in range(100, 108):
        rows += thread_events(rng, 100 + tid % 3, tid, int(rng.integers(0, CPUS)))
    # Perfetto ends a slice before it starts one at the same time (half-open intervals): a call
    # entered at the very instant the capture ends, inside one still open, would be the latter's
    # sibling there. The capture goes on a little after the last call, as captures do.
    rows.append((max(r[0] for r in rows) + 1000, 0, 1, 1, EVENT_PROBE, 0, ENTRY))
    events = np.array(rows, SPAN_DTYPE)
    events = events[np.argsort(events["ts"], kind="stable")]
    events = events[np.r_[rng.random(len(events) - 1) > 0.02, True]]   # lost in the ring buffer
    writer = TraceWriter(path, new_header(PROBES, 64))
    writer.write(Kind.SPANS, events)
    writer.close()
    return netprof.load(path)


@pytest.fixture(scope="module", params=SEEDS)
def trace(request, tmp_path_factory):
    return random_trace(tmp_path_factory.mktemp("ids") / "random.trace", request.param)


def random_filters(trace, seed, count=40):
    """Keyword arguments for trace.spans: time windows, probes, CPUs, pids, ignored CPUs, and mixes."""
    rng = np.random.default_rng(seed)
    length = trace.time_range[1] - trace.time_range[0]
    out = [{}]
    for _ in range(count):
        kwargs = {}
        if rng.random() < 0.6:
            start = float(rng.integers(-1000, length))
            kwargs["start"] = start
            kwargs["end"] = start + float(rng.integers(1, length // 2))
            if rng.random() < 0.3:
                del kwargs[rng.choice(["start", "end"])]
        if rng.random() < 0.4:
            kwargs["probe"] = list(rng.choice(KERNEL + USER, size=int(rng.integers(1, 4)), replace=False))
        if rng.random() < 0.3:
            kwargs["cpu"] = [int(c) for c in rng.choice(CPUS, size=int(rng.integers(1, 3)), replace=False)]
        if rng.random() < 0.3:
            kwargs["ignored_cpus"] = [int(rng.integers(0, CPUS))]
        if rng.random() < 0.2:
            kwargs["pid"] = [int(rng.integers(100, 103))]
        out.append(kwargs)
    return out


def assert_ids_and_parents(trace, spans):
    """Each span is the whole trace's span with its id, and its parent (where it has one) encloses
    it: the same thread, starting no later, ending no earlier, one level up."""
    every = trace.spans()
    ids = spans.id
    assert len(np.unique(ids)) == len(ids)
    assert np.array_equal(every.array[ids], spans.array)
    child = spans.array[spans["parent"] >= 0]
    parent = every.array[child["parent"]]
    assert np.all(parent["tid"] == child["tid"])
    idle = child["tid"] == 0
    assert np.all(parent["cpu"][idle] == child["cpu"][idle])     # the idle task: one stack per CPU
    assert np.all(parent["start"] <= child["start"])
    assert np.all(parent["end"] >= child["end"])
    assert np.all(parent["depth"] == child["depth"] - 1)


def test_the_random_streams_exercise_every_kind_of_span(trace):
    every = trace.spans()
    flags = np.bitwise_or.reduce(every["flags"])
    assert flags & netprof.trace.OPEN and flags & netprof.trace.ORPHAN and flags & netprof.trace.MISMATCHED
    assert (every["parent"] >= 0).sum() > len(every) / 3
    assert np.all((every["parent"] >= 0) == (every["depth"] > 0))    # calls entered before the capture too
    assert every.is_user.any() and not every.is_user.all()
    user_parent = every.is_user[np.maximum(every["parent"], 0)] & (every["parent"] >= 0)
    assert (user_parent & ~every.is_user).any()                   # kernel functions called from user ones
    assert (every.array["pid"] != 0).any() and (every.array["tid"] == 0).any()


def test_ids_and_parents_hold_through_every_filter(trace):
    seed = int(trace.all_spans["start"].sum() % 1000)
    for kwargs in random_filters(trace, seed):
        spans = trace.spans(**kwargs)
        assert_ids_and_parents(trace, spans)
        assert_ids_and_parents(trace, spans.complete())


def test_kind_depth_counts_the_enclosing_spans_of_the_same_kind(trace):
    every = trace.spans()
    user = every.is_user

    def same_kind_above(i):
        count, parent = 0, int(every["parent"][i])
        while parent >= 0:
            count += user[parent] == user[i]
            parent = int(every["parent"][parent])
        return count

    truth = [same_kind_above(i) for i in range(len(every))]
    assert every.kind_depth().tolist() == truth
    spans = trace.spans(start=20_000, end=70_000, probe=KERNEL[:2] + USER[:1])
    assert spans.kind_depth().tolist() == [truth[i] for i in spans.id]


def test_filters_select_what_they_say(trace):
    every = trace.spans()
    origin = trace.time_range[0]
    spans = trace.spans(start=20_000, end=60_000, ignored_cpus=[1])
    expected = ((every.array["end"] >= origin + 20_000) & (every.array["start"] < origin + 60_000)
                & (every.array["cpu"] != 1))
    assert list(spans.id) == list(np.flatnonzero(expected)) and spans["id"] is spans.id
    assert spans.id.dtype == np.int32                             # compact: the trace has < 2**31 spans


def test_csv_and_parquet_carry_id_and_parent(trace, tmp_path):
    import pyarrow.parquet as pq

    spans = trace.spans(start=10_000, end=80_000, cpu=[0, 2])
    spans.to_csv(tmp_path / "s.csv")
    spans.to_parquet(tmp_path / "s.parquet")
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    table = pq.read_table(tmp_path / "s.parquet")
    for ids, parents in (([int(r["id"]) for r in rows], [int(r["parent"]) for r in rows]),
                         (table.column("id").to_pylist(), table.column("parent").to_pylist())):
        assert ids == spans.id.tolist() and parents == spans["parent"].tolist()
    assert_ids_and_parents(trace, spans)


def perfetto_nesting(path):
    """{id: the id of the slice Perfetto nests it in (None: none)} from a Chrome JSON trace, nesting
    as Perfetto does: per (pid, tid) track, in order of start, a slice inside the last one still
    open; it checks that a slice ends no later than the one it is in."""
    events = [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    tracks = {}
    for e in events:
        tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    nesting = {}
    for slices in tracks.values():
        stack = []                                                # (end in ns, id)
        for e in slices:
            start = int(Decimal(str(e["ts"])) * 1000)
            end = start + int(Decimal(str(e["dur"])) * 1000)
            while stack and stack[-1][0] <= start:
                stack.pop()
            if stack:
                assert end <= stack[-1][0], f"slice {e['args']['id']} ends after the one it is in"
            nesting[e["args"]["id"]] = stack[-1][1] if stack else None
            stack.append((end, e["args"]["id"]))
    return nesting


def nearest_exported_ancestor(every, span_id, exported):
    parent = int(every["parent"][span_id])
    while parent >= 0 and parent not in exported:
        parent = int(every["parent"][parent])
    return parent if parent >= 0 else None


@pytest.mark.parametrize("kwargs", [{}, {"start": 30_000, "end": 90_000}, {"probe": KERNEL[:3]}, {"ignored_cpus": [0]}])
def test_perfetto_nests_spans_as_their_parents_say(trace, tmp_path, kwargs):
    spans = trace.spans(**kwargs)
    export.perfetto(trace, tmp_path / "t.json", spans)
    nesting = perfetto_nesting(tmp_path / "t.json")
    exported = set(spans.id.tolist())
    assert set(nesting) == exported
    every = trace.spans()
    assert {i: nearest_exported_ancestor(every, i, exported) for i in exported} == nesting
