"""The raw bpf(2) system call through ctypes: ``union bpf_attr`` variants and the commands.

Layouts are copied from include/uapi/linux/bpf.h (kernel 6.18); each ctypes Structure below
is one member of ``union bpf_attr``. Fields the kernel added later stay zero, which is what
older and newer kernels both expect.
"""

from __future__ import annotations

import ctypes
import errno
import os
from enum import IntEnum

from . import sys


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
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    LINK_CREATE = 28
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    LINK_DETACH = 34


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
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class AttachType(IntEnum):
    """enum bpf_attach_type (the subset netprof uses)."""

    NONE = 0
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    XDP = 37
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    TRACE_UPROBE_MULTI = 48


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
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


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
    """BPF_PROG_LOAD, up to fd_array_cnt (Linux 6.14); the later signature fields are left out."""

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
        ("fd_array", ctypes.c_uint64),  # int fds; a kfunc call's off (its module's BTF) indexes it
        ("core_relos", ctypes.c_uint64),
        ("core_relo_rec_size", ctypes.c_uint32),
        ("log_true_size", ctypes.c_uint32),
        ("prog_token_fd", ctypes.c_int32),
        ("fd_array_cnt", ctypes.c_uint32),  # 0: fd_array is read where instructions index it
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


class MapBatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""

    _fields_ = [
        ("pathname", ctypes.c_uint64),
        ("bpf_fd", ctypes.c_uint32),
        ("file_flags", ctypes.c_uint32),
        ("path_fd", ctypes.c_int32),
    ]


class InfoAttr(ctypes.Structure):
    """BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class GetIdAttr(ctypes.Structure):
    """BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID."""

    _fields_ = [
        ("id", ctypes.c_uint32),
        ("next_id", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
    ]


class RawTracepointAttr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_uint64),
        ("prog_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("cookie", ctypes.c_uint64),
    ]


class BtfLoadAttr(ctypes.Structure):
    _fields_ = [
        ("btf", ctypes.c_uint64),
        ("btf_log_buf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("btf_log_size", ctypes.c_uint32),
        ("btf_log_level", ctypes.c_uint32),
        ("btf_log_true_size", ctypes.c_uint32),
    ]


class BtfInfo(ctypes.Structure):
    """struct bpf_btf_info."""

    _fields_ = [
        ("btf", ctypes.c_uint64),
        ("btf_size", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("name", ctypes.c_uint64),
        ("name_len", ctypes.c_uint32),
        ("kernel_btf", ctypes.c_uint32),
    ]


class LinkCreateAttr(ctypes.Structure):
    """BPF_LINK_CREATE. ``target`` is the target fd or ifindex (XDP: the ifindex; perf_event: the
    perf event fd; tracing: 0). ``extra`` is the per-type union: perf_event puts its bpf_cookie
    in extra[0]; tracing its target_btf_id in extra[0] and its cookie in extra[1]."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("target", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("extra", ctypes.c_uint64 * 6),
    ]


class ProgInfo(ctypes.Structure):
    """struct bpf_prog_info, up to the fields netprof reads."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible_etc", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
    ]


class MapInfo(ctypes.Structure):
    """struct bpf_map_info."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_id", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class LinkInfo(ctypes.Structure):
    """struct bpf_link_info: the common head and the raw union (netprof reads XDP's ifindex)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("union", ctypes.c_uint64 * 8),
    ]


ENOTSUPP = 524  # the kernel's internal "not supported" errno, which reaches user space from bpf(2)


class BpfError(OSError):
    """A failed bpf(2) call: what was attempted, the errno, and what to do about it."""


_ADVICE = {
    errno.EPERM: "needs root, or CAP_BPF and CAP_PERFMON",
    errno.EACCES: "the verifier or the kernel's lockdown refused it",
    errno.E2BIG: "an attribute is larger than this kernel knows (a newer field is set)",
    errno.ENOSYS: "this kernel has no bpf(2)",
    errno.ENOMEM: "out of locked memory or map space: lower the map sizes",
    ENOTSUPP: "not supported by this kernel for this program or map type",
}


def _addr(buffer: ctypes._CData | None) -> int:
    return ctypes.addressof(buffer) if buffer is not None else 0


def bpf(cmd: Cmd, attr: ctypes.Structure, what: str) -> int:
    """bpf(cmd, &attr, sizeof(attr)); returns the result, raises BpfError saying ``what`` failed."""
    try:
        return sys.syscall("bpf", int(cmd), ctypes.byref(attr), ctypes.sizeof(attr))
    except OSError as failed:
        if sys.NR is None:  # an architecture without a known number: the reason says so
            raise BpfError(failed.errno, f"{what}: {failed.strerror}") from None
        err = sys.errno_of(failed)
    advice = _ADVICE.get(err)
    reason = "operation not supported" if err == ENOTSUPP else os.strerror(err)
    message = f"{what}: {reason}" + (f" ({advice})" if advice else "")
    raise BpfError(err, message)


def prog_load(attr: ProgLoadAttr, what: str) -> int:
    return bpf(Cmd.PROG_LOAD, attr, what)


def map_create(map_type: MapType, key_size: int, value_size: int, max_entries: int, name: str = "",
               flags: int = 0) -> int:
    attr = MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                         max_entries=max_entries, map_flags=flags, map_name=name.encode()[:15])
    what = f"create {map_type.name.lower()} map {name!r}"
    try:
        return bpf(Cmd.MAP_CREATE, attr, what)
    except BpfError as err:
        if err.errno != errno.EINVAL:
            raise
        raise BpfError(err.errno, f"{what}: the kernel refused key_size={key_size} value_size={value_size} "
                                  f"max_entries={max_entries} flags={flags:#x} for this map type") from None


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes:
    """The value at ``key``; raises BpfError with errno ENOENT when there is none."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    bpf(Cmd.MAP_LOOKUP_ELEM, MapElemAttr(map_fd=fd, key=_addr(k), value=_addr(v)), "map lookup")
    return v.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    bpf(Cmd.MAP_UPDATE_ELEM, MapElemAttr(map_fd=fd, key=_addr(k), value=_addr(v), flags=flags), "map update")


