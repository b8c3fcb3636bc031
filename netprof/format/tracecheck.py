"""What a trace file may hold. The reader checks the header, the JSON chunks and every record with
these before analysis sees them, so that report, exports and the viewer meet only values they can
handle: a checksum proves that a chunk is whole, not that whoever wrote it meant well.

A bad header makes the file unreadable; a bad JSON chunk is skipped; bad records are dropped.
Each is listed in the trace's problems, never raised from inside analysis.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .layout import ENTRY, EXIT, MEMORY_SOCKETS, RX, TX

PID_LIMIT = 1 << 22      # PID_MAX_LIMIT of 64-bit Linux: every pid and tid is below it
COUNT_LIMIT = 1 << 53    # counts at or above it cannot be added exactly in float64, as analysis does
TS_LIMIT = 1 << 62       # CLOCK_MONOTONIC ns (146 years of uptime): differences stay within int64
MARGIN_NS = 3600 * 10**9  # how far records may lie past the capture's end (clock steps, slow setup)
SNAPLEN_RANGE = (8, 1024)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return _is_int(value) and 0 <= value < COUNT_LIMIT


def _is_probe_table(probes: Any) -> bool:
    """A list of {id, name, kind, ...}, the ids 0, 1, 2, ... in order (records index it by id)."""
    return isinstance(probes, list) and len(probes) <= 1 << 16 and all(
        isinstance(p, dict) and p.get("id") == i and _is_int(p.get("id")) and isinstance(p.get("name"), str)
        and isinstance(p.get("kind"), str) for i, p in enumerate(probes))


_HEADER_FIELDS: dict[str, tuple[Any, str]] = {
    "probes": (_is_probe_table, "a list of {id, name, kind} with the ids 0, 1, 2, ... in order"),
    "snaplen": (lambda v: _is_int(v) and SNAPLEN_RANGE[0] <= v <= SNAPLEN_RANGE[1] and v % 8 == 0,
                "a multiple of 8 between 8 and 1024"),
    "bin_ns": (lambda v: _is_int(v) and 1 <= v <= MARGIN_NS, "whole nanoseconds, from 1 to an hour"),
    "interfaces": (lambda v: isinstance(v, dict) and all(isinstance(n, str) for n in v.values()),
                   "an object {ifindex: name}"),
    "clock": (lambda v: isinstance(v, dict) and all(_is_int(n) and abs(n) < 1 << 63 for n in v.values()),
              "an object {name: nanoseconds}"),
    "created": (lambda v: _is_number(v) and 0 <= v < 1 << 34, "seconds since 1970"),
    "pid": (lambda v: v is None or (_is_int(v) and 0 < v < PID_LIMIT), "a process id or null"),
}


def header_problem(header: Any, versions: tuple[int, ...]) -> str | None:
    """Why a HEADER chunk's JSON cannot describe a trace of one of the format ``versions``, or None
    when it can."""
    if not isinstance(header, dict):
        return f"not a JSON object but {_json_type(header)}"
    if not _is_int(header.get("version")) or header["version"] not in versions:
        known = " and ".join(map(str, versions))
        return (f"format version {_short(header.get('version'))}: this netprof reads versions {known} "
                "(a newer netprof wrote it? read it with that one)")
    trouble = layouts_problem(header.get("layouts", {}))
    if trouble:
        return f"layouts: {trouble}"
    if "probes" not in header:
        return "no probe table (probes)"
    for key, (valid, expected) in _HEADER_FIELDS.items():
        if key in header and not valid(header[key]):
            return f"{key} = {_short(header[key])}, expected {expected}"
    return known_layouts_problem(header)  # after the fields: it needs a good snaplen


_FORMAT = re.compile(r"^(\(\d{1,4},\))?[<|]?[ui][1248]$")  # what netprof's layouts use: "<u8", "(64,)u1"


def layouts_problem(layouts: Any) -> str | None:
    """Why the header's record layouts ({kind: {size, fields: {name: [offset, numpy format]}}})
    cannot be decoded with, or None."""
    if not isinstance(layouts, dict):
        return f"not a JSON object but {_json_type(layouts)}"
    for kind, declared in layouts.items():
        if not (isinstance(declared, dict) and _is_int(declared.get("size")) and 8 <= declared["size"] <= 1 << 16
                and isinstance(declared.get("fields"), dict)):
            return f"{kind}: not {{size, fields}} with a size from 8 to 65536"
        for name, spec in declared["fields"].items():
            if not (isinstance(spec, list) and len(spec) == 2 and _is_int(spec[0]) and isinstance(spec[1], str)
                    and _FORMAT.match(spec[1])):
                return f"{kind}.{name}: {_short(spec)}, expected [offset, numpy format such as \"<u8\"]"
            count = int(spec[1][1:spec[1].index(",")]) if spec[1].startswith("(") else 1
            if not 0 <= spec[0] <= declared["size"] - count * int(spec[1][-1]):
                return f"{kind}.{name} at offset {spec[0]} lies outside its {declared['size']}-byte record"
    return None


# Layouts older versions wrote that this netprof converts (format/tracefile.py: _convert): version 1
# throughput records, before they named their network namespace.
OLDER_LAYOUTS = {"THROUGHPUT": [{"size": 32, "fields": {"ts": [0, "<u8"], "ifindex": [8, "<u4"], "direction": [12, "<u4"],
                                                      "packets": [16, "<u8"], "bytes": [24, "<u8"]}}]}


def known_layouts_problem(header: dict[str, Any]) -> str | None:
    """Why the header's layouts are not ones this netprof reads: each kind must be laid out as
    this netprof lays it out (for the header's snaplen), or as a known older version did. So
    decoding never meets a field of another shape, nor converts records into ones many times larger."""
    from .layout import MEMORY, SPAN, THROUGHPUT, xdp_packet

    snaplen = header.get("snaplen", 64)
    ours = {"SPANS": SPAN, "THROUGHPUT": THROUGHPUT, "MEMORY": MEMORY, "XDP": xdp_packet(snaplen)}
    for kind, declared in header.get("layouts", {}).items():
        if kind not in ours:
            return f"layouts: {kind} is no record kind this netprof knows"
        mine = {"size": ours[kind].size, "fields": {n: list(f) for n, f in ours[kind].fields.items()}}
        if declared != mine and declared not in OLDER_LAYOUTS.get(kind, []):
            return (f"layouts: {kind} records laid out as {_short(declared)}, not as this netprof or an older "
                    "one wrote them")
    return None


def names_problem(names: Any) -> str | None:
    """Why a NAMES chunk's JSON is no {processes: {pid: comm}, netns: {inode: {name, interfaces}}}."""
    if not isinstance(names, dict):
        return f"not a JSON object but {_json_type(names)}"
    processes, namespaces = names.get("processes", {}), names.get("netns", {})
    if not (isinstance(processes, dict) and all(isinstance(c, str) for c in processes.values())):
        return "processes is not {pid: name}"
    if not (isinstance(namespaces, dict) and all(
            isinstance(n, dict) and isinstance(n.get("name", ""), str) and isinstance(n.get("interfaces", {}), dict)
            and all(isinstance(i, str) for i in n.get("interfaces", {}).values()) for n in namespaces.values())):
        return "netns is not {inode: {name, interfaces: {ifindex: name}}}"
    return None


def loss_problem(loss: Any) -> str | None:
    """Why a LOSS chunk's JSON is no {probe name: events lost}, or None."""
    if not isinstance(loss, dict):
        return f"not a JSON object but {_json_type(loss)}"
    for name, count in loss.items():
        if not _is_count(count):
            return f"{name!r} lost {_short(count)}, not a count of events"
    return None


def end_problem(end: Any) -> str | None:
    """Why an END chunk's JSON is no summary of the capture, or None."""
    if not isinstance(end, dict):
        return f"not a JSON object but {_json_type(end)}"
    seconds = end.get("seconds", 0)
    if not (_is_number(seconds) and 0 <= seconds < TS_LIMIT / 1e9):
        return f"seconds = {_short(seconds)}, not the capture's length"
    for key in ("events", "packets"):
        if key in end and not _is_count(end[key]):
            return f"{key} = {_short(end[key])}, not a count"
    lost = loss_problem(end.get("lost", {}))
    return f"lost: {lost}" if lost else None


def capture_end(header: dict[str, Any], end: dict[str, Any] | None, mtime_ns: int) -> int:
    """The latest CLOCK_MONOTONIC ns a record of this capture can hold: when the capture ended
    (the END chunk's length after the header was written; without one, the file's last change),
    plus MARGIN_NS. The header's creation time and clock offset put both on the capture's clock."""
    realtime = header.get("clock", {}).get("realtime")
    if "created" not in header or realtime is None:
        return TS_LIMIT
    started = int(header["created"] * 1e9) - realtime
    if end is not None and "seconds" in end:
        ended = started + int(end["seconds"] * 1e9)
    else:
        ended = max(started, mtime_ns - realtime)
    return max(0, min(TS_LIMIT, ended + MARGIN_NS))


def bad_records(kind_name: str, records, header: dict[str, Any], last_ts: int) -> list[tuple[str, Any]]:
    """(what is wrong, mask of the records it is wrong with) for each flaw some of ``records`` (a
    numpy array of the record kind ``kind_name``) have; nothing for good records. ``last_ts``:
    see capture_end."""
    checks = [("with a ts after the capture ended", records["ts"] > last_ts)]
    checks += _FLAWS[kind_name](records, header)
    return [(why, mask) for why, mask in checks if mask.any()]


def _span_flaws(records, header: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("with a kind other than entry (0) or exit (1)", (records["kind"] != ENTRY) & (records["kind"] != EXIT)),
        (f"with a pid past Linux's limit ({PID_LIMIT})", records["pid"] >= PID_LIMIT),
        (f"with a tid past Linux's limit ({PID_LIMIT})", records["tid"] >= PID_LIMIT),
        ("naming a probe the header does not list", records["probe"] >= len(header["probes"])),
    ]


def _throughput_flaws(records, header: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("with a direction other than rx (0) or tx (1)", (records["direction"] != RX) & (records["direction"] != TX)),
        ("counting 2**53 packets or more", records["packets"] >= COUNT_LIMIT),
        ("counting 2**53 bytes or more", records["bytes"] >= COUNT_LIMIT),
    ]


def _memory_flaws(records, header: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (f"with a pid past Linux's limit ({PID_LIMIT})",
         (records["pid"] >= PID_LIMIT) & (records["pid"] != MEMORY_SOCKETS)),
        ("counting 2**53 bytes or more", records["bytes"] >= COUNT_LIMIT),
    ]


def _packet_flaws(records, header: dict[str, Any]) -> list[tuple[str, Any]]:
    snaplen = header.get("snaplen", 64)
    return [(f"with a caplen over the packet's length or the snap length ({snaplen})",
             (records["caplen"] > records["len"]) | (records["caplen"] > snaplen))]


_FLAWS = {"SPANS": _span_flaws, "THROUGHPUT": _throughput_flaws, "MEMORY": _memory_flaws, "XDP": _packet_flaws}


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
