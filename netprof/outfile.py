"""Files netprof creates for its user: traces, exports, pictures, bytecode.

netprof runs as root, so a path it is given may point where no one meant it to: a symlink planted
in /tmp, a device (``-o /dev/null``), a FIFO that would block forever. Every file is therefore
created new, under a random name in the target's folder with O_CREAT|O_EXCL|O_NOFOLLOW, mode
0600 (they hold packet bytes and process names), handed to the user who ran sudo, and renamed
over the target: a regular file there is replaced atomically, anything else is refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

MODE = 0o600


class OutputError(OSError):
    """The output path cannot be written safely; the message says what to do."""


def sudo_caller() -> tuple[int, int] | None:
    """(uid, gid) of the user who ran ``sudo``, when we are root on their behalf."""
    uid, gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
    if os.geteuid() == 0 and uid.isdigit() and gid.isdigit() and int(uid) != 0:
        return int(uid), int(gid)
    return None


def give_to_sudo_caller(fd: int) -> None:
    if (owner := sudo_caller()) is not None:
        with contextlib.suppress(OSError):
            os.fchown(fd, *owner)


def check_target(path: str | os.PathLike) -> Path:
    """``path`` as a Path if a new file may be put there; OutputError if it names anything but a
    regular file or nothing, or its folder is missing."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = kind_of(st.st_mode)
        raise OutputError(f"will not write {path}: it is {kind}, not a regular file; give a new file name")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OutputError(f"cannot write {path}: {folder} is not a writable folder")
    return path


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, in words (from its st_mode)."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _temporary(path: Path) -> tuple[int, Path]:
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, MODE)
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror}") from None
        os.fchmod(fd, MODE)  # whatever the umask
        give_to_sudo_caller(fd)
        return fd, temp
    raise OutputError(f"cannot write {path}: no free temporary name in {path.parent}")


def create(path: str | os.PathLike) -> int:
    """A new, empty file at ``path`` (replacing a regular file there at once), open for writing.
    For files written as they go, such as a trace, which must be readable after a kill -9."""
    path = check_target(path)
    fd, temp = _temporary(path)
    try:
        os.rename(temp, path)
    except OSError as err:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise OutputError(f"cannot write {path}: {err.strerror}") from None
    return fd


@contextlib.contextmanager
def writing(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file object whose content replaces ``path`` when the block ends without an error (until
    then the old file, if any, stays as it was); on an error nothing is left behind."""
    path = check_target(path)
    fd, temp = _temporary(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
