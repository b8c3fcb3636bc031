"""Probe programs assembled once and kept on disk, so that a capture whose programs are there
loads them without importing the assembler (netprof.asm) at all.

An entry is keyed by the function that builds the program (``"span_probe.span_program"``), its
arguments, and a hash of every source file that could change what it builds: netprof/asm,
netprof/probes, the record layouts and the debug info builder. Any change to them is a miss. An
entry holds the bytecode (0 for each map's fd), the slot and name of each map reference and the
program's debug info (BTF, func_info, line_info): what netprof.loader.program.load needs. A miss
removes the entries of other sources, so the folder holds one netprof's programs.

Where: root uses /var/cache/netprof/programs, and only if it and every folder above it are
root's alone, reached without following a symbolic link (rundir.py's checks); never a folder
named by $HOME or any other variable. Any other user (with CAP_BPF and CAP_PERFMON) uses their
own $XDG_CACHE_HOME/netprof/programs (~/.cache/...). An entry is read only if it is a regular
file owned by the cache's owner that no one else may write, whose content is whole (a digest
checks it) and was made for the key asked; anything else is ignored and built again. Entries are
written under a fresh name (O_CREAT|O_EXCL|O_NOFOLLOW) renamed into place. The cache never fails
a capture: without it, the program is built as before.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..loader import rundir
from ..loader.debug_info import DebugInfo
from ..loader.program import Prebuilt

if TYPE_CHECKING:
    from ..asm import LinkedProgram

log = logging.getLogger(__name__)

VERSION = 1  # of the entries' layout
ROOT_FOLDER = Path("/var/cache/netprof/programs")
_PACKAGE = Path(__file__).resolve().parent.parent  # netprof/
# What a program is made from: its builder, the assembler, the records it writes, its debug info.
_SOURCES = ("asm/*.py", "probes/*.py", "format/layout.py", "format/record_layouts.py", "format/records.py",
            "loader/debug_info.py")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ENTRY_NAME = re.compile(r"[0-9a-f]+-[0-9a-f]+\.json")  # SOURCE-KEY.json


class Uncacheable(ValueError):
    """An argument the key cannot name exactly (the program is built, not cached)."""


def program(function: str, *args: Any, folder: Path | None = None) -> Prebuilt:
    """The program ``function(*args)`` builds, ``function`` a builder of netprof.probes named
    "module.function": from the cache when it holds it, else built, stored and returned.
    ``folder``: another cache folder (tests)."""
    builder = _builder_name(function)
    try:
        key = f"{builder}({', '.join(_canonical(a) for a in args)})"
    except Uncacheable as err:
        log.debug("%s: not cached: %s", builder, err)
        return _prebuild(_build(builder, args))
    name = f"{source_hash()}-{_checksum(f'{VERSION}:{key}'.encode())}.json"
    folder_fd = _open(folder)
    try:
        if folder_fd is not None:
            found = _decode(_read(folder_fd, name, os.geteuid()), key)
            if found is not None:
                return _with_rebuild(found, builder, args)
        built = _prebuild(_build(builder, args))
        if folder_fd is not None:
            try:
                _prune(folder_fd)
                rundir.write(folder_fd, name, _encode(built, key))
            except OSError as err:
                log.debug("program cache: could not write %s: %s", name, err)
        return built
    finally:
        if folder_fd is not None:
            os.close(folder_fd)


@functools.cache
def source_hash() -> str:
    """The hash of every source file a cached program is made from (names and contents)."""
    parts = []
    for pattern in _SOURCES:
        for path in sorted(_PACKAGE.glob(pattern)):
            parts += [str(path.relative_to(_PACKAGE)).encode(), path.read_bytes()]
    return _checksum(b"\0".join(parts))


def _checksum(data: bytes) -> str:
    """crc32 and adler32 of ``data``, and its length: zlib is imported already (the trace file's
    checksums), hashlib would cost ~3 ms. It tells changed content apart; it guards nothing, as
    no one but the cache's owner can write an entry, and an entry names its source and key in full."""
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def folder_path() -> Path:
    """Where this user's cache is: root's fixed folder, or the user's own XDG cache."""
    if os.geteuid() == 0:
        return ROOT_FOLDER
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "netprof", "programs")


def _prune(folder_fd: int) -> None:
    """Remove the entries of other sources (an older netprof's): on a miss only, so a capture whose
    programs are all cached never lists the folder. Only names the cache gives are touched."""
    current = f"{source_hash()}-"
    for name in os.listdir(folder_fd):
        if _ENTRY_NAME.fullmatch(name) and not name.startswith(current):
            try:
                os.unlink(name, dir_fd=folder_fd)  # a symbolic link itself, never what it points at
            except OSError as err:
                log.debug("program cache: could not remove %s: %s", name, err)


def _builder_name(function: str) -> str:
    module, _, name = function.partition(".")
    if not (module.isidentifier() and name.isidentifier()):
        raise ValueError(f"program cache: {function!r} is not 'module.function' of netprof.probes")
    return function


