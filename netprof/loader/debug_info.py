"""A program's debug info for the kernel, as cilium/ebpf's btf/ext_info.go makes it: a small BTF
blob (``int``, ``void *``, one FUNC_PROTO, a FUNC per subprogram) with the source file names and
lines in its strings, and the func_info and line_info records that point instructions at them.

Given to BPF_PROG_LOAD (prog_btf_fd, func_info, line_info), it puts netprof's source lines into
the verifier log and into ``bpftool prog dump xlated id N linum``. Pure: no kernel here.
"""

from __future__ import annotations

import linecache
import re
import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # building debug info needs a linked program; carrying it (a Prebuilt's) needs neither
    from ..asm import LinkedProgram, Location

# include/uapi/linux/btf.h
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("<III")  # name_off, info (vlen | kind << 24 | kind_flag << 31), size or type
_INT_DATA = struct.Struct("<I")  # encoding << 24 | offset << 16 | bits
_PARAM = struct.Struct("<II")  # struct btf_param: name_off, type
BTF_INT_SIGNED = 1 << 0
BTF_FUNC_STATIC = 0  # enum btf_func_linkage: verified in its caller's context, arguments unchecked

# include/uapi/linux/bpf.h: struct bpf_func_info, struct bpf_line_info
FUNC_INFO = struct.Struct("<II")  # insn_off, type_id
LINE_INFO = struct.Struct("<IIII")  # insn_off, file_name_off, line_off, line_col
_LINE_SHIFT = 10  # line_col = line << 10 | column
_LINE_MAX = (1 << (32 - _LINE_SHIFT)) - 1
_COLUMN_MAX = (1 << _LINE_SHIFT) - 1

_INT_ID, _VOID_PTR_ID, _PROTO_ID, _FIRST_FUNC_ID = 1, 2, 3, 4
TEXT_FILE = "<asm>"  # the file name of lines parsed from assembler text, which has none (as Python's "<string>")


@dataclass(frozen=True)
class DebugInfo:
    """What BPF_PROG_LOAD takes: ``btf`` (for BPF_BTF_LOAD), and the func_info and line_info
    records, ``FUNC_INFO.size`` and ``LINE_INFO.size`` bytes each."""

    btf: bytes
    func_info: bytes
    line_info: bytes

    @property
    def func_count(self) -> int:
        return len(self.func_info) // FUNC_INFO.size

    @property
    def line_count(self) -> int:
        return len(self.line_info) // LINE_INFO.size


class _Strings:
    """A BTF string section: "" at offset 0, each string once."""

    def __init__(self) -> None:
        self._data = bytearray(b"\0")
        self._offsets = {"": 0}

    def add(self, text: str) -> int:
        text = text.replace("\0", " ")
        if text not in self._offsets:
            self._offsets[text] = len(self._data)
            self._data += text.encode(errors="replace") + b"\0"
        return self._offsets[text]

    def __bytes__(self) -> bytes:
        return bytes(self._data)


