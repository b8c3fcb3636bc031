"""netprof.loader.program.load without a kernel: what it hands BPF_PROG_LOAD (the bpf(2) call is
replaced by one that records the attributes), the input it refuses before the kernel sees it, and
debug info that never costs a load."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re

import pytest

from netprof.asm import R0, CallKfunc, Exit, Mov, Program, Return
from netprof.loader import debug_info, kernel_btf, program
from netprof.loader.syscall import BpfError, Cmd, ProgType


class Handle:
    def __init__(self, fd: int):
        self.fd = fd


class Loads(list):
    """Each BPF_PROG_LOAD that ``program.load`` makes: (attr, its fd_array, its func_info and
    line_info records), read while the call is made. A load gets a real fd (of /dev/null) that
    the BpfProgram owns and closes; with ``refuse_debug_info`` one with debug info gets EINVAL.
    The program's BTF "loads" as a /dev/null fd too (``btfs``)."""

    refuse_debug_info = False

    def __init__(self):
        super().__init__()
        self.btfs = []

    def bpf(self, cmd, attr, what):
        assert cmd == Cmd.PROG_LOAD
        copy = type(attr).from_buffer_copy(attr)
        fds = list((ctypes.c_int32 * 8).from_address(attr.fd_array)) if attr.fd_array else None
        funcs = ctypes.string_at(attr.func_info, attr.func_info_cnt * attr.func_info_rec_size)
        lines = ctypes.string_at(attr.line_info, attr.line_info_cnt * attr.line_info_rec_size)
        self.append((copy, fds, funcs, lines))
        if self.refuse_debug_info and attr.prog_btf_fd:
            raise BpfError(errno.EINVAL, f"{what}: Invalid argument")
        return os.open(os.devnull, os.O_RDONLY)

    def load_btf(self, blob, what):
        handle = kernel_btf.BtfHandle(os.open(os.devnull, os.O_RDONLY), 99)
        self.btfs.append((handle, handle.fd, blob))
        return handle


@pytest.fixture
def loads(monkeypatch):
    seen = Loads()
    monkeypatch.setattr(program, "bpf", seen.bpf)
    monkeypatch.setattr(kernel_btf, "load", seen.load_btf)
    return seen


def test_load_passes_the_fd_array(loads):
    with program.load(Program(CallKfunc(77, module=2), Return(0)), ProgType.SOCKET_FILTER, name="t",
                      fd_array=[0, Handle(41), 42]):
        pass
    attr, fds, *_ = loads[0]
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


def test_load_passes_the_program_btf_func_info_and_line_info(loads):
    source = Program(Mov(R0, 0),
                     Exit())
    with program.load(source, ProgType.SOCKET_FILTER, name="t"):
        pass
    expected = debug_info.build(source.link(), "t")
    (handle, fd, blob), = loads.btfs
    assert blob == expected.btf
    attr, _, funcs, lines = loads[0]
    assert attr.prog_btf_fd == fd
    assert (attr.func_info_rec_size, attr.func_info_cnt, funcs) == (8, 1, expected.func_info)
    assert (attr.line_info_rec_size, attr.line_info_cnt, lines) == (16, 2, expected.line_info)
    assert handle.fd == -1  # closed once loaded: the program holds its own reference


def test_bytecode_has_no_debug_info(loads):
    with program.load(Program(Mov(R0, 0), Exit()).encode(), ProgType.SOCKET_FILTER, name="t"):
        pass
    assert loads[0][0].prog_btf_fd == 0 and loads.btfs == []


def test_a_refused_btf_loads_the_program_without_debug_info(loads, monkeypatch, caplog):
    def refuse(blob, what):
        raise BpfError(errno.EPERM, f"{what}: Operation not permitted")

    monkeypatch.setattr(kernel_btf, "load", refuse)
    with caplog.at_level(logging.DEBUG, logger="netprof.loader.program"):
        with program.load(Program(Mov(R0, 0), Exit()), ProgType.SOCKET_FILTER, name="t"):
            pass
    assert [attr.prog_btf_fd for attr, *_ in loads] == [0]
    assert "program 't' loads without its debug info: load the BTF of program 't'" in caplog.text


def test_a_program_refused_with_its_debug_info_loads_again_without(loads, caplog):
    loads.refuse_debug_info = True
    with caplog.at_level(logging.DEBUG, logger="netprof.loader.program"):
        with program.load(Program(Mov(R0, 0), Exit()), ProgType.SOCKET_FILTER, name="t"):
            pass
    assert [attr.prog_btf_fd != 0 for attr, *_ in loads] == [True, False]
    assert [attr.line_info_cnt for attr, *_ in loads] == [1, 0]
    assert "program 't' loaded without its debug info (func_info, line_info): the kernel refused it" in caplog.text
    assert loads.btfs[0][0].fd == -1


def test_a_failure_to_build_debug_info_never_costs_the_load(loads, monkeypatch, caplog):
    def broken(linked, name):
        raise RuntimeError("a bug")

    monkeypatch.setattr(debug_info, "build", broken)
    with caplog.at_level(logging.DEBUG, logger="netprof.loader.program"):
        with program.load(Program(Mov(R0, 0), Exit()), ProgType.SOCKET_FILTER, name="t"):
            pass
    assert loads[0][0].prog_btf_fd == 0
    assert "program 't': no debug info: a bug" in caplog.text
