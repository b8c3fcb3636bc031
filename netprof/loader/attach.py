"""Attaching loaded programs: tracepoint, raw tracepoint, kprobe/kretprobe, uprobe/uretprobe,
fentry/fexit. Each returns a Link that detaches when closed (or garbage-collected).

Perf events (tracepoints, kprobes, uprobes) are attached as bpf_links where the kernel has them
(BPF_LINK_CREATE with BPF_PERF_EVENT, Linux 5.15), as libbpf and cilium/ebpf do: the link alone
holds the event, it can carry a BPF cookie, and it dies with its file descriptor. Older kernels
get the PERF_EVENT_IOC_SET_BPF ioctl, whose attachment also ends with the event's fd. XDP lives
in xdp.py.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from . import perf, syscall
from .sys import errno_of, libc
from .privileges import Cap, Need
from .program import BpfProgram
from .resource import Closing, FdOwner
from .syscall import BpfError, ProgType

_TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


class Link(Closing):
    """An attachment; ``close()`` detaches. A context manager."""

    description = "link"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class FdLink(FdOwner, Link):
    """A bpf_link (or raw tracepoint) fd: closing it detaches the program."""

    def __init__(self, fd: int, description: str):
        self.fd, self.description = fd, description


class PerfLink(Link):
    """A program on a perf event: a bpf_link fd (``via`` "bpf_link") or the event's own fd with the
    program set by ioctl ("ioctl"). A tracefs probe event it created is removed on close."""

    def __init__(self, fd: int, description: str, tracefs_event: tuple[Path, str] | None = None,
                 via: str = "ioctl"):
        self.fd, self.description, self._tracefs_event, self.via = fd, description, tracefs_event, via

    def close(self) -> None:
        if self.fd >= 0:
            if self.via == "ioctl":
                try:
                    import fcntl

                    fcntl.ioctl(self.fd, perf.PERF_EVENT_IOC_DISABLE, 0)
                except OSError:
                    pass
            os.close(self.fd)
            self.fd = -1
        if self._tracefs_event is not None:
            events_file, name = self._tracefs_event
            self._tracefs_event = None
            _remove_probe_event(events_file, name)


# --- tracefs ----------------------------------------------------------------------------------

def tracefs() -> Path:
    """The tracefs mount point, mounting it at /sys/kernel/tracing if nothing is mounted. BpfError
    EACCES when it is mounted but this process may not read it (it is often root's alone, 0700)."""
    for path in _TRACEFS_CANDIDATES:
        try:
            if stat.S_ISDIR(os.stat(path / "events").st_mode):
                return path
        except PermissionError:
            raise _not_readable(path) from None
        except OSError:
            continue
    target = _TRACEFS_CANDIDATES[0]
    if libc.mount(b"tracefs", str(target).encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"mount tracefs at {target}: {os.strerror(err)} "
                            "(mount it yourself: mount -t tracefs tracefs /sys/kernel/tracing)")
    return target


def _not_readable(path: Path) -> BpfError:
    return BpfError(errno.EACCES, f"read {path}: permission denied (tracefs is root's here: it needs root, "
                                  f"or {Cap.DAC_READ_SEARCH})")


def tracefs_needs() -> list[Need]:
    """What this process lacks to read tracepoints: nothing, or the capability to read tracefs
    (root's alone, 0700, on many systems) or to mount it."""
    try:
        tracefs()
    except BpfError as err:
        if err.errno == errno.EACCES:
            return [Need(Cap.DAC_READ_SEARCH, "reading tracefs")]
        if err.errno == errno.EPERM:
            return [Need(Cap.SYS_ADMIN, "mounting tracefs")]
    return []


def _read_tracefs(path: Path, missing: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise BpfError(errno.ENOENT, missing) from None
    except PermissionError:
        raise _not_readable(path) from None


def tracepoint_id(category: str, name: str) -> int:
    path = tracefs() / "events" / category / name / "id"
    return int(_read_tracefs(path, f"no tracepoint {category}:{name} (not in {path.parent.parent}; "
                                   f"list them with: ls {path.parent.parent})"))


@dataclass(frozen=True)
class TracepointField:
    offset: int
    size: int
    signed: bool


def tracepoint_format(category: str, name: str) -> dict[str, TracepointField]:
    """The fields of a tracepoint's record (its tracefs ``format`` file), by name."""
    path = tracefs() / "events" / category / name / "format"
    text = _read_tracefs(path, f"no tracepoint {category}:{name} (no {path})")
    fields = {}
    for match in _FORMAT_FIELD.finditer(text):
        declaration, offset, size, signed = match.groups()
        field_name = declaration.split()[-1].split("[")[0].lstrip("*")
        fields[field_name] = TracepointField(int(offset), int(size), signed == "1")
    return fields


_FORMAT_FIELD = re.compile(r"field:([^;]+);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);")
_probe_counter = itertools.count()


def _add_probe_event(kind: str, definition: str) -> tuple[Path, str, str]:
    """Write a kprobe/uprobe event to tracefs: (events file, group, event name)."""
    events_file = tracefs() / f"{kind}_events"
    name = f"netprof_{os.getpid()}_{next(_probe_counter)}"
    try:
        with open(events_file, "a") as f:
            f.write(definition.format(name=f"netprof/{name}") + "\n")
    except OSError as err:
        code = errno_of(err)
        raise BpfError(code, f"add {kind} event '{definition.format(name=name)}' in {events_file}: "
                             f"{os.strerror(code)}") from None
    return events_file, "netprof", name


def _remove_probe_event(events_file: Path, name: str) -> None:
    try:
        with open(events_file, "a") as f:
            f.write(f"-:netprof/{name}\n")
    except OSError:
        pass


# --- attach functions -------------------------------------------------------------------------

# How perf events get their program: "auto" (a bpf_link where the kernel has them, else the
# ioctl), "bpf_link" or "ioctl". Every attach function also takes ``method=`` for one call.
PERF_METHODS = ("auto", "bpf_link", "ioctl")
_perf_links: bool | None = None  # whether this kernel creates perf-event links; None: not tried yet


def perf_links() -> bool | None:
    """True if this kernel made a perf-event bpf_link for us, False if it refused while the ioctl
    worked, None if netprof has not attached a perf event yet in this process."""
    return _perf_links


def _perf_link(prog: BpfProgram, attr: perf.PerfEventAttr, what: str, description: str, pid: int = -1,
               tracefs_event: tuple[Path, str] | None = None, method: str = "auto", cookie: int = 0) -> PerfLink:
    """Open the perf event (every process, or ``pid``) and run ``prog`` on each of its hits;
    ``cookie`` is what bpf_get_attach_cookie() returns in it (bpf_link only)."""
    global _perf_links
    if method not in PERF_METHODS:
        raise ValueError(f"perf attach method {method!r} is not one of {', '.join(PERF_METHODS)}")
    if cookie and method == "ioctl":
        raise ValueError(f"{what}: a BPF cookie needs a bpf_link, not the ioctl")
    fd = perf.perf_event_open(attr, pid, 0 if pid < 0 else -1, what)
    try:
        if method == "bpf_link" or cookie or (method == "auto" and _perf_links is not False):
            try:
                link = syscall.link_create(prog.fd, fd, syscall.AttachType.PERF_EVENT, what, extra=(cookie,))
            except BpfError as err:
                # EINVAL: a kernel before 5.15 knows no BPF_PERF_EVENT links; the ioctl will tell
                # whether the program and the event were the problem instead.
                if method == "bpf_link" or cookie or err.errno != errno.EINVAL:
                    raise
            else:
                os.close(fd)  # the link holds the event now
                _perf_links = True
                return PerfLink(link, description, tracefs_event, via="bpf_link")
        perf.attach_bpf(fd, prog.fd, what)
        if method == "auto" and _perf_links is None:
            _perf_links = False
    except BpfError:
        os.close(fd)
        raise
    return PerfLink(fd, description, tracefs_event)


def attach_tracepoint(prog: BpfProgram, tracepoint: str, method: str = "auto", cookie: int = 0) -> PerfLink:
    """Attach a tracepoint program to ``category:name`` (e.g. ``net:netif_receive_skb``)."""
    category, _, name = tracepoint.partition(":")
    if not name:
        raise ValueError(f"tracepoint {tracepoint!r} must be category:name, e.g. net:netif_receive_skb")
    attr = perf.PerfEventAttr(type=perf.PerfType.TRACEPOINT, config=tracepoint_id(category, name),
                              sample_period=1, wakeup_events=1)
    return _perf_link(prog, attr, f"attach tracepoint {tracepoint}", f"tracepoint:{tracepoint}", method=method,
                      cookie=cookie)


def attach_raw_tracepoint(prog: BpfProgram, name: str) -> FdLink:
    """Attach a raw tracepoint program (``netif_receive_skb_entry``: no category)."""
    return FdLink(syscall.raw_tracepoint_open(name, prog.fd), f"raw_tracepoint:{name}")


def kprobe_available() -> str | None:
    """How this kernel can attach kprobes: "pmu", "tracefs", or None when it has no kprobes.
    BpfError EACCES when only tracefs could tell, and this process may not read it."""
    if perf.pmu_type("kprobe") is not None:
        return "pmu"
    try:
        return "tracefs" if (tracefs() / "kprobe_events").exists() else None
    except BpfError as err:
        if err.errno == errno.EACCES:
            raise
        return None


def attach_kprobe(prog: BpfProgram, function: str, offset: int = 0, ret: bool = False, method: str = "auto",
                  cookie: int = 0) -> PerfLink:
    """kprobe (or kretprobe, ``ret=True``) on a kernel function, via the kprobe PMU, else tracefs."""
    kind = "kretprobe" if ret else "kprobe"
    what = f"attach {kind} {function}" + (f"+{offset:#x}" if offset else "")
    mechanism = kprobe_available()
    if mechanism is None:
        raise BpfError(errno.EOPNOTSUPP, f"{what}: this kernel has no kprobes (CONFIG_KPROBES is not set); "
                                         "profile kernel functions in the vm/ guest, or use the --net tracepoints")
    if mechanism == "pmu":
        function_buffer = ctypes.create_string_buffer(function.encode())
        attr = perf.PerfEventAttr(type=perf.pmu_type("kprobe"), sample_period=1, wakeup_events=1,
                                  config1=ctypes.addressof(function_buffer), config2=offset)
        if ret:
            attr.config |= 1 << perf.retprobe_bit("kprobe")
        try:
            return _perf_link(prog, attr, what, f"{kind}:{function}", method=method, cookie=cookie)
        except BpfError as err:
            if err.errno in (errno.ENOENT, errno.EINVAL):
                raise BpfError(err.errno, f"{what}: {function} is not in kallsyms, or cannot be probed "
                                          "(inlined, notrace, or on the kprobe blacklist)") from None
            raise
    probe = "r" if ret else "p"
    events_file, group, name = _add_probe_event("kprobe", f"{probe}:{{name}} {function}+{offset}")
    return _attach_tracefs_event(prog, events_file, group, name, f"{kind}:{function}", what, method=method,
                                 cookie=cookie)


def _attach_tracefs_event(prog: BpfProgram, events_file: Path, group: str, name: str, description: str,
                          what: str, pid: int = -1, method: str = "auto", cookie: int = 0) -> PerfLink:
    try:
        attr = perf.PerfEventAttr(type=perf.PerfType.TRACEPOINT, config=tracepoint_id(group, name),
                                  sample_period=1, wakeup_events=1)
        return _perf_link(prog, attr, what, description, pid=pid, tracefs_event=(events_file, name), method=method,
                          cookie=cookie)
    except BpfError:
        _remove_probe_event(events_file, name)
        raise


def attach_uprobe(prog: BpfProgram, path: str, offset: int, ret: bool = False, pid: int = -1,
                  description: str | None = None, method: str = "auto", cookie: int = 0) -> PerfLink:
    """uprobe (or uretprobe) at a file offset of an ELF file; ``pid`` -1 means every process.

    Resolve ``PATH:SYMBOL`` to (path, offset) with netprof.loader.elf.resolve first.
    """
    kind = "uretprobe" if ret else "uprobe"
    description = description or f"{kind}:{path}:{offset:#x}"
    what = f"attach {description}" + (f" for pid {pid}" if pid >= 0 else "")
    pmu = perf.pmu_type("uprobe")
    if pmu is None:
        probe = "r" if ret else "p"
        events_file, group, name = _add_probe_event("uprobe", f"{probe}:{{name}} {path}:{offset:#x}")
        return _attach_tracefs_event(prog, events_file, group, name, description, what, pid, method, cookie)
    path_buffer = ctypes.create_string_buffer(os.fsencode(path))
    attr = perf.PerfEventAttr(type=pmu, sample_period=1, wakeup_events=1, config1=ctypes.addressof(path_buffer),
                              config2=offset)
    if ret:
        attr.config |= 1 << perf.retprobe_bit("uprobe")
    return _perf_link(prog, attr, what, description, pid=pid, method=method, cookie=cookie)


def uprobes_permitted() -> bool:
    """Whether the kernel lets this process create uprobes (CAP_SYS_ADMIN since Linux 6.16 and its
    stable lines, CAP_PERFMON before). Asked with a uprobe on a path that does not exist: the
    kernel checks the privilege (EACCES) before it looks the path up (ENOENT), so nothing is made."""
    pmu = perf.pmu_type("uprobe")
    if pmu is None:
        return True  # tracefs' uprobe_events: writing it says what is wrong
    nowhere = ctypes.create_string_buffer(b"/nonexistent/netprof-uprobe-permission-trial")
    attr = perf.PerfEventAttr(type=pmu, config1=ctypes.addressof(nowhere))
    try:
        os.close(perf.perf_event_open(attr, 0, -1, "uprobe permission trial"))
    except BpfError as err:
        return err.errno != errno.EACCES
    return True


def attach_tracing(prog: BpfProgram) -> FdLink:
    """Attach an fentry/fexit (BPF_PROG_TYPE_TRACING) program loaded with its attach BTF id."""
    if prog.prog_type != ProgType.TRACING:
        raise ValueError(f"program {prog.name!r} is {prog.prog_type.name}, not TRACING")
    return FdLink(syscall.raw_tracepoint_open(None, prog.fd), f"tracing:{prog.name}")


# --- many functions, one link (uprobe_multi: Linux 6.6; kprobe_multi: 5.18, on fprobe) ---------

BPF_F_UPROBE_MULTI_RETURN = 1
BPF_F_KPROBE_MULTI_RETURN = 1


def attach_uprobe_multi(prog: BpfProgram, path: str, offsets: list[int], cookies: list[int], ret: bool = False,
                        pid: int = 0, description: str | None = None) -> FdLink:
    """One link for uprobes (or uretprobes) at the file ``offsets`` of ``path``, the program told
    which by ``cookies`` (bpf_get_attach_cookie); ``pid`` 0: every process, else that process only.
    The program must be loaded with expected_attach_type TRACE_UPROBE_MULTI."""
    if len(offsets) != len(cookies) or not offsets:
        raise ValueError("attach_uprobe_multi: one cookie per offset, at least one offset")
    kind = "uretprobe" if ret else "uprobe"
    description = description or f"{kind}_multi:{path} ({len(offsets)} functions)"
    path_buffer = ctypes.create_string_buffer(os.fsencode(path))
    offset_array = (ctypes.c_uint64 * len(offsets))(*offsets)
    cookie_array = (ctypes.c_uint64 * len(cookies))(*cookies)
    extra = uprobe_multi_extra(ctypes.addressof(path_buffer), ctypes.addressof(offset_array),
                               ctypes.addressof(cookie_array), len(offsets), BPF_F_UPROBE_MULTI_RETURN if ret else 0, pid)
    fd = syscall.link_create(prog.fd, 0, syscall.AttachType.TRACE_UPROBE_MULTI, f"attach {description}",
                             extra=extra)
    return FdLink(fd, description)


def uprobe_multi_extra(path: int, offsets: int, cookies: int, cnt: int, flags: int, pid: int) -> tuple[int, ...]:
    """link_create.uprobe_multi as LinkCreateAttr.extra: path, offsets, ref_ctr_offsets (none),
    cookies (pointers), then cnt, flags and pid (u32s), from offset 16 of union bpf_attr."""
    return path, offsets, 0, cookies, cnt | flags << 32, pid


def kprobe_multi_extra(flags: int, cnt: int, syms: int, cookies: int) -> tuple[int, ...]:
    """link_create.kprobe_multi as LinkCreateAttr.extra: flags and cnt (u32s), then syms, addrs
    (none) and cookies (pointers)."""
    return flags | cnt << 32, syms, 0, cookies


def attach_kprobe_multi(prog: BpfProgram, functions: list[str], cookies: list[int], ret: bool = False) -> FdLink:
    """One link for kprobes (or kretprobes) on the kernel ``functions``, told apart by ``cookies``.
    The program must be loaded with expected_attach_type TRACE_KPROBE_MULTI."""
    if len(functions) != len(cookies) or not functions:
        raise ValueError("attach_kprobe_multi: one cookie per function, at least one function")
    kind = "kretprobe" if ret else "kprobe"
    names = [ctypes.create_string_buffer(f.encode()) for f in functions]
    symbol_array = (ctypes.c_char_p * len(names))(*(ctypes.cast(n, ctypes.c_char_p) for n in names))
    cookie_array = (ctypes.c_uint64 * len(cookies))(*cookies)
    extra = kprobe_multi_extra(BPF_F_KPROBE_MULTI_RETURN if ret else 0, len(functions), ctypes.addressof(symbol_array),
                               ctypes.addressof(cookie_array))
    description = f"{kind}_multi ({len(functions)} functions)"
    fd = syscall.link_create(prog.fd, 0, syscall.AttachType.TRACE_KPROBE_MULTI, f"attach {description}", extra=extra)
    return FdLink(fd, description)
