"""/run/netprof: the state netprof keeps as root between runs (records of netlink XDP
attachments). Root acts on what it reads there, so it is a fixed path that no environment
variable moves, every folder must belong to root and be writable by root alone, and files are
written through O_EXCL|O_NOFOLLOW temporary names and read without following links.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

RUN_DIR = Path("/run/netprof")
MAX_FILE = 1 << 16  # a record is a few hundred bytes


class UntrustedFolder(PermissionError):
    pass


def trusted(folder: Path) -> Path:
    """``folder``, made (0755) if missing; UntrustedFolder unless it, and RUN_DIR above it, are
    real folders owned by our euid that no one else may write."""
    for path in (RUN_DIR, folder):
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise UntrustedFolder(f"{path} is not a folder that only {'root' if os.geteuid() == 0 else 'you'} "
                                  f"can change (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): "
                                  "remove it and try again")
    return folder


def write(folder: Path, name: str, data: bytes) -> Path:
    """``data`` as ``folder``/``name``, atomically (a temporary file renamed over it)."""
    folder = trusted(folder)
    temp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(temp, folder / name)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return folder / name


def read_all(folder: Path, suffix: str) -> Iterator[tuple[str, bytes]]:
    """(name, content) of the regular files in ``folder`` ending in ``suffix``; nothing if the
    folder does not exist. Raises UntrustedFolder if it exists and is not trustworthy."""
    if not folder.exists() and not folder.is_symlink():
        return
    trusted(folder)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.name.endswith(suffix) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as f:
            yield entry.name, f.read(MAX_FILE)
