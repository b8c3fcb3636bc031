"""Loading programs: bytecode or a netprof.asm Program in, a program fd out, or a VerifierError
that quotes the kernel's complaint and points at the assembler line or label it came from."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import debug_info, kernel_btf, privileges
from .sys import errno_of
from .debug_info import FUNC_INFO, LINE_INFO, DebugInfo
from .kernel_btf import BtfHandle
from .privileges import Cap, Need
from .resource import FdOwner
from .syscall import (
    AttachType,
    BpfError,
    Cmd,
    ProgInfo,
    ProgLoadAttr,
    ProgType,
    _addr,
    bpf,
    obj_info,
)

if TYPE_CHECKING:  # the assembler is imported only to build a program: a Prebuilt one loads without it
    from ..asm import LinkedProgram, Program

log = logging.getLogger(__name__)

_LOG_START = 1 << 16
_LOG_MAX = 1 << 28  # the kernel's own limit (UINT_MAX >> 2) is larger; this is plenty
_INSN_LINE = re.compile(r"^(\d+): \([0-9a-f]{2}\)", re.M)


class VerifierError(BpfError):
    """The verifier refused a program. ``log`` is its whole explanation; ``slot`` the instruction it
    stopped at; ``source`` the assembler line or label that instruction came from."""

    def __init__(self, err: int, name: str, log: str, linked: LinkedProgram | Prebuilt | None):
        self.log = log
        self.slot = _failing_slot(log)
        self.source = linked.describe_slot(self.slot) if linked is not None and self.slot is not None else None
        complaint = _complaint(log) or os.strerror(err)
        where = f" at instruction {self.slot}" if self.slot is not None else ""
        message = f"verifier rejected program {name!r}{where}: {complaint}"
        if self.source:
            message += f" (from {self.source})"
        super().__init__(err, message)

    def __str__(self) -> str:
        return self.strerror or ""

    def tail(self, lines: int = 20) -> str:
        """The end of the verifier log, where the reason is."""
        return "\n".join(self.log.rstrip().splitlines()[-lines:])


def _failing_slot(log: str) -> int | None:
    found = _INSN_LINE.findall(log)
    return int(found[-1]) if found else None


def _complaint(log: str) -> str | None:
    """The verifier's one-line reason: the last line that is not a statistic or a state dump."""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if not line or line.startswith(("processed ", "verification time", "stack depth", "-- END")):
            continue
        if _INSN_LINE.match(line) or re.match(r"^\d+: R\d", line) or line.startswith(";"):
            continue
        return line
    return None


_FD = struct.Struct("<I")  # the low half of an ld_imm64's immediate, where a map's fd goes


@dataclass(frozen=True)
class Prebuilt:
    """A program assembled before (netprof.probes.cache keeps them on disk), loaded without the
    assembler: ``code`` with 0 for every map's fd, ``map_slots`` (slot, map name) of each map
    reference, its ``debug`` info (made for a program called ``debug_name``) and ``rebuild``,
    which makes the same program again with the assembler, only for a verifier error to name
    its source line."""

    code: bytes
    map_slots: tuple[tuple[int, str], ...] = ()
    debug: DebugInfo | None = None
    debug_name: str = ""
    rebuild: Callable[[], LinkedProgram] | None = field(default=None, compare=False, repr=False)

    def encode(self, maps: Mapping[str, int]) -> bytes:
        """The bytecode with each map's fd in place, as LinkedProgram.encode writes it."""
        code = bytearray(self.code)
        for slot, name in self.map_slots:
            fd = maps.get(name)
            if isinstance(fd, bool) or not isinstance(fd, int):
                raise ValueError(f"map {name!r} is not resolved: no file descriptor was given for it")
            _FD.pack_into(code, slot * 8 + 4, fd & 0xFFFF_FFFF)
        return bytes(code)

    def describe_slot(self, slot: int) -> str | None:
        """Where slot ``slot`` came from (see LinkedProgram.describe_slot), from the program built again."""
        if self.rebuild is None:
            return None
        try:
            return self.rebuild().describe_slot(slot)
        except Exception as err:  # noqa: BLE001 - explaining a refusal must not hide it
            log.debug("could not build the program again to name its source line: %s", err)
            return None


@dataclass(eq=False)
class BpfProgram(FdOwner):
    """A loaded program; owns its fd (a context manager, closed on exit)."""

    fd: int
    name: str
    prog_type: ProgType
    linked: LinkedProgram | None = None

    def info(self) -> ProgInfo:
        info = ProgInfo()
        obj_info(self.fd, info, f"read info of program {self.name!r}")
        return info

    @property
    def id(self) -> int:
        return self.info().id

    @property
    def tag(self) -> str:
        return bytes(self.info().tag).hex()


