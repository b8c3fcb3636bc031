"""netprof.loader.kernel_btf without a kernel: bpf(2) replaced by fakes, to check how it walks the kernel's
BTF ids and how a refused BTF load turns into a BtfLoadError carrying the verifier's log."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from netprof.loader import kernel_btf
from netprof.loader.syscall import BpfError, Cmd


def test_open_kernel_walks_every_id_and_skips_one_unloaded_meanwhile(monkeypatch):
    ids = [3, 7, 12]
    asked: list[int] = []
    names = {3: ("nf_tables", True), 12: ("vmlinux", True)}

    def next_id(cmd, start):
        assert cmd == Cmd.BTF_GET_NEXT_ID
        asked.append(start)
        return next((i for i in ids if i > start), None)

    opened: dict[int, int] = {}  # fd -> id

    def fd_by_id(cmd, ident):
        if ident == 7:
            raise BpfError(errno.ENOENT, "open id 7: gone")
        fd = os.open(os.devnull, os.O_RDONLY)
        opened[fd] = ident
        return fd

    def info(fd):
        return (opened[fd], *names[opened[fd]])

    monkeypatch.setattr(kernel_btf, "next_id", next_id)
    monkeypatch.setattr(kernel_btf, "fd_by_id", fd_by_id)
    monkeypatch.setattr(kernel_btf, "_info", info)
    with kernel_btf.open_kernel("vmlinux") as handle:
        assert (handle.id, handle.name, handle.kernel) == (12, "vmlinux", True)
    assert asked == [0, 3, 7]
    asked.clear()
    with pytest.raises(BpfError, match="open the kernel's BTF of 'no_such_module': there is none") as e:
        kernel_btf.open_kernel("no_such_module")
    assert e.value.errno == errno.ENOENT and asked == [0, 3, 7, 12]


@pytest.mark.parametrize("second, reported", [(errno.ENOSPC, errno.EINVAL), (errno.EACCES, errno.EACCES)])
def test_a_refused_btf_carries_the_kernel_log(monkeypatch, second, reported):
    calls = []

    def bpf(cmd, attr, what):
        assert cmd == Cmd.BTF_LOAD
        calls.append(attr.btf_log_level)
        if attr.btf_log_level:
            log = b"magic: 0xeb9f\n[1] INT int size=4\nInvalid name\n\0"
            ctypes.memmove(attr.btf_log_buf, log, len(log))
            raise BpfError(second, f"{what}: {os.strerror(second)}")
        raise BpfError(errno.EINVAL, f"{what}: {os.strerror(errno.EINVAL)}")

    monkeypatch.setattr(kernel_btf, "bpf", bpf)
    with pytest.raises(kernel_btf.BtfLoadError) as e:
        kernel_btf.load(b"\x9f\xeb", "load BTF of 't'")
    assert calls == [0, 1]
    assert e.value.errno == reported and str(e.value) == "load BTF of 't': Invalid name"
    assert e.value.log.splitlines()[1] == "[1] INT int size=4"


def test_an_error_without_a_log_is_passed_on(monkeypatch):
    def bpf(cmd, attr, what):
        raise BpfError(errno.EPERM, f"{what}: Operation not permitted")

    monkeypatch.setattr(kernel_btf, "bpf", bpf)
    with pytest.raises(BpfError) as e:
        kernel_btf.load(b"\x9f\xeb")
    assert type(e.value) is BpfError and e.value.errno == errno.EPERM
