"""Trace file: round trip, truncation, corruption, bad files; and netprof report on them."""

import os
import subprocess
import sys

import numpy as np
import pytest

from netprof.format.records import ENTRY, EXIT, MEMORY_DTYPE, SPAN_DTYPE
from netprof.report import format_report, load
from netprof.format.tracefile import Kind, TraceError, TraceWriter, new_header, read

PROBES = [{"id": 0, "name": "work", "kind": "user", "mechanism": "uprobe"}]


def spans_events(n, start=1000):
    rows = []
    for i in range(n):
        rows += [(start + 10 * i, i, 1, 1, 0, 0, ENTRY), (start + 10 * i + 5, 0, 1, 1, 0, 0, EXIT)]
    return np.array(rows, dtype=SPAN_DTYPE)


def write_trace(path, chunks=3, per_chunk=100):
    writer = TraceWriter(path, new_header(PROBES, 64))
    for c in range(chunks):
        writer.write(Kind.SPANS, spans_events(per_chunk, start=1000 + c * per_chunk * 10), lost=c)
    writer.write(Kind.MEMORY, np.array([(1, 0, 123)], dtype=MEMORY_DTYPE))
    writer.write_json(Kind.LOSS, {"work": 3})
    writer.write_json(Kind.END, {"seconds": 1.5})
    writer.close()


def test_round_trip(tmp_path):
    path = tmp_path / "t.trace"
    write_trace(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    raw = read(path)
    assert raw.problems == []
    assert len(raw.records[Kind.SPANS]) == 600 and raw.lost_by_kind[Kind.SPANS] == 0 + 1 + 2
    assert raw.loss == {"work": 3} and raw.end == {"seconds": 1.5}
    assert raw.records[Kind.MEMORY]["bytes"][0] == 123
    trace = load(path)
    assert len(trace.spans()) == 300 and set(trace.spans().durations()) == {5}
    text = format_report(trace)
    assert "work" in text and "300" in text and "LOST 3 events (work: 3)" in text
    # chunk c (200 events from 1000 + 1000 c) reported c lost: marked at its first record
    assert trace.loss_marks().tolist() == [(2000, 1), (3000, 2)]


def test_truncated_file_loads_every_complete_chunk(tmp_path):
    path = tmp_path / "t.trace"
    write_trace(path)
    data = path.read_bytes()
    first_data_chunk = data.index(b"NPCK", data.index(b"NPCK") + 1)
    for cut in range(len(data) - 1, first_data_chunk, -97):
        path.write_bytes(data[:cut])
        raw = read(path)
        assert len(raw.records[Kind.SPANS]) % 200 == 0  # whole chunks only
    path.write_bytes(data[:first_data_chunk - 5])
    with pytest.raises(TraceError, match="no readable header"):
        read(path)
    path.write_bytes(data[: len(data) // 2])
    raw = read(path)
    assert any("cut short" in p for p in raw.problems)
    assert len(raw.records[Kind.SPANS]) == 200


def test_corrupted_chunk_is_skipped_and_reported(tmp_path):
    path = tmp_path / "t.trace"
    write_trace(path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    second_chunk = data.index(b"NPCK", data.index(b"NPCK", data.index(b"NPCK") + 1) + 1)
    data[second_chunk + 100:second_chunk + 120] = rng.bytes(20)
    path.write_bytes(bytes(data))
    raw = read(path)
    assert any("corrupt" in p for p in raw.problems)
    assert len(raw.records[Kind.SPANS]) == 400


def test_random_garbage_never_crashes(tmp_path):
    path = tmp_path / "t.trace"
    write_trace(path)
    data = path.read_bytes()
    rng = np.random.default_rng(2)
    for _ in range(200):
        broken = bytearray(data)
        for _ in range(5):
            i = int(rng.integers(0, len(broken)))
            broken[i] = int(rng.integers(0, 256))
        path.write_bytes(bytes(broken))
        try:
            trace = load(path)
            format_report(trace)
        except TraceError:
            pass


@pytest.mark.parametrize("content,message", [(b"", "is empty"), (b"hello world", "not a netprof trace")])
def test_not_a_trace(tmp_path, content, message):
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(TraceError, match=message):
        read(path)
    result = subprocess.run([sys.executable, "-m", "netprof", "report", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_report_missing_file():
    result = subprocess.run([sys.executable, "-m", "netprof", "report", "/nonexistent/t.trace"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "cannot read" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.root
def test_file_is_given_to_the_sudo_caller(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.fail("needs root to change owners (CI runs as root)")
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    path = tmp_path / "t.trace"
    write_trace(path)
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)


def test_corrupt_length_field_loses_only_that_chunk(tmp_path):
    import struct

    path = tmp_path / "t.trace"
    write_trace(path)
    data = bytearray(path.read_bytes())
    second = data.index(b"NPCK", data.index(b"NPCK", data.index(b"NPCK") + 1) + 1)
    struct.pack_into("<Q", data, second + 24, 1 << 40)  # the length field is outside the checksum
    path.write_bytes(bytes(data))
    raw = read(path)
    assert len(raw.records[Kind.SPANS]) == 400 and raw.end == {"seconds": 1.5}
    assert any("past the end" in p for p in raw.problems)


V1_THROUGHPUT = {"size": 32, "fields": {"ts": [0, "<u8"], "ifindex": [8, "<u4"], "direction": [12, "<u4"],
                                        "packets": [16, "<u8"], "bytes": [24, "<u8"]}}


def test_a_version_1_file_is_read_with_the_layouts_it_declares(tmp_path):
    """Version 1 throughput records had no netns: read with their own 32-byte layout, the netns
    filled in as the capturing namespace, every other field where it was."""
    import struct

    from netprof.trace import load
    from netprof.format.tracefile import Kind, TraceWriter, new_header

    header = new_header([], 64, bin_ns=10_000_000, netns=4026531840, interfaces={"3": "veth0"})
    header["version"] = 1
    header["layouts"]["THROUGHPUT"] = V1_THROUGHPUT
    path = tmp_path / "v1.trace"
    writer = TraceWriter(path, header)
    t0 = 10**12
    old = b"".join(struct.pack("<QIIQQ", t0 + i * 10_000_000, 3, i % 2, 10 + i, 1000 * i) for i in range(4))
    writer.write(Kind.THROUGHPUT, old, 4)
    writer.write_json(Kind.END, {"seconds": 0.04})
    writer.close()
    trace = load(path)
    assert trace.problems == []
    tput = trace.throughput
    assert tput["ts"].tolist() == [t0 + i * 10_000_000 for i in range(4)]
    assert tput["packets"].tolist() == [10, 11, 12, 13] and tput["bytes"].tolist() == [0, 1000, 2000, 3000]
    assert tput["direction"].tolist() == [0, 1, 0, 1] and set(tput["netns"].tolist()) == {4026531840}
    assert trace.interface_name(4026531840, 3) == "veth0"


def test_a_trace_without_its_end_record_says_it_is_incomplete(tmp_path):
    from netprof.trace import load

    path = tmp_path / "cut.trace"
    writer = TraceWriter(path, new_header(PROBES, 64))
    writer.write(Kind.SPANS, spans_events(10, start=10**9))
    writer.close()
    trace = load(path)
    assert trace.problems[0].startswith("incomplete: the capture did not finish")
    assert "s after its first" in trace.problems[0]
    report = subprocess.run([sys.executable, "-m", "netprof", "report", str(path)], capture_output=True, text=True)
    assert report.returncode == 0 and "warning: incomplete:" in report.stdout
