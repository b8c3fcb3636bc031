"""The capabilities this process holds (CapEff in /proc/self/status), so that a missing privilege
is one line that names it, checked before anything is loaded; never "are we uid 0".

What each part of a capture needs, measured on Linux 6.18 as uid 65534 given ambient capabilities
(``setpriv --ambient-caps``; README.md, "Privileges", has the table):

- maps, ring buffers, socket filters: CAP_BPF
- kprobe, tracepoint, raw tracepoint, perf_event and tracing programs: CAP_BPF and CAP_PERFMON
- XDP and sched_cls programs: CAP_BPF and CAP_NET_ADMIN; setting XDP on a link over netlink:
  CAP_NET_ADMIN (CAP_SYS_ADMIN loads the program but may not set the link)
- tracepoint perf events on every process (kernel.perf_event_paranoid=2): CAP_PERFMON
- tracefs, where tracepoint ids and formats are (/sys/kernel/tracing, mode 0700 root):
  CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE; CAP_SYS_ADMIN does not help
- uprobes (perf's uprobe PMU): CAP_SYS_ADMIN; CAP_PERFMON was enough until Linux commit
  ba677dbe77af "perf: Revert to requiring CAP_SYS_ADMIN for uprobes" (6.16, and the stable lines)
- the XDP records in /run/netprof/xdp (root's, mode 0755): CAP_DAC_OVERRIDE
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class Cap(IntEnum):
    """Capability numbers (include/uapi/linux/capability.h)."""

    DAC_OVERRIDE = 1
    DAC_READ_SEARCH = 2
    NET_ADMIN = 12
    SYS_ADMIN = 21
    PERFMON = 38
    BPF = 39

    def __str__(self) -> str:
        return f"CAP_{self.name}"


# The kernel's bpf_capable() and perfmon_capable() also accept CAP_SYS_ADMIN (kernels before 5.8
# know no other); CAP_DAC_OVERRIDE passes every check that CAP_DAC_READ_SEARCH passes.
IMPLIES = {Cap.SYS_ADMIN: (Cap.BPF, Cap.PERFMON), Cap.DAC_OVERRIDE: (Cap.DAC_READ_SEARCH,)}


@dataclass(frozen=True)
class Need:
    """One capability, and what it is needed for ("maps and ring buffers", "XDP on veth0")."""

    cap: Cap
    reason: str


class PrivilegeError(PermissionError):
    """The process lacks capabilities it needs; the message names them and what for, on one line."""


def effective(status: str | Path = "/proc/self/status") -> frozenset[Cap]:
    """The capabilities in this process's effective set, with those they imply."""
    mask = 0
    for line in Path(status).read_text().splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
    held = {cap for cap in Cap if mask >> cap & 1}
    for cap, implied in IMPLIES.items():
        if cap in held:
            held.update(implied)
    return frozenset(held)


def missing(needs: Iterable[Need], held: frozenset[Cap] | None = None) -> dict[Cap, list[str]]:
    """{capability: what needs it} for the ``needs`` not ``held``, naming only what to grant: when
    CAP_SYS_ADMIN is lacking anyway, CAP_BPF and CAP_PERFMON are not asked for besides."""
    held = effective() if held is None else held
    lacking: dict[Cap, list[str]] = {}
    for need in needs:
        if need.cap not in held and need.reason not in lacking.setdefault(need.cap, []):
            lacking[need.cap].append(need.reason)
    for cap, implied in IMPLIES.items():
        if cap in lacking:
            for other in implied:
                for reason in lacking.pop(other, []):
                    if reason not in lacking[cap]:
                        lacking[cap].append(reason)
    return lacking


def describe(lacking: dict[Cap, list[str]]) -> str:
    """'CAP_BPF (maps) and CAP_PERFMON (tracepoints, uprobes)'."""
    parts = [f"{cap} ({', '.join(reasons)})" for cap, reasons in lacking.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def require(needs: Iterable[Need], held: frozenset[Cap] | None = None) -> None:
    """Raise PrivilegeError naming every capability of ``needs`` this process lacks."""
    lacking = missing(needs, held)
    if lacking:
        one = len(lacking) == 1
        raise PrivilegeError(f"not permitted: needs {describe(lacking)}: run it as root (sudo), or give it "
                             f"{'that capability' if one else 'those capabilities'}")


def not_permitted(needs: Iterable[Need], held: frozenset[Cap] | None = None) -> str | None:
    """'not permitted: run as root or with CAP_BPF and CAP_PERFMON' when some of ``needs`` is
    lacking, else None (a refusal is then the kernel's answer, not our lack of privilege)."""
    lacking = missing(needs, held)
    if not lacking:
        return None
    names = [str(cap) for cap in lacking]
    return "not permitted: run as root or with " + (names[0] if len(names) == 1 else
                                                     ", ".join(names[:-1]) + " and " + names[-1])
