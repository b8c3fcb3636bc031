"""The trace file: append-only chunks, readable after a crash. The only contract between capture
and analysis.

    file   = b"NETPROF\\x01" chunk*
    chunk  = header (32 bytes) payload
    header = magic b"NPCK", kind u16, reserved u16, count u32, lost u32, crc32 u32, reserved u32,
             payload length u64   (little-endian)

The first chunk is HEADER (JSON: host, kernel, clock offsets, probe table, record layouts: per
kind its size and {field: [offset, numpy format]}).
Data chunks hold records exactly as the probes wrote them; ``lost`` counts the events of that
kind the kernel could not deliver since the previous chunk. LOSS (JSON, per probe, cumulative)
and END (JSON summary) close a capture. A file cut short loads every complete chunk; a chunk
whose checksum fails is skipped and reported. Reading never executes anything from the file, and
checks what it reads (tracecheck.py): a bad header is an error, a bad JSON chunk is skipped, bad
records are dropped, each listed in the trace's problems.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from .. import infile, outfile
from . import tracecheck
from . import layout

MAGIC = b"NETPROF\x01"
CHUNK_MAGIC = b"NPCK"
CHUNK = struct.Struct("<4sHHIIIIQ")
# 2: throughput records name their network namespace (netns); NAMES chunks. Older files are read
# with the layouts their header declares, converted field by field (reader: _decode).
VERSION = 2
READABLE_VERSIONS = (1, 2)


class Kind(IntEnum):
    HEADER = 1
    SPANS = 2
    XDP = 3
    THROUGHPUT = 4
    MEMORY = 5
    LOSS = 6
    END = 7
    NAMES = 8  # what the numbers in records name: processes (pid -> comm), network namespaces


JSON_KINDS = {Kind.HEADER, Kind.LOSS, Kind.END, Kind.NAMES}


def clock_offsets() -> dict[str, int]:
    """Nanoseconds to add to a CLOCK_MONOTONIC timestamp (bpf_ktime_get_ns) for the wall clock
    and for CLOCK_BOOTTIME, read between two monotonic reads to bound the error."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    realtime = time.clock_gettime_ns(time.CLOCK_REALTIME)
    boottime = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    middle = (before + after) // 2
    return {"realtime": realtime - middle, "boottime": boottime - middle, "error_ns": after - before}


