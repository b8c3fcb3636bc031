"""Every file netprof writes: new regular files only, mode 0600, handed to the sudo caller; never
through a symlink, never onto a device or FIFO (which would hang), and each command that writes
says so in one line with exit status 2."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_trace import make_trace

from netprof import outfile
from netprof.format.tracefile import TraceWriter, new_header


def write(path, data=b"new"):
    with outfile.writing(path) as f:
        f.write(data)


def test_new_file_is_private(tmp_path):
    path = tmp_path / "out.bin"
    write(path)
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_regular_file_is_replaced_not_rewritten(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old content")
    os.chmod(path, 0o644)
    other_name = tmp_path / "hardlink"
    os.link(path, other_name)  # whatever else pointed at the old file keeps it
    write(path)
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert other_name.read_bytes() == b"old content"


def test_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "out.csv"
    link.symlink_to(victim)
    with pytest.raises(outfile.OutputError, match="symbolic link"):
        write(link)
    assert victim.read_bytes() == b"precious" and link.is_symlink()


@pytest.mark.parametrize("make, kind", [(os.mkfifo, "FIFO"), (os.mkdir, "folder")])
def test_fifo_and_folder_are_refused_without_blocking(tmp_path, make, kind):
    path = tmp_path / "out"
    make(path)
    with pytest.raises(outfile.OutputError, match=kind):
        outfile.create(path)


def test_a_device_is_refused():
    with pytest.raises(outfile.OutputError, match="device"):
        outfile.check_target("/dev/null")
    assert stat.S_IMODE(os.stat("/dev/null").st_mode) == 0o666


def test_an_error_leaves_nothing_behind(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError), outfile.writing(path) as f:
        f.write(b"half")
        1 / 0
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_missing_folder(tmp_path):
    with pytest.raises(outfile.OutputError, match="not a writable folder"):
        write(tmp_path / "nope" / "out.bin")


def test_trace_writer_refuses_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "t.trace").symlink_to(victim)
    with pytest.raises(outfile.OutputError):
        TraceWriter(tmp_path / "t.trace", new_header([], 64))
    assert victim.read_bytes() == b"precious"


def netprof(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netprof", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("flag", ["--csv", "--perfetto", "--pcap", "--parquet"])
def test_export_onto_a_symlink_or_fifo_is_one_line_and_exit_2(tmp_path, flag):
    trace = tmp_path / "t.trace"
    make_trace(trace)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "link").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo")
    for target in ("link", "fifo"):
        result = netprof("export", str(trace), flag, str(tmp_path / target))
        assert result.returncode == 2, result.stderr
        assert "will not write" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert victim.read_bytes() == b"precious"


def test_exports_are_private(tmp_path):
    trace = tmp_path / "t.trace"
    make_trace(trace)
    result = netprof("export", str(trace), "--csv", str(tmp_path / "o.csv"), "--pcap", str(tmp_path / "o.pcap"),
                     "--perfetto", str(tmp_path / "o.json"))
    assert result.returncode == 0, result.stderr
    for name in ("o.csv", "o.pcap", "o.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_asm_output_onto_a_device_is_refused(tmp_path):
    source = tmp_path / "p.s"
    source.write_text("r0 = 0\nexit\n")
    result = netprof("asm", str(source), "-o", "/dev/null")
    assert result.returncode == 2 and "device" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.root
def test_files_go_to_the_sudo_caller(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    for path in (tmp_path / "a", tmp_path / "b"):
        write(path)
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)
    os.close(outfile.create(tmp_path / "c"))
    assert Path(tmp_path / "c").stat().st_uid == 65534
