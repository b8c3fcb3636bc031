"""BPF_MAP_TYPE_RINGBUF consumer: mmap'ed, woken by epoll, read in bulk.

Layout (kernel/bpf/ringbuf.c, as libbpf and cilium/ebpf's ringbuf/reader.go map it): the first
page holds consumer_pos and is mapped read-write; from the second page on, producer_pos (one
page) and then the data area, mapped twice in a row so a record that wraps is contiguous, are
mapped read-only. Each record starts with an 8-byte header: u32 len, whose top two bits are
BUSY (still being written) and DISCARD (dropped by the program), and u32 pg_off. Records are
8-byte aligned.

Reading hands back whole runs of records with their headers stripped. For fixed-size records
(the normal case: one record layout per ring buffer) the headers are checked and stripped with
strided memoryview copies, in C, with no Python code per record and no numpy (kept off the
capture path: importing it costs more than everything else before the first event), and the
consumer position is advanced once per batch. x86-64's ordering of plain loads stands in for
the acquire loads a C consumer would use; other architectures would need a fence this
pure-Python reader cannot issue.
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Iterator
from typing import Literal

from .maps import Map
from .resource import Closing
from .syscall import MapType

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8
_LEN = struct.Struct("@I")  # native: a single 4-byte load (x86-64 and arm64 are little-endian)


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
        # One aligned 8-byte load or store each, as the kernel expects: a native "Q" memoryview
        # moves the word in one go, where struct's "<Q" moves it a byte at a time and a producer
        # that sees a torn consumer_pos drops records.
        self._consumer_pos = memoryview(self._consumer).cast("Q")
        self._producer_pos = memoryview(self._producer)[:8].cast("Q")
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
        return self._consumer_pos[0]

    @consumer_pos.setter
    def consumer_pos(self, value: int) -> None:
        self._consumer_pos[0] = value

    @property
    def producer_pos(self) -> int:
        return self._producer_pos[0]

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

    def read(self, dtype=None, limit: int | None = None):
        """Consume the committed records now in the ring as one numpy array of ``dtype`` (whose
        itemsize must be the records' payload size). See read_packed."""
        import numpy as np

        dtype = np.dtype(dtype if dtype is not None else np.uint8)
        packed, count = self.read_packed(dtype.itemsize, limit)
        return np.frombuffer(packed, dtype=dtype, count=count)

    def read_packed(self, itemsize: int, limit: int | None = None) -> tuple[bytearray, int]:
        """Consume the committed records now in the ring: (their payloads back to back, how many).

        Every payload is ``itemsize`` bytes. Discarded records are skipped and counted in
        ``discarded``; records of another size are consumed and counted in ``mismatched``;
        reading stops at the first record still being written. Runs of plain records are
        copied in bulk; an odd one is stepped over on its own, then bulk copying resumes.
        """
        stride = record_size(itemsize)
        parts, total = [], 0
        cons, prod = self.consumer_pos, self.producer_pos
        while cons < prod and (limit is None or total < limit):
            want = (prod - cons) // stride if limit is None else min((prod - cons) // stride, limit - total)
            run = self._committed_run(cons, want, itemsize, stride) if want else 0
            if run:
                start = cons & self.mask
                parts.append(_strip_headers(self._data[start:start + run * stride], itemsize, stride))
                cons, total = cons + run * stride, total + run
            else:
                step = self._step_over(cons, prod, itemsize)
                if step is None:
                    break
                cons, payload = step
                if payload is not None:
                    parts.append(payload)
                    total += 1
            self.consumer_pos = cons  # only once copied: from here on the kernel may reuse the space
        return (parts[0] if len(parts) == 1 else bytearray().join(parts)), total

    def _step_over(self, cons: int, prod: int, itemsize: int) -> tuple[int, bytearray | None] | None:
        """The record at ``cons`` read on its own: (where the next one starts, its payload if it is
        kept), or None while it is still being written."""
        start = cons & self.mask
        length = _LEN.unpack_from(self._data, start)[0]
        size = length & ~(BUSY | DISCARD)
        if length & BUSY or record_size(size) > prod - cons:
            return None
        if length & DISCARD:
            self.discarded += 1
        elif size != itemsize:
            self.mismatched += 1
        else:
            return cons + record_size(size), bytearray(self._data[start + HEADER:start + HEADER + size])
        return cons + record_size(size), None

    def _committed_run(self, cons: int, count: int, itemsize: int, stride: int) -> int:
        """How many of the next ``count`` records are committed, kept and ``itemsize`` bytes long:
        their header lengths compared as bytes (memcmp), halving the run where they differ."""
        start = cons & self.mask
        lengths = self._data[start:start + count * stride].cast("I")[::stride // 4]
        expected = _LEN.pack(itemsize)
        good, high = 0, count
        while good < high:  # the longest prefix of matching lengths: O(log n) comparisons in C
            if lengths[good:high].tobytes() == expected * (high - good):
                return high
            middle = (good + high + 1) // 2
            if lengths[good:middle].tobytes() == expected * (middle - good):
                good = middle
            else:
                high = middle - 1
        return good

    def _walk(self, cons: int, prod: int, limit: int | None) -> Iterator[memoryview]:
        data, mask, done = self._data, self.mask, 0
        try:
            while cons < prod and (limit is None or done < limit):
                start = cons & mask
                length = _LEN.unpack_from(data, start)[0]
                size = record_size(length & ~(BUSY | DISCARD))
                if length & BUSY or size > prod - cons:
                    break
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
        epoll: select.epoll | None = getattr(self, "_epoll", None)
        if epoll is None:
            return
        epoll.close()
        del self._epoll
        self._data.release()
        self._consumer_pos.release()
        self._producer_pos.release()
        self._producer.close()
        self._consumer.close()
        self.map.close()

    @property
    def fd(self) -> int:
        return self.map.fd


def _strip_headers(records: memoryview, itemsize: int, stride: int) -> bytearray:
    """The payloads of ``records`` (each ``stride`` bytes: header, ``itemsize`` bytes, padding)
    back to back: one strided copy per word of payload."""
    count = len(records) // stride
    word = 8 if itemsize % 8 == 0 else 4 if itemsize % 4 == 0 else 1
    fmt: Literal["Q", "I", "B"] = "Q" if word == 8 else "I" if word == 4 else "B"
    out = bytearray(count * itemsize)
    packed, source = memoryview(out).cast(fmt), records.cast(fmt)
    words, stride_words, skip = itemsize // word, stride // word, HEADER // word
    for k in range(words):
        packed[k::words] = source[skip + k::stride_words]
    return out