class TraceWriter:
    """Writes chunks to a new trace file (mode 0600, owned by the sudo caller where there is one)."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]):
        self.path = Path(path)
        self.fd = outfile.create(self.path)  # new, 0600, the sudo caller's; never a device, FIFO or symlink
        self.bytes = 0
        self._layouts = _layouts(int(header.get("snaplen", 64)))
        os.write(self.fd, MAGIC)
        self.write_json(Kind.HEADER, {"version": VERSION, **header})

    def write(self, kind: Kind, records, count: int | None = None, lost: int = 0) -> None:
        """Append a chunk of ``records``: a numpy array, or bytes holding ``count`` records."""
        if hasattr(records, "dtype"):  # a numpy array: the capture path itself never imports numpy
            import numpy as np

            count = len(records) if count is None else count
            dtype = self._layouts[kind].dtype() if kind in self._layouts else records.dtype
            if records.dtype != dtype:
                # e.g. numpy 2's concatenate drops the padding of structured dtypes: restore the layout
                records = records.astype(dtype)
            payload = memoryview(np.ascontiguousarray(records).view(np.uint8).data)  # bytes, not records
        else:
            payload, count = records, count or 0
        header = CHUNK.pack(CHUNK_MAGIC, kind, 0, count, min(lost, 0xFFFF_FFFF), zlib.crc32(payload), 0,
                            len(payload))
        pending = [memoryview(header), memoryview(payload).cast("B")]
        while pending:  # writev may write less than asked (a full disk, a signal)
            done = os.writev(self.fd, pending)
            self.bytes += done
            while pending and done >= len(pending[0]):
                done -= len(pending[0])
                pending.pop(0)
            if pending and done:
                pending[0] = pending[0][done:]

    def write_json(self, kind: Kind, value: dict[str, Any]) -> None:
        self.write(kind, json.dumps(value, sort_keys=True).encode(), count=1)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def new_header(probes: list[dict[str, Any]], snaplen: int, **extra: Any) -> dict[str, Any]:
    uname = os.uname()
    return {
        "host": uname.nodename, "kernel": uname.release, "machine": uname.machine,
        "created": time.time(), "clock": clock_offsets(), "probes": probes, "snaplen": snaplen,
        "layouts": {kind.name: {"size": rec.size, "fields": rec.fields} for kind, rec in _layouts(snaplen).items()},
        **extra,
    }


def _layouts(snaplen: int) -> dict[Kind, layout.Layout]:
    return {Kind.SPANS: layout.SPAN, Kind.XDP: layout.xdp_packet(snaplen), Kind.THROUGHPUT: layout.THROUGHPUT,
            Kind.MEMORY: layout.MEMORY}


class TraceError(ValueError):
    """A file that is not a netprof trace at all."""


@dataclass
class RawTrace:
    """What a trace file holds, each record kind as one numpy array."""

    path: Path
    header: dict[str, Any]
    records: dict[Kind, Any]  # numpy arrays
    lost_by_kind: dict[Kind, int]
    loss: dict[str, int] = field(default_factory=dict)  # probe name -> events lost
    end: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)   # truncation, corruption: what was skipped
    loss_marks: list[tuple[Kind, int, int]] = field(default_factory=list)  # (kind, index of the next record, lost)
    names: dict[str, dict] = field(default_factory=lambda: {"processes": {}, "netns": {}})  # NAMES chunks, merged


def read(path: str | os.PathLike, on_progress=None) -> RawTrace:
    """Every complete, intact chunk of the trace at ``path``; problems are listed, not raised.
    ``on_progress(bytes_read)`` is called as the chunks go by. The file is mapped, not read:
    each record kind is copied once, straight into its array."""
    path = Path(path)
    try:
        fd = infile.open_regular(path, hint="give a trace file written by netprof attach")
    except infile.InputError as err:
        raise TraceError(str(err)) from None
    try:
        st = os.fstat(fd)
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if st.st_size else None
    except OSError as err:
        raise TraceError(f"cannot read {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    if mapped is None:
        raise TraceError(f"{path} is empty")
    data = memoryview(mapped)
    try:
        return _parse(path, mapped, data, on_progress, st.st_mtime_ns)
    finally:
        data.release()
        try:
            mapped.close()
        except BufferError:  # a view still lives in an exception's traceback: the GC will unmap it
            pass


def _parse(path: Path, mapped: mmap.mmap, data: memoryview, on_progress, mtime_ns: int) -> RawTrace:
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise TraceError(f"{path} is not a netprof trace (bad magic)")
    header: dict[str, Any] | None = None
    header_trouble = "none found"
    chunks: dict[Kind, list[tuple[int, int]]] = {}
    lost = {kind: 0 for kind in Kind}
    loss: dict[str, int] = {}
    names: dict[str, dict] = {"processes": {}, "netns": {}}
    end = None
    problems: list[str] = []
    marks: list[tuple[Kind, int, int]] = []  # (kind, chunk number of that kind, lost)
    offset = len(MAGIC)
    while offset < len(data):
        if len(data) - offset < CHUNK.size:
            problems.append(f"file ends inside a chunk header at byte {offset} (capture cut short)")
            break
        magic, kind, _, count, chunk_lost, crc, _, length = CHUNK.unpack_from(data, offset)
        if magic != CHUNK_MAGIC:
            resync = mapped.find(CHUNK_MAGIC, offset + 1)
            problems.append(f"garbage at byte {offset}: " + (f"skipped to byte {resync}" if resync > 0 else
                                                              "nothing readable after it"))
            if resync < 0:
                break
            offset = resync
            continue
        start, stop = offset + CHUNK.size, offset + CHUNK.size + length
        if stop > len(data):
            # A file cut short, or a corrupt length field: the length is outside the checksum.
            resync = mapped.find(CHUNK_MAGIC, offset + 1)
            if resync < 0:
                problems.append(f"last chunk is cut short ({len(data) - start} of {length} bytes): capture was "
                                "interrupted; everything before it is loaded")
                break
            problems.append(f"chunk at byte {offset} claims {length} bytes, past the end: skipped to byte {resync}")
            offset = resync
            continue
        offset = stop
        if on_progress is not None:
            on_progress(offset)
        with data[start:stop] as payload:
            intact = zlib.crc32(payload) == crc
            text = bytes(payload) if intact and kind in JSON_KINDS else b""
        if not intact:
            # Its length may be what is corrupt: look for the next chunk rather than trusting it.
            resync = mapped.find(CHUNK_MAGIC, start - CHUNK.size + 1)
            problems.append(f"chunk at byte {start - CHUNK.size} is corrupt (checksum mismatch): skipped")
            if 0 < resync < offset:
                offset = resync
            continue
        if kind not in Kind._value2member_map_:
            problems.append(f"chunk of unknown kind {kind} at byte {start - CHUNK.size}: skipped")
            continue
        kind = Kind(kind)
        at = start - CHUNK.size
        if kind in JSON_KINDS:
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                problems.append(f"{kind.name} chunk at byte {at} is not JSON: skipped")
                continue
            trouble = _JSON_CHECKS[kind](value)
            if trouble:
                problems.append(f"{kind.name} chunk at byte {at} is bad ({trouble}): skipped")
                header_trouble = trouble if kind == Kind.HEADER else header_trouble
                continue
            lost[kind] += chunk_lost
            if kind == Kind.HEADER and header is None:
                header = value
            elif kind == Kind.LOSS:
                loss = value
            elif kind == Kind.END:
                end = value
            elif kind == Kind.NAMES:
                for group in ("processes", "netns"):
                    names[group].update(value.get(group, {}))
            continue
        if header is None:  # the header says how large a packet record is, and what a probe id means
            problems.append(f"{kind.name} chunk at byte {at} comes before the header: skipped")
            continue
        itemsize = _declared(header)[kind].size
        if count * itemsize != length:
            problems.append(f"{kind.name} chunk at byte {at} says it holds {count} records but has {length} bytes "
                            f"({itemsize} a record): skipped")
            continue
        lost[kind] += chunk_lost
        chunks.setdefault(kind, []).append((start, stop))
        if chunk_lost:
            marks.append((kind, len(chunks[kind]) - 1, chunk_lost))
    if header is None:
        raise TraceError(f"{path} has no readable header chunk ({header_trouble})")
    import numpy as np

    last_ts = tracecheck.capture_end(header, end, mtime_ns)
    records, first_record = {}, {}
    declared = _declared(header)
    for kind, rec in _layouts(header.get("snaplen", 64)).items():
        dtype = declared[kind].dtype()
        spans = chunks.get(kind, [])
        first_record[kind] = np.cumsum([0] + [b - a for a, b in spans]) // dtype.itemsize
        out = np.empty(sum(b - a for a, b in spans) // dtype.itemsize, dtype)
        raw, at = out.view(np.uint8), 0
        for a, b in spans:
            with data[a:b] as chunk:
                raw[at:at + b - a] = np.frombuffer(chunk, np.uint8)
            at += b - a
        out = _convert(kind, out, rec.dtype(), header)
        records[kind], first_record[kind] = _good_records(kind, out, first_record[kind], header, last_ts, problems)
    loss_marks = [(kind, int(first_record[kind][chunk]), n) for kind, chunk, n in marks if kind in first_record]
    return RawTrace(path, header, records, lost, loss, end, problems, loss_marks, names)


def _declared(header: dict[str, Any]) -> dict[Kind, layout.Layout]:
    """The record layouts the file's header declares (checked by tracecheck), else this netprof's."""
    ours = _layouts(header.get("snaplen", 64))
    declared = header.get("layouts", {})
    return {kind: layout.Layout(declared[kind.name]["size"], {n: tuple(f) for n, f in declared[kind.name]["fields"].items()})
            if kind.name in declared else rec for kind, rec in ours.items()}


def _convert(kind: Kind, records, dtype, header: dict[str, Any]):
    """``records`` decoded with the file's layout, as this netprof's layout of ``kind``: fields
    copied by name, fields the file lacks filled in (a version 1 throughput record's netns is the
    capturing namespace, the only one such a capture counted)."""
    if records.dtype == dtype:
        return records
    import numpy as np

    out = np.zeros(len(records), dtype)
    for name in dtype.names:
        if name in records.dtype.names:
            out[name] = records[name]
        elif kind == Kind.THROUGHPUT and name == "netns":
            out[name] = header.get("netns", 0)
    return out


def _good_records(kind: Kind, records, first_record, header: dict[str, Any], last_ts: int, problems: list[str]):
    """``records`` without those tracecheck finds bad (each flaw listed in ``problems``), and
    ``first_record`` (the index of each chunk's first record) moved to match."""
    import numpy as np

    flaws = tracecheck.bad_records(kind.name, records, header, last_ts)
    if not flaws:
        return records, first_record
    bad = np.zeros(len(records), bool)
    for why, mask in flaws:
        problems.append(f"{kind.name}: dropped {int(mask.sum()):,} of {len(records):,} records {why}")
        bad |= mask
    dropped_before = np.concatenate([[0], np.cumsum(bad)])
    return records[~bad], first_record - dropped_before[first_record]


_JSON_CHECKS = {
    Kind.HEADER: lambda value: tracecheck.header_problem(value, READABLE_VERSIONS),
    Kind.NAMES: tracecheck.names_problem,
    Kind.LOSS: tracecheck.loss_problem,
    Kind.END: tracecheck.end_problem,
}