def load(program: Program | LinkedProgram | Prebuilt | bytes, prog_type: ProgType, *, name: str = "",
         maps: Mapping[str, object] | None = None, license: str = "GPL",
         expected_attach_type: AttachType = AttachType.NONE, attach_btf_id: int = 0,
         attach_btf_obj_fd: int = 0, flags: int = 0, fd_array: Sequence[object] = ()) -> BpfProgram:
    """Load ``program`` into the kernel. Map symbols are resolved from ``maps`` (name -> Map or fd).

    ``fd_array`` (fds, or objects with an ``fd``: a kernel_btf.BtfHandle, a Map) is the array the
    instructions index: ``CallKfunc(id, module=i)`` calls a kfunc of the module whose BTF is
    ``fd_array[i]`` (kernel_btf.open_kernel("<module>")); module 0 is vmlinux, so module BTFs
    start at index 1 and entry 0 may be anything, 0 say. (``LoadBtfId(btf_fd=...)`` names its BTF
    by fd directly: keep that handle open until the load returns.)

    A netprof.asm program loads with its debug info (BTF func_info and line_info made from the
    source locations, see debug_info.py): the verifier log and ``bpftool prog dump xlated id N
    linum`` show its source lines. Where the kernel refuses the debug info, the program loads
    without it (a debug log line says so).

    The verifier log is only requested when the load fails (loading twice is cheaper than always
    logging), and grown until the kernel's whole explanation fits.
    """
    linked: LinkedProgram | None = None
    prebuilt: Prebuilt | None = None
    map_fds = {name_: m if isinstance(m, int) else getattr(m, "fd") for name_, m in (maps or {}).items()}
    if isinstance(program, Prebuilt):
        prebuilt = program
        code = program.encode(map_fds)
    elif isinstance(program, (bytes, bytearray, memoryview)):
        code = bytes(program)
    else:
        from ..asm import LinkedProgram, Program  # here only: bytes and Prebuilt load without the assembler

        if isinstance(program, Program):
            program = program.link()
        if isinstance(program, LinkedProgram):
            linked = program
            code = program.encode(map_fds)
        else:
            code = bytes(program)
    if not code or len(code) % 8:
        raise ValueError(f"program {name!r} is {len(code)} bytes: not a whole number of instructions")
    fds = _fd_array(fd_array, name)
    if linked is not None:
        _check_kfunc_modules(linked, len(fds), name)
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license.encode())
    fd_buffer = (ctypes.c_int32 * len(fds))(*fds) if fds else None
    attr = ProgLoadAttr(prog_type=prog_type, insn_cnt=len(code) // 8, insns=_addr(insns), license=_addr(lic),
                        prog_name=_kernel_name(name), expected_attach_type=expected_attach_type,
                        attach_btf_id=attach_btf_id, attach_prog_fd=attach_btf_obj_fd, prog_flags=flags,
                        fd_array=_addr(fd_buffer))
    what = f"load {prog_type.name.lower()} program {name!r}"
    debug = _prebuilt_debug_info(prebuilt, name) if prebuilt is not None else _debug_info(linked, name)
    try:
        buffers = _add_debug_info(attr, *debug) if debug is not None else ()
        fd = _load(attr, what, name, linked or prebuilt)
        del buffers  # alive until here: the kernel has read them
    finally:
        if debug is not None:
            debug[0].close()  # the program holds its own reference to its BTF
    return BpfProgram(fd, name, prog_type, linked)


def _load(attr: ProgLoadAttr, what: str, name: str, linked: LinkedProgram | Prebuilt | None) -> int:
    """BPF_PROG_LOAD. Refused with debug info, the program loads again without it: debug info
    never costs a load. Refused either way, the error explains the program's fault, with the
    source lines in the verifier log where the kernel took them."""
    try:
        return bpf(Cmd.PROG_LOAD, attr, what)
    except BpfError as err:
        if (err.errno == errno.EPERM and attr.prog_type == ProgType.TRACING
                and not _lacks_tracing_privileges()):
            raise BpfError(err.errno, f"{what}: this kernel refuses fentry/fexit programs even to root "
                                      "(no BPF trampoline, or lockdown); use kprobes, or the vm/ guest") from None
        if err.errno not in _VERIFIER_ERRNOS:
            raise
        refused = err
    if not attr.prog_btf_fd:
        raise _explain(attr, refused, name, linked) from None
    plain = _without_debug_info(attr)
    try:
        fd = bpf(Cmd.PROG_LOAD, plain, what)
    except BpfError:
        error = _explain(attr, refused, name, linked)
        if not (isinstance(error, VerifierError) and error.slot is not None):
            error = _explain(plain, refused, name, linked)  # refused before any instruction: maybe the debug info
        raise error from None
    log.debug("program %r loaded without its debug info (func_info, line_info): the kernel refused it: %s",
              name, refused.strerror or refused)
    return fd


def _debug_info(linked: LinkedProgram | None, name: str) -> tuple[BtfHandle, DebugInfo] | None:
    """The program's debug info with its BTF loaded into the kernel; None, said in a debug log
    line, when there is none or the kernel refuses the BTF."""
    if linked is None:
        return None
    try:
        info = debug_info.build(linked, name)
    except Exception as err:  # noqa: BLE001 - debug info must never cost the load
        log.debug("program %r: no debug info: %s", name, err)
        return None
    if info is None:
        return None
    try:
        return kernel_btf.load(info.btf, f"load the BTF of program {name!r}"), info
    except OSError as err:
        log.debug("program %r loads without its debug info: %s", name, err.strerror or err)
        return None


