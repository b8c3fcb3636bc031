"""XDP attach and detach: a bpf_link where the kernel has them (BPF_LINK_CREATE with BPF_XDP,
Linux 5.9), as libbpf and cilium/ebpf do, else netlink (pyroute2); ``method`` forces either.

A link belongs to its file descriptor: however netprof dies, the kernel takes the program off
the interface. A netlink attachment stays after its process dies, so on that path every attach
first writes a record under /run/netprof/xdp/ (before attaching: a kill in between leaves a
record of nothing, never a program without a record), and ``detach_stale()`` (``netprof
detach``, and before every netlink attach) removes what a dead netprof left, in whichever network
namespace, and nothing else: the record names the program id, and an interface now running
another program is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from . import netns, rundir, syscall
from .sys import errno_of
from .privileges import Cap, Need
from .program import BpfProgram
from .resource import Closing, FdOwner
from .syscall import AttachType, BpfError

log = logging.getLogger(__name__)

def records_folder() -> Path:
    """Where netlink attachments are recorded: /run/netprof/xdp (or under $NETPROF_RUN_DIR, which
    rundir accepts only where root alone can write)."""
    return rundir.path() / "xdp"
METHODS = ("auto", "bpf_link", "netlink")

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
MODES = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
_ATTACHED_MODE = {1: "native", 2: "generic", 3: "offload", 4: "multi"}


@dataclass
class XdpRecord:
    """What netprof attached where over netlink; enough to undo it safely later."""

    ifindex: int
    ifname: str
    netns: int
    prog_id: int
    mode: str
    pid: int
    pid_start: int
    attached_at: float

    @property
    def path(self) -> Path:
        # the owner in the name: two netprofs racing for one interface never share (or delete) a record
        return records_folder() / f"{self.netns}-{self.ifindex}-{self.pid}-{self.prog_id}.json"


def _may_write(folder: Path) -> bool:
    """Whether this process, its capabilities included, may create files in ``folder`` (or, while
    it is missing, in the nearest folder above it, to make it)."""
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=True)


def attach_needs(ifname: str, method: str = "auto") -> list[Need]:
    """The capabilities attaching XDP to ``ifname`` needs (measured: privileges.py); over
    netlink also writing its record."""
    needs = [Need(Cap.BPF, "maps and ring buffers"), Need(Cap.NET_ADMIN, f"XDP on {ifname}")]
    if method == "netlink" and not _may_write(records_folder()):
        needs.append(Need(Cap.DAC_OVERRIDE, f"recording the XDP attachment in {records_folder()}"))
    return needs


def detach_needs() -> list[Need]:
    """The capabilities ``detach_stale()`` needs: set links over netlink, remove the records."""
    needs = [Need(Cap.NET_ADMIN, "detaching XDP programs")]
    if os.path.isdir(records_folder()) and not _may_write(records_folder()):
        needs.append(Need(Cap.DAC_OVERRIDE, f"removing the records in {records_folder()}"))
    return needs


def _netns() -> int:
    return netns.current()


def _start_time(pid: int) -> int:
    """The process start time in clock ticks (field 22 of /proc/PID/stat), 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def _ifindex(ipr, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise BpfError(errno.ENODEV, f"attach XDP to {ifname}: no such interface (see: ip link)")
    return found[0]


def current(ipr, ifindex: int) -> tuple[int, str | None]:
    """(program id, mode) of the XDP program on ``ifindex``; (0, None) when there is none."""
    link = ipr.get_links(ifindex)[0]
    xdp = link.get_attr("IFLA_XDP")
    if xdp is None:
        return 0, None
    mode = xdp.get_attr("IFLA_XDP_ATTACHED")
    prog_id = xdp.get_attr("IFLA_XDP_PROG_ID") or 0
    mode_value = {"xdp": 1, "xdpgeneric": 2, "xdpoffload": 3, "xdpmulti": 4}.get(mode, mode)
    return prog_id, _ATTACHED_MODE.get(mode_value) if prog_id else None


def _set(ipr, ifindex: int, fd: int, flags: int) -> None:
    ipr.link("set", index=ifindex, xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})


