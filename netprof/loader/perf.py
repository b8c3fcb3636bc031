"""perf_event_open(2) through ctypes: ``struct perf_event_attr``, the PMUs, and the ioctls that
attach a BPF program to a tracepoint, kprobe or uprobe event.

Layout from include/uapi/linux/perf_event.h (PERF_ATTR_SIZE_VER8, 136 bytes).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from enum import IntEnum
from pathlib import Path

from . import sys
from .syscall import BpfError

PERF_FLAG_FD_CLOEXEC = 1 << 3

# _IO('$', n) and _IOW('$', n, u32): include/uapi/linux/perf_event.h
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


class PerfType(IntEnum):
    """enum perf_type_id; the dynamic PMUs (kprobe, uprobe) have their type in sysfs."""

    HARDWARE = 0
    SOFTWARE = 1
    TRACEPOINT = 2
    HW_CACHE = 3
    RAW = 4
    BREAKPOINT = 5


class SwConfig(IntEnum):
    """enum perf_sw_ids."""

    CPU_CLOCK = 0
    TASK_CLOCK = 1
    BPF_OUTPUT = 10


class PerfEventAttr(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),  # or sample_freq
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),  # disabled:1, inherit:1, ... (bit 0 = disabled)
        ("wakeup_events", ctypes.c_uint32),  # or wakeup_watermark
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),  # kprobe_func / uprobe_path
        ("config2", ctypes.c_uint64),  # probe_offset
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("_reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("_reserved_3", ctypes.c_uint32),
        ("sig_data", ctypes.c_uint64),
        ("config3", ctypes.c_uint64),
    ]


FLAG_DISABLED = 1 << 0
SAMPLE_RAW = 1 << 10

_SYSFS_PMU = Path("/sys/bus/event_source/devices")


def pmu_type(name: str) -> int | None:
    """The perf type of a dynamic PMU (``kprobe``, ``uprobe``), or None if this kernel has none."""
    try:
        return int((_SYSFS_PMU / name / "type").read_text())
    except (OSError, ValueError):
        return None


def retprobe_bit(name: str) -> int:
    """Which config bit asks the kprobe/uprobe PMU for a return probe (format/retprobe: "config:0")."""
    try:
        spec = (_SYSFS_PMU / name / "format/retprobe").read_text().strip()
        return int(spec.split(":")[1])
    except (OSError, ValueError, IndexError):
        return 0


def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, what: str, group_fd: int = -1) -> int:
    """perf_event_open(2); raises BpfError (an OSError) saying ``what`` failed."""
    attr.size = ctypes.sizeof(PerfEventAttr)
    try:
        return sys.syscall("perf_event_open", ctypes.byref(attr), pid, cpu, group_fd, PERF_FLAG_FD_CLOEXEC)
    except OSError as failed:
        if sys.NR is None:  # an architecture without a known number: the reason says so
            raise BpfError(failed.errno, f"{what}: {failed.strerror}") from None
        err = sys.errno_of(failed)
        advice = {
            errno.EPERM: "needs root, or CAP_PERFMON (and kernel.perf_event_paranoid)",
            errno.EACCES: "needs root, or CAP_PERFMON (and kernel.perf_event_paranoid)",
            errno.ENOENT: "no such function or event",
            errno.ESRCH: "no such process",
            errno.EINVAL: "the kernel refused the event's attributes",
        }.get(err)
        raise BpfError(err, f"{what}: {os.strerror(err)}" + (f" ({advice})" if advice else "")) from None


def attach_bpf(perf_fd: int, prog_fd: int, what: str) -> None:
    """PERF_EVENT_IOC_SET_BPF then ENABLE: the program runs on every hit of the event."""
    try:
        fcntl.ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(perf_fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as failed:
        err = sys.errno_of(failed)
        raise BpfError(err, f"{what}: {os.strerror(err)}"
                       + (" (program type does not match the event)" if err == errno.EINVAL else "")) from None
