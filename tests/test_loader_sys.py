"""netprof.loader.sys: one libc handle and this machine's system-call numbers, found once at import."""

import errno
import os
import re
from pathlib import Path

import pytest

from netprof.loader import perf, sys as ksys, syscall
from netprof.loader.syscall import BpfError, Cmd, MapCreateAttr

ROOT = Path(__file__).resolve().parent.parent

# The C library's own headers are the ground truth for the numbers (Debian: linux-libc-dev).
HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
    "riscv64": Path("/usr/include/asm-generic/unistd.h"),
}


@pytest.mark.parametrize("machine", sorted(HEADERS))
def test_numbers_are_the_kernel_headers(machine):
    header = HEADERS[machine]
    if not header.is_file():
        pytest.skip(f"{header} is not installed (Debian: apt-get install linux-libc-dev)")
    defined = dict(re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)", header.read_text()))
    numbers = ksys.NUMBERS[machine]
    assert numbers.bpf == int(defined["bpf"])
    assert numbers.perf_event_open == int(defined["perf_event_open"])


def test_this_machine_is_known():
    assert ksys.NR == ksys.NUMBERS[ksys.MACHINE]


def test_arm64_is_called_aarch64():
    assert ksys._machine("arm64") == "aarch64"
    assert ksys._machine("x86_64") == "x86_64"


def _no_uname():
    raise AssertionError("os.uname() called on the syscall path")


def test_bpf_does_not_ask_the_machine_on_every_call(monkeypatch):
    monkeypatch.setattr(os, "uname", _no_uname)
    with pytest.raises(BpfError) as failed:  # an all-zero map: EINVAL as root, EPERM otherwise
        syscall.bpf(Cmd.MAP_CREATE, MapCreateAttr(), "create an empty map")
    assert failed.value.errno in (errno.EINVAL, errno.EPERM)


def test_perf_event_open_does_not_ask_the_machine_on_every_call(monkeypatch):
    monkeypatch.setattr(os, "uname", _no_uname)
    with pytest.raises(BpfError):  # no such PMU type
        perf.perf_event_open(perf.PerfEventAttr(type=0x7FFF_FFF0), -1, 0, "open a made-up event")


def test_an_unknown_architecture_says_so(monkeypatch):
    monkeypatch.setattr(ksys, "NR", None)
    monkeypatch.setattr(ksys, "MACHINE", "vax")
    with pytest.raises(BpfError, match="create a map: bpf\\(2\\) has no known system-call number on vax") as failed:
        syscall.bpf(Cmd.MAP_CREATE, MapCreateAttr(), "create a map")
    assert failed.value.errno == errno.ENOSYS
    with pytest.raises(BpfError, match="perf_event_open\\(2\\) has no known system-call number on vax"):
        perf.perf_event_open(perf.PerfEventAttr(), -1, 0, "open an event")


def test_only_sys_opens_libc_or_knows_syscall_numbers():
    for path in sorted((ROOT / "netprof/loader").glob("*.py")):
        if path.name == "sys.py":
            continue
        text = path.read_text()
        assert "CDLL(" not in text, f"{path.name} opens libc itself: use netprof.loader.sys.libc"
        assert "uname().machine" not in text, f"{path.name} asks os.uname(): use netprof.loader.sys.MACHINE"
        assert ".syscall(" not in text.replace("sys.syscall(", ""), f"{path.name} makes a raw syscall"
