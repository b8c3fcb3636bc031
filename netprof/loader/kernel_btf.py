"""BTF objects inside the kernel, held by file descriptor: vmlinux's and each module's (found by
name), and the BTF blobs netprof loads itself (BPF_BTF_LOAD). btf.py reads BTF; this module only
holds it, for the instructions and load attributes that name BTF by fd."""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

from .resource import FdOwner
from .syscall import BpfError, BtfInfo, BtfLoadAttr, Cmd, _addr, bpf, fd_by_id, next_id, obj_info

_NAME_MAX = 64  # MODULE_NAME_LEN on 64-bit kernels; "vmlinux" for the kernel's own BTF
_LOG_SIZE = 1 << 16


@dataclass(eq=False)
class BtfHandle(FdOwner):
    """A BTF object in the kernel; owns its fd (a context manager, closed on exit). ``name`` is
    "vmlinux" or the module's name for the kernel's own BTF, "" for BTF netprof loaded."""

    fd: int
    id: int
    name: str = ""
    kernel: bool = False


def _info(fd: int) -> tuple[int, str, bool]:
    name = ctypes.create_string_buffer(_NAME_MAX)
    info = BtfInfo(name=_addr(name), name_len=_NAME_MAX)
    obj_info(fd, info, "read BTF info")
    return info.id, name.value.decode(errors="replace"), bool(info.kernel_btf)


def open_kernel(name: str = "vmlinux") -> BtfHandle:
    """The kernel's BTF (``vmlinux``) or a loaded module's, by name: the fd that a kfunc call's
    fd_array entry or a LoadBtfId's ``btf_fd`` names. BpfError ENOENT when there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a kernel BTF is named by a module name or 'vmlinux', not {name!r}")
    after = 0
    while (ident := next_id(Cmd.BTF_GET_NEXT_ID, after)) is not None:
        after = ident
        try:
            fd = fd_by_id(Cmd.BTF_GET_FD_BY_ID, ident)
        except BpfError as err:
            if err.errno == errno.ENOENT:  # unloaded while we looked
                continue
            raise
        try:
            found_id, found_name, kernel = _info(fd)
        except BaseException:
            os.close(fd)
            raise
        if kernel and found_name == name:
            return BtfHandle(fd, found_id, found_name, kernel)
        os.close(fd)
    where = "" if name == "vmlinux" else " (the module is not loaded, is built in, or was built without BTF)"
    raise BpfError(errno.ENOENT, f"open the kernel's BTF of {name!r}: there is none{where}")


class BtfLoadError(BpfError):
    """The kernel refused a BTF blob; ``log`` is its explanation."""

    def __init__(self, err: int, what: str, log: str):
        self.log = log
        last = log.strip().splitlines()[-1] if log.strip() else os.strerror(err)
        super().__init__(err, f"{what}: {last}")

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # strerror: "{what}: {the log's last line}"


def load(blob: bytes, what: str = "load BTF") -> BtfHandle:
    """BPF_BTF_LOAD: ``blob`` (header, types, strings) into the kernel. A refusal is a
    BtfLoadError carrying the kernel's log."""
    data = ctypes.create_string_buffer(bytes(blob), len(blob))
    attr = BtfLoadAttr(btf=_addr(data), btf_size=len(blob))
    try:
        fd = bpf(Cmd.BTF_LOAD, attr, what)
    except BpfError as err:
        first = err.errno
        if first is None or first not in (errno.EINVAL, errno.E2BIG, errno.EACCES):
            raise
        log = ctypes.create_string_buffer(_LOG_SIZE)
        attr.btf_log_buf, attr.btf_log_size, attr.btf_log_level = _addr(log), _LOG_SIZE, 1
        try:
            fd = bpf(Cmd.BTF_LOAD, attr, what)
        except BpfError as again:  # ENOSPC: the log did not fit, the first errno is the reason
            code = first if again.errno is None or again.errno == errno.ENOSPC else again.errno
            raise BtfLoadError(code, what, log.value.decode(errors="replace")) from None
    try:
        ident = _info(fd)[0]
    except BaseException:
        os.close(fd)
        raise
    return BtfHandle(fd, ident)