def _build(builder: str, args: tuple) -> LinkedProgram:
    module, _, name = builder.partition(".")
    made = getattr(importlib.import_module(f"{__package__}.{module}"), name)(*args)
    return made.link()


def _prebuild(linked: LinkedProgram, rebuild: Callable[[], LinkedProgram] | None = None) -> Prebuilt:
    """A linked program as a Prebuilt one: bytecode with 0 for each map fd, map slots, debug info."""
    from ..loader import debug_info

    maps = linked.map_slots()
    code = linked.encode({name: 0 for _, name in maps})
    try:
        debug = debug_info.build(linked, "")
    except Exception as err:  # noqa: BLE001 - debug info never costs a program, as in load()
        log.debug("program cache: no debug info: %s", err)
        debug = None
    return Prebuilt(code, tuple(maps), debug, "", rebuild or (lambda: linked))


def _with_rebuild(found: Prebuilt, builder: str, args: tuple) -> Prebuilt:
    return Prebuilt(found.code, found.map_slots, found.debug, found.debug_name, lambda: _build(builder, args))


def _canonical(value: Any) -> str:
    """``value`` as text that names it exactly: None, bools, ints, strings, tuples and lists of
    them, and frozen dataclasses of them (by class name and fields)."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return f"({''.join(_canonical(v) + ', ' for v in value)})"
    kind = type(value)
    if is_dataclass(value) and not isinstance(value, type) and getattr(kind, "__dataclass_params__").frozen:
        inner = ", ".join(f"{f.name}={_canonical(getattr(value, f.name))}" for f in fields(value))
        return f"{kind.__module__}.{kind.__qualname__}({inner})"
    raise Uncacheable(f"cannot key an argument of type {type(value).__name__}")


def _open(folder: Path | None) -> int | None:
    """A file descriptor of the cache folder, made if missing; None (said in a debug line) when
    there is none that may be trusted."""
    try:
        if folder is None and os.geteuid() == 0:
            return rundir.open_folder(ROOT_FOLDER, create=True)
        return _open_own(folder or folder_path())
    except OSError as err:
        log.debug("program cache not used: %s", err)
        return None


def _open_own(folder: Path) -> int:
    """The folder, made mode 0700 if missing, if this user owns it and no one else may write it."""
    if os.geteuid() == 0:  # a folder named by a test: root's alone, as the default one
        return rundir.open_folder(folder.resolve(), create=True)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder, _DIR_FLAGS)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise rundir.UntrustedFolder(f"{folder} is not this user's alone (owner uid {st.st_uid}, "
                                     f"mode {stat.S_IMODE(st.st_mode):o})")
    return fd


def _read(folder_fd: int, name: str, owner: int) -> bytes | None:
    """``name``'s content if it is a regular file that ``owner`` owns and alone may write."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != owner or st.st_mode & 0o022:
            log.debug("program cache: %s ignored (owner uid %d, mode %o)", name, st.st_uid, st.st_mode)
            return None
        try:
            return f.read(1 << 24)
        except OSError:
            return None


def _payload(key: str, code: bytes, maps: tuple[tuple[int, str], ...], debug: DebugInfo | None) -> dict:
    return {"version": VERSION, "source": source_hash(), "key": key, "code": code.hex(),
            "maps": [list(m) for m in maps],
            "debug": None if debug is None else [debug.btf.hex(), debug.func_info.hex(), debug.line_info.hex()]}


def _digest(payload: dict) -> str:
    return _checksum(json.dumps(payload, sort_keys=True).encode())


def _encode(built: Prebuilt, key: str) -> bytes:
    payload = _payload(key, built.code, built.map_slots, built.debug)
    return json.dumps(dict(payload, digest=_digest(payload)), sort_keys=True).encode()


def _decode(data: bytes | None, key: str) -> Prebuilt | None:
    """The entry in ``data`` if it is whole and was made for ``key``; else None."""
    if data is None:
        return None
    try:
        entry = json.loads(data)
        payload = {k: entry[k] for k in ("version", "source", "key", "code", "maps", "debug")}
        if (entry["digest"] != _digest(payload) or payload["version"] != VERSION
                or payload["source"] != source_hash() or payload["key"] != key):
            raise ValueError("digest, version, source or key differs")
        code = bytes.fromhex(payload["code"])
        maps = tuple((int(slot), str(name)) for slot, name in payload["maps"])
        if not code or len(code) % 8 or any(not 0 <= slot < len(code) // 8 - 1 for slot, _ in maps):
            raise ValueError("not a program")
        debug = None
        if payload["debug"] is not None:
            btf, func_info, line_info = (bytes.fromhex(part) for part in payload["debug"])
            debug = DebugInfo(btf, func_info, line_info)
        return Prebuilt(code, maps, debug, "")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:  # json's are ValueErrors
        log.debug("program cache: entry for %s ignored: %s", key, err)
        return None
