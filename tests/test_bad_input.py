"""Bad input is one line on stderr (what was wrong, what to do) and exit status 2: never a
traceback, a hang, or an allocation the size of the timestamps (issue 12, cases 10 to 14).

Every command runs under a deadline and a memory ceiling, so that a regression fails the test
instead of hanging it or eating the machine's memory. Nothing here attaches a probe: the attach
tests stop netprof before its session starts, and the two marked root fail on their output
file or uprobe target, which Session.__enter__ checks before it loads or attaches anything.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netprof import cli
from netprof.loader import elf
from netprof.probes import layout
from netprof.probes.layout import ENTRY, EXIT
from netprof.session import Session
from netprof.tracefile import Kind, TraceWriter, new_header

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
