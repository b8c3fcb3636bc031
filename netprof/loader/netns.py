"""Network namespaces: find one by its inode, run code inside one, and describe those a capture
counted traffic in (their names under /run/netns and their interfaces)."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from .sys import libc

CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def current() -> int:
    """This process's network namespace, as its inode (what ``ls -iL /proc/self/ns/net`` shows)."""
    return os.stat("/proc/self/ns/net").st_ino


def run_in(fd: int | None, work: Callable[[], _T]) -> _T:
    """``work()`` in a thread that has joined the network namespace ``fd`` (None: a new, empty
    one). Namespaces belong to threads: the rest of the process stays where it is."""
    result: list = []

    def run() -> None:
        try:
            done = libc.unshare(CLONE_NEWNET) if fd is None else libc.setns(fd, CLONE_NEWNET)
            if done != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"enter a network namespace: {os.strerror(code)}")
            result.append((True, work()))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            result.append((False, err))

    thread = threading.Thread(target=run, name="netprof-netns")
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _named() -> dict[int, Path]:
    folder = Path("/run/netns")
    out: dict[int, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        try:
            out.setdefault(os.stat(path).st_ino, path)
        except OSError:
            continue
    return out


def open_by_inode(inode: int) -> int | None:
    """An fd of the network namespace with this inode: a name under /run/netns, or any process
    in it; None when nothing holds it any more (and so it is gone, with its interfaces)."""
    candidates = [path for ino, path in _named().items() if ino == inode]
    candidates += Path("/proc").glob("[0-9]*/ns/net")
    for path in candidates:
        try:
            if os.stat(path).st_ino == inode:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
    return None


def describe(inodes: Iterable[int]) -> dict[str, dict]:
    """{inode: {"name": its name under /run/netns or "", "interfaces": {ifindex: name}}} for each
    namespace that still exists (interfaces listed from inside it)."""
    named = _named()
    out = {}
    for inode in sorted(set(inodes)):
        fd = open_by_inode(inode)
        if fd is None:
            continue
        try:
            import socket  # slow to import: only here

            interfaces = run_in(fd, socket.if_nameindex)
        except OSError:
            interfaces = []
        finally:
            os.close(fd)
        name = named[inode].name if inode in named else ""
        out[str(inode)] = {"name": name, "interfaces": {str(index): ifname for index, ifname in interfaces}}
    return out
