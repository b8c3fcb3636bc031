"""Resolve a user-space probe target (``PATH:SYMBOL``) to what the uprobe PMU needs: a file and a file offset.

Pure file parsing with struct over an mmap (no kernel, no root; pyelftools took longer to import
than netprof takes to attach). Refuses a site that is not the start of an instruction (the kernel
would write its breakpoint into the middle of one and corrupt the traced program): on x86-64 by
decoding the function from its start (netprof.loader.x86), on aarch64 by alignment alone.

Also says what a probe on the chosen instruction will cost on x86-64: the kernel emulates a few
instructions (~1 µs a hit) and single-steps every other one out of line (~13 µs a hit), so
``main+4`` after an ``endbr64`` is often ten times cheaper than ``main``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mmap
import os
import re
import struct
from dataclasses import dataclass, replace

from pathlib import Path
from typing import Any, BinaryIO, Self

from .. import infile
from . import sys, x86

log = logging.getLogger(__name__)

__all__ = [
    "ElfError",
    "Site",
    "UprobeTarget",
    "cheaper_site",
    "locate",
    "parse_target",
    "resolve",
    "resolve_target",
    "resolve_all",
    "functions",
    "find_short_library",
    "site",
]


class ElfError(ValueError):
    """A probe target that cannot be resolved; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class UprobeTarget:
    """Where a uprobe goes: ``path`` for the PMU's config1 and ``offset`` (a file offset) for config2."""

    path: str  # realpath of the ELF file
    offset: int  # file offset of the probed instruction
    address: int  # its virtual address as linked (before any load bias)
    symbol: str  # the function it is in ("" when a raw offset falls in no known function)
    size: int  # the function's size in bytes, 0 when unknown
    kind: str  # "executable", "pie" or "shared library"
    symbol_offset: int = 0  # bytes from the start of ``symbol`` to the probed instruction
    machine: str = "x86_64"  # "x86_64" or "aarch64"

    def __str__(self) -> str:
        if not self.symbol:
            return f"{self.path}:{self.offset:#x}"
        where = f"{self.symbol}+{self.symbol_offset:#x}" if self.symbol_offset else self.symbol
        return f"{self.path}:{where} (file offset {self.offset:#x})"


@dataclass(frozen=True)
class Site:
    """The first instruction at a probe site (x86-64 only)."""

    insn_hex: str  # the decoded instruction's bytes in hex ("55", "f30f1efa"), up to 8 bytes if unknown
    description: str  # "push %rbp", "endbr64", "other"
    emulated: bool  # whether arch/x86/kernel/uprobes.c emulates it (what it says; costs are measured)
    code: bytes  # the bytes there, the instruction first

_MACHINES = {62: "x86_64", 183: "aarch64"}  # e_machine: EM_X86_64, EM_AARCH64
_ET_REL, _ET_EXEC, _ET_DYN, _ET_CORE = 1, 2, 3, 4
_PF_X = 1
_STT_OBJECT, _STT_FUNC, _STT_TLS, _STT_GNU_IFUNC = 1, 2, 6, 10
_STB_LOCAL, _STB_GLOBAL, _STB_WEAK = 0, 1, 2
_SHN_UNDEF = 0
_DF_1_PIE = 0x08000000
# ELF64 little-endian structures (include/uapi/linux/elf.h); _check_header admits nothing else.
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_PHDR = struct.Struct("<IIQQQQQQ")          # Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align
_SHDR = struct.Struct("<IIQQQQIIQQ")        # Elf64_Shdr: name, type, flags, addr, offset, size, link, info, ...
_SYM = struct.Struct("<IBBHQQ")             # Elf64_Sym
_DYN = struct.Struct("<qQ")                 # Elf64_Dyn
_VERDEF = struct.Struct("<HHHHIII")         # Elf64_Verdef: version, flags, ndx, cnt, hash, aux, next
_VERDAUX = struct.Struct("<II")             # Elf64_Verdaux: name, next
_PT_LOAD, _PT_INTERP = 1, 3
_SHT_SYMTAB, _SHT_DYNAMIC, _SHT_NOBITS, _SHT_DYNSYM = 2, 6, 8, 11
_SHT_GNU_VERDEF, _SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFF
_DT_NAMES = {1: "DT_NEEDED", 14: "DT_SONAME", 15: "DT_RPATH", 29: "DT_RUNPATH", 0x6FFFFFFB: "DT_FLAGS_1"}
_DT_STRINGS = {"DT_NEEDED", "DT_SONAME", "DT_RPATH", "DT_RUNPATH"}
_VER_FLG_BASE = 1
_LIB_NAME = re.compile(r".*\.so(\.[0-9]+)*$")
_TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}


