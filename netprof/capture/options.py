"""What a capture records, declared once: each setting with its type, default, help, command-line
flags and check. The CLI builds its options from this, a TOML profile is read against it, and
the Python API takes it (``Session(CaptureOptions(net=True))`` or ``Session(net=True)``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

YEAR = 365 * 86400


class OptionError(ValueError):
    """A setting with a value it cannot have: one line, where it came from and what is expected."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML's true is an int to Python


def _is_finite(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


_TRACEFS_NAME = re.compile(r"[A-Za-z0-9_]+")  # a category or event name: no "..", no "/" into tracefs


def is_tracepoint(name: str) -> bool:
    category, _, event = name.partition(":")
    return bool(_TRACEFS_NAME.fullmatch(category) and _TRACEFS_NAME.fullmatch(event))


def _names(each: Callable[[str], bool] = bool) -> Callable[[Any], bool]:
    """A test for a list of names, each a string that passes ``each``."""
    return lambda names: isinstance(names, list) and all(isinstance(n, str) and n and each(n) for n in names)


@dataclass(frozen=True)
class Setting:
    flags: tuple[str, ...]       # how the command line spells it
    help: str
    expected: str                # a good value, in words
    valid: Callable[[Any], bool]
    metavar: str | None = None
    kind: str = "value"          # "value", "flag" (true/false), "names" (a list; -k also splits commas), or
                                 # "argv" (a list kept as it is: a command and its arguments)


_FLAG = ("true or false", lambda value: isinstance(value, bool))


def _setting(default: Any, flags: tuple[str, ...], help: str, expected: str, valid: Callable[[Any], bool],
             metavar: str | None = None, kind: str = "value") -> Any:
    factory = {"default_factory": list} if kind in ("names", "argv") else {"default": default}
    return field(metadata={"setting": Setting(flags, help, expected, valid, metavar, kind)}, **factory)


def _flag(flags: tuple[str, ...], help: str) -> Any:
    return _setting(False, flags, help, *_FLAG, kind="flag")


@dataclass
class CaptureOptions:
    kernel: list[str] = _setting(None, ("-k", "--kernel"), "kernel functions to time (FUNC[,FUNC])",
                                 "a function name or a list of them", _names(), "FUNC[,FUNC]", "names")
    user: list[str] = _setting(None, ("-u", "--user"), "user function to time (repeatable)",
                               "PATH:SYMBOL or a list of them", _names(), "PATH:SYMBOL", "names")
    exclude: list[str] = _setting(None, ("--exclude",), "leave out the functions this glob matches (repeatable)",
                                  "a glob or a list of them", _names(), "GLOB", "names")
    max_probes: int = _setting(1000, ("--max-probes",), "refuse a selection of more functions than this "
                               "(default 1000)", "a positive integer", lambda v: _is_int(v) and 0 < v <= 100_000,
                               "N")
    exact_entry: bool = _flag(("--exact-entry",), "probe user functions at their first instruction even where "
                              "the kernel must single-step it (by default a function that starts with endbr64 is "
                              "probed 4 bytes on, where the next instruction is emulated: ~10x cheaper)")
    kernel_attach: str = _setting("auto", ("--kernel-attach",), "how kernel functions attach: fentry, kprobe, "
                                  "kprobe_multi (one link for many, Linux 5.18), or auto: a glob's functions through "
                                  "kprobe_multi where the kernel has it, a named function through fentry, then "
                                  "kprobe", "auto, fentry, kprobe or kprobe_multi",
                                  lambda v: v in ("auto", "fentry", "kprobe", "kprobe_multi"),
                                  "auto|fentry|kprobe|kprobe_multi")
    uprobe_attach: str = _setting("auto", ("--uprobe-attach",), "how user functions attach: uprobe_multi (one "
                                  "link and one program per file, Linux 6.6), perf_event (two of each per "
                                  "function), or auto: uprobe_multi where the kernel has it",
                                  "auto, uprobe_multi or perf_event",
                                  lambda v: v in ("auto", "uprobe_multi", "perf_event"), "auto|uprobe_multi|perf_event")
    net: bool = _flag(("--net",), "the network stack's entry/exit tracepoints as spans")
    tracepoints: list[str] = _setting(None, (), "tracepoints recorded as instant events",
                                      'CATEGORY:NAME or a list of them, e.g. ["net:net_dev_queue"]',
                                      _names(is_tracepoint), "CATEGORY:NAME", "names")
    xdp: list[str] = _setting(None, ("-x", "--xdp"), "record every packet XDP sees on IFACE (repeatable)",
                              "an interface name or a list of them", _names(), "IFACE", "names")
    xdp_mode: str = _setting("auto", ("--xdp-mode",), "XDP mode: auto (native where the driver has it), "
                             "native or generic", "auto, native or generic", lambda v: v in ("auto", "native", "generic"),
                             "auto|native|generic")
    xdp_attach: str = _setting("auto", ("--xdp-attach",), "how to attach XDP: a bpf_link (dies with netprof), "
                               "netlink (recorded in /run/netprof for netprof detach), or auto: a link where the "
                               "kernel has them", "auto, bpf_link or netlink",
                               lambda v: v in ("auto", "bpf_link", "netlink"), "auto|bpf_link|netlink")
    snaplen: int = _setting(64, ("--snaplen",), "packet bytes kept per XDP record (multiple of 8, default 64)",
                            "a multiple of 8 between 8 and 1024",
                            lambda v: _is_int(v) and 8 <= v <= 1024 and v % 8 == 0, "N")
    throughput: bool = _flag(("-t", "--throughput"), "packets and bytes per interface over time")
    all_netns: bool = _flag(("--all-netns",), "with -t: count every network namespace (each interface "
                            "labelled with its namespace), not only the one netprof runs in")
    memory: bool = _flag(("-m", "--memory"), "memory in use over time (system and processes)")
    memory_interval: float = _setting(10, ("--memory-interval",), "memory sampling interval (default 10 ms)",
                                      "milliseconds between 1 and 60000",
                                      lambda v: _is_finite(v) and 1 <= v <= 60_000, "MS")
    sockets: bool = _flag(("--sockets",), "with the memory: the kernel's socket buffers (TCP and UDP sk_buffs, "
                          "IP fragments)")
    buffer: int = _setting(16, ("--buffer",), "ring buffer for span events (power of two, default 16: 80 ms of "
                           "5 M events/s)", "MiB, a power of two between 1 and 2048",  # bytes fit a u32
                           lambda v: _is_int(v) and 1 <= v <= 2048 and v & (v - 1) == 0, "MiB")
    pid: int | None = _setting(None, ("-p", "--pid"), "only this process, and the processes it forks",
                               "a process id (a positive integer)", lambda v: v is None or (_is_int(v) and v > 0))
    no_inherit: bool = _flag(("--no-inherit",), "with -p: only that process, not the processes it forks "
                             "during the capture")
    command: list[str] = _setting(None, (), "a command to run under the capture (on the command line: after --), "
                                  "probed from its first instruction, followed with every process it forks; the "
                                  "capture ends when it exits", 'a program and its arguments, e.g. ["./server", "-v"]',
                                  lambda v: isinstance(v, list) and bool(v) and all(isinstance(a, str) for a in v)
                                  and bool(v[0]) or v == [], "COMMAND", "argv")
    duration: float | None = _setting(None, ("-d", "--duration"), "stop after this long (default: Ctrl-C)",
                                      "seconds above 0 and at most a year (leave it out to stop with Ctrl-C)",
                                      lambda v: v is None or (_is_finite(v) and 0 < v <= YEAR), "SECONDS")
    output: str = _setting("netprof.trace", ("-o", "--output"), "trace file to write (default netprof.trace)",
                           "a file name (a string)", lambda v: isinstance(v, (str, os.PathLike)) and str(v) != "",
                           "FILE")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["setting"].kind == "names" and isinstance(value, str):
                setattr(self, f.name, value := [value])  # Session(kernel="ip_rcv")
            elif f.metadata["setting"].kind in ("names", "argv"):
                setattr(self, f.name, value := list(value))
            check(f.name, value)

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        return {f.name: f.metadata["setting"] for f in fields(cls)}


def check(name: str, value: Any, source: str | None = None) -> Any:
    """``value`` if it is a good value of the setting ``name``; else OptionError naming where it
    came from (``source``: the config file; else the option) and what is expected."""
    setting = CaptureOptions.settings()[name]
    if setting.valid(value):
        return value
    if source:
        where = f"config {source}: {name} = {toml(value)}"
    else:
        where = f"{'/'.join(setting.flags) or name} {toml(value)}"
    raise OptionError(f"{where}: expected {setting.expected}")


def toml(value: Any) -> str:
    """``value`` as TOML writes it (true, nan, "text"), for messages."""
    import json

    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return f"[{', '.join(map(toml, value))}]"
    return repr(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The capture's settings as command-line options (every one optional: None when not given,
    so that a TOML profile can fill it)."""
    types = {"snaplen": int, "buffer": int, "pid": int, "memory_interval": float, "duration": float,
             "max_probes": int}
    for name, setting in CaptureOptions.settings().items():
        if not setting.flags:
            continue
        if setting.kind == "flag":
            parser.add_argument(*setting.flags, dest=name, action="store_true", default=None, help=setting.help)
        elif setting.kind == "names":
            parser.add_argument(*setting.flags, dest=name, action="append", metavar=setting.metavar,
                                help=setting.help)
        else:
            parser.add_argument(*setting.flags, dest=name, type=types.get(name, str), metavar=setting.metavar,
                                help=setting.help)


def split_names(values: list[str] | None) -> list[str]:
    """-k ip_rcv,tcp_v4_rcv -k udp_rcv: each name once, in order."""
    return list(dict.fromkeys(v.strip() for value in values or () for v in value.split(",") if v.strip()))


def from_sources(given: dict[str, Any], profile: dict[str, Any]) -> CaptureOptions:
    """The options from the command line (``given``: None for what was not given) over a TOML
    profile (checked already) over the defaults. Lists add up: the profile's, then the command line's."""
    values: dict[str, Any] = {}
    for name, setting in CaptureOptions.settings().items():
        mine, theirs = given.get(name), profile.get(name)
        if setting.kind == "argv":
            values[name] = list(mine or theirs or [])  # the command line's command replaces the profile's
        elif setting.kind == "names":
            listed = [theirs] if isinstance(theirs, str) else list(theirs or ())
            values[name] = split_names(listed + list(mine or ())) if name == "kernel" else \
                list(dict.fromkeys(listed + list(mine or ())))
        elif mine is not None:
            values[name] = check(name, mine)
        elif theirs is not None:
            values[name] = theirs
    return CaptureOptions(**values)
