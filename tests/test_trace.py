"""netprof.load and the analysis API: filters, statistics, series, exports (Perfetto, pcap, CSV)."""

import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import needs

import netprof
from netprof import export
from netprof.format.records import ENTRY, EXIT, MEMORY_DTYPE, SPAN_DTYPE, THROUGHPUT_DTYPE, dtype_of, xdp_packet
from netprof.format.tracefile import Kind, TraceWriter, new_header

T0 = 10**12
PROBES = [{"id": 0, "name": "ip_rcv", "kind": "kernel", "mechanism": "kprobe"},
          {"id": 1, "name": "tcp_v4_rcv", "kind": "kernel", "mechanism": "kprobe"},
          {"id": 2, "name": "app:main", "kind": "user", "mechanism": "uprobe"}]


def make_trace(path, spans_per_probe=100):
    rows = []
    for i in range(spans_per_probe):
        t = T0 + i * 1000
        cpu = i % 2
        rows += [(t, 0, 1, 5, 0, cpu, ENTRY), (t + 100, 0, 1, 5, 1, cpu, ENTRY), (t + 100 + i, 0, 1, 5, 1, cpu, EXIT),
                 (t + 400, 0, 1, 5, 0, cpu, EXIT), (t + 500, 7, 42, 43, 2, 1, ENTRY),
                 (t + 500 + 10 * i, 0, 42, 43, 2, 1, EXIT)]
    events = np.array(rows, dtype=SPAN_DTYPE)
    packet_dtype = dtype_of(xdp_packet(64))
    packets = np.zeros(20, packet_dtype)
    packets["ts"] = T0 + np.arange(20) * 5000
    packets["ifindex"], packets["len"], packets["caplen"] = 3, 60, 60
    frame = bytes.fromhex("ffffffffffff020000000001" "0800") + bytes(46)
    packets["data"][:, :60] = np.frombuffer(frame, np.uint8)
    throughput = np.array([(T0 + i * 10_000_000, 3, 0, 10, 1000, 0) for i in range(5)], dtype=THROUGHPUT_DTYPE)
    memory = np.array([(T0 + i * 10_000_000, 0, 100 + i) for i in range(5)], dtype=MEMORY_DTYPE)
    writer = TraceWriter(path, new_header(PROBES, 64, bin_ns=10_000_000, interfaces={"3": "veth0"}))
    writer.write(Kind.SPANS, events)
    writer.write(Kind.XDP, packets)
    writer.write(Kind.THROUGHPUT, throughput)
    writer.write(Kind.MEMORY, memory)
    writer.write_json(Kind.END, {"seconds": 1.0})  # a capture that finished
    writer.close()
    return events


@pytest.fixture
def trace(tmp_path):
    make_trace(tmp_path / "t.trace")
    return netprof.load(tmp_path / "t.trace")


def test_spans_by_probe_and_durations(trace):
    assert sorted(trace.spans(probe="tcp_v4_rcv").durations()) == list(range(100))
    assert set(trace.spans(probe="ip_rcv").durations()) == {400}
    assert len(trace.spans(probe=["ip_rcv", "app:main"])) == 200
    with pytest.raises(KeyError, match="no probe 'nope'.*ip_rcv"):
        trace.spans(probe="nope")