# ---------------------------------------------------------------------------------------------
# Target text


def parse_target(spec: str) -> tuple[str, str]:
    """Split ``PATH:SYMBOL`` (also ``PATH:0xOFFSET`` and ``PATH:SYMBOL+0x10``) at its last ':'.

    A bpftrace prefix (``uprobe:``, ``uretprobe:``) is the caller's to strip.
    """
    path, sep, symbol = spec.strip().rpartition(":")
    if not sep or not path or not symbol:
        raise ElfError(
            f"probe target {spec!r} is not PATH:SYMBOL: write it like /usr/bin/curl:main, "
            f"libc.so.6:getpid or /usr/bin/curl:0x1139"
        )
    return path, symbol


def _parse_symbol(symbol: str) -> tuple[str, int | None, int]:
    """(name, raw file offset or None, offset inside the function) from SYMBOL, 0xOFFSET or SYMBOL+0xNN."""
    text = symbol.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", text):
        return "", int(text, 0), 0
    name, plus, delta = text.rpartition("+")
    if plus:
        if not name or not re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", delta.strip()):
            raise ElfError(f"cannot read {symbol!r}: write an offset inside a function as SYMBOL+0x10")
        return name.strip(), None, int(delta.strip(), 0)
    if not text or text[0].isdigit():
        raise ElfError(f"{symbol!r} is neither a symbol name nor a hex file offset like 0x1139")
    return text, None, 0


# ---------------------------------------------------------------------------------------------
# Finding files


def locate(name: str) -> str:
    """The realpath of ``name``: a path if it has a '/', else a program on $PATH or a library name."""
    if "/" in name:
        path = Path(name).expanduser()
        if not path.exists():
            raise ElfError(f"no such file: {name}; check the path of the program or library to probe")
        if path.is_dir():
            raise ElfError(f"{name} is a directory: give the path of an executable or shared library")
        return os.path.realpath(path)
    found = None
    lookups = (_find_library, _which) if _LIB_NAME.match(name) else (_which, _find_library)
    for lookup in lookups:
        found = lookup(name)
        if found:
            return os.path.realpath(found)
    raise ElfError(
        f"cannot find {name!r} on $PATH or among the shared libraries (ldconfig -p and the standard "
        f"library directories): give its full path"
    )


