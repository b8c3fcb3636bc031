"""BPF_MAP_TYPE_RINGBUF consumer: mmap'ed, woken by epoll, read in bulk.

Layout (kernel/bpf/ringbuf.c, as libbpf and cilium/ebpf's ringbuf/reader.go map it): the first
page holds consumer_pos and is mapped read-write; from the second page on, producer_pos (one
page) and then the data area, mapped twice in a row so a record that wraps is contiguous, are
mapped read-only. Each record starts with an 8-byte header: u32 len, whose top two bits are
BUSY (still being written) and DISCARD (dropped by the program), and u32 pg_off. Records are
8-byte aligned.

Reading hands back whole runs of records: for fixed-size records (the normal case: one record
layout per ring buffer) the headers are checked with numpy, with no Python code per record,
and the consumer position is advanced once per batch. x86-64's ordering of plain loads
stands in for the acquire loads a C consumer would use; other architectures would need a
fence this pure-Python reader cannot issue.
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Iterator

import numpy as np

from .maps import Map
from .resource import Closing
from .syscall import MapType

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8
_LEN = struct.Struct("@I")  # native: a single 4-byte load (x86-64 and arm64 are little-endian)
_HEADER_DTYPE = [("len", "<u4"), ("pg_off", "<u4")]


def record_size(payload: int) -> int:
    """Bytes a record of ``payload`` bytes takes in the ring: header included, 8-byte aligned."""
    return (payload + HEADER + 7) & ~7


class RingBuffer(Closing):
    """Reader of one ring buffer map. ``with RingBuffer(map) as rb: rb.read(dtype)``."""

    def __init__(self, ring: Map):
        if ring.type != MapType.RINGBUF:
            raise ValueError(f"map {ring.name!r} is {ring.type.name}, not RINGBUF")
        self.map, self.size, self.mask = ring, ring.max_entries, ring.max_entries - 1
        page = mmap.PAGESIZE
        self._consumer = mmap.mmap(ring.fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(ring.fd, page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]
        # One aligned 8-byte load or store each, as the kernel expects: struct's "<Q" moves
        # bytes one at a time, and a producer that sees a torn consumer_pos drops records.
        self._consumer_pos = np.frombuffer(self._consumer, dtype=np.uint64, count=1)
        self._producer_pos = np.frombuffer(self._producer, dtype=np.uint64, count=1)
        self._epoll = select.epoll()
        self._epoll.register(ring.fd, select.EPOLLIN)
        self.discarded = 0   # records the programs reserved and then discarded
        self.mismatched = 0  # records read(dtype) consumed whose size was not dtype's

    @classmethod
    def create(cls, size: int, name: str = "events") -> RingBuffer:
        """A new ring buffer map of ``size`` bytes (a power of two, at least a page)."""
        if size < mmap.PAGESIZE or size & (size - 1):
            raise ValueError(f"ring buffer size {size} must be a power of two of at least {mmap.PAGESIZE}")
        return cls(Map.create(MapType.RINGBUF, max_entries=size, name=name))

    # --- positions ------------------------------------------------------------------------------

    @property
    def consumer_pos(self) -> int:
        return int(self._consumer_pos[0])

    @consumer_pos.setter
    def consumer_pos(self, value: int) -> None:
        self._consumer_pos[0] = value

    @property
    def producer_pos(self) -> int:
        return int(self._producer_pos[0])

    def pending(self) -> int:
        """Bytes written by producers and not consumed yet (headers included)."""
        return self.producer_pos - self.consumer_pos

    # --- waiting ----------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a producer wakes us or ``timeout`` seconds pass. True if data is pending.

        Producers that submit with BPF_RB_NO_WAKEUP never wake the reader: poll with a timeout.
        """
        if self.pending():
            return True
        self._epoll.poll(-1 if timeout is None else timeout)
        return self.pending() > 0

    # --- reading ----------------------------------------------------------------------------------

    def read(self, dtype: np.dtype | None = None, limit: int | None = None) -> np.ndarray:
        """Consume the committed records now in the ring, as one numpy array of ``dtype``
        (whose itemsize must be the record's payload size). Discarded records are skipped,
        records of another size are consumed and counted in ``mismatched``; reading stops at
        the first record still being written."""
        dtype = np.dtype(dtype if dtype is not None else np.uint8)
        stride = record_size(dtype.itemsize)
        cons, prod = self.consumer_pos, self.producer_pos
        available = prod - cons
        if available <= 0:
            return np.empty(0, dtype)
        count = available // stride
        if limit is not None:
            count = min(count, limit)
        if available % stride == 0 and count:
            fixed = self._read_fixed(cons, count, dtype, stride)
            if fixed is not None:
                return fixed
        return self._read_mixed(cons, prod, dtype, limit)

    def _read_fixed(self, cons: int, count: int, dtype: np.dtype, stride: int) -> np.ndarray | None:
        layout = np.dtype({"names": ["len", "pg_off", "rec"], "formats": ["<u4", "<u4", dtype],
                           "offsets": [0, 4, HEADER], "itemsize": stride})
        start = cons & self.mask
        records = np.frombuffer(self._data[start:start + count * stride], dtype=layout)
        lens = records["len"]
        busy = np.flatnonzero(lens & BUSY)
        if busy.size:
            count = int(busy[0])
            records, lens = records[:count], lens[:count]
        if count and np.any((lens & ~np.uint32(BUSY | DISCARD)) != dtype.itemsize):
            return None  # not all records have this size: walk them one by one
        keep = (lens & DISCARD) == 0
        out = records["rec"][keep].copy() if count else np.empty(0, dtype)
        self.discarded += int(count - keep.sum()) if count else 0
        self.consumer_pos = cons + count * stride
        return out

    def _read_mixed(self, cons: int, prod: int, dtype: np.dtype, limit: int | None) -> np.ndarray:
        """The slow path: walk headers one at a time, keep records of ``dtype``'s size."""
        chunks = []
        for payload in self._walk(cons, prod, limit):
            if len(payload) == dtype.itemsize:
                chunks.append(bytes(payload))
            else:
                self.mismatched += 1
        return np.frombuffer(b"".join(chunks), dtype=dtype).copy() if chunks else np.empty(0, dtype)

    def _walk(self, cons: int, prod: int, limit: int | None) -> Iterator[memoryview]:
        data, mask, done = self._data, self.mask, 0
        try:
            while cons < prod and (limit is None or done < limit):
                start = cons & mask
                length = _LEN.unpack_from(data, start)[0]
                if length & BUSY:
                    break
                size = record_size(length & ~(BUSY | DISCARD))
                if not length & DISCARD:
                    yield data[start + HEADER:start + HEADER + (length & ~(BUSY | DISCARD))]
                    done += 1
                else:
                    self.discarded += 1
                cons += size
        finally:
            self.consumer_pos = cons

    def records(self, limit: int | None = None) -> list[bytes]:
        """Consume committed records of any sizes, each as bytes (one Python object per record)."""
        return [bytes(payload) for payload in self._walk(self.consumer_pos, self.producer_pos, limit)]

    # --- lifetime -----------------------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "_epoll", None) is None:
            return
        self._epoll.close()
        self._epoll = None
        self._data.release()
        del self._consumer_pos, self._producer_pos
        self._producer.close()
        self._consumer.close()
        self.map.close()

    @property
    def fd(self) -> int:
        return self.map.fd

