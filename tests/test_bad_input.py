"""Bad input is one line on stderr (what was wrong, what to do) and exit status 2: never a
traceback, a hang, or an allocation the size of the timestamps (issue 12, cases 10 to 14).

Every command runs under a deadline and a memory ceiling, so that a regression fails the test
instead of hanging it or eating the machine's memory. Nothing here attaches a probe: the attach
tests stop netprof before its session starts, and the two marked root fail on their output
file or uprobe target, which Session.__enter__ checks before it loads or attaches anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netprof import cli, load
from netprof.loader import elf
from netprof.format import layout
from netprof.format.layout import ENTRY, EXIT
from netprof.session import Session
from netprof.format.tracefile import MAGIC, Kind, TraceError, TraceWriter, new_header, read

MEMORY_CEILING = 4 << 30
PROBES = [{"id": 0, "name": "work", "kind": "user", "mechanism": "uprobe"}]


def _ceiling() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))


def netprof(*args: str, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout: float = 60):
    """The CLI in a child process, as a user runs it; a hang fails the test (TimeoutExpired)."""
    return subprocess.run([sys.executable, "-m", "netprof", *map(str, args)], check=False, stdin=stdin, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, preexec_fn=_ceiling)


def assert_one_line(result, *words: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


class Hung(Exception):
    """Not an OSError: code that catches OSError around a blocking open() must not swallow it."""


@contextlib.contextmanager
def deadline(seconds: int):
    def expire(*_):
        raise Hung(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def no_capture(monkeypatch):
    """Fail the test, instead of capturing, if bad input ever gets as far as starting a session."""
    def refuse(self):
        raise AssertionError("bad input reached Session.__enter__: it should have been refused before")

    monkeypatch.setattr(Session, "__enter__", refuse)


def attach(capsys, *args: str) -> str:
    """``netprof attach ARGS`` in this process (see no_capture); its one line of error."""
    with deadline(20):
        code = cli.main(["attach", *map(str, args)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    return lines[0]


# --- 10: FIFOs, devices and endless input are refused before they are read ----------------------

@pytest.mark.parametrize("command", [["report"], ["export", "--csv", "{tmp}/x.csv"], ["view", "--png", "{tmp}/x.png"]])
def test_reading_a_trace_from_a_fifo_is_refused(fifo, tmp_path, command):
    name, *options = command
    result = netprof(name, fifo, *(o.format(tmp=tmp_path) for o in options), timeout=30)
    assert_one_line(result, str(fifo), "FIFO", "regular file")


@pytest.mark.parametrize("command", ["asm", "disasm"])
def test_asm_and_disasm_refuse_endless_or_blocking_input(fifo, command):
    assert_one_line(netprof(command, "/dev/zero", timeout=30), "/dev/zero", "device", "regular file")
    assert_one_line(netprof(command, fifo, timeout=30), str(fifo), "FIFO", "regular file")
    with open("/dev/zero", "rb") as zeros:
        assert_one_line(netprof(command, "-", stdin=zeros, timeout=30), "stdin", "more than 64 MiB")


def test_asm_refuses_a_huge_source_before_reading_it(tmp_path):
    source = tmp_path / "huge.s"
    with open(source, "wb") as f:
        f.truncate(65 << 20)  # sparse: costs no disk
    assert_one_line(netprof("asm", source, "-o", tmp_path / "x.bin", timeout=30), str(source), "64 MiB")


def test_attach_refuses_a_config_that_is_a_fifo(fifo, tmp_path):
    result = netprof("attach", "-c", fifo, "-o", "/nonexistent-dir/x.trace", timeout=30)
    assert_one_line(result, str(fifo), "FIFO", "regular file")


def test_a_uprobe_target_that_is_a_fifo_is_refused_without_opening_it(fifo):
    with deadline(10), pytest.raises(elf.ElfError, match="FIFO"):
        elf.resolve_target(f"{fifo}:main")


@pytest.mark.root
def test_attach_refuses_a_fifo_as_the_uprobe_binary_before_attaching(fifo, tmp_path, capsys, monkeypatch):
    def refuse(self):
        raise AssertionError("the session got as far as loading programs")

    monkeypatch.setattr(Session, "_setup", refuse)
    line = attach(capsys, "-u", f"{fifo}:main", "-o", tmp_path / "x.trace")
    assert str(fifo) in line and "FIFO" in line


@pytest.mark.root
@pytest.mark.parametrize("target", ["fifo", "/dev/null"])
def test_attach_refuses_to_write_a_fifo_or_a_device(fifo, target):
    # Session.__enter__ checks the output right after the privilege check, before planning,
    # loading or attaching anything; --memory alone would attach no probe anyway.
    output = fifo if target == "fifo" else Path(target)
    result = netprof("attach", "--memory", "-d", "1", "-o", output, timeout=30)
    assert_one_line(result, str(output), "not a regular file")


# --- 11: durations and intervals are finite and in range, from the command line or TOML ---------

@pytest.mark.parametrize("args,key", [
    (["-d", "nan"], "--duration"), (["-d", "inf"], "--duration"), (["-d", "-1"], "--duration"),
    (["-d", "0"], "--duration"), (["-d", "1e300"], "--duration"),
    (["--memory-interval", "0"], "--memory-interval"), (["--memory-interval", "nan"], "--memory-interval"),
    (["--memory-interval", "inf"], "--memory-interval"), (["--memory-interval", "0.5"], "--memory-interval"),
    (["--memory-interval", "3600000"], "--memory-interval"),
    (["--snaplen", "12"], "--snaplen"), (["--snaplen", "4096"], "--snaplen"), (["--buffer", "3"], "--buffer"),
    (["-p", "0"], "--pid"), (["-p", "-5"], "--pid"),
])
def test_out_of_range_options_are_refused(no_capture, capsys, tmp_path, args, key):
    line = attach(capsys, "--memory", *args, "-o", tmp_path / "x.trace")
    assert key in line and "expected" in line


@pytest.mark.parametrize("setting", ["duration = nan", "duration = inf", "duration = 1e999", "duration = -1",
                                     "memory_interval = 0", "memory_interval = nan", "memory_interval = 1e999",
                                     "snaplen = 12", "buffer = 3"])
def test_out_of_range_config_values_are_refused(no_capture, capsys, tmp_path, setting):
    config = tmp_path / "profile.toml"
    config.write_text(f"memory = true\n{setting}\n")
    line = attach(capsys, "-c", config, "-o", tmp_path / "x.trace")
    assert str(config) in line and setting.split()[0] in line and "expected" in line


# --- 12: TOML profiles ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,words", [
    ('memory = true\nxdp_mode = "turbo"\n', ["xdp_mode", "auto, native or generic"]),
    ('tracepoints = ["net"]\n', ["tracepoints", "CATEGORY:NAME"]),
    ('tracepoints = "net"\n', ["tracepoints", "CATEGORY:NAME"]),
    ("memory = true\nduration = true\n", ["duration", "seconds"]),
    ("memory = true\nsnaplen = true\n", ["snaplen", "multiple of 8"]),
    ("memory = true\nbuffer = true\n", ["buffer", "power of two"]),
    ("memory = true\npid = true\n", ["pid", "process id"]),
    ("memory = true\nmemory_interval = false\n", ["memory_interval", "milliseconds"]),
    ("memory = 1\n", ["memory", "true or false"]),
    ("memory = true\nkernel = [1, 2]\n", ["kernel", "function"]),
    ("memory = true\noutput = 7\n", ["output", "file name"]),
    ("memory = true\nturbo = 1\n", ["turbo", "unknown"]),
])
def test_wrong_config_values_name_the_file_the_key_and_what_is_expected(no_capture, capsys, tmp_path, text, words):
    config = tmp_path / "profile.toml"
    config.write_text(text)
    line = attach(capsys, "-c", config, "-o", tmp_path / "x.trace")
    assert str(config) in line and all(w in line for w in words), line


def test_a_config_that_is_not_utf8_is_one_line(no_capture, capsys, tmp_path):
    config = tmp_path / "profile.toml"
    config.write_bytes(b'memory = true\noutput = "caf\xe9.trace"\n')
    line = attach(capsys, "-c", config)
    assert str(config) in line and "UTF-8" in line and "line 2" in line


def test_a_missing_config_and_a_syntax_error_are_one_line(no_capture, capsys, tmp_path):
    line = attach(capsys, "-c", tmp_path / "missing.toml")
    assert str(tmp_path / "missing.toml") in line and "No such file" in line
    config = tmp_path / "profile.toml"
    config.write_text("memory = true\nduration = \n")
    line = attach(capsys, "-c", config)
    assert str(config) in line and "not valid TOML" in line and "line 2" in line


def test_the_config_is_checked_in_a_child_process_too(tmp_path):
    # The same as above, through a real process: exit status 2 and no traceback on stderr.
    config = tmp_path / "profile.toml"
    config.write_bytes(b"memory = true\nduration = nan\n")
    # An output no capture can write: were the duration let through, netprof would stop there.
    assert_one_line(netprof("attach", "-c", config, "-o", "/nonexistent-dir/x.trace"), str(config), "duration")


# --- 13: a reader that goes away is no error -----------------------------------------------------

def span_events(n: int = 10, start: int = 1000) -> np.ndarray:
    rows = []
    for i in range(n):
        rows += [(start + 10 * i, i, 1, 1, 0, 0, ENTRY), (start + 10 * i + 5, 0, 1, 1, 0, 0, EXIT)]
    return np.array(rows, dtype=layout.SPAN.dtype())


def trace_with_spans(path: Path, n: int = 10) -> Path:
    writer = TraceWriter(path, new_header(PROBES, 64))
    writer.write(Kind.SPANS, span_events(n))
    writer.write_json(Kind.END, {"seconds": 1.0})
    writer.close()
    return path


@pytest.mark.parametrize("command", ["report", "disasm", "export"])
def test_writing_into_a_closed_pipe_exits_quietly(tmp_path, command):
    trace = trace_with_spans(tmp_path / "t.trace")
    binary = tmp_path / "p.bin"
    binary.write_bytes(bytes.fromhex("b700000000000000" "9500000000000000"))
    args = {"report": ["report", trace], "disasm": ["disasm", binary],
            "export": ["export", trace, "--csv", tmp_path / "x.csv"]}[command]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before netprof writes a byte: every write fails with EPIPE
    try:
        result = netprof(*args, stdout=write_end)
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 128 + signal.SIGPIPE


def test_a_long_report_piped_into_head_exits_quietly(tmp_path):
    # Longer than a pipe holds: netprof is still writing when head has its line and goes.
    probes = [{"id": i, "name": f"function_number_{i}", "kind": "user", "mechanism": "uprobe"} for i in range(3000)]
    events = np.zeros(6000, layout.SPAN.dtype())
    events["ts"] = 1000 + np.arange(6000) * 10
    events["probe"], events["kind"], events["pid"], events["tid"] = np.arange(6000) // 2, np.arange(6000) % 2, 1, 1
    writer = TraceWriter(tmp_path / "t.trace", new_header(probes, 64))
    writer.write(Kind.SPANS, events)
    writer.close()
    report = subprocess.Popen([sys.executable, "-m", "netprof", "report", str(tmp_path / "t.trace")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = subprocess.run(["head", "-1"], check=False, stdin=report.stdout, capture_output=True, text=True, timeout=60)
    report.stdout.close()
    err = report.stderr.read()
    report.wait(timeout=60)
    assert head.stdout.startswith(str(tmp_path / "t.trace"))
    assert err == "" and report.returncode == 128 + signal.SIGPIPE


# --- 14: trace files with a valid checksum and bad contents --------------------------------------

def chunk(tmp_path: Path, kind: int, payload, count: int = 1, lost: int = 0) -> bytes:
    """One chunk as the project's TraceWriter writes it (a valid checksum), whatever it holds."""
    scratch = tmp_path / "scratch.trace"
    writer = TraceWriter(scratch, new_header(PROBES, 64))
    before = len(MAGIC) + writer.bytes
    writer.write(kind, payload, count, lost=lost)
    writer.close()
    return scratch.read_bytes()[before:]


