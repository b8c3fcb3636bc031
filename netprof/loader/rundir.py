"""netprof's state folder, /run/netprof (or $NETPROF_RUN_DIR): root writes the per-boot feature
cache there, and every user may read it.

Root must trust nothing a user controls there. So the folder is reached one component at a time
from / without following a symbolic link, and used only if it and every folder above it belong to
root and no one else may write them (a sticky folder such as /tmp above it aside). Files are read
only if root owns them and alone may write them, and written under a fresh name (O_CREAT|O_EXCL|
O_NOFOLLOW) renamed into place, so a symbolic link or a ``.tmp`` file planted there is never
followed or reused. Unlike outfile.py, nothing here is handed to the user who ran sudo.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER_MODE = 0o755  # root's; everyone may read the features
FILE_MODE = 0o644
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UntrustedFolder(OSError):
    """The state folder is not root's alone; the message says which folder and why."""


def path() -> Path:
    return Path(os.path.abspath(os.environ.get("NETPROF_RUN_DIR", "/run/netprof")))


def _check(fd: int, where: str, leaf: bool) -> None:
    st = os.fstat(fd)
    shared = st.st_mode & 0o022 and (leaf or not st.st_mode & stat.S_ISVTX)
    if st.st_uid != 0 or shared:
        raise UntrustedFolder(f"{where} is not a folder that only root can change (owner uid {st.st_uid}, "
                              f"mode {stat.S_IMODE(st.st_mode):o})")


def _open_child(parent: int, name: str, where: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, FOLDER_MODE, dir_fd=parent)
        return _open_child(parent, name, where, create=False)
    except OSError as err:  # ELOOP: a symbolic link; ENOTDIR: not a folder
        raise UntrustedFolder(f"{where} is not a folder ({err.strerror})") from None


def open_folder(folder: Path | None = None, create: bool = False) -> int:
    """A file descriptor of the trusted state folder (made, and any folder missing above it,
    mode 0755, if ``create``).
    FileNotFoundError when it is missing, UntrustedFolder when it is not root's alone."""
    folder = folder or path()
    fd = os.open("/", _DIR_FLAGS)
    try:
        _check(fd, "/", leaf=folder == Path("/"))
        parts = folder.parts[1:]
        for depth, name in enumerate(parts, 1):
            where = str(Path("/", *parts[:depth]))
            child = _open_child(fd, name, where, create)
            os.close(fd)
            fd = child
            _check(fd, where, leaf=depth == len(parts))
        return fd
    except BaseException:
        os.close(fd)
        raise


def read(folder_fd: int, name: str) -> bytes | None:
    """The content of ``name`` if it is a regular file that root alone may write; else None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            return None
        return f.read()


def write(folder_fd: int, name: str, data: bytes) -> None:
    """Replace ``name`` with ``data``: a new file under a random name, renamed over it."""
    for _ in range(100):
        temp = f".{name}.{os.urandom(8).hex()}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE,
                         dir_fd=folder_fd)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name for {name}")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)  # whatever the umask
            f.write(data)
        os.rename(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=folder_fd)
        raise


def read_cached(name: str) -> bytes | None:
    """``name`` in the state folder, if the folder and the file are root's alone (see read)."""
    try:
        folder = open_folder()
    except OSError:
        return None
    try:
        return read(folder, name)
    finally:
        os.close(folder)


def write_cached(name: str, data: bytes, what: str) -> bool:
    """Write ``name`` in the state folder (made if missing): root only, and only where the folder
    is root's alone; else a warning naming ``what`` was not cached. True if written."""
    if os.geteuid() != 0:
        return False
    try:
        folder = open_folder(create=True)
    except FileNotFoundError:
        log.warning("%s not cached: a folder above %s is missing", what, path())
        return False
    except OSError as err:
        log.warning("%s not cached: %s", what, err)
        return False
    try:
        write(folder, name, data)
    except OSError as err:
        log.warning("%s not cached in %s: %s", what, path(), err.strerror or err)
        return False
    finally:
        os.close(folder)
    return True