def find_short_library(name: str) -> str | None:
    """A library by its short name (``libc``: libc.so.6, ``libssl``: the newest libssl.so.N) for
    this machine, from ldconfig's cache, then the standard directories; None when there is none."""
    if "/" in name or not name:
        return None
    machine = _host_machine()
    candidates = [file for file in _ldconfig_cache() if file.startswith(name + ".so")]
    triplet = _TRIPLETS.get(machine, "")
    for d in (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/usr/local/lib"):
        with contextlib.suppress(OSError):
            candidates += [f for f in os.listdir(d) if f.startswith(name + ".so")]

    def version(file: str) -> tuple[int, ...]:
        return tuple(int(p) for p in file[len(name) + 3:].split(".") if p.isdigit())

    for file in sorted(set(candidates), key=version, reverse=True):
        found = _find_library(file, machine)
        if found:
            return os.path.realpath(found)
    return None


def _which(name: str) -> str | None:
    import shutil  # with bz2 and lzma: ~3 ms, off the start-up path

    return shutil.which(name)


def _find_library(name: str, machine: str | None = None, first_dirs: tuple[str, ...] = ()) -> str | None:
    """A shared library by file name: ``first_dirs``, then ldconfig's cache, then the standard directories."""
    machine = machine or _host_machine()
    candidates = [os.path.join(d, name) for d in first_dirs]
    candidates += _ldconfig_cache().get(name, [])
    triplet = _TRIPLETS.get(machine, "")
    for d in (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"):
        candidates.append(os.path.join(d, name))
    for path in candidates:
        if os.path.isfile(path) and _header_machine(path) == machine:
            return path
    return None


@functools.lru_cache(maxsize=1)
def _ldconfig_cache() -> dict[str, list[str]]:
    """``ldconfig -p`` as {file name: [paths]}; empty when ldconfig is missing or fails."""
    exe = _which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        return {}
    try:
        import subprocess  # rarely needed: kept off the start-up path

        out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    cache: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S.*)$", line)
        if m:
            cache.setdefault(m.group(1), []).append(m.group(3).strip())
    return cache


def _host_machine() -> str:
    return sys.MACHINE


def _header_machine(path: str) -> str | None:
    """The machine of a 64-bit little-endian ELF file, None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None
    return _MACHINES.get(int.from_bytes(head[18:20], "little"))


# ---------------------------------------------------------------------------------------------
# Reading one ELF file


@dataclass(frozen=True)
class _Symbol:
    name: str  # base name, without any @VERSION
    version: str  # "" when unversioned
    default: bool  # the default version (name@@VERSION) or unversioned
    address: int
    size: int
    type: int
    bind: int
    defined: bool

    @property
    def full_name(self) -> str:
        return f"{self.name}{'@@' if self.default else '@'}{self.version}" if self.version else self.name

    @property
    def is_function(self) -> bool:
        return self.type in (_STT_FUNC, _STT_GNU_IFUNC)


@dataclass(frozen=True)
class _Segment:
    vaddr: int
    offset: int
    filesz: int
    flags: int


class _Elf:
    """One opened ELF file: header checks, PT_LOAD segments, symbol tables, DT_NEEDED."""

    data: mmap.mmap  # the whole file, mapped by _read

    def __init__(self, path: str, stream: BinaryIO):
        self.path = path
        self.stream = stream
        try:
            self._read(path, stream)
        except BaseException:
            self.close()  # the mapping too, when the file parsed but is not one netprof can probe
            raise

    def _read(self, path: str, stream: BinaryIO) -> None:
        self.machine = _check_header(path, stream)
        try:
            self.data = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
            e_type, phoff, shoff, phentsize, phnum, shentsize, shnum = _header_fields(self.data)
            headers = [_PHDR.unpack_from(self.data, phoff + i * phentsize) for i in range(phnum)]
            self.segments = [_Segment(vaddr, offset, filesz, flags)
                             for kind, flags, offset, vaddr, _, filesz, _, _ in headers if kind == _PT_LOAD]
            self.has_interp = any(h[0] == _PT_INTERP for h in headers)
            self.sections = [_SHDR.unpack_from(self.data, shoff + i * shentsize) for i in range(shnum)]
            self.dynamic = self._dynamic_tags()
            self.symtab = self._symbols(_SHT_SYMTAB)
            self.dynsym = self._symbols(_SHT_DYNSYM)
        except (struct.error, ValueError, IndexError, OverflowError, UnicodeDecodeError, OSError) as e:
            raise ElfError(f"{path} is a damaged or truncated ELF file ({e}): rebuild it or probe another file") from e
        if e_type == _ET_EXEC:
            self.kind = "executable"
        elif e_type == _ET_DYN:
            flags_1 = self.dynamic.get("DT_FLAGS_1", [0])[0]
            pie = bool(flags_1 & _DF_1_PIE) or (self.has_interp and "DT_SONAME" not in self.dynamic)
            self.kind = "pie" if pie else "shared library"
        else:
            what = {_ET_REL: "a relocatable object (.o)", _ET_CORE: "a core dump"}.get(e_type, f"a type {e_type}")
            raise ElfError(f"{path} is {what} file, not an executable or shared library: probe a linked binary")
        if not self.segments:
            raise ElfError(f"{path} has no loadable segments: probe a linked executable or shared library")

    @classmethod
    def open(cls, path: str) -> _Elf:
        if not os.path.exists(path):
            raise ElfError(f"no such file: {path}; check the path of the program or library to probe")
        try:
            # a regular file only: opening a FIFO would block until something writes into it
            stream = os.fdopen(infile.open_regular(path, hint="give the path of an executable or shared library"),
                               "rb")
        except infile.InputError as e:
            raise ElfError(str(e)) from None
        return cls(path, stream)

    def close(self) -> None:
        data: mmap.mmap | None = getattr(self, "data", None)
        if data is not None:
            data.close()
            del self.data
        if getattr(self, "stream", None) is not None:
            self.stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dynamic_tags(self) -> dict[str, list]:
        """The DT_ entries netprof uses, by name; strings for the tags that name files or paths."""
        tags: dict[str, list] = {}
        section = next((sec for sec in self.sections if sec[1] == _SHT_DYNAMIC), None)
        if section is None:
            return tags
        data, strings = self._section_data(section), self._section_data(self.sections[section[6]])
        for tag, value in _DYN.iter_unpack(data[: len(data) // _DYN.size * _DYN.size]):
            if tag == 0:  # DT_NULL
                break
            name = _DT_NAMES.get(tag)
            if name is not None:
                tags.setdefault(name, []).append(_string(strings, value) if name in _DT_STRINGS else value)
        return tags

    def _symbols(self, sh_type: int) -> list[_Symbol] | None:
        """Every symbol of the SHT_SYMTAB or SHT_DYNSYM table, None when the file has none."""
        sec = next((s for s in self.sections if s[1] == sh_type), None)
        if sec is None:
            return None
        data = self._section_data(sec)
        strtab = self._section_data(self.sections[sec[6]])
        versions = self._versions() if sh_type == _SHT_DYNSYM else None
        symbols = []
        for i, (st_name, st_info, _other, shndx, value, size) in enumerate(
            _SYM.iter_unpack(data[: len(data) // _SYM.size * _SYM.size])
        ):
            if i == 0:
                continue
            raw = _string(strtab, st_name, errors="replace") if st_name < len(strtab) else ""
            if not raw:  # unnamed, or a damaged name offset: nothing to match
                continue
            name, at, version = raw.partition("@")
            default = not at or version.startswith("@")
            version = version.lstrip("@")
            if versions is not None and not at and shndx != _SHN_UNDEF and i < len(versions[0]):
                ver_index = versions[0][i]
                version = versions[1].get(ver_index & 0x7FFF, "")
                default = not ver_index & 0x8000
            symbols.append(_Symbol(name, version, default, value, size, st_info & 0xF, st_info >> 4,
                                   shndx != _SHN_UNDEF))
        return symbols

    def _section_data(self, sec: tuple) -> bytes:
        """A section's bytes, after checking that it lies inside the file (a damaged header may say 2**60)."""
        offset, size = sec[4], sec[5]
        if sec[1] == _SHT_NOBITS:
            return b""
        if offset + size > len(self.data):
            raise ValueError(f"section of type {sec[1]:#x} at {offset:#x} runs past the end of the file")
        return self.data[offset:offset + size]

    def _versions(self) -> tuple[list[int], dict[int, str]]:
        """(.gnu.version entries, {version index: name from .gnu.version_d}); ([], {}) if unversioned."""
        versym: list[int] = []
        names: dict[int, str] = {}
        for sec in self.sections:
            if sec[1] == _SHT_GNU_VERSYM:
                raw = self._section_data(sec)
                versym = [v for (v,) in struct.iter_unpack("<H", raw[: len(raw) // 2 * 2])]
            elif sec[1] == _SHT_GNU_VERDEF:
                data, strings = self._section_data(sec), self._section_data(self.sections[sec[6]])
                at = 0
                for _ in range(sec[7]):  # sh_info: the number of definitions
                    _, flags, index, count, _, aux, next_ = _VERDEF.unpack_from(data, at)
                    if count and not flags & _VER_FLG_BASE:  # the base entry names the file itself
                        names[index] = _string(strings, _VERDAUX.unpack_from(data, at + aux)[0])
                    if not next_:
                        break
                    at += next_
        return versym, names

    # -- addresses --------------------------------------------------------------------------------

    def segment_of_address(self, address: int) -> _Segment | None:
        return next((s for s in self.segments if s.vaddr <= address < s.vaddr + s.filesz), None)

    def segment_of_offset(self, offset: int) -> _Segment | None:
        return next((s for s in self.segments if s.offset <= offset < s.offset + s.filesz), None)

    def file_offset(self, address: int, what: str) -> int:
        seg = self.segment_of_address(address)
        if seg is None:
            raise ElfError(
                f"{what} at address {address:#x} is in no loadable segment of {self.path}: "
                f"the symbol table does not match this file; probe PATH:0xOFFSET instead"
            )
        if not seg.flags & _PF_X:
            raise ElfError(f"{what} at address {address:#x} is not in an executable segment of {self.path}: "
                           f"probe a function's code")
        return address - seg.vaddr + seg.offset

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset:offset + n]

    # -- symbols ----------------------------------------------------------------------------------

    def tables(self) -> list[list[_Symbol]]:
        return [t for t in (self.symtab, self.dynsym) if t]

    def function_containing(self, address: int) -> _Symbol | None:
        for table in self.tables():
            for s in table:
                if s.defined and s.is_function and s.size and s.address <= address < s.address + s.size:
                    return s
        return None

    def function_starting_at(self, address: int) -> _Symbol | None:
        """A function symbol at exactly ``address``, sized or not (hand-written assembly often has no size)."""
        for table in self.tables():
            for s in table:
                if s.defined and s.is_function and s.address == address:
                    return s
        return None

    def defines_function(self, name: str) -> bool:
        return any(s.defined and s.is_function and _matches(s, name) for s in self.dynsym or ())

    def needed_libraries(self) -> list[str]:
        """DT_NEEDED file names, found the way ld.so would (RPATH, LD_LIBRARY_PATH, RUNPATH, cache)."""
        origin = os.path.dirname(self.path)

        def dirs(tag: str) -> list[str]:
            out = []
            for entry in self.dynamic.get(tag, []):
                for d in entry.split(":"):
                    if d:
                        out.append(d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
            return out

        search = [] if "DT_RUNPATH" in self.dynamic else dirs("DT_RPATH")
        search += [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
        search += dirs("DT_RUNPATH")
        found = []
        for name in self.dynamic.get("DT_NEEDED", []):
            path = name if "/" in name else _find_library(name, self.machine, tuple(search))
            if path and os.path.isfile(path):
                found.append(os.path.realpath(path))
        return found


def _check_header(path: str, stream: BinaryIO) -> str:
    """The machine name of a 64-bit little-endian x86-64 or aarch64 ELF file, else ElfError."""
    head = stream.read(64)
    stream.seek(0)
    if len(head) < 4 or head[:4] != b"\x7fELF":
        raise ElfError(f"{path} is not an ELF file: give the path of a compiled executable or shared library")
    if len(head) < 64:
        raise ElfError(f"{path} is a truncated ELF file ({len(head)} bytes): rebuild it or probe another file")
    if head[4] != 2:
        raise ElfError(f"{path} is a 32-bit ELF file: netprof probes only 64-bit x86-64 and aarch64 programs")
    if head[5] != 1:
        raise ElfError(f"{path} is a big-endian ELF file: netprof probes only little-endian x86-64 and aarch64 "
                       f"programs")
    e_machine = int.from_bytes(head[18:20], "little")
    if e_machine not in _MACHINES:
        raise ElfError(f"{path} is an ELF file for machine {e_machine} ({_machine_name(e_machine)}): netprof "
                       f"probes only x86-64 and aarch64 programs")
    return _MACHINES[e_machine]


def _machine_name(e_machine: int) -> str:
    return _OTHER_MACHINES.get(e_machine, "unknown")


_OTHER_MACHINES = {3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390", 40: "EM_ARM",
                   43: "EM_SPARCV9", 243: "EM_RISCV", 247: "EM_BPF", 258: "EM_LOONGARCH"}


def _header_fields(data) -> tuple[int, int, int, int, int, int, int]:
    """(e_type, e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum) of an ELF64 header."""
    (_, e_type, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = _EHDR.unpack_from(data, 0)
    if shnum == 0 and shoff:  # more than 65279 sections: the count is in section header 0's sh_size
        shnum = _SHDR.unpack_from(data, shoff)[5]
    if phnum and phentsize < _PHDR.size or shnum and shentsize < _SHDR.size:
        raise ValueError(f"header entries too small (program {phentsize}, section {shentsize} bytes)")
    return e_type, phoff, shoff, phentsize, phnum, shentsize, shnum


def _string(table: bytes, offset: int, errors: str = "strict") -> str:
    """The NUL-terminated string at ``offset`` of a string table."""
    if offset >= len(table) and offset:
        raise ValueError(f"string offset {offset} is past its table ({len(table)} bytes)")
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else len(table)].decode("utf-8", errors)


def _matches(sym: _Symbol, query: str) -> bool:
    """``query`` is a bare name ("memcpy") or names one version ("memcpy@GLIBC_2.2.5", "memcpy@@GLIBC_2.14")."""
    name, at, version = query.partition("@")
    if sym.name != name:
        return False
    return not at or version.lstrip("@") == sym.version


# ---------------------------------------------------------------------------------------------
# Resolving


def resolve_target(spec: str) -> UprobeTarget:
    """``resolve(*parse_target(spec))``."""
    return resolve(*parse_target(spec))


def resolve(path: str, symbol: str) -> UprobeTarget:
    """The file and file offset for a uprobe on ``symbol`` (a name, NAME+0xNN, or a raw 0xOFFSET) in ``path``.

    ``path`` without a '/' is looked up on $PATH, or among the shared libraries for a name like
    ``libc.so.6``. Names come from .symtab first, then .dynsym; ``name@VERSION`` picks one version.
    """
    return resolve_all(path, [symbol])[0]


def resolve_all(path: str, symbols: list[str]) -> list[UprobeTarget]:
    """``resolve(path, symbol)`` for each of ``symbols``, the file read once."""
    real = locate(path)
    elf = _parsed(real)
    if elf.machine != _host_machine():
        raise ElfError(f"{real} is an {elf.machine} program but this machine is {_host_machine()}: a uprobe "
                       f"traces only programs that run here; probe the {_host_machine()} build of it")
    return [_resolve_in(elf, symbol) for symbol in symbols]


def _parsed(path: str) -> _Elf:
    """``path`` parsed, once for as long as the file stays the same (a plan of a thousand -u
    functions reads each file once, not a thousand times)."""
    try:
        st = os.stat(path)
    except OSError:
        return _Elf.open(path)  # its own error message
    return _parsed_version(path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _parsed_version(path: str, dev: int, ino: int, mtime_ns: int, size: int) -> _Elf:
    return _Elf.open(path)


def functions(path: str) -> list[str]:
    """The names of the functions ``path`` defines (.symtab and .dynsym), each address once (an
    alias under the name the symbol tables prefer), in address order."""
    elf = _parsed(locate(path))
    by_address: dict[int, list[_Symbol]] = {}
    for table in elf.tables():
        for s in table:
            if s.defined and s.is_function and s.name:
                by_address.setdefault(s.address, []).append(s)
    names = []
    for _, group in sorted(by_address.items()):
        best = max(group, key=lambda s: (s.bind != _STB_LOCAL, s.default, not s.name.startswith("_"), s.size))
        names.append(best.name if not best.version or best.default else best.full_name)
    return list(dict.fromkeys(names))


def _resolve_in(elf: _Elf, symbol: str) -> UprobeTarget:
    real = elf.path
    name, raw_offset, delta = _parse_symbol(symbol)
    if raw_offset is not None:
        return _raw_offset_target(elf, raw_offset)
    sym = _find_function(elf, name)
    if sym.type == _STT_GNU_IFUNC:
        log.warning("%s in %s is a GNU indirect function: a probe on it fires in its resolver, which runs "
                    "once when the program loads, not on each call", name, real)
    if delta < 0 or (sym.size and delta >= sym.size):
        raise ElfError(f"{name}+{delta:#x} is past the end of {name} ({sym.size:#x} bytes long) in {real}: "
                       f"give an offset below {sym.size:#x}")
    where = f"{name}+{delta:#x}" if delta else name
    offset = elf.file_offset(sym.address + delta, where)
    _check_instruction_start(elf, sym, delta, name)
    return UprobeTarget(real, offset, sym.address + delta, name, sym.size, elf.kind, delta, elf.machine)


def _raw_offset_target(elf: _Elf, offset: int) -> UprobeTarget:
    seg = elf.segment_of_offset(offset)
    if seg is None or not seg.flags & _PF_X:
        spans = ", ".join(f"{s.offset:#x}-{s.offset + s.filesz:#x}" for s in elf.segments if s.flags & _PF_X)
        raise ElfError(f"file offset {offset:#x} is not in an executable segment of {elf.path}: "
                       f"give an offset inside its code ({spans})")
    address = offset - seg.offset + seg.vaddr
    func = elf.function_containing(address)
    if func is None:
        start = elf.function_starting_at(address)
        if start is None:
            stripped = "" if elf.symtab else " (it has no .symtab)"
            raise ElfError(f"{elf.path}: offset {offset:#x} is in no function its symbol tables know{stripped}, so "
                           f"netprof cannot check that an instruction starts there, and a probe inside one "
                           f"corrupts the traced program: probe PATH:SYMBOL, or the file offset of a function's start")
        return UprobeTarget(elf.path, offset, address, start.name, start.size, elf.kind, 0, elf.machine)
    _check_instruction_start(elf, func, address - func.address, func.name)
    return UprobeTarget(elf.path, offset, address, func.name, func.size, elf.kind, address - func.address,
                        elf.machine)


def _check_instruction_start(elf: _Elf, func: _Symbol, delta: int, name: str) -> None:
    """Refuse ``name+delta`` unless an instruction of ``func`` starts there.

    x86-64: decodes ``func`` from its start, one instruction after another (a linear sweep, as
    objdump does: data inside a function would throw it off). aarch64: alignment only.
    """
    if delta == 0:
        return
    base = elf.file_offset(func.address, name)
    where = f"{elf.path}: offset {base + delta:#x} ({name}+{delta:#x})"

    def at(n: int) -> str:
        return f"{name}+{n:#x} ({base + n:#x})"

    if elf.machine == "aarch64":  # every instruction is 4 bytes, 4-aligned (no Thumb in AArch64)
        misaligned = (func.address + delta) % 4
        if misaligned:
            raise ElfError(f"{where} is not 4-byte aligned, so not an instruction start: the nearest are "
                           f"{at(delta - misaligned)} and {at(delta - misaligned + 4)} (on aarch64 netprof "
                           f"checks alignment only)")
        return
    starts, end = x86.instruction_starts(elf.read(base, delta + x86.MAX_LENGTH), stop=delta + 1)
    if starts and starts[-1] == delta or end == delta:  # end: the last instruction decoded ends at delta
        return
    if end < delta:
        raise ElfError(f"{where} cannot be checked: netprof decodes {name} only up to {at(end)}, whose bytes "
                       f"{elf.read(base + end, 4).hex()} are no x86-64 instruction it knows, so it cannot tell where "
                       f"instructions start after them; probe a site from {name} to {name}+{end:#x}")
    raise ElfError(f"{where} is inside an instruction: the nearest boundaries are {at(starts[-1])} and {at(end)}")


def _find_function(elf: _Elf, name: str) -> _Symbol:
    """The one defined function called ``name``: .symtab first, then .dynsym; else an ElfError that helps."""
    for table in elf.tables():
        found = [s for s in table if s.defined and s.is_function and _matches(s, name)]
        if found:
            return _pick_one(elf, name, found)
    for table in elf.tables():
        for s in table:
            if s.defined and _matches(s, name):
                kind = {_STT_OBJECT: "a data object", _STT_TLS: "a thread-local variable"}.get(s.type, "not code")
                raise ElfError(f"{name} is {kind}, not a function, in {elf.path}: probe a function")
    for table in elf.tables():
        if any(not s.defined and _matches(s, name) for s in table):
            raise ElfError(_imported_message(elf, name))
    known = sorted({s.name for t in elf.tables() for s in t if s.defined and s.is_function})
    if not known:
        raise ElfError(f"{elf.path} is stripped: it has no symbol table that defines functions; probe "
                       f"PATH:0xOFFSET or rebuild it with symbols")
    import difflib  # only to name a missing symbol's neighbours

    close = [repr(c) for c in difflib.get_close_matches(name.partition("@")[0], known, n=3)]
    if close:
        hint = f"did you mean {' or '.join(close) if len(close) < 3 else ', '.join(close[:-1]) + ' or ' + close[-1]}?"
    else:
        hint = "no similar name either"
    if elf.symtab is None:
        hint += "; it has no .symtab, only the functions its .dynsym exports"
    raise ElfError(f"no function {name!r} in {elf.path} ({hint})")


def _pick_one(elf: _Elf, name: str, found: list[_Symbol]) -> _Symbol:
    """One symbol from several with the same name: aliases are one; else the default version; else an error."""
    by_address: dict[int, list[_Symbol]] = {}
    for s in found:
        by_address.setdefault(s.address, []).append(s)
    if len(by_address) > 1 and "@" not in name:
        defaults = {a: ss for a, ss in by_address.items() if any(s.version and s.default for s in ss)}
        if len(defaults) == 1:  # memcpy: memcpy@@GLIBC_2.14 is the one new links bind to
            by_address = defaults
    if len(by_address) > 1:
        listed = ", ".join(
            f"{elf.file_offset(a, name):#x} ({'/'.join(sorted({s.full_name for s in ss}))}, "
            f"{'local' if all(s.bind == _STB_LOCAL for s in ss) else 'global'})"
            for a, ss in sorted(by_address.items())
        )
        raise ElfError(f"{name!r} names {len(by_address)} different functions in {elf.path}, at file offsets "
                       f"{listed}: probe PATH:0xOFFSET with the one you mean")
    (symbols,) = by_address.values()
    return max(symbols, key=lambda s: (s.size, s.bind != _STB_LOCAL))


def _imported_message(elf: _Elf, name: str) -> str:
    """Where an undefined (imported) function is defined, searching DT_NEEDED breadth first."""
    seen: set[str] = set()
    queue = elf.needed_libraries()
    while queue and len(seen) < 64:
        lib = queue.pop(0)
        if lib in seen:
            continue
        seen.add(lib)
        try:
            with _Elf.open(lib) as dep:
                if dep.defines_function(name):
                    return (f"{name} is not defined in {elf.path} (it is imported): "
                            f"probe {lib}:{name} instead")
                queue.extend(dep.needed_libraries())
        except ElfError:
            continue
    needed = ", ".join(elf.dynamic.get("DT_NEEDED", [])) or "no library it names"
    return (f"{name} is not defined in {elf.path} (it is imported, from one of: {needed}; none found defines "
            f"it): probe the library that defines it, as LIBRARY:{name}")


# ---------------------------------------------------------------------------------------------
# Probe-site cost (x86-64)


def site(target: UprobeTarget) -> Site | None:
    """The instruction a uprobe at ``target`` is placed on; None off x86-64."""
    if target.machine != "x86_64":
        return None
    code = _read_at(target.path, target.offset, 16)
    description, emulated, length = decode_x86(code)
    return Site(code[: length or 8].hex(), description, emulated, code)


def cheaper_site(target: UprobeTarget, costs: Any = None) -> UprobeTarget | None:
    """``target`` moved 4 bytes on, past an ``endbr64``, when the instruction there costs a uprobe
    less: by ``costs`` (a netprof.calibrate.costs.Calibration, measured on this kernel) where given,
    else when arch/x86/kernel/uprobes.c emulates it. None when it does not, or is not there.

    Both spots see the same registers and stack (endbr64 changes neither), so an entry probe or a
    uretprobe behaves the same at +4.
    """
    if target.machine != "x86_64":
        return None
    code = _read_at(target.path, target.offset, 16)
    if decode_x86(code)[0] != "endbr64" or (target.size and target.symbol_offset + 4 >= target.size):
        return None
    if costs is not None:
        here, there = costs.for_instruction(code), costs.for_instruction(code[4:])
        if here is None or there is None or there.cost_ns >= here.cost_ns:
            return None
    elif not decode_x86(code[4:])[1]:
        return None
    return replace(target, offset=target.offset + 4, address=target.address + 4,
                   symbol_offset=target.symbol_offset + 4)


def _read_at(path: str, offset: int, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(n)
    except OSError as e:
        raise ElfError(f"cannot read {path} ({e.strerror}): check that it still exists and is readable") from None


_REGS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi")
_CC = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")


def decode_x86(code: bytes) -> tuple[str, bool, int | None]:
    """(description, emulated by the kernel's uprobe code, length or None) of the instruction at ``code``.

    Names only what arch/x86/kernel/uprobes.c emulates (push reg, nop, call/jmp/jcc rel) and the
    usual first instructions of a function; everything else is "other", single-stepped.
    """
    b = code
    length = x86.instruction_length(code)
    if b[:4] == b"\xf3\x0f\x1e\xfa":
        return "endbr64", False, length
    if b[:1] and 0x50 <= b[0] <= 0x57:
        return f"push %{_REGS[b[0] - 0x50]}", True, length
    if len(b) >= 2 and b[0] == 0x41 and 0x50 <= b[1] <= 0x57:
        return f"push %r{8 + b[1] - 0x50}", True, length
    if b[:1] == b"\x90":
        return "nop", True, length
    if b[:2] == b"\x66\x90":
        return "xchg %ax,%ax (nop)", True, length
    prefixes = len(b) - len(b.lstrip(b"\x66\x2e"))
    if b[prefixes : prefixes + 2] == b"\x0f\x1f":
        return ("nopw" if 0x66 in b[:prefixes] else "nopl"), True, length
    if b[:1] == b"\xe8":
        return "call rel32", True, length
    if b[:1] == b"\xe9":
        return "jmp rel32", True, length
    if b[:1] == b"\xeb":
        return "jmp rel8", True, length
    if b[:1] and 0x70 <= b[0] <= 0x7F:
        return f"j{_CC[b[0] - 0x70]} rel8", True, length
    if len(b) >= 2 and b[0] == 0x0F and 0x80 <= b[1] <= 0x8F:
        return f"j{_CC[b[1] - 0x80]} rel32", True, length
    if b[:1] == b"\xc3":
        return "ret", False, length
    if b[:2] == b"\xf3\xc3":
        return "repz ret", False, length
    return "other", False, length
