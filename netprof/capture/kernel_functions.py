"""Which kernel functions a -k name or glob stands for: those the kernel lets a probe attach to.

As retsnoop does: the functions ftrace can trace (tracefs' available_filter_functions), or where
that cannot be read (lockdown, no ftrace) the functions both in kallsyms and in the kernel's BTF;
less the kprobe blacklist where debugfs has it. What a glob matches in kallsyms but cannot be
probed (notrace, inlined, blacklisted) is counted and said, never silently dropped.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field

_GLOB = re.compile(r"[*?\[]")


@dataclass
class KernelSelection:
    functions: list[str]
    left_out: dict[str, int] = field(default_factory=dict)  # why -> how many
    source: str = ""

    def note(self, pattern: str) -> str | None:
        if not self.left_out:
            return None
        why = ", ".join(f"{n:,} {reason}" for reason, n in self.left_out.items())
        return f"{pattern}: {len(self.functions):,} functions; left out {why}"


def is_glob(name: str) -> bool:
    return bool(_GLOB.search(name))


@functools.lru_cache(maxsize=1)
def kallsyms_text() -> frozenset[str]:
    names = set()
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    names.add(parts[2])
    except OSError:
        pass
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def traceable() -> tuple[frozenset[str], str]:
    """(the functions a probe may attach to, where that came from)."""
    from ..loader import attach
    from ..loader.syscall import BpfError

    try:
        path = attach.tracefs() / "available_filter_functions"
        with open(path) as f:
            return frozenset(line.split()[0] for line in f if line.strip()), str(path)
    except (OSError, BpfError):
        pass
    from ..loader.btf import BtfError, Kind, vmlinux

    try:
        in_btf = frozenset(vmlinux().names(Kind.FUNC))
    except (BtfError, OSError):
        return kallsyms_text(), "/proc/kallsyms"
    return in_btf & kallsyms_text(), "/proc/kallsyms and the kernel's BTF"


@functools.lru_cache(maxsize=1)
def blacklist() -> frozenset[str]:
    try:
        with open("/sys/kernel/debug/kprobes/blacklist") as f:
            return frozenset(line.split()[1] for line in f if len(line.split()) >= 2)
    except OSError:
        return frozenset()


def select(pattern: str, exclude: tuple[str, ...] = ()) -> KernelSelection:
    """The probeable functions ``pattern`` (a name or a glob) names, less ``exclude``."""
    allowed, source = traceable()
    denied = blacklist()
    if not is_glob(pattern):
        return KernelSelection([pattern], source=source)  # one name: its own error says what is wrong
    every = kallsyms_text() | allowed
    matched = sorted(n for n in every if fnmatch.fnmatchcase(n, pattern)
                     and not any(fnmatch.fnmatchcase(n, e) for e in exclude))
    chosen: list[str] = []
    left_out: dict[str, int] = {}
    for name in matched:
        if name in denied:
            left_out["on the kprobe blacklist"] = left_out.get("on the kprobe blacklist", 0) + 1
        elif name not in allowed:
            reason = "not traceable (notrace, or not in " + ("ftrace's list)" if "filter" in source else "BTF)")
            left_out[reason] = left_out.get(reason, 0) + 1
        else:
            chosen.append(name)
    return KernelSelection(chosen, left_out, source)
