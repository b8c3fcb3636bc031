"""Kernel objects that must be released: closed on ``with`` exit, on ``close()``, and as a last
resort when garbage-collected, so nothing netprof made outlives its owner by accident."""

from __future__ import annotations

import os
from typing import Self


class Closing:
    """A context manager whose ``close()`` also runs on garbage collection, never raising there."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser must not raise
            pass


class FdOwner(Closing):
    """Owns one file descriptor, ``self.fd``; closing it releases the kernel object."""

    fd: int

    def close(self) -> None:
        fd = getattr(self, "fd", -1)  # -1 also when __init__ failed before setting it
        if fd >= 0:
            self.fd = -1
            os.close(fd)