def json_chunk(tmp_path: Path, kind: Kind, value) -> bytes:
    return chunk(tmp_path, kind, json.dumps(value).encode())


def crafted(tmp_path: Path, header, *chunks: bytes) -> Path:
    """A trace whose header chunk holds ``header`` (any JSON value), then ``chunks``."""
    path = tmp_path / "crafted.trace"
    path.write_bytes(MAGIC + json_chunk(tmp_path, Kind.HEADER, header) + b"".join(chunks))
    return path


def good_header(**changes) -> dict:
    return {"version": 1, **new_header(PROBES, 64), **changes}


def data(tmp_path: Path, kind: Kind, records: np.ndarray) -> bytes:
    return chunk(tmp_path, kind, records, len(records))


def in_and_out(tmp_path: Path, header, *chunks: bytes) -> Path:
    """A crafted trace that also holds good spans and an END chunk around the bad part."""
    return crafted(tmp_path, header, data(tmp_path, Kind.SPANS, span_events()), *chunks,
                   json_chunk(tmp_path, Kind.END, {"seconds": 1.0}))


def with_records(record_kind: Kind, /, **fields) -> np.ndarray:
    """One good record of ``record_kind`` (ts 2000), then a copy of it with ``fields`` changed."""
    dtype = {Kind.SPANS: layout.SPAN, Kind.THROUGHPUT: layout.THROUGHPUT, Kind.MEMORY: layout.MEMORY,
             Kind.XDP: layout.xdp_packet(64)}[record_kind].dtype()
    records = np.zeros(2, dtype)
    records["ts"] = 2000
    if record_kind == Kind.THROUGHPUT:
        records["packets"], records["bytes"] = 1, 100
    if record_kind == Kind.XDP:
        records["len"] = records["caplen"] = 60
    for name, value in fields.items():
        records[name][1] = value
    return records