def _prebuilt_debug_info(prebuilt: Prebuilt, name: str) -> tuple[BtfHandle, DebugInfo] | None:
    """A Prebuilt program's debug info, its function named ``name``, with its BTF in the kernel."""
    if prebuilt.debug is None:
        return None
    info = prebuilt.debug if name == prebuilt.debug_name else debug_info.renamed(prebuilt.debug, name)
    try:
        return kernel_btf.load(info.btf, f"load the BTF of program {name!r}"), info
    except OSError as err:
        log.debug("program %r loads without its debug info: %s", name, err.strerror or err)
        return None


def _add_debug_info(attr: ProgLoadAttr, btf: BtfHandle, info: DebugInfo) -> tuple[ctypes.Array, ctypes.Array]:
    """Point ``attr`` at the program's BTF, func_info and line_info; returns the buffers, which
    must stay alive until the load returns."""
    funcs = ctypes.create_string_buffer(info.func_info, len(info.func_info))
    lines = ctypes.create_string_buffer(info.line_info, len(info.line_info))
    attr.prog_btf_fd = btf.fd
    attr.func_info_rec_size, attr.func_info, attr.func_info_cnt = FUNC_INFO.size, _addr(funcs), info.func_count
    attr.line_info_rec_size, attr.line_info, attr.line_info_cnt = LINE_INFO.size, _addr(lines), info.line_count
    return funcs, lines


def _without_debug_info(attr: ProgLoadAttr) -> ProgLoadAttr:
    plain = ProgLoadAttr.from_buffer_copy(attr)
    plain.prog_btf_fd = 0
    plain.func_info_rec_size, plain.func_info, plain.func_info_cnt = 0, 0, 0
    plain.line_info_rec_size, plain.line_info, plain.line_info_cnt = 0, 0, 0
    return plain


# What a verifier refusal returns: EPROTO for an fd_array the program needs and lacks, ENOENT
# for a BTF id or kernel symbol that is not there.
_VERIFIER_ERRNOS = (errno.EACCES, errno.EINVAL, errno.E2BIG, errno.ENOSPC, errno.EPROTO, errno.ENOENT)


def _fd_array(entries: Sequence[object], name: str) -> list[int]:
    """The fds of ``fd_array``: ints, or objects with an int ``fd`` that is still open."""
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise TypeError(f"program {name!r}: fd_array is a sequence of file descriptors, not {entries!r}")
    fds = []
    for i, entry in enumerate(entries):
        fd = getattr(entry, "fd", entry)
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"program {name!r}: fd_array[{i}] is {entry!r}, not a file descriptor "
                            "or an object with one")
        if not 0 <= fd < 1 << 31:
            closed = " (closed)" if fd == -1 and entry is not fd else ""
            raise ValueError(f"program {name!r}: fd_array[{i}] is {fd}{closed}, not an open file descriptor")
        fds.append(fd)
    return fds


def _check_kfunc_modules(linked: LinkedProgram, count: int, name: str) -> None:
    """Every kfunc call's module index names an entry of fd_array (the kernel would read past it)."""
    from ..asm.isa import CALL, PseudoCall

    for insn in linked.instructions:
        if insn.opcode != CALL or insn.src != PseudoCall.KFUNC_CALL or insn.off == 0:
            continue
        where = f"{insn.location}: " if insn.location is not None else ""
        if insn.off < 0:
            raise ValueError(f"program {name!r}: {where}kfunc call with module {insn.off}: "
                             "a module index is positive (0 is vmlinux)")
        if insn.off >= count:
            raise ValueError(f"program {name!r}: {where}kfunc call with module {insn.off} needs fd_array[{insn.off}], "
                             f"the module's BTF (kernel_btf.open_kernel), but fd_array has {count} entries")


def _lacks_tracing_privileges() -> bool:
    return bool(privileges.missing([Need(Cap.BPF, "tracing"), Need(Cap.PERFMON, "tracing")]))


def _explain(attr: ProgLoadAttr, err: BpfError, name: str, linked: LinkedProgram | Prebuilt | None) -> BpfError:
    """Load again with the verifier log on, growing the buffer until the log fits."""
    size = _LOG_START
    while True:
        log = ctypes.create_string_buffer(size)
        attr.log_level, attr.log_size, attr.log_buf, attr.log_true_size = 1, size, _addr(log), 0
        try:
            fd = bpf(Cmd.PROG_LOAD, attr, "load again for the verifier log")
        except BpfError as again:
            if again.errno == errno.ENOSPC and size < _LOG_MAX:
                size = max(size * 4, attr.log_true_size)
                continue
            text = log.value.decode(errors="replace")
            if not text.strip():
                return again
            return VerifierError(errno_of(again), name, text, linked)
        os.close(fd)  # accepted the second time (it happens with racing resource limits)
        return err


def _kernel_name(name: str) -> bytes:
    """The kernel takes 15 characters of [A-Za-z0-9_.] for an object name."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", name).encode()[:15]
