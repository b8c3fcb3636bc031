"""The ring buffer reader's header checks and stripping, on synthetic rings (no kernel)."""

import mmap
import random
import struct

import pytest

from netprof.loader.ringbuf import BUSY, DISCARD, HEADER, RingBuffer, record_size


def fake_ring(records: list[tuple[int, bytes]], size: int = 1 << 16) -> RingBuffer:
    """A RingBuffer over plain memory holding ``records`` (header length word, payload)."""
    data = bytearray(2 * size)
    pos = 0
    for length, payload in records:
        struct.pack_into("<II", data, pos, length, pos // mmap.PAGESIZE)
        data[pos + HEADER:pos + HEADER + len(payload)] = payload
        pos += record_size(len(payload))
    ring = RingBuffer.__new__(RingBuffer)
    ring.size, ring.mask, ring._data = size, size - 1, memoryview(data)
    ring._consumer_pos = memoryview(bytearray(8)).cast("Q")
    ring._producer_pos = memoryview(bytearray(struct.pack("<Q", pos))).cast("Q")
    ring.discarded = ring.mismatched = 0
    return ring


def reference(records: list[tuple[int, bytes]], itemsize: int) -> tuple[list[bytes], int, int]:
    """What a one-record-at-a-time reader keeps: (payloads, discarded, mismatched), up to the first busy."""
    kept, discarded, mismatched = [], 0, 0
    for length, payload in records:
        if length & BUSY:
            break
        if length & DISCARD:
            discarded += 1
        elif len(payload) == itemsize:
            kept.append(payload)
        else:
            mismatched += 1
    return kept, discarded, mismatched


def drain(ring: RingBuffer, itemsize: int) -> list[bytes]:
    out = []
    while True:
        before = ring.consumer_pos
        packed, count = ring.read_packed(itemsize)
        assert len(packed) == count * itemsize
        out += [bytes(packed[i * itemsize:(i + 1) * itemsize]) for i in range(count)]
        if ring.consumer_pos == before:
            return out


@pytest.mark.parametrize("seed", range(30))
def test_read_packed_matches_a_record_by_record_reader(seed):
    rng = random.Random(seed)
    itemsize = rng.choice([4, 12, 24, 32, 88])
    records = []
    for i in range(rng.randrange(0, 300)):
        size = itemsize if rng.random() < 0.9 else rng.choice([8, 16, 40])
        payload = bytes(rng.randrange(256) for _ in range(size))
        flags = DISCARD if rng.random() < 0.05 else 0
        records.append((size | flags, payload))
    if records and rng.random() < 0.5:
        at = rng.randrange(len(records))
        records[at] = (records[at][0] | BUSY, records[at][1])
    ring = fake_ring(records)
    kept, discarded, mismatched = reference(records, itemsize)
    assert drain(ring, itemsize) == kept
    assert (ring.discarded, ring.mismatched) == (discarded, mismatched)


def test_read_stops_at_a_busy_record_and_resumes_once_committed():
    records = [(32, bytes([i]) * 32) for i in range(10)]
    records[6] = (32 | BUSY, records[6][1])
    ring = fake_ring(records)
    assert ring.read_packed(32) == (bytearray(b"".join(r[1] for r in records[:6])), 6)
    assert ring.read_packed(32) == (bytearray(), 0)
    struct.pack_into("<I", ring._data, 6 * record_size(32), 32)  # the producer commits it
    assert ring.read_packed(32) == (bytearray(b"".join(r[1] for r in records[6:])), 4)
    assert ring.consumer_pos == ring.producer_pos


def test_records_are_copied_before_the_kernel_is_told_it_may_reuse_them(monkeypatch):
    from netprof.loader import ringbuf

    ring = fake_ring([(32, bytes([i]) * 32) for i in range(50)])
    seen = []
    real = ringbuf._strip_headers

    def strip(records, itemsize, stride):
        seen.append(ring.consumer_pos)  # still where the copied records start
        return real(records, itemsize, stride)

    monkeypatch.setattr(ringbuf, "_strip_headers", strip)
    packed, count = ring.read_packed(32)
    assert count == 50 and seen == [0] and ring.consumer_pos == ring.producer_pos


def test_an_odd_record_is_stepped_over_and_the_rest_copied_in_bulk(monkeypatch):
    from netprof.loader import ringbuf

    records = [(32 | DISCARD, bytes(32)), (16, bytes(16))] + [(32, bytes([i % 256]) * 32) for i in range(1000)]
    ring = fake_ring(records)
    bulk = []
    real = ringbuf._strip_headers
    monkeypatch.setattr(ringbuf, "_strip_headers", lambda r, i, s: bulk.append(len(r) // s) or real(r, i, s))
    packed, count = ring.read_packed(32)
    assert count == 1000 and bulk == [1000]
    assert (ring.discarded, ring.mismatched) == (1, 1)