def every_command(tmp_path: Path, path: Path, capsys) -> list[tuple[int, str]]:
    """report, export (Perfetto, pcap, CSV) and the viewer's scene, in this process: (status, stderr)."""
    outcomes = []
    for args in (["report", path], ["export", path, "--perfetto", tmp_path / "x.json", "--pcap", tmp_path / "x.pcap",
                                    "--csv", tmp_path / "x.csv"]):
        with deadline(60):
            code = cli.main([str(a) for a in args])
        outcomes.append((code, capsys.readouterr().err))
    try:
        from netprof_viz.scene import Options, Scene
    except ImportError:
        return outcomes
    try:
        with deadline(60):
            trace = cli._load(str(path))
            Scene(trace, Options())
        outcomes.append((0, ""))
    except cli.UsageError as err:
        outcomes.append((2, str(err)))
    return outcomes


@pytest.mark.parametrize("header,why", [
    ([1, 2], "not a JSON object"),
    ("hello", "not a JSON object"),
    (good_header(version=3), "version"),
    (good_header(layouts={"THROUGHPUT": {"size": 4, "fields": {}}}), "layouts"),
    (good_header(layouts={"SPANS": {"size": 40, "fields": {"ts": [36, "<u8"]}}}), "outside"),
    (good_header(layouts={"SPANS": {"size": 40, "fields": {"ts": [0, "object"]}}}), "numpy format"),
    (good_header(version="1"), "version"),
    (good_header(probes="work"), "probes"),
    (good_header(probes=[{"id": 0, "name": 7, "kind": "user", "mechanism": "uprobe"}]), "probes"),
    (good_header(probes=[{"id": 3, "name": "work", "kind": "user", "mechanism": "uprobe"}]), "probes"),
    (good_header(snaplen="64"), "snaplen"),
    (good_header(snaplen=12), "snaplen"),
    (good_header(snaplen=True), "snaplen"),
    (good_header(bin_ns=0), "bin_ns"),
    (good_header(bin_ns=float("nan")), "bin_ns"),
    (good_header(bin_ns=0.5), "bin_ns"),
    (good_header(interfaces=["eth0"]), "interfaces"),
    (good_header(clock={"realtime": "soon"}), "clock"),
    (good_header(created=-1), "created"),
])
def test_a_bad_header_is_one_line_and_exit_2(tmp_path, capsys, header, why):
    path = in_and_out(tmp_path, header)
    with pytest.raises(TraceError, match=why):
        read(path)
    for code, err in every_command(tmp_path, path, capsys):
        assert code == 2 and why in err and len(err.strip().splitlines()) <= 1, err


