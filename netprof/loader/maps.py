"""BPF maps as Python objects that own their fd: dict-like, typed keys and values, batch reads.

Keys and values are bytes by default; give a ctypes type (``ctypes.c_uint32``, a Structure),
a construct ``Struct``/``Int32ul`` or a numpy dtype to read and write Python values instead.
Per-CPU maps return one value per possible CPU.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from . import syscall
from .resource import FdOwner
from .syscall import ENOTSUPP, BpfError, MapInfo, MapType

_CTYPES = (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)
PERCPU = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH})
_NO_KEYS = frozenset({MapType.RINGBUF, MapType.USER_RINGBUF, MapType.PERF_EVENT_ARRAY, MapType.QUEUE, MapType.STACK})


class Codec:
    """Turns Python values into a map's key or value bytes and back."""

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]

    def __init__(self, kind: Any, size: int):
        self.kind, self.size = kind, size
        if kind is None:
            self.encode, self.decode = self._raw, bytes
        elif isinstance(kind, type) and issubclass(kind, ctypes._SimpleCData):  # c_uint32 and friends
            self.encode = lambda v: bytes(kind(v))
            self.decode = lambda b: kind.from_buffer_copy(b).value
        elif isinstance(kind, type) and issubclass(kind, (ctypes.Structure, ctypes.Union, ctypes.Array)):
            self.encode = bytes
            self.decode = kind.from_buffer_copy
        elif hasattr(kind, "build") and hasattr(kind, "parse"):  # construct
            self.encode, self.decode = kind.build, kind.parse
        elif hasattr(kind, "itemsize") and hasattr(kind, "fields"):  # numpy dtype
            import numpy as np

            self.encode = lambda v: np.asarray(v, dtype=kind).tobytes()
            self.decode = lambda b: np.frombuffer(b, dtype=kind)[0]
        else:
            raise TypeError(f"a map key or value type is a ctypes type, a construct Struct or a numpy dtype, "
                            f"not {kind!r}")

    def _raw(self, value: bytes) -> bytes:
        if len(value) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(value)}")
        return bytes(value)


def _sizeof(kind: Any) -> int:
    if isinstance(kind, type) and issubclass(kind, _CTYPES):
        return ctypes.sizeof(kind)
    if hasattr(kind, "sizeof"):
        return kind.sizeof()
    if hasattr(kind, "itemsize"):
        return int(kind.itemsize)
    raise TypeError(f"cannot tell the size of {kind!r}")


