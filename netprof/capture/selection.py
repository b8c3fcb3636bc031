"""Which user functions a -u spec names, written the ways bpftrace, perf and uftrace users write
them: ``PATH:SYMBOL``; ``PATH:GLOB`` over the file's functions; C++ names as the source spells
them (``PATH:ns::fn``, matched demangled); a library's short name (``libc:malloc``), found in the
-p process's own mappings, else as the dynamic linker would (ldconfig's cache, the standard
directories); and with -p a bare ``malloc``, in whichever of the process's files defines it first.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from ..loader import elf
from ..loader.demangle import demangle, without_parameters

_GLOB = re.compile(r"[*?\[]")
_OFFSET = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+|.+\+(0[xX][0-9a-fA-F]+|[0-9]+)")


class SelectionError(Exception):
    """A spec that names no function, or names one badly: one line, what and what to do."""


@dataclass(frozen=True)
class UserFunction:
    target: elf.UprobeTarget
    name: str                   # as people write it: demangled, and +0xN where inside the function
    pattern: str | None = None  # the -u spec, where it chose this function among others (a glob, overloads)


def is_glob(text: str) -> bool:
    return bool(_GLOB.search(text))


def split_spec(spec: str) -> tuple[str | None, str]:
    """(file, function) from ``FILE:FUNCTION``; (None, FUNCTION) for a bare function. The file is
    what comes before the first ':' that ends an existing file (C++ names hold '::', and paths
    rarely any ':'), else before the first ':'."""
    spec = spec.strip()
    if ":" not in spec:
        return None, spec
    for match in re.finditer(":", spec):
        head = spec[:match.start()]
        if "/" in head and os.path.isfile(os.path.expanduser(head)):
            return head, spec[match.end():]
    head, _, tail = spec.partition(":")
    return head, tail


def library_in_process(name: str, pid: int) -> str | None:
    """The file mapped into ``pid`` that ``name`` names: a file name (libc.so.6) or a short name
    (libc: libc.so.6, libc-2.31.so)."""
    for path in mapped_files(pid):
        base = os.path.basename(path)
        if base == name or base.startswith(name + ".so") or re.match(re.escape(name) + r"-[0-9.]+\.so", base):
            return path
    return None


def mapped_files(pid: int) -> list[str]:
    """The executable files mapped into ``pid``, its program first, each once."""
    files = []
    try:
        files.append(os.path.realpath(f"/proc/{pid}/exe"))
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and "x" in fields[1] and fields[5].startswith("/"):
                    files.append(fields[5].strip())
    except OSError as err:
        raise SelectionError(f"cannot read the mappings of process {pid} ({err.strerror}): is it still running?")
    return [f for f in dict.fromkeys(files) if not f.endswith(" (deleted)")]


def locate(name: str, pid: int | None) -> str:
    """The file of a -u spec: a path, a program on $PATH, a library file name, or a short name."""
    if "/" not in name and pid is not None:
        found = library_in_process(name, pid)
        if found:
            return found
    try:
        return elf.locate(name)
    except elf.ElfError as err:
        if "/" in name:
            raise SelectionError(str(err)) from None
        short = elf.find_short_library(name)
        if short is None:
            raise SelectionError(f"cannot find {name!r}: no program on $PATH, no library {name}.so* in ldconfig's "
                                 "cache or the standard directories" + ("" if pid is None else f", none mapped "
                                 f"into process {pid}") + "; give its full path") from None
        return short


def user_functions(spec: str, pid: int | None = None, exclude: tuple[str, ...] = ()) -> list[UserFunction]:
    """Every function ``spec`` names (none left out silently: SelectionError when it names none)."""
    path, function = split_spec(spec)
    if not function:
        raise SelectionError(f"probe target {spec!r} names no function: write it like /usr/bin/curl:main, "
                             "libc:malloc, ./prog:'ns::*' or, with -p, malloc")
    if path is None:
        if pid is None:
            raise SelectionError(f"{spec!r} names a function but no file: write FILE:{spec} (libc:{spec}, "
                                 f"./prog:{spec}), or give -p PID to find it in that process's files")
        return [_in_process(spec, function, pid)]
    real = locate(path, pid)
    try:
        if _OFFSET.fullmatch(function):
            [target] = elf.resolve_all(real, [function])
            return [UserFunction(target, _named(target))]
        names = _matching(real, function, exclude)
        if not names:
            what = "matches" if is_glob(function) else "is"
            raise SelectionError(f"no function {what} {function!r} in {real}"
                                 + (f" (after --exclude {' '.join(exclude)})" if exclude else ""))
        targets = elf.resolve_all(real, [mangled for mangled, _ in names])
    except elf.ElfError as err:
        raise SelectionError(str(err)) from None
    pattern = spec if is_glob(function) or len(names) > 1 else None
    return [UserFunction(t, shown, pattern) for t, (_, shown) in zip(targets, names, strict=True)]


def _named(target: elf.UprobeTarget) -> str:
    name = demangle(target.symbol) if target.symbol else f"{target.offset:#x}"
    return f"{name}+{target.symbol_offset:#x}" if target.symbol and target.symbol_offset else name


def _matching(path: str, function: str, exclude: tuple[str, ...]) -> list[tuple[str, str]]:
    """(symbol, name as shown) of the functions of ``path`` that ``function`` names: a glob, a C++
    name (matched demangled, with or without its parameters), or a plain symbol."""
    def names_of(symbol: str) -> tuple[str, ...]:
        shown = demangle(symbol)
        return (symbol, shown, without_parameters(shown))

    def excluded(symbol: str) -> bool:
        return any(fnmatch.fnmatchcase(n, pattern) for pattern in exclude for n in names_of(symbol))

    if not is_glob(function) and "::" not in function and "(" not in function:
        # a plain name: the symbol itself (the ELF reader's errors say what is wrong), or a C++ function of that name
        try:
            elf.resolve_all(path, [function])
            return [] if excluded(function) else [(function, demangle(function))]
        except elf.ElfError:
            same = [s for s in elf.functions(path) if s.startswith("_Z") and without_parameters(demangle(s)) == function]
            return [(s, demangle(s)) for s in same if not excluded(s)] or [(function, function)]
    matched = []
    for symbol in elf.functions(path):
        names = names_of(symbol)
        hit = any(fnmatch.fnmatchcase(n, function) for n in names) if is_glob(function) else function in names[1:]
        if hit and not excluded(symbol):
            matched.append((symbol, names[1]))
    return matched


def _in_process(spec: str, function: str, pid: int) -> UserFunction:
    for path in mapped_files(pid):
        try:
            if any(s.partition("@")[0] == function for s in elf.functions(path)):
                [target] = elf.resolve_all(path, [function])
                return UserFunction(target, function)
        except elf.ElfError:
            continue
    raise SelectionError(f"no file mapped into process {pid} defines a function {function!r}: give FILE:{function}")
