"""The raw system-call layer, as cilium/ebpf's internal/sys: the one C library handle and this
machine's system-call numbers, both resolved once, at import.

Everything in netprof that calls into libc or makes a system call by number goes through here.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import NamedTuple

libc = ctypes.CDLL(None, use_errno=True)


def errno_of(err: OSError) -> int:
    """An OSError's errno (EIO for the rare one raised without)."""
    return err.errno if err.errno is not None else errno.EIO
libc.syscall.restype = ctypes.c_long


def _machine(uname_machine: str) -> str:
    """The architecture as the kernel's own tables name it ("arm64", as macOS and some tools say, is "aarch64")."""
    return {"arm64": "aarch64"}.get(uname_machine, uname_machine)


MACHINE = _machine(os.uname().machine)


class Numbers(NamedTuple):
    """The system calls netprof makes by number: __NR_bpf and __NR_perf_event_open."""

    bpf: int
    perf_event_open: int


NUMBERS = {
    "x86_64": Numbers(bpf=321, perf_event_open=298),  # arch/x86/entry/syscalls/syscall_64.tbl
    "aarch64": Numbers(bpf=280, perf_event_open=241),  # include/uapi/asm-generic/unistd.h
    "riscv64": Numbers(bpf=280, perf_event_open=241),  # include/uapi/asm-generic/unistd.h
    "ppc64le": Numbers(bpf=361, perf_event_open=319),  # arch/powerpc/kernel/syscalls/syscall.tbl
    "s390x": Numbers(bpf=351, perf_event_open=331),  # arch/s390/kernel/syscalls/syscall.tbl
}

NR: Numbers | None = NUMBERS.get(MACHINE)
"""This machine's numbers; None on an architecture netprof does not know."""


def syscall(name: str, *args) -> int:
    """The system call ``name`` (a field of Numbers) with ``args``: its non-negative result, retried
    while a signal interrupts it. A failure raises OSError with the errno, which the caller words."""
    if NR is None:
        raise OSError(errno.ENOSYS, f"{name}(2) has no known system-call number on {MACHINE}")
    number = getattr(NR, name)
    while True:
        result = libc.syscall(number, *args)
        if result >= 0:
            return result
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))