def test_filters_time_window_cpus_pids(trace):
    window = trace.spans(start=10_000, end=20_000)                    # ns since the first event
    assert set(window["start"] // 1000 - T0 // 1000) <= set(range(9, 20))
    assert len(trace.spans(ignored_cpus=[1], probe="ip_rcv")) == 50
    assert len(trace.spans(pid=42)) == 100


def test_stats_match_a_naive_computation(trace):
    stats = {int(s["probe"]): s for s in trace.spans().stats()}
    durations = np.arange(100)
    s = stats[1]
    assert (s["count"], s["total"], s["max"]) == (100, durations.sum(), 99)
    assert s["p50"] == np.percentile(durations, 50, method="lower")
    assert s["p99"] == np.percentile(durations, 99, method="lower")
    assert stats[0]["self"] == sum(400 - d for d in durations)        # ip_rcv minus its tcp_v4_rcv child
    assert trace.spans().busy_per_cpu() == {0: 50 * 400, 1: 50 * 400 + sum(10 * i for i in range(100))}


def test_series_resampled(trace):
    tput = trace.series("throughput", resolution=20_000_000)
    times, values = tput[(0, 3, 0)]
    assert list(values) == [2000 / 0.02, 2000 / 0.02, 1000 / 0.02]     # bytes per second in 20 ms bins
    mem_times, mem = trace.series("memory", resolution=5_000_000)[(0,)]
    assert list(mem[:4]) == [100, 100, 101, 101]                      # last sample carried forward


def test_perfetto_json_is_valid_and_counts_match(trace, tmp_path):
    out = tmp_path / "t.json"
    counts = export.perfetto(trace, out)
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == len(trace.spans()) == counts["spans"] == 300
    assert sum(e["ph"] == "i" for e in events) == 20
    assert sum(e["ph"] == "C" for e in events) == counts["counters"] > 0
    user = [e for e in events if e["ph"] == "X" and e["name"] == "app:main"]
    assert {(e["pid"], e["tid"]) for e in user} == {(42, 43)}          # user spans on their own thread
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert {"CPU 0", "CPU 1"} <= names


def read_pcap(path):
    data = path.read_bytes()
    magic, _, _, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    packets, offset = [], 24
    while offset < len(data):
        sec, nsec, caplen, length = struct.unpack_from("<IIII", data, offset)
        packets.append((sec * 10**9 + nsec, data[offset + 16:offset + 16 + caplen], length))
        offset += 16 + caplen
    return magic, snaplen, linktype, packets


def test_pcap_round_trip_with_wall_clock(trace, tmp_path):
    out = tmp_path / "t.pcap"
    assert export.pcap(trace, out) == 20
    magic, snaplen, linktype, packets = read_pcap(out)
    assert (magic, snaplen, linktype) == (export.PCAP_NS_MAGIC, 64, 1)
    assert packets[0][0] == T0 + trace.clock["realtime"] and len(packets[0][1]) == 60


def test_tshark_reads_the_pcap(trace, tmp_path):
    tshark = needs.tool("tshark")
    out = tmp_path / "t.pcap"
    export.pcap(trace, out)
    result = subprocess.run([tshark, "-r", str(out), "-T", "fields", "-e", "eth.src", "-e", "frame.len"],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(trace.packets) == 20
    assert set(lines) == {"02:00:00:00:00:01\t60"}


def test_csv_export(trace, tmp_path):
    out = tmp_path / "t.csv"
    trace.spans(probe="tcp_v4_rcv").to_csv(out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,start,end,duration") and len(lines) == 101
    assert all(",tcp_v4_rcv," in line for line in lines[1:])
    rows = np.genfromtxt(out, delimiter=",", names=True, dtype=None, encoding="utf-8")
    every = trace.spans()
    assert set(every["probe"][rows["parent"]]) == {0}                  # each called from an ip_rcv ...
    assert list(every["start"][rows["parent"]]) == list(rows["start"] - 100)  # ... the one it is in
    assert list(every["duration"][rows["id"]]) == list(rows["duration"])


def test_export_cli(tmp_path):
    make_trace(tmp_path / "t.trace")
    result = subprocess.run([sys.executable, "-m", "netprof", "export", str(tmp_path / "t.trace"), "--perfetto",
                             str(tmp_path / "o.json"), "--pcap", str(tmp_path / "o.pcap"), "--csv",
                             str(tmp_path / "o.csv")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "300 spans" in result.stdout and "20 packets" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "netprof", "report", str(tmp_path / "t.trace"), "-f", "abc"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "must be START-END" in bad.stderr


def test_parquet_export(trace, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "t.parquet"
    trace.spans(probe="tcp_v4_rcv").to_parquet(out)
    table = pq.read_table(out)
    assert table.num_rows == 100
    assert set(table.column("name").to_pylist()) == {"tcp_v4_rcv"}
    assert sorted(table.column("duration").to_pylist()) == list(range(100))
    every = trace.spans()
    assert set(every["probe"][table.column("parent").to_numpy()]) == {0}
    assert table.column_names[0] == "id"
    assert list(every["duration"][table.column("id").to_numpy()]) == table.column("duration").to_pylist()


def test_progress_bar_load_gives_the_same_trace(tmp_path):
    make_trace(tmp_path / "t.trace")
    with_bar = netprof.load(tmp_path / "t.trace", progress=True)
    assert len(with_bar.spans()) == 300 and with_bar.problems == []
