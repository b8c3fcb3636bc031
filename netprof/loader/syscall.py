"""The raw bpf(2) system call through ctypes: ``union bpf_attr`` variants and the commands.

Layouts are copied from include/uapi/linux/bpf.h (kernel 6.18); each ctypes Structure below
is one member of ``union bpf_attr``. Fields the kernel added later stay zero, which is what
older and newer kernels both expect.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from enum import IntEnum

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class Cmd(IntEnum):
    """enum bpf_cmd (include/uapi/linux/bpf.h)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    OBJ_GET_INFO_BY_FD = 15
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    MAP_LOOKUP_BATCH = 24
    LINK_CREATE = 28


class ProgType(IntEnum):
    """enum bpf_prog_type."""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    RAW_TRACEPOINT = 17
    TRACING = 26


class MapType(IntEnum):
    """enum bpf_map_type."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    LRU_HASH = 9
    RINGBUF = 27


class MapCreateAttr(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * 16),
        ("map_ifindex", ctypes.c_uint32),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class MapElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # or next_key
        ("flags", ctypes.c_uint64),
    ]


class ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("func_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("line_info_cnt", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("core_relo_cnt", ctypes.c_uint32),
        ("fd_array", ctypes.c_uint64),
        ("core_relos", ctypes.c_uint64),
        ("core_relo_rec_size", ctypes.c_uint32),
        ("log_true_size", ctypes.c_uint32),
    ]


class TestRunAttr(ctypes.Structure):
    __test__ = False  # not a pytest class
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class BpfError(OSError):
    """A failed bpf(2) call: what was attempted, the errno, and what to do about it."""


_ADVICE = {
    errno.EPERM: "needs root, or CAP_BPF and CAP_PERFMON",
    errno.EACCES: "the verifier or the kernel's lockdown refused it",
    errno.E2BIG: "an attribute is larger than this kernel knows (a newer field is set)",
    errno.ENOSYS: "this kernel has no bpf(2)",
}


def _addr(buffer: object) -> int:
    return ctypes.addressof(buffer) if buffer is not None else 0


def bpf(cmd: Cmd, attr: ctypes.Structure, what: str) -> int:
    """bpf(cmd, &attr, sizeof(attr)); returns the result, raises BpfError saying ``what`` failed."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise BpfError(errno.ENOSYS, f"{what}: bpf(2) syscall number unknown on {platform.machine()}")
    while True:
        result = _libc.syscall(number, int(cmd), ctypes.byref(attr), ctypes.sizeof(attr))
        if result >= 0:
            return result
        err = ctypes.get_errno()
        if err != errno.EINTR:
            break
    advice = _ADVICE.get(err)
    message = f"{what}: {os.strerror(err)}" + (f" ({advice})" if advice else "")
    raise BpfError(err, message)


def prog_load(prog_type: ProgType, code: bytes, license: str = "GPL", name: str = "",
              log_size: int = 1 << 20, **fields: int) -> int:
    """Load bytecode; returns the program fd. On a verifier refusal the BpfError carries
    ``.log``, the kernel's explanation."""
    insns = ctypes.create_string_buffer(bytes(code), len(code))
    lic = ctypes.create_string_buffer(license.encode())
    attr = ProgLoadAttr(prog_type=prog_type, insn_cnt=len(code) // 8, insns=_addr(insns),
                        license=_addr(lic), prog_name=name.encode()[:15], **fields)
    try:
        return bpf(Cmd.PROG_LOAD, attr, f"load {prog_type.name.lower()} program {name!r}".replace(" ''", ""))
    except BpfError as err:
        if err.errno not in (errno.EACCES, errno.EINVAL):
            raise
        log = ctypes.create_string_buffer(log_size)
        attr.log_level, attr.log_size, attr.log_buf = 1, log_size, _addr(log)
        try:
            bpf(Cmd.PROG_LOAD, attr, "load (again, for the verifier log)")
        except BpfError as again:
            again.log = log.value.decode(errors="replace")
            raise again from None
        raise


def map_create(map_type: MapType, key_size: int, value_size: int, max_entries: int, name: str = "",
               flags: int = 0) -> int:
    attr = MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                         max_entries=max_entries, map_flags=flags, map_name=name.encode()[:15])
    return bpf(Cmd.MAP_CREATE, attr, f"create {map_type.name.lower()} map {name!r}")


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    bpf(Cmd.MAP_LOOKUP_ELEM, MapElemAttr(map_fd=fd, key=_addr(k), value=_addr(v)), "map lookup")
    return v.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    bpf(Cmd.MAP_UPDATE_ELEM, MapElemAttr(map_fd=fd, key=_addr(k), value=_addr(v), flags=flags), "map update")


def prog_test_run(fd: int, data: bytes, repeat: int = 1) -> tuple[int, int]:
    """Run a loaded program on ``data`` in the kernel (BPF_PROG_TEST_RUN): (retval, duration ns)."""
    buf = ctypes.create_string_buffer(data, len(data))
    attr = TestRunAttr(prog_fd=fd, data_size_in=len(data), data_in=_addr(buf), repeat=repeat)
    bpf(Cmd.PROG_TEST_RUN, attr, "test run")
    return attr.retval, attr.duration
