"""XDP attach and detach over netlink (pyroute2), with a record of what netprof attached.

A netlink XDP attachment stays on the interface after the process that made it dies. So every
attach writes a record under /run/netprof/xdp/, and ``detach_stale()`` (run by ``netprof detach``
and before every attach) removes the attachments whose owner is gone, and only those: the
record names the program id, and an interface now running another program is left alone.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .privileges import Cap, Need
from .program import BpfProgram
from .resource import Closing
from .syscall import BpfError

log = logging.getLogger(__name__)

RECORDS = Path(os.environ.get("NETPROF_RUN_DIR", "/run/netprof")) / "xdp"

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
MODES = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
_ATTACHED_MODE = {1: "native", 2: "generic", 3: "offload", 4: "multi"}


@dataclass
class XdpRecord:
    """What netprof attached where; enough to undo it safely later."""

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
        return RECORDS / f"{self.netns}-{self.ifindex}.json"


def _may_write(folder: Path) -> bool:
    """Whether this process, its capabilities included, may create files in ``folder`` (or, while
    it is missing, in the nearest folder above it, to make it)."""
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=True)


def attach_needs(ifname: str) -> list[Need]:
    """The capabilities attaching XDP to ``ifname`` needs (measured: privileges.py)."""
    needs = [Need(Cap.BPF, "maps and ring buffers"), Need(Cap.NET_ADMIN, f"XDP on {ifname}")]
    if not _may_write(RECORDS):
        needs.append(Need(Cap.DAC_OVERRIDE, f"recording the XDP attachment in {RECORDS}"))
    return needs


def detach_needs() -> list[Need]:
    """The capabilities ``detach_stale()`` needs: set links over netlink, remove the records."""
    needs = [Need(Cap.NET_ADMIN, "detaching XDP programs")]
    if os.path.isdir(RECORDS) and not _may_write(RECORDS):
        needs.append(Need(Cap.DAC_OVERRIDE, f"removing the records in {RECORDS}"))
    return needs


def _netns() -> int:
    return os.stat("/proc/self/ns/net").st_ino


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
    """An XDP program on an interface; ``close()`` detaches it if it is still ours."""

    def __init__(self, record: XdpRecord):
        self.record = record
        self.description = f"xdp:{record.ifname} ({record.mode})"

    def close(self) -> None:
        if self.record is None:
            return
        record, self.record = self.record, None
        _detach(record)

    def __repr__(self) -> str:
        return f"<XdpLink {self.description}>"


def attach_xdp(prog: BpfProgram, ifname: str, mode: str = "auto", replace: bool = False) -> XdpLink:
    """Attach ``prog`` to ``ifname``: ``mode`` native, generic, or auto (native, else generic).

    Refuses to replace another program unless ``replace`` is set; stale netprof attachments
    (their owner is gone) are removed first.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    if mode not in ("auto", *MODES):
        raise ValueError(f"XDP mode {mode!r} is not auto, native or generic")
    detach_stale()
    with IPRoute() as ipr:
        ifindex = _ifindex(ipr, ifname)
        try:
            existing, _ = current(ipr, ifindex)
        except NetlinkError as err:
            raise BpfError(err.code, f"attach XDP to {ifname}: {os.strerror(err.code)}") from None
        if existing and not replace:
            raise BpfError(errno.EBUSY, f"attach XDP to {ifname}: program id {existing} is already attached "
                                        "(detach it, or ask to replace it)")
        tried = ["native", "generic"] if mode == "auto" else [mode]
        last: NetlinkError | None = None
        for candidate in tried:
            flags = MODES[candidate] | (0 if existing else XDP_FLAGS_UPDATE_IF_NOEXIST)
            try:
                _set(ipr, ifindex, prog.fd, flags)
            except NetlinkError as err:
                last = err
                log.debug("XDP %s mode on %s refused: %s", candidate, ifname, err)
                continue
            prog_id, attached_mode = current(ipr, ifindex)
            record = XdpRecord(ifindex, ifname, _netns(), prog_id, attached_mode or candidate, os.getpid(),
                               _start_time(os.getpid()), time.time())
            try:
                _save(record)
            except OSError as err:  # no record, no attachment: netprof detach could never find it
                _set(ipr, ifindex, -1, MODES[candidate])
                raise BpfError(err.errno or errno.EIO, f"attach XDP to {ifname}: cannot record it in {RECORDS}: "
                                                       f"{err.strerror}") from None
            return XdpLink(record)
    code = last.code if last is not None else errno.EINVAL
    raise BpfError(code, f"attach XDP to {ifname} in {'/'.join(tried)} mode: {os.strerror(code)}")


def _save(record: XdpRecord) -> None:
    RECORDS.mkdir(parents=True, exist_ok=True)
    tmp = record.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(record.path)


def _detach(record: XdpRecord) -> bool:
    """Detach ``record``'s program if the interface still runs it; forget the record. True if detached."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    detached = False
    if record.netns == _netns():
        with IPRoute() as ipr:
            try:
                prog_id, mode = current(ipr, record.ifindex)
            except NetlinkError:  # the interface is gone, and the program with it
                prog_id, mode = 0, None
            if prog_id and prog_id == record.prog_id:
                try:
                    _set(ipr, record.ifindex, -1, MODES.get(mode or record.mode, 0))
                except NetlinkError as err:
                    advice = f" (needs {Cap.NET_ADMIN})" if err.code == errno.EPERM else ""
                    raise BpfError(err.code, f"detach XDP program {record.prog_id} from {record.ifname}: "
                                             f"{os.strerror(err.code)}{advice}") from None
                detached = True
    else:
        log.warning("XDP record %s is for another network namespace; leaving it", record.path)
        return False
    record.path.unlink(missing_ok=True)
    return detached


def records() -> list[XdpRecord]:
    out = []
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else ():
        try:
            out.append(XdpRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            log.warning("unreadable XDP record %s: removing it", path)
            path.unlink(missing_ok=True)
    return out


def detach_stale(everything: bool = False) -> list[XdpRecord]:
    """Detach what netprof attached and whose owning process is gone (``everything``: also live
    ones). Returns the records whose program was detached."""
    done = []
    for record in records():
        alive = record.pid_start and _start_time(record.pid) == record.pid_start
        if alive and not everything:
            continue
        if _detach(record):
            done.append(record)
    return done