@pytest.mark.parametrize("kind,value,why", [
    (Kind.LOSS, [1, 2], "not a JSON object"),
    (Kind.LOSS, {"work": -5}, "work"),
    (Kind.LOSS, {"work": 10**40}, "work"),
    (Kind.LOSS, {"work": "many"}, "work"),
    (Kind.LOSS, {"work": True}, "work"),
    (Kind.LOSS, {"work": 1.5}, "work"),
    (Kind.END, [1], "not a JSON object"),
    (Kind.END, {"seconds": "long"}, "seconds"),
    (Kind.END, {"seconds": -1}, "seconds"),
    (Kind.END, {"seconds": 1, "lost": {"work": -1}}, "lost"),
    (Kind.END, {"seconds": 1, "events": 1.5}, "events"),
])
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_bad_json_chunk_is_a_problem_and_skipped(tmp_path, capsys, kind, value, why):
    path = crafted(tmp_path, good_header(), data(tmp_path, Kind.SPANS, span_events()),
                   json_chunk(tmp_path, kind, value))
    raw = read(path)
    assert len(raw.records[Kind.SPANS]) == 20
    problem = [p for p in raw.problems if kind.name in p]
    assert len(problem) == 1 and why in problem[0] and "skipped" in problem[0], raw.problems
    assert raw.loss == {} and raw.end is None
    for code, err in every_command(tmp_path, path, capsys):
        assert code == 0 and err == "", err


