"""netprof.loader.program.load without a kernel: what it hands BPF_PROG_LOAD (the bpf(2) call is
replaced by one that records the attributes), and the input it refuses before the kernel sees it."""

from __future__ import annotations

import ctypes
import os
import re

import pytest

from netprof.asm import R0, CallKfunc, Exit, Mov, Program, Return
from netprof.loader import kernel_btf, program
from netprof.loader.syscall import Cmd, ProgType


class Handle:
    def __init__(self, fd: int):
        self.fd = fd


@pytest.fixture
def loads(monkeypatch):
    """Every BPF_PROG_LOAD attribute ``program.load`` passes, read while the call is made; each
    load gets a real fd (of /dev/null) that the returned BpfProgram owns and closes."""
    seen = []

    def fake_bpf(cmd, attr, what):
        assert cmd == Cmd.PROG_LOAD
        copy = type(attr).from_buffer_copy(attr)
        fds = list((ctypes.c_int32 * 8).from_address(attr.fd_array)) if attr.fd_array else None
        seen.append((copy, fds))
        return os.open(os.devnull, os.O_RDONLY)

    monkeypatch.setattr(program, "bpf", fake_bpf)
    return seen


def test_load_passes_the_fd_array(loads):
    with program.load(Program(CallKfunc(77, module=2), Return(0)), ProgType.SOCKET_FILTER, name="t",
                      fd_array=[0, Handle(41), 42]):
        pass
    attr, fds = loads[0]
    assert attr.fd_array != 0
    assert fds[:3] == [0, 41, 42]


def test_no_fd_array_passes_none(loads):
    with program.load(Program(Mov(R0, 0), Exit()), ProgType.SOCKET_FILTER, name="t"):
        pass
    assert loads[0][0].fd_array == 0


@pytest.mark.parametrize("fd_array, error, words", [
    ([0, "3"], TypeError, r"fd_array\[1\] is '3', not a file descriptor"),
    ([0, True], TypeError, r"fd_array\[1\] is True"),
    ([0, -5], ValueError, r"fd_array\[1\] is -5, not an open file descriptor"),
    ([Handle(-1)], ValueError, r"fd_array\[0\] is -1 \(closed\)"),
    ("12", TypeError, "fd_array is a sequence of file descriptors"),
    ({3, 4}, TypeError, "fd_array is a sequence of file descriptors"),
])
def test_a_bad_fd_array_is_refused_before_the_kernel(loads, fd_array, error, words):
    with pytest.raises(error, match=words):
        program.load(Program(Mov(R0, 0), Exit()), ProgType.SOCKET_FILTER, name="t", fd_array=fd_array)
    assert loads == []


def test_a_kfunc_module_past_the_fd_array_is_refused_with_its_line(loads):
    kfunc_line = Program(CallKfunc(77, module=3), Return(0))  # this line is named in the error
    words = re.escape(__file__) + r":\d+:\d+: kfunc call with module 3 needs fd_array\[3\].*fd_array has 2 entries"
    with pytest.raises(ValueError, match=words):
        program.load(kfunc_line, ProgType.SOCKET_FILTER, name="t", fd_array=[0, 5])
    with pytest.raises(ValueError, match="module -1: a module index is positive"):
        program.load(Program(CallKfunc(77, module=-1), Return(0)), ProgType.SOCKET_FILTER, name="t")
    assert loads == []


def test_a_kernel_btf_is_named_by_a_string():
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="a kernel BTF is named by a module name or 'vmlinux'"):
            kernel_btf.open_kernel(bad)