class XdpLink(Closing):
    """An XDP program on an interface; ``close()`` takes it off. ``via`` is "bpf_link" (the fd
    is the link: closing it detaches) or "netlink" (``record`` says what to undo)."""

    def __init__(self, ifname: str, mode: str, prog_id: int, via: str, fd: int = -1,
                 record: XdpRecord | None = None):
        self.ifname, self.mode, self.prog_id, self.via, self.fd, self.record = ifname, mode, prog_id, via, fd, record
        self.description = f"xdp:{ifname} ({mode}, {via})"

    def close(self) -> None:
        fd, self.fd = getattr(self, "fd", -1), -1
        if fd >= 0:
            os.close(fd)
        record, self.record = getattr(self, "record", None), None
        if record is not None:
            _detach(record)

    def __repr__(self) -> str:
        return f"<XdpLink {self.description}>"


def attach_xdp(prog: BpfProgram, ifname: str, mode: str = "auto", replace: bool = False,
               method: str = "auto") -> XdpLink:
    """Attach ``prog`` to ``ifname``: ``mode`` native, generic, or auto (native, else generic);
    ``method`` bpf_link, netlink, or auto (a link where the kernel has them).

    Refuses to replace another program unless ``replace`` is set (netlink only: a link never
    replaces what someone else attached).
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    if mode not in ("auto", *MODES):
        raise ValueError(f"XDP mode {mode!r} is not auto, native or generic")
    if method not in METHODS:
        raise ValueError(f"XDP attach method {method!r} is not one of {', '.join(METHODS)}")
    tried = ["native", "generic"] if mode == "auto" else [mode]
    with IPRoute() as ipr:
        ifindex = _ifindex(ipr, ifname)
        try:
            existing, _ = current(ipr, ifindex)
        except NetlinkError as err:
            raise BpfError(err.code, f"attach XDP to {ifname}: {os.strerror(err.code)}") from None
        if existing and not replace:
            raise BpfError(errno.EBUSY, f"attach XDP to {ifname}: program id {existing} is already attached "
                                        "(detach it, or ask to replace it)")
        if method == "bpf_link" and replace:
            raise ValueError("replace=True needs method netlink: a bpf_link never replaces another program")
        if method == "bpf_link" or (method == "auto" and not replace):
            link = _attach_link(prog, ipr, ifname, ifindex, tried, fall_back=method == "auto")
            if link is not None:
                return link
        return _attach_netlink(prog, ipr, ifname, ifindex, tried, existing)


def _attach_link(prog: BpfProgram, ipr, ifname: str, ifindex: int, tried: list[str],
                 fall_back: bool) -> XdpLink | None:
    """The program on ``ifindex`` through a bpf_link; None if this kernel has no XDP links and
    ``fall_back`` allows netlink instead."""
    if not tried:
        raise ValueError(f"attach XDP to {ifname}: no mode to try (native or generic)")
    last: BpfError | None = None
    for candidate in tried:
        try:
            fd = syscall.link_create(prog.fd, ifindex, AttachType.XDP, f"attach XDP to {ifname} ({candidate})",
                                     flags=MODES[candidate])
        except BpfError as err:
            last = err
            log.debug("XDP link in %s mode on %s refused: %s", candidate, ifname, err)
            continue
        try:
            prog_id, attached_mode = current(ipr, ifindex)
        except BaseException:
            os.close(fd)  # the link, and with it the attachment
            raise
        return XdpLink(ifname, attached_mode or candidate, prog_id, "bpf_link", fd=fd)
    if last is None:
        raise ValueError(f"attach XDP to {ifname}: no XDP mode to try")
    code = errno_of(last)
    if fall_back and code == errno.EINVAL and not xdp_links_supported():
        log.info("this kernel has no XDP links (%s): attaching over netlink", last)
        return None
    raise BpfError(code, f"attach XDP to {ifname} in {'/'.join(tried)} mode: {os.strerror(code)}")


def _attach_netlink(prog: BpfProgram, ipr, ifname: str, ifindex: int, tried: list[str], existing: int) -> XdpLink:
    from pyroute2.netlink.exceptions import NetlinkError

    detach_stale()
    last: NetlinkError | None = None
    for candidate in tried:
        record = XdpRecord(ifindex, ifname, _netns(), prog.id, candidate, os.getpid(), _start_time(os.getpid()),
                           time.time())
        try:
            _save(record)  # first: a kill after the attach must find the record
        except OSError as err:
            raise BpfError(err.errno or errno.EIO, f"attach XDP to {ifname}: cannot record it in {records_folder()}: "
                                                   f"{err.strerror or err}") from None
        flags = MODES[candidate] | (0 if existing else XDP_FLAGS_UPDATE_IF_NOEXIST)
        try:
            _set(ipr, ifindex, prog.fd, flags)
        except NetlinkError as err:
            last = err
            record.path.unlink(missing_ok=True)
            log.debug("XDP %s mode on %s refused: %s", candidate, ifname, err)
            continue
        _, attached_mode = current(ipr, ifindex)
        record.mode = attached_mode or candidate
        return XdpLink(ifname, record.mode, record.prog_id, "netlink", record=record)
    code = last.code if last is not None else errno.EINVAL
    raise BpfError(code, f"attach XDP to {ifname} in {'/'.join(tried)} mode: {os.strerror(code)}")


_xdp_links: bool | None = None


def xdp_links_supported() -> bool:
    """Whether this kernel attaches XDP through bpf_links: tried on the loopback of a new, empty
    network namespace, so that no real interface sees a program even for an instant."""
    global _xdp_links
    if _xdp_links is None:
        from ..asm import Exit, Mov, Program, R0
        from .program import load

        def try_link() -> bool:
            with load(Program(Mov(R0, 2), Exit()), syscall.ProgType.XDP, name="np_probe") as prog:
                try:
                    os.close(syscall.link_create(prog.fd, 1, AttachType.XDP, "probe XDP links",
                                                 flags=XDP_FLAGS_SKB_MODE))
                    return True
                except BpfError as err:
                    if err.errno in (errno.EPERM, errno.EACCES):
                        raise
                    return False

        _xdp_links = netns.run_in(None, try_link)
    return _xdp_links


# --- the records of netlink attachments ---------------------------------------------------------

def _save(record: XdpRecord) -> None:
    folder = rundir.open_folder(records_folder(), create=True)
    try:
        rundir.write(folder, record.path.name, json.dumps(asdict(record)).encode())
    finally:
        os.close(folder)


def _detach_here(record: XdpRecord) -> bool:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            prog_id, mode = current(ipr, record.ifindex)
        except NetlinkError:  # the interface is gone, and the program with it
            return False
        if prog_id and prog_id == record.prog_id:
            try:
                _set(ipr, record.ifindex, -1, MODES.get(mode or record.mode, 0))
            except NetlinkError as err:
                advice = f" (needs {Cap.NET_ADMIN})" if err.code == errno.EPERM else ""
                raise BpfError(err.code, f"detach XDP program {record.prog_id} from {record.ifname}: "
                                         f"{os.strerror(err.code)}{advice}") from None
            return True
    return False


def _detach(record: XdpRecord) -> bool:
    """Detach ``record``'s program if its interface still runs it, in whichever network namespace
    the record is from; forget the record. True if a program was detached."""
    if record.netns == _netns():
        detached = _detach_here(record)
    else:
        fd = netns.open_by_inode(record.netns)
        detached = False
        if fd is not None:  # else the namespace is gone, and its interfaces with it
            try:
                detached = netns.run_in(fd, lambda: _detach_here(record))
            finally:
                os.close(fd)
    record.path.unlink(missing_ok=True)
    return detached


def records() -> list[XdpRecord]:
    """The records of netlink attachments, read only from a folder that root alone can change."""
    try:
        folder = rundir.open_folder(records_folder())
    except FileNotFoundError:
        return []
    out = []
    try:
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json"):
                continue
            try:
                out.append(XdpRecord(**json.loads(rundir.read(folder, name) or b"")))
            except (ValueError, TypeError):
                log.warning("unreadable XDP record %s: removing it", records_folder() / name)
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=folder)
    finally:
        os.close(folder)
    return out


def owner_alive(record: XdpRecord) -> bool:
    return bool(record.pid_start) and _start_time(record.pid) == record.pid_start


def detach_stale(everything: bool = False, interfaces: Iterable[str] | None = None) -> list[XdpRecord]:
    """Detach what netprof attached over netlink and whose owning process is gone
    (``everything``: also live ones), on every interface or only on ``interfaces`` (names).
    Returns the records whose program was detached."""
    only = set(interfaces) if interfaces is not None else None
    done = []
    for record in records():
        if only is not None and record.ifname not in only:
            continue
        if owner_alive(record) and not everything:
            continue
        if _detach(record):
            done.append(record)
    return done
