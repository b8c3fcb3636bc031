"""``netprof attach -l [PATTERN]``: the probe points netprof can attach here, one per line in
bpftrace's spelling (``kprobe:tcp_v4_rcv``, ``fentry:tcp_v4_rcv``, ``tracepoint:net:netif_rx``,
``uprobe:/usr/bin/bash:readline``), kernel functions named by the mechanism netprof would use on
this kernel. Listing reads; it never attaches anything."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

from . import kernel_functions, selection

KERNEL_KINDS = ("kprobe", "kretprobe", "fentry", "fexit", "k", "kr", "f", "fr")
USER_KINDS = ("uprobe", "uretprobe", "u", "ur")


class ListingError(Exception):
    pass


def kernel_mechanism() -> str | None:
    """How netprof would probe a kernel function here: "fentry", "kprobe", or None (it cannot)."""
    from ..loader.features import features

    found = features()
    return "fentry" if found.has("fentry") else "kprobe" if found.has("kprobe") else None


def tracepoints(pattern: str = "*") -> Iterator[str]:
    from ..loader import attach
    from ..loader.syscall import BpfError

    try:
        events = (attach.tracefs() / "available_events").read_text()
    except (OSError, BpfError) as err:
        raise ListingError(f"cannot list tracepoints: {err}") from None
    for line in sorted(events.split()):
        if fnmatch.fnmatchcase(line, pattern):
            yield f"tracepoint:{line}"


def kernel(pattern: str = "*", notes: list[str] | None = None) -> Iterator[str]:
    mechanism = kernel_mechanism()
    if mechanism is None:
        if notes is not None:
            notes.append("this kernel lets netprof probe no kernel function (no kprobes, fentry refused): none listed; "
                         "the --net tracepoints work")
        return
    if not kernel_functions.is_glob(pattern):  # one name: listed if it can be probed
        if pattern in kernel_functions.traceable()[0]:
            yield f"{mechanism}:{pattern}"
        return
    found = kernel_functions.select(pattern)
    if notes is not None and (note := found.note(pattern)):
        notes.append(note)
    for name in found.functions:
        yield f"{mechanism}:{name}"


def user(spec: str) -> Iterator[str]:
    path, function = selection.split_spec(spec)
    if path is None:
        raise ListingError(f"uprobe:{spec} names no file: write uprobe:PATH or uprobe:PATH:GLOB")
    try:
        for found in selection.user_functions(f"{path}:{function or '*'}"):
            yield f"uprobe:{found.target.path}:{found.name}"
    except selection.SelectionError as err:
        raise ListingError(str(err)) from None


def listing(pattern: str | None, notes: list[str]) -> Iterator[str]:
    """Every probe point ``pattern`` (bpftrace's spelling, a glob where a name goes) names."""
    if not pattern or pattern == "*":
        yield from kernel("*", notes)
        yield from tracepoints("*")
        return
    kind, sep, rest = pattern.partition(":")
    if sep and kind in KERNEL_KINDS:
        yield from kernel(rest or "*", notes)
    elif sep and kind in ("tracepoint", "t"):
        yield from tracepoints(rest or "*")
    elif sep and kind in USER_KINDS:
        yield from user(rest)
    elif sep and "/" in kind:  # PATH:GLOB, as -u takes it
        yield from user(pattern)
    else:  # a bare glob: kernel functions and tracepoints
        yield from kernel(pattern, notes)
        yield from tracepoints(pattern if ":" in pattern else f"*:{pattern}")