def identifier(name: str, fallback: str) -> str:
    """``name`` as a C identifier, which a BTF FUNC name must be."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not name:
        return fallback
    return name if not name[0].isdigit() else f"_{name}"


def subprogram_starts(linked: LinkedProgram) -> list[int] | None:
    """The slots where the kernel sees a function start: 0, and each target of a bpf-to-bpf
    call or a function-address load (as its add_subprog_and_kfunc() finds them); None when a
    reference points outside the program (the verifier will say so)."""
    starts, slot = {0}, 0
    for insn in linked.instructions:
        relative = insn.relative  # never None for a bpf-to-bpf call or a function load
        if (insn.is_pseudo_call or insn.is_func_ref) and relative is not None:
            target = slot + 1 + relative
            if not 0 <= target < linked.slot_count:
                return None
            starts.add(target)
        slot += insn.slots
    return sorted(starts)


def _source_line(location: Location) -> str:
    if location.text:
        return location.text.strip()
    if location.file:
        return linecache.getline(location.file, location.line).strip()
    return ""


def build(linked: LinkedProgram, name: str) -> DebugInfo | None:
    """The debug info of ``linked`` (the program called ``name``): None when no instruction
    knows where it came from, or when the program's references do not hold together."""
    from .btf import BTF_MAGIC, BTF_VERSION, Kind  # here: btf.py takes ~10 ms to import

    if all(insn.location is None for insn in linked.instructions):
        return None
    starts = subprogram_starts(linked)
    if starts is None:
        return None
    strings = _Strings()
    labels_at = _labels_by_slot(linked)

    types = bytearray()
    types += _TYPE.pack(strings.add("int"), Kind.INT << 24, 4) + _INT_DATA.pack(BTF_INT_SIGNED << 24 | 32)
    types += _TYPE.pack(0, Kind.PTR << 24, 0)  # void *
    types += _TYPE.pack(0, Kind.FUNC_PROTO << 24 | 1, _INT_ID) + _PARAM.pack(strings.add("ctx"), _VOID_PTR_ID)
    func_info = bytearray()
    for number, start in enumerate(starts):
        fallback = "prog" if start == 0 else f"func_{start}"
        label = name if start == 0 and name else labels_at.get(start, "")
        types += _TYPE.pack(strings.add(identifier(label, fallback)), Kind.FUNC << 24 | BTF_FUNC_STATIC, _PROTO_ID)
        func_info += FUNC_INFO.pack(start, _FIRST_FUNC_ID + number)

    line_info = bytearray()
    function_starts, last, slot = set(starts), None, 0
    for insn in linked.instructions:
        location = insn.location
        key = (location.file, location.line) if location is not None else last
        if key != last or slot in function_starts:
            line_info += _line_record(slot, location, strings)
            last = key
        slot += insn.slots

    string_bytes = bytes(strings)
    header = _HEADER.pack(BTF_MAGIC, BTF_VERSION, 0, _HEADER.size, 0, len(types), len(types), len(string_bytes))
    return DebugInfo(header + bytes(types) + string_bytes, bytes(func_info), bytes(line_info))


def renamed(info: DebugInfo, name: str) -> DebugInfo:
    """``info`` with its first function (the program's own, type id 4) called ``name``, as
    build(linked, name) would call it: the name is added to the end of the strings."""
    header = list(_HEADER.unpack_from(info.btf))
    hdr_len, type_off, type_len, str_off, str_len = header[3:]
    first_func = hdr_len + type_off + 2 * _TYPE.size + _INT_DATA.size + _TYPE.size + _PARAM.size
    if not name or first_func + _TYPE.size > hdr_len + type_off + type_len:
        return info
    strings_end = hdr_len + str_off + str_len
    btf = bytearray(info.btf[:strings_end])
    _, type_info, proto = _TYPE.unpack_from(btf, first_func)
    _TYPE.pack_into(btf, first_func, str_len, type_info, proto)
    btf += identifier(name, "prog").encode() + b"\0"
    header[7] = len(btf) - hdr_len - str_off
    _HEADER.pack_into(btf, 0, *header)
    return replace(info, btf=bytes(btf))


def _line_record(slot: int, location: Location | None, strings: _Strings) -> bytes:
    if location is None:
        return LINE_INFO.pack(slot, 0, 0, 0)
    line = location.line if 0 <= location.line <= _LINE_MAX else 0
    column = min(max(location.column, 0), _COLUMN_MAX)
    return LINE_INFO.pack(slot, strings.add(location.file or TEXT_FILE), strings.add(_source_line(location)),
                          line << _LINE_SHIFT | column)


def _labels_by_slot(linked: LinkedProgram) -> dict[int, str]:
    """The first label of each slot that starts an instruction of the source program."""
    first_slot: dict[int, int] = {}
    for slot, index in enumerate(linked.origin):
        first_slot.setdefault(index, slot)
    out: dict[int, str] = {}
    for label, index in linked.source.labels.items():
        if index in first_slot:
            out.setdefault(first_slot[index], label)
    return out