@pytest.mark.parametrize("kind,fields,why", [
    (Kind.SPANS, {"tid": 0xFFFF_FFFF}, "tid"),
    (Kind.SPANS, {"pid": 0xFFFF_FFFF}, "pid"),
    (Kind.SPANS, {"ts": 2**64 - 1}, "after the capture"),
    (Kind.SPANS, {"probe": 60000}, "probe"),
    (Kind.SPANS, {"kind": 7}, "kind"),
    (Kind.THROUGHPUT, {"ts": 2**64 - 1}, "after the capture"),
    (Kind.THROUGHPUT, {"direction": 5}, "direction"),
    (Kind.THROUGHPUT, {"bytes": 2**64 - 1}, "bytes"),
    (Kind.THROUGHPUT, {"packets": 2**63}, "packets"),
    (Kind.MEMORY, {"ts": 2**64 - 1}, "after the capture"),
    (Kind.MEMORY, {"bytes": 2**64 - 1}, "bytes"),
    (Kind.MEMORY, {"pid": 0xFFFF_FFFE}, "pid"),
    (Kind.XDP, {"ts": 2**64 - 1}, "after the capture"),
    (Kind.XDP, {"caplen": 200}, "caplen"),
])
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_bad_records_are_dropped_and_listed(tmp_path, capsys, kind, fields, why):
    path = in_and_out(tmp_path, good_header(), data(tmp_path, kind, with_records(kind, **fields)))
    raw = read(path)
    assert len(raw.records[kind]) == (21 if kind == Kind.SPANS else 1)
    problem = [p for p in raw.problems if kind.name in p]
    assert len(problem) == 1 and why in problem[0] and "dropped" in problem[0], raw.problems
    for code, err in every_command(tmp_path, path, capsys):
        assert code == 0 and "Traceback" not in err and "Warning" not in err, err


def test_loss_marks_follow_the_records_that_were_dropped(tmp_path):
    bad = span_events(2, start=5000)
    bad["ts"][0] = 2**64 - 1
    later = span_events(1, start=9000)
    path = crafted(tmp_path, good_header(), data(tmp_path, Kind.SPANS, bad),
                   chunk(tmp_path, Kind.SPANS, later, len(later), lost=3))
    raw = read(path)
    assert len(raw.records[Kind.SPANS]) == 5 and raw.loss_marks == [(Kind.SPANS, 3, 3)]
    assert load(path).loss_marks().tolist() == [(9000, 3)]


