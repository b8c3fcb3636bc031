"""Files netprof reads from its user: regular files only, of a bounded size where a size makes sense.

A FIFO blocks whoever opens it until a writer comes, /dev/zero never ends: both are refused
before anything is read. The file is opened with O_NONBLOCK (so that even opening a FIFO returns
at once) and checked with fstat on what was opened, leaving no gap for the path to change.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .outfile import kind_of


class InputError(Exception):
    """A path that cannot be read safely; the message says what it is and what to give instead."""


def open_regular(path: str | os.PathLike, what: str = "", hint: str = "give a file's path") -> int:
    """A read-only file descriptor for the regular file at ``path``; InputError for anything else.
    ``what`` names the file in messages ("config" gives "cannot read config PATH"), ``hint`` says
    what to give instead of something that is not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise InputError(f"cannot read {_label(path, what)}: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"cannot read {_label(path, what)}: it is {kind_of(mode)}, not a regular file; {hint}")
    return fd


def read_regular(path: str | os.PathLike, limit: int, what: str = "", hint: str = "give a file's path") -> bytes:
    """The content of the regular file at ``path``: InputError, without reading it, if it holds
    more than ``limit`` bytes."""
    with os.fdopen(open_regular(path, what, hint), "rb") as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise too_large(_label(path, what), limit)
        return read_at_most(f, limit, _label(path, what))


def read_at_most(f: BinaryIO, limit: int, label: str) -> bytes:
    """All of ``f`` (a file, a pipe, stdin), or InputError once it turns out longer than ``limit``."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise too_large(label, limit)
    return data


def too_large(label: str, limit: int) -> InputError:
    return InputError(f"cannot read {label}: it holds more than {limit >> 20} MiB; give a smaller file")


def _label(path: str | os.PathLike, what: str) -> str:
    return f"{what} {os.fspath(path)}" if what else os.fspath(path)