def map_delete(fd: int, key: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    bpf(Cmd.MAP_DELETE_ELEM, MapElemAttr(map_fd=fd, key=_addr(k)), "map delete")


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after ``key`` (the first key when None), or None at the end."""
    k = ctypes.create_string_buffer(key, len(key)) if key is not None else None
    nxt = ctypes.create_string_buffer(key_size)
    try:
        bpf(Cmd.MAP_GET_NEXT_KEY, MapElemAttr(map_fd=fd, key=_addr(k), value=_addr(nxt)), "map next key")
    except BpfError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return nxt.raw


def map_lookup_batch(fd: int, key_size: int, value_size: int, count: int,
                     in_batch: bytes | None) -> tuple[bytes, bytes, int, bytes | None]:
    """One BPF_MAP_LOOKUP_BATCH: (keys, values, number read, token for the next call or None at the end)."""
    keys = ctypes.create_string_buffer(key_size * count)
    values = ctypes.create_string_buffer(value_size * count)
    token_size = max(key_size, 8)
    token_in = ctypes.create_string_buffer(in_batch, token_size) if in_batch is not None else None
    token_out = ctypes.create_string_buffer(token_size)
    attr = MapBatchAttr(in_batch=_addr(token_in), out_batch=_addr(token_out), keys=_addr(keys),
                        values=_addr(values), count=count, map_fd=fd)
    done = False
    try:
        bpf(Cmd.MAP_LOOKUP_BATCH, attr, "map batch lookup")
    except BpfError as err:
        if err.errno != errno.ENOENT:
            raise
        done = True
    n = attr.count
    return keys.raw[:n * key_size], values.raw[:n * value_size], n, None if done else token_out.raw


def obj_info(fd: int, info: ctypes.Structure, what: str) -> ctypes.Structure:
    attr = InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=_addr(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr, what)
    return info


def obj_pin(fd: int, path: str) -> None:
    name = ctypes.create_string_buffer(path.encode())
    bpf(Cmd.OBJ_PIN, ObjAttr(pathname=_addr(name), bpf_fd=fd), f"pin at {path}")


def obj_get(path: str) -> int:
    name = ctypes.create_string_buffer(path.encode())
    return bpf(Cmd.OBJ_GET, ObjAttr(pathname=_addr(name)), f"open pinned object {path}")


def raw_tracepoint_open(name: str | None, prog_fd: int) -> int:
    """Attach a raw tracepoint (or, with name None, a BTF-typed tracing program): a link fd."""
    buf = ctypes.create_string_buffer(name.encode()) if name else None
    attr = RawTracepointAttr(name=_addr(buf), prog_fd=prog_fd)
    return bpf(Cmd.RAW_TRACEPOINT_OPEN, attr, f"attach raw tracepoint {name}" if name else "attach tracing program")


def link_create(prog_fd: int, target: int, attach_type: AttachType, what: str, flags: int = 0,
                extra: tuple[int, ...] = ()) -> int:
    attr = LinkCreateAttr(prog_fd=prog_fd, target=target, attach_type=attach_type, flags=flags)
    for i, value in enumerate(extra):
        attr.extra[i] = value
    return bpf(Cmd.LINK_CREATE, attr, what)


def next_id(cmd: Cmd, start: int) -> int | None:
    """The next prog/map/link id after ``start`` (BPF_*_GET_NEXT_ID), or None."""
    attr = GetIdAttr(id=start)
    try:
        bpf(cmd, attr, "list ids")
    except BpfError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    return attr.next_id


def fd_by_id(cmd: Cmd, ident: int) -> int:
    return bpf(cmd, GetIdAttr(id=ident), f"open id {ident}")


def prog_test_run(fd: int, data: bytes, repeat: int = 1) -> tuple[int, int]:
    """Run a loaded program on ``data`` in the kernel (BPF_PROG_TEST_RUN): (retval, duration ns)."""
    buf = ctypes.create_string_buffer(data, len(data))
    attr = TestRunAttr(prog_fd=fd, data_size_in=len(data), data_in=_addr(buf), repeat=repeat)
    bpf(Cmd.PROG_TEST_RUN, attr, "test run")
    return attr.retval, attr.duration