def test_a_chunk_whose_count_disagrees_with_its_length_is_skipped(tmp_path):
    path = crafted(tmp_path, good_header(), data(tmp_path, Kind.SPANS, span_events()),
                   chunk(tmp_path, Kind.SPANS, span_events(), 7))
    raw = read(path)
    assert len(raw.records[Kind.SPANS]) == 20
    assert any("7 records" in p and "skipped" in p for p in raw.problems), raw.problems


def test_records_far_past_the_end_of_a_capture_without_an_end_chunk_are_dropped(tmp_path):
    events = span_events()
    events["ts"][-1] = 2**62
    path = crafted(tmp_path, good_header(), data(tmp_path, Kind.SPANS, events))
    raw = read(path)
    assert len(raw.records[Kind.SPANS]) == 19 and any("after the capture" in p for p in raw.problems)


def test_series_of_far_apart_samples_stay_small(tmp_path):
    # Two throughput bins a year apart, within what the header allows: resampled, not 3e9 bins.
    year = 365 * 86400 * 10**9
    samples = with_records(Kind.THROUGHPUT, ts=2000 + year)
    path = crafted(tmp_path, good_header(bin_ns=10**6), data(tmp_path, Kind.SPANS, span_events()),
                   data(tmp_path, Kind.THROUGHPUT, samples),
                   json_chunk(tmp_path, Kind.END, {"seconds": 2 * year / 1e9}))
    trace = load(path)
    assert trace.problems == []
    ((times, values),) = trace.series("throughput", 10**6).values()
    assert len(times) <= 1 << 22 and values.sum() * (times[1] - times[0]) / 1e9 == pytest.approx(200)


@pytest.mark.parametrize("case", ["header_list", "loss_list", "tid", "ts"])
def test_crafted_traces_through_the_cli(tmp_path, case):
    bad_spans = with_records(Kind.SPANS, tid=0xFFFF_FFFF) if case == "tid" else with_records(Kind.SPANS, ts=2**64 - 1)
    path = {
        "header_list": lambda: in_and_out(tmp_path, [1, 2]),
        "loss_list": lambda: in_and_out(tmp_path, good_header(), json_chunk(tmp_path, Kind.LOSS, [1, 2])),
        "tid": lambda: in_and_out(tmp_path, good_header(), data(tmp_path, Kind.SPANS, bad_spans)),
        "ts": lambda: in_and_out(tmp_path, good_header(), data(tmp_path, Kind.SPANS, bad_spans),
                                 data(tmp_path, Kind.THROUGHPUT, with_records(Kind.THROUGHPUT, ts=2**64 - 1))),
    }[case]()
    for args in (["report", path], ["export", path, "--perfetto", tmp_path / "x.json", "--csv", tmp_path / "x.csv"]):
        result = netprof(*args)
        assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
        if case == "header_list":
            assert_one_line(result, str(path), "header")
        else:
            assert result.returncode == 0, result.stderr
    if case != "header_list":
        assert "warning:" in netprof("report", path).stdout


@pytest.mark.parametrize("kind, layout_of", [
    ("SPANS", lambda ours: {**ours, "fields": {**ours["fields"], "ts": [0, "(8,)u1"]}}),   # a field of another shape
    ("XDP", lambda ours: {"size": 8, "fields": {"ts": [0, "<u8"]}}),                      # records 100x smaller
    ("GARBAGE", lambda ours: ours),
])
def test_a_layout_this_netprof_did_not_write_is_refused(tmp_path, kind, layout_of):
    """The reader decodes with the declared layouts, so it accepts only its own and the older
    ones it converts: nothing it decodes can crash it or grow many times larger."""
    header = new_header([], 1024)
    ours = header["layouts"]["SPANS" if kind == "GARBAGE" else kind]
    header["layouts"][kind] = layout_of(ours)
    path = tmp_path / "t.trace"
    TraceWriter(path, header).close()
    with pytest.raises(TraceError, match="layouts"):
        read(path)