@cache
def possible_cpus() -> int:
    """Number of possible CPUs: per-CPU map values hold one slot per possible CPU."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count


class Map(FdOwner):
    """A BPF map. ``Map.create(MapType.HASH, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=1024)``."""

    def __init__(self, fd: int, map_type: MapType, key_size: int, value_size: int, max_entries: int,
                 name: str = "", key: Any = None, value: Any = None, flags: int = 0):
        self.fd, self.type, self.name = fd, MapType(map_type), name
        self.key_size, self.value_size, self.max_entries, self.flags = key_size, value_size, max_entries, flags
        self.key = Codec(key, key_size)
        self.value = Codec(value, value_size)
        self.percpu = self.type in PERCPU
        # The kernel copies per-CPU values in 8-byte aligned slots, one per possible CPU.
        self._stride = (value_size + 7) & ~7
        self._value_bytes = self._stride * possible_cpus() if self.percpu else value_size

    @classmethod
    def create(cls, map_type: MapType, *, key: Any = None, value: Any = None, key_size: int | None = None,
               value_size: int | None = None, max_entries: int = 1, name: str = "", flags: int = 0) -> Map:
        key_size = key_size if key_size is not None else (_sizeof(key) if key is not None else 0)
        value_size = value_size if value_size is not None else (_sizeof(value) if value is not None else 0)
        if map_type == MapType.PERF_EVENT_ARRAY:
            key_size, value_size = 4, 4
        fd = syscall.map_create(map_type, key_size, value_size, max_entries, name, flags)
        return cls(fd, map_type, key_size, value_size, max_entries, name, key, value, flags)

    @classmethod
    def from_fd(cls, fd: int, key: Any = None, value: Any = None) -> Map:
        info = syscall.obj_info(fd, MapInfo(), "read map info")
        return cls(fd, MapType(info.type), info.key_size, info.value_size, info.max_entries,
                   info.name.decode(), key, value, info.map_flags)

    @classmethod
    def pinned(cls, path: str | os.PathLike, key: Any = None, value: Any = None) -> Map:
        return cls.from_fd(syscall.obj_get(str(path)), key, value)

    def pin(self, path: str | os.PathLike) -> None:
        syscall.obj_pin(self.fd, str(path))

    def __repr__(self) -> str:
        return f"<Map {self.name!r} {self.type.name.lower()} fd={self.fd} {self.key_size}->{self.value_size} " \
               f"x{self.max_entries}>"

    @property
    def id(self) -> int:
        return syscall.obj_info(self.fd, MapInfo(), f"read info of map {self.name!r}").id

    # --- dict-like access ---------------------------------------------------------------------

    def _values(self, raw: bytes) -> Any:
        if not self.percpu:
            return self.value.decode(raw)
        return [self.value.decode(raw[i:i + self.value_size]) for i in range(0, len(raw), self._stride)]

    def _encode_value(self, value: Any) -> bytes:
        if not self.percpu:
            return self.value.encode(value)
        values = value if isinstance(value, (list, tuple)) else [value] * possible_cpus()
        if len(values) != possible_cpus():
            raise ValueError(f"a per-CPU value needs {possible_cpus()} entries, got {len(values)}")
        pad = bytes(self._stride - self.value_size)
        return b"".join(self.value.encode(v) + pad for v in values)

    def _check_keyed(self) -> None:
        if self.type in _NO_KEYS:
            raise TypeError(f"{self.type.name.lower()} maps have no keys to look up")

    def get(self, key: Any, default: Any = None) -> Any:
        self._check_keyed()
        try:
            raw = syscall.map_lookup(self.fd, self.key.encode(key), self._value_bytes)
        except BpfError as err:
            if err.errno == errno.ENOENT:
                return default
            raise
        return self._values(raw)

    def __getitem__(self, key: Any) -> Any:
        missing = object()
        value = self.get(key, missing)
        if value is missing:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check_keyed()
        syscall.map_update(self.fd, self.key.encode(key), self._encode_value(value))

    def __delitem__(self, key: Any) -> None:
        self._check_keyed()
        try:
            syscall.map_delete(self.fd, self.key.encode(key))
        except BpfError as err:
            if err.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise

    def __contains__(self, key: Any) -> bool:
        missing = object()
        return self.get(key, missing) is not missing

    def raw_keys(self) -> Iterator[bytes]:
        self._check_keyed()
        key = None
        while (key := syscall.map_next_key(self.fd, key, self.key_size)) is not None:
            yield key

    def __iter__(self) -> Iterator[Any]:
        return (self.key.decode(k) for k in self.raw_keys())

    def keys(self) -> Iterator[Any]:
        return iter(self)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs, read in batches where the kernel supports it."""
        for keys, values, count in self.batches():
            for i in range(count):
                yield (self.key.decode(keys[i * self.key_size:(i + 1) * self.key_size]),
                       self._values(values[i * self._value_bytes:(i + 1) * self._value_bytes]))

    def values(self) -> Iterator[Any]:
        return (value for _, value in self.items())

    def __len__(self) -> int:
        return sum(1 for _ in self.raw_keys())

    def batches(self, count: int = 4096) -> Iterator[tuple[bytes, bytes, int]]:
        """Raw (keys, values, n) blocks from BPF_MAP_LOOKUP_BATCH; one lookup per key where the
        map type has no batch operation (it is fast enough for arrays of a few thousand)."""
        self._check_keyed()
        token: bytes | None = None
        try:
            keys, values, n, token = syscall.map_lookup_batch(self.fd, self.key_size, self._value_bytes, count, None)
        except BpfError as err:
            if err.errno not in (errno.EINVAL, ENOTSUPP):  # no batch ops for this map type
                raise
        else:
            while True:
                if n:
                    yield keys, values, n
                if token is None:
                    return
                keys, values, n, token = syscall.map_lookup_batch(self.fd, self.key_size, self._value_bytes,
                                                                 count, token)
        for key in self.raw_keys():
            try:
                yield key, syscall.map_lookup(self.fd, key, self._value_bytes), 1
            except BpfError as err:
                if err.errno != errno.ENOENT:  # deleted between the two calls
                    raise
