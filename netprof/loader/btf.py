"""Read the kernel's BTF (/sys/kernel/btf/vmlinux and module split BTF): types, struct member offsets,
function prototypes and enums, for the running kernel, without clang, libbpf or kernel headers.

Loading makes one pass that records where each type record starts; names are indexed on the first
by-name lookup and a type's details are decoded only when asked, into one class per kind (Int, Pointer,
Struct, ..., as cilium/ebpf's btf/types.go has them). Layouts follow include/uapi/linux/btf.h
(struct btf_header, struct btf_type and the per-kind trailing records).
"""

from __future__ import annotations

import difflib
import functools
import re
import struct
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from pathlib import Path
from typing import ClassVar, TypeAlias

VMLINUX = "/sys/kernel/btf/vmlinux"
SYSFS_BTF = "/sys/kernel/btf"
POINTER_SIZE = 8  # bytes; netprof runs on 64-bit kernels only

BTF_MAGIC = 0xEB9F  # include/uapi/linux/btf.h
BTF_VERSION = 1

# struct btf_header { __u16 magic; __u8 version; __u8 flags; __u32 hdr_len;
#                     __u32 type_off; __u32 type_len; __u32 str_off; __u32 str_len; }
_HEADER = struct.Struct("<HBBIIIII")
# struct btf_type { __u32 name_off; __u32 info; union { __u32 size; __u32 type; }; }
_TYPE = struct.Struct("<III")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_3U32 = struct.Struct("<III")
_2U32 = struct.Struct("<II")
_ENUM = struct.Struct("<Ii")  # struct btf_enum { __u32 name_off; __s32 val; }

_MAX_DEPTH = 64  # longest chain of references followed before calling the file circular


class BtfError(LookupError):
    """A BTF file that cannot be read, or a type, member or function that is not in it."""


class Kind(IntEnum):
    """``BTF_KIND_*`` from include/uapi/linux/btf.h."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding(IntFlag):
    """``BTF_INT_SIGNED`` / ``BTF_INT_CHAR`` / ``BTF_INT_BOOL`` from include/uapi/linux/btf.h."""

    NONE = 0
    SIGNED = 1 << 0
    CHAR = 1 << 1
    BOOL = 1 << 2


class FuncLinkage(IntEnum):
    """``enum btf_func_linkage`` from include/uapi/linux/btf.h (BTF_FUNC_*)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class VarLinkage(IntEnum):
    """``BTF_VAR_*`` from include/uapi/linux/btf.h."""

    STATIC = 0
    GLOBAL_ALLOCATED = 1
    GLOBAL_EXTERN = 2


class FwdKind(IntEnum):
    """What a ``BTF_KIND_FWD`` declares: its kind_flag (include/uapi/linux/btf.h)."""

    STRUCT = 0
    UNION = 1


# Bytes of trailing data after struct btf_type: fixed part and per-vlen part, indexed by kind.
_FIXED = (0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12)
_NKINDS = len(_FIXED)

_MODIFIERS = frozenset({Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})
_QUALIFIER = {Kind.CONST: "const", Kind.VOLATILE: "volatile", Kind.RESTRICT: "restrict"}
_C_PREFIX = {"struct": (Kind.STRUCT,), "union": (Kind.UNION,), "enum": (Kind.ENUM, Kind.ENUM64)}
# Which kind a plain name ("sk_buff", "u32", "tcp_v4_rcv") means when several kinds share it.
_PREFERENCE = (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF, Kind.ENUM, Kind.ENUM64, Kind.INT, Kind.FLOAT,
               Kind.FUNC, Kind.VAR, Kind.DATASEC, Kind.FWD, Kind.DECL_TAG, Kind.TYPE_TAG)
_KIND_WORD = {Kind.STRUCT: "struct", Kind.UNION: "union", Kind.ENUM: "enum", Kind.ENUM64: "enum",
              Kind.FUNC: "function", Kind.TYPEDEF: "typedef", Kind.INT: "integer type",
              Kind.VAR: "variable", Kind.FWD: "forward declaration", Kind.FUNC_PROTO: "function prototype"}
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\s*\d+\s*\])*)")


# ---- one class per kind, as cilium/ebpf's btf/types.go has them ---------------------------------
# Each holds what its kind's struct btf_type and trailing records carry (include/uapi/linux/btf.h).
# A type refers to others by id (``type_id`` and the like): Btf.type(id) decodes them when asked.


@dataclass(frozen=True, slots=True)
class Member:
    """One ``struct btf_member`` of a struct or union; ``name`` is "" for an anonymous member."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True, slots=True)
class Param:
    """One ``struct btf_param`` of a function prototype; a trailing ("", 0) means "..."."""

    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class EnumValue:
    """One ``struct btf_enum`` or ``struct btf_enum64``: an enumerator and its value."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class VarSecinfo:
    """One ``struct btf_var_secinfo`` of a DATASEC: a variable and where it lies in the section."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Void:
    """Type id 0, which no record describes: void."""

    kind: ClassVar[Kind] = Kind.UNKN
    id: int = 0
    name: str = ""


@dataclass(frozen=True, slots=True)
class Int:
    """``BTF_KIND_INT``: an integer of ``size`` bytes, ``bits`` wide from ``bit_offset`` (the __u32 after
    struct btf_type: BTF_INT_ENCODING, BTF_INT_OFFSET, BTF_INT_BITS)."""

    kind: ClassVar[Kind] = Kind.INT
    id: int
    name: str
    size: int
    encoding: IntEncoding
    bit_offset: int
    bits: int

    @property
    def signed(self) -> bool:
        """Its BTF_INT_SIGNED bit."""
        return bool(self.encoding & IntEncoding.SIGNED)


@dataclass(frozen=True, slots=True)
class Pointer:
    """``BTF_KIND_PTR``: a pointer to ``type_id`` (0: void *)."""

    kind: ClassVar[Kind] = Kind.PTR
    id: int
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Array:
    """``BTF_KIND_ARRAY`` (``struct btf_array``): ``nelems`` elements of ``type_id``, indexed by ``index_type_id``."""

    kind: ClassVar[Kind] = Kind.ARRAY
    id: int
    name: str
    type_id: int
    index_type_id: int
    nelems: int


@dataclass(frozen=True, slots=True)
class Struct:
    """``BTF_KIND_STRUCT``: ``size`` bytes and its members, bit offsets from its start."""

    kind: ClassVar[Kind] = Kind.STRUCT
    id: int
    name: str
    size: int
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Union:
    """``BTF_KIND_UNION``: ``size`` bytes and its members, bit offsets from its start."""

    kind: ClassVar[Kind] = Kind.UNION
    id: int
    name: str
    size: int
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Enum:
    """``BTF_KIND_ENUM``: enumerators of up to 32 bits in ``size`` bytes; ``signed`` is its kind_flag."""

    kind: ClassVar[Kind] = Kind.ENUM
    id: int
    name: str
    size: int
    signed: bool
    values: tuple[EnumValue, ...]


@dataclass(frozen=True, slots=True)
class Fwd:
    """``BTF_KIND_FWD``: a struct or union declared but not defined here."""

    kind: ClassVar[Kind] = Kind.FWD
    id: int
    name: str
    fwd_kind: FwdKind


@dataclass(frozen=True, slots=True)
class Typedef:
    """``BTF_KIND_TYPEDEF``: ``name`` for ``type_id``."""

    kind: ClassVar[Kind] = Kind.TYPEDEF
    id: int
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Volatile:
    """``BTF_KIND_VOLATILE``: ``type_id``, volatile."""

    kind: ClassVar[Kind] = Kind.VOLATILE
    id: int
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Const:
    """``BTF_KIND_CONST``: ``type_id``, const."""

    kind: ClassVar[Kind] = Kind.CONST
    id: int
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Restrict:
    """``BTF_KIND_RESTRICT``: ``type_id``, restrict."""

    kind: ClassVar[Kind] = Kind.RESTRICT
    id: int
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Func:
    """``BTF_KIND_FUNC``: a function called ``name``; ``type_id`` is its FUNC_PROTO."""

    kind: ClassVar[Kind] = Kind.FUNC
    id: int
    name: str
    type_id: int
    linkage: FuncLinkage


@dataclass(frozen=True, slots=True)
class FuncProto:
    """``BTF_KIND_FUNC_PROTO``: a function's return type and parameters (0: void)."""

    kind: ClassVar[Kind] = Kind.FUNC_PROTO
    id: int
    name: str
    return_type_id: int
    params: tuple[Param, ...]

    @property
    def variadic(self) -> bool:
        """Whether it ends in "...": a last parameter with neither name nor type."""
        return bool(self.params) and self.params[-1].type_id == 0 and not self.params[-1].name


@dataclass(frozen=True, slots=True)
class Var:
    """``BTF_KIND_VAR`` (``struct btf_var``): a variable of ``type_id``."""

    kind: ClassVar[Kind] = Kind.VAR
    id: int
    name: str
    type_id: int
    linkage: VarLinkage


@dataclass(frozen=True, slots=True)
class Datasec:
    """``BTF_KIND_DATASEC``: a section of ``size`` bytes and the variables in it."""

    kind: ClassVar[Kind] = Kind.DATASEC
    id: int
    name: str
    size: int
    vars: tuple[VarSecinfo, ...]


@dataclass(frozen=True, slots=True)
class Float:
    """``BTF_KIND_FLOAT``: a floating-point type of ``size`` bytes."""

    kind: ClassVar[Kind] = Kind.FLOAT
    id: int
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class DeclTag:
    """``BTF_KIND_DECL_TAG`` (``struct btf_decl_tag``): the tag ``name`` on ``type_id``, or, when
    ``component_idx`` is not -1, on that member or parameter of it."""

    kind: ClassVar[Kind] = Kind.DECL_TAG
    id: int
    name: str
    type_id: int
    component_idx: int


@dataclass(frozen=True, slots=True)
class TypeTag:
    """``BTF_KIND_TYPE_TAG``: ``type_id`` with the tag ``name`` (``__user``, ``__rcu``, ...)."""

    kind: ClassVar[Kind] = Kind.TYPE_TAG
    id: int
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class Enum64:
    """``BTF_KIND_ENUM64``: enumerators of up to 64 bits in ``size`` bytes; ``signed`` is its kind_flag."""

    kind: ClassVar[Kind] = Kind.ENUM64
    id: int
    name: str
    size: int
    signed: bool
    values: tuple[EnumValue, ...]


# Any decoded type: match on the class (``case Struct(members=m)``) and the type checker knows its fields.
Type: TypeAlias = (Void | Int | Pointer | Array | Struct | Union | Enum | Fwd | Typedef | Volatile | Const
                   | Restrict | Func | FuncProto | Var | Datasec | Float | DeclTag | TypeTag | Enum64)
_MODIFIER_TYPES = (Typedef, Volatile, Const, Restrict, TypeTag)  # the kinds resolve() looks through
_VOID = Void()
_FUNC_LINKAGES = frozenset(FuncLinkage)
_VAR_LINKAGES = frozenset(VarLinkage)


@dataclass(frozen=True, slots=True)
class Function:
    """A kernel function as fentry/fexit programs need it: the FUNC's BTF id, prototype and argument names."""

    id: int
    name: str
    linkage: FuncLinkage
    proto_id: int
    return_type_id: int
    return_type: str
    params: tuple[tuple[str, str], ...]  # (name, C type) per argument
    param_type_ids: tuple[int, ...]
    variadic: bool = False

    @property
    def nargs(self) -> int:
        """Number of named arguments (fentry programs see at most this many)."""
        return len(self.params)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """Where a (possibly nested) member lies inside a struct.

    ``offset`` is in bytes from the start of the struct; for a bitfield it is the offset of the storage
    unit of its declared type that holds it, and ``bit_offset``/``bitfield_size`` are exact (bits from
    the start of the struct, bitfield width; width 0 for a plain member).
    """

    struct: str
    path: str
    offset: int
    size: int
    type_id: int
    type_name: str
    bit_offset: int
    bitfield_size: int = 0

    @property
    def bit_shift(self) -> int:
        """For a bitfield: right shift, after a little-endian load of ``size`` bytes at ``offset``."""
        return self.bit_offset - self.offset * 8


def _kind_word(kind: Kind | None) -> str:
    return "type" if kind is None else _KIND_WORD.get(kind, kind.name.lower())


def _close(word: str, candidates: Iterable[str]) -> str:
    """"'a', 'b' or 'c'": the names closest to word, or "" when none is close."""
    quoted = [f"'{m}'" for m in difflib.get_close_matches(word, candidates, n=3, cutoff=0.75)]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """" (did you mean 'a' or 'b'?)" for close matches of word, or ""."""
    close = _close(word, candidates)
    return f" (did you mean {close}?)" if close else ""


class Btf:
    """The types of one BTF blob: vmlinux, or a module's split BTF on top of a base.

    Use ``Btf.load()``, ``Btf.for_module()`` or ``vmlinux()``; type ids are those the kernel uses
    (a module's ids continue after its base's).
    """

    # Set by _parse_header() and _scan().
    _types_start: int
    _types_end: int
    _strings: str  # the string section, latin-1 decoded
    _str_len_total: int  # string bytes in this file and its base: where a split file's strings would start
    _offsets: array[int]  # where each type's record starts, by id - first_id
    _kinds: bytearray  # each type's kind, by id - first_id

    def __init__(self, data: bytes, path: str = "<bytes>", base: Btf | None = None):
        """Parse the header and record where each type starts; ``data`` is the whole BTF file."""
        self.path = str(path)
        self.base = base
        self._data = bytes(data)
        self._first_id = len(base) if base is not None else 1
        self._str_start = base._str_len_total if base is not None else 0
        self._parse_header()
        self._scan()
        # name -> id, or ids when several types share the name (most names are unique: no list for them)
        self._names: dict[str, int | list[int]] | None = None
        self._cache: dict[int, Type] = {}

    # ---- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path = VMLINUX, base: Btf | None = None) -> Btf:
        """Read a BTF file; give ``base`` (vmlinux) for a module's split BTF."""
        path = str(path)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            if path == VMLINUX:
                raise BtfError(f"no BTF at {path}: this kernel was built without CONFIG_DEBUG_INFO_BTF") from None
            raise BtfError(f"no BTF at {path}: no such file") from None
        except PermissionError:
            raise BtfError(f"cannot read BTF at {path}: permission denied") from None
        except IsADirectoryError:
            raise BtfError(f"cannot read BTF at {path}: it is a directory") from None
        except OSError as e:
            raise BtfError(f"cannot read BTF at {path}: {e.strerror or e}") from None
        return cls(data, path, base)

    @classmethod
    def for_module(cls, name: str, base: Btf | None = None) -> Btf:
        """Load /sys/kernel/btf/<name>, a loaded module's split BTF, on top of ``base`` (vmlinux by default)."""
        if not name or "/" in name or name in (".", ".."):
            raise BtfError(f"'{name}' is not a kernel module name")
        path = f"{SYSFS_BTF}/{name}"
        if not Path(path).exists():
            raise BtfError(f"no BTF for module '{name}' at {path}: the module is not loaded, is built in, "
                           f"or was built without BTF")
        return cls.load(path, base if base is not None else vmlinux())

    def _corrupt(self, what: str) -> BtfError:
        return BtfError(f"{self.path} is corrupt: {what}")

    def _parse_header(self) -> None:
        data = self._data
        if len(data) < _HEADER.size:
            raise BtfError(f"{self.path} is not BTF (only {len(data)} bytes, shorter than a BTF header)")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data, 0)
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise BtfError(f"{self.path} is big-endian BTF, which netprof cannot read")
            raise BtfError(f"{self.path} is not BTF (magic 0x{magic:04x}, expected 0x{BTF_MAGIC:04x})")
        if version != BTF_VERSION:
            raise BtfError(f"{self.path} is BTF version {version}; netprof reads version {BTF_VERSION}")
        if hdr_len < _HEADER.size or hdr_len > len(data):
            raise self._corrupt(f"header length {hdr_len} does not fit a {len(data)}-byte file")
        types = (hdr_len + type_off, hdr_len + type_off + type_len)
        strs = (hdr_len + str_off, hdr_len + str_off + str_len)
        for what, (_, end) in (("type", types), ("string", strs)):
            if end > len(data):
                raise self._corrupt(f"the {what} section ends at byte {end}, past the end of the "
                                    f"{len(data)}-byte file (truncated?)")
        if type_len % 4:
            raise self._corrupt(f"the type section length {type_len} is not a multiple of 4")
        if self.base is None and (str_len == 0 or data[strs[0]] != 0):
            raise self._corrupt("the string section does not start with an empty string")
        if str_len and data[strs[1] - 1] != 0:
            raise self._corrupt("the string section does not end with a NUL")
        self._types_start, self._types_end = types
        # latin-1 maps each byte to one character, so string offsets stay character offsets.
        self._strings = data[strs[0]:strs[1]].decode("latin-1")
        self._str_len_total = self._str_start + str_len

    def _scan(self) -> None:
        """One pass over the type section: the offset and kind of each record."""
        data, off, end = self._data, self._types_start, self._types_end
        offsets = array("I")
        kinds = bytearray()
        add_off, add_kind = offsets.append, kinds.append
        unpack = _TYPE.unpack_from
        fixed, per_vlen = _FIXED, _PER_VLEN
        try:
            while off < end:
                info = unpack(data, off)[1]
                kind = (info >> 24) & 0x1F
                add_off(off)
                add_kind(kind)
                off += 12 + fixed[kind] + (info & 0xFFFF) * per_vlen[kind]
        except IndexError:
            raise self._corrupt(f"type id {self._first_id + len(kinds) - 1} has unknown kind "
                                f"{kinds[-1]}") from None
        except struct.error:
            last = self._first_id + len(kinds)
            raise self._corrupt(f"type id {last} runs past the end of the type section") from None
        if off != end:
            raise self._corrupt(f"type id {self._first_id + len(kinds) - 1} runs past the end of the type section")
        if kinds.find(0) >= 0:
            raise self._corrupt(f"type id {self._first_id + kinds.find(0)} has kind UNKN (0)")
        self._offsets = offsets
        self._kinds = kinds

    # ---- basic access --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of type ids, counting void (id 0) and the base's types: the next free id."""
        return self._first_id + len(self._offsets)

    def __repr__(self) -> str:
        return f"<Btf {self.path}: {len(self._offsets)} types, ids {self._first_id}..{len(self) - 1}>"

    @property
    def first_id(self) -> int:
        """The id of this file's first type (1 for vmlinux; after the base's last id for a module)."""
        return self._first_id

    def _string(self, off: int, owner: int) -> str:
        if self.base is not None and off < self._str_start:
            return self.base._string(off, owner)
        local = off - self._str_start
        s = self._strings
        if local >= len(s):
            raise self._corrupt(f"type id {owner} names string offset {off}, outside the string section")
        name = s[local:s.index("\0", local)]
        if not name.isascii():
            name = name.encode("latin-1").decode("utf-8", "replace")
        return name

    def _check_id(self, type_id: int) -> None:
        if not isinstance(type_id, int) or type_id < 0 or type_id >= len(self):
            raise BtfError(f"no type id {type_id} in {self.path} (ids go from 0 to {len(self) - 1})")

    def kind(self, type_id: int) -> Kind:
        """The kind of a type id, without decoding it (void, id 0, is ``Kind.UNKN``)."""
        self._check_id(type_id)
        if type_id == 0:
            return Kind.UNKN
        if self.base is not None and type_id < self._first_id:
            return self.base.kind(type_id)
        return Kind(self._kinds[type_id - self._first_id])

    def name(self, type_id: int) -> str:
        """A type's own name ("" if anonymous), without decoding the rest of it."""
        self._check_id(type_id)
        if type_id == 0:
            return ""
        if self.base is not None and type_id < self._first_id:
            return self.base.name(type_id)
        name_off = _U32.unpack_from(self._data, self._offsets[type_id - self._first_id])[0]
        return self._string(name_off, type_id) if name_off else ""

    def type(self, type_id: int) -> Type:
        """Decode one type into the class of its kind, with everything its kind carries (id 0 is Void)."""
        self._check_id(type_id)
        if type_id == 0:
            return _VOID
        if self.base is not None and type_id < self._first_id:
            return self.base.type(type_id)
        cached = self._cache.get(type_id)
        if cached is None:
            cached = self._cache[type_id] = self._decode(type_id)
        return cached

    def _decode(self, type_id: int) -> Type:
        data = self._data
        off = self._offsets[type_id - self._first_id]
        name_off, info, size_type = _TYPE.unpack_from(data, off)
        kind = (info >> 24) & 0x1F
        kflag = bool(info >> 31)
        vlen = info & 0xFFFF
        s = self._string
        name = s(name_off, type_id) if name_off else ""
        tail = off + 12
        if kind == Kind.STRUCT or kind == Kind.UNION:
            members = []
            for i in range(vlen):
                m_name_off, m_type, m_off = _3U32.unpack_from(data, tail + 12 * i)
                m_name = s(m_name_off, type_id) if m_name_off else ""
                if kflag:
                    members.append(Member(m_name, m_type, m_off & 0xFFFFFF, m_off >> 24))
                else:
                    members.append(Member(m_name, m_type, m_off, 0))
            if kind == Kind.STRUCT:
                return Struct(type_id, name, size_type, tuple(members))
            return Union(type_id, name, size_type, tuple(members))
        if kind == Kind.PTR:
            return Pointer(type_id, name, size_type)
        if kind == Kind.TYPEDEF:
            return Typedef(type_id, name, size_type)
        if kind == Kind.CONST:
            return Const(type_id, name, size_type)
        if kind == Kind.VOLATILE:
            return Volatile(type_id, name, size_type)
        if kind == Kind.RESTRICT:
            return Restrict(type_id, name, size_type)
        if kind == Kind.TYPE_TAG:
            return TypeTag(type_id, name, size_type)
        if kind == Kind.INT:
            v = _U32.unpack_from(data, tail)[0]
            return Int(type_id, name, size_type, IntEncoding((v >> 24) & 0x0F), (v >> 16) & 0xFF, v & 0xFF)
        if kind == Kind.ARRAY:
            elem, index, nelems = _3U32.unpack_from(data, tail)
            return Array(type_id, name, elem, index, nelems)
        if kind == Kind.FUNC_PROTO:
            params = []
            for i in range(vlen):
                p_name_off, p_type = _2U32.unpack_from(data, tail + 8 * i)
                params.append(Param(s(p_name_off, type_id) if p_name_off else "", p_type))
            return FuncProto(type_id, name, size_type, tuple(params))
        if kind == Kind.FUNC:
            if vlen not in _FUNC_LINKAGES:
                raise self._corrupt(f"function type id {type_id} has unknown linkage {vlen}")
            return Func(type_id, name, size_type, FuncLinkage(vlen))
        if kind == Kind.ENUM:
            values = []
            for i in range(vlen):
                e_name_off, e_val = _ENUM.unpack_from(data, tail + 8 * i)
                values.append(EnumValue(s(e_name_off, type_id) if e_name_off else "",
                                        e_val if kflag else e_val & 0xFFFFFFFF))
            return Enum(type_id, name, size_type, kflag, tuple(values))
        if kind == Kind.ENUM64:
            values = []
            for i in range(vlen):
                e_name_off, lo, hi = _3U32.unpack_from(data, tail + 12 * i)
                v = (hi << 32) | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                values.append(EnumValue(s(e_name_off, type_id) if e_name_off else "", v))
            return Enum64(type_id, name, size_type, kflag, tuple(values))
        if kind == Kind.FWD:
            return Fwd(type_id, name, FwdKind.UNION if kflag else FwdKind.STRUCT)
        if kind == Kind.VAR:
            linkage = _U32.unpack_from(data, tail)[0]
            if linkage not in _VAR_LINKAGES:
                raise self._corrupt(f"variable type id {type_id} has unknown linkage {linkage}")
            return Var(type_id, name, size_type, VarLinkage(linkage))
        if kind == Kind.DATASEC:
            secinfos = tuple(VarSecinfo(*_3U32.unpack_from(data, tail + 12 * i)) for i in range(vlen))
            return Datasec(type_id, name, size_type, secinfos)
        if kind == Kind.FLOAT:
            return Float(type_id, name, size_type)
        if kind == Kind.DECL_TAG:
            return DeclTag(type_id, name, size_type, _I32.unpack_from(data, tail)[0])
        raise self._corrupt(f"type id {type_id} has unknown kind {kind}")  # _scan() let no other kind through

    def _ref(self, owner: Type, ref: int) -> int:
        """``ref``, an id that ``owner`` (or one of its members or parameters) refers to, checked to exist."""
        if ref >= len(self):
            raise self._corrupt(f"type id {owner.id} ({owner.kind.name}) refers to type id {ref}, which does not exist")
        return ref

    # ---- by name -------------------------------------------------------------------------------

    def _index(self) -> dict[str, int | list[int]]:
        """name -> id (or ids, when several types share a name), built on the first by-name lookup."""
        if self._names is None:
            names: dict[str, int | list[int]] = {}
            data, strings, start, base = self._data, self._strings, self._str_start, self.base
            unpack, find = _U32.unpack_from, strings.find
            ascii_only = strings.isascii()
            type_id = self._first_id
            for off in self._offsets:
                name_off = unpack(data, off)[0]
                if name_off:
                    local = name_off - start
                    if base is not None and local < 0:
                        name = base._string(name_off, type_id)
                    else:
                        end = find("\0", local)
                        if end < 0:
                            raise self._corrupt(f"type id {type_id} names string offset {name_off}, "
                                                f"outside the string section")
                        name = strings[local:end]
                        if not ascii_only:
                            name = self._string(name_off, type_id)
                    prev = names.get(name)
                    if prev is None:
                        names[name] = type_id
                    elif isinstance(prev, int):
                        names[name] = [prev, type_id]
                    else:
                        prev.append(type_id)
                type_id += 1
            self._names = names
        return self._names

    def _ids_named(self, name: str) -> list[int]:
        """Ids of every type called ``name``: this file's first, then the base's."""
        got = self._index().get(name)
        ids = [] if got is None else [got] if isinstance(got, int) else list(got)
        if self.base is not None:
            ids += self.base._ids_named(name)
        return ids

    def names(self, kind: Kind | None = None) -> set[str]:
        """Every type name (of one kind, if given), base included."""
        kinds = None if kind is None else _kinds_for(kind)
        out: set[str] = set()
        for name, got in self._index().items():
            if kinds is None:
                out.add(name)
                continue
            for i in ([got] if isinstance(got, int) else got):
                if self._kinds[i - self._first_id] in kinds:
                    out.add(name)
                    break
        if self.base is not None:
            out |= self.base.names(kind)
        return out

    def find(self, name: str, kind: Kind | None = None) -> int:
        """The type id for a name: "struct sk_buff", "union bpf_attr", "enum bpf_func_id", or a plain name.

        A plain name with no ``kind`` prefers a struct, then a union, then a typedef, then an enum.
        Raises BtfError, with close matches, when there is none.
        """
        name = name.strip()
        kinds = _kinds_for(kind) if kind is not None else None
        first, _, rest = name.partition(" ")
        if first in _C_PREFIX and rest.strip():
            if kinds is not None and not set(kinds) & set(_C_PREFIX[first]):
                raise BtfError(f"'{name}' names a {first}, but a {_kind_word(kind)} was asked for")
            kinds = _C_PREFIX[first]
            kind = kinds[0]
            name = rest.strip()
        ids = self._ids_named(name)
        if kinds is not None:
            for i in ids:
                if self.kind(i) in kinds:
                    return i
        elif ids:
            return min(ids, key=lambda i: _rank(self.kind(i)))
        where = f"in {self.path}"
        if ids:
            others = " and ".join(_a(w) for w in sorted({_kind_word(self.kind(i)) for i in ids}))
            raise BtfError(f"no {_kind_word(kind)} named '{name}' {where} ('{name}' is {others})")
        if kind is None:
            candidates = set().union(*(self.names(k) for k in (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF, Kind.ENUM,
                                                                Kind.FUNC)))
        else:
            candidates = self.names(kind)
        raise BtfError(f"no {_kind_word(kind)} named '{name}' {where}{_did_you_mean(name, candidates)}")

    # ---- types ---------------------------------------------------------------------------------

    def _type_of(self, id_or_name: int | str) -> int:
        if isinstance(id_or_name, str):
            return self.find(id_or_name)
        self._check_id(id_or_name)
        return id_or_name

    def resolve(self, type_id: int) -> int:
        """Follow typedef, const, volatile, restrict and type tags to the underlying type id."""
        self._check_id(type_id)
        for _ in range(_MAX_DEPTH):
            if type_id == 0 or self.kind(type_id) not in _MODIFIERS:
                return type_id
            t = self.type(type_id)
            if not isinstance(t, _MODIFIER_TYPES):  # the kind said it was one
                return type_id
            type_id = self._ref(t, t.type_id)
        raise self._corrupt(f"the typedef/qualifier chain at type id {type_id} is circular")

    def size_of(self, id_or_name: int | str) -> int:
        """Size in bytes of a type (by id or name), or of a variable's type; pointers are 8 bytes."""
        return self._size(self._type_of(id_or_name), 0)

    def _size(self, type_id: int, depth: int) -> int:
        if depth > _MAX_DEPTH:
            raise self._corrupt(f"the array chain at type id {type_id} is circular")
        type_id = self.resolve(type_id)
        match self.type(type_id):
            case Pointer():
                return POINTER_SIZE
            case Var() as var:
                return self._size(self._ref(var, var.type_id), depth + 1)
            case Array() as arr:
                return arr.nelems * self._size(self._ref(arr, arr.type_id), depth + 1)
            case Int() | Float() | Struct() | Union() | Enum() | Enum64() | Datasec() as sized:
                return sized.size
            case Void():
                raise BtfError("void has no size")
            case t:
                raise BtfError(f"type id {type_id} ({self.type_name(type_id)}) is {_a(_kind_word(t.kind))}, "
                               f"which has no size")

    def type_name(self, type_id: int) -> str:
        """The C spelling of a type: "struct sk_buff *", "const char *", "u32", "int (*)(void *)"."""
        self._check_id(type_id)
        return self._declare(type_id, "", 0)

    def _declare(self, type_id: int, decl: str, depth: int) -> str:
        """C declaration of ``decl`` (a declarator, possibly empty) with type ``type_id``."""
        if depth > _MAX_DEPTH:
            raise self._corrupt(f"the type chain at type id {type_id} is too deep or circular")
        if type_id == 0:
            return _join("void", decl)
        t = self.type(type_id)
        match t:
            case Pointer():
                target = self._ref(t, t.type_id)
                inner = "*" + decl
                if target and self.kind(target) in (Kind.ARRAY, Kind.FUNC_PROTO):
                    inner = f"({inner})"
                return self._declare(target, inner, depth + 1)
            case Const() | Volatile() | Restrict():
                target = self._ref(t, t.type_id)
                word = _QUALIFIER[t.kind]
                if target and self.kind(target) == Kind.PTR:
                    return self._declare(target, f"{word} {decl}".rstrip(), depth + 1)
                return f"{word} " + self._declare(target, decl, depth + 1)
            case TypeTag():
                return self._declare(self._ref(t, t.type_id), decl, depth + 1)
            case Array():
                return self._declare(self._ref(t, t.type_id), f"{decl}[{t.nelems}]", depth + 1)
            case FuncProto():
                return self._declare(self._ref(t, t.return_type_id), f"{decl}({self._param_list(t, depth)})",
                                     depth + 1)
            case Func() | Var():
                return self._declare(self._ref(t, t.type_id), decl or t.name, depth + 1)
        name = t.name or "(anon)"
        match t:
            case Struct():
                base = f"struct {name}"
            case Union():
                base = f"union {name}"
            case Enum() | Enum64():
                base = f"enum {name}"
            case Fwd():
                base = f"{'union' if t.fwd_kind == FwdKind.UNION else 'struct'} {name}"
            case _:  # Int, Float, Typedef, Datasec, DeclTag
                base = name
        return _join(base, decl)

    def _param_list(self, proto: FuncProto, depth: int) -> str:
        params = proto.params
        if not params:
            return "void"
        parts = ["..." if p.type_id == 0 and not p.name and i == len(params) - 1
                 else self._declare(p.type_id, "", depth + 1)
                 for i, p in enumerate(params)]
        return ", ".join(parts)

    # ---- what probes need ----------------------------------------------------------------------

    def function(self, name: str) -> Function:
        """A kernel function's BTF: its FUNC id (the fentry/fexit attach id), return type and arguments."""
        funcs = [t for t in (self.type(i) for i in self._ids_named(name) if self.kind(i) == Kind.FUNC)
                 if isinstance(t, Func)]
        if not funcs:
            close = _close(name, self.names(Kind.FUNC))
            hint = f"; did you mean {close}?" if close else ""
            raise BtfError(f"kernel function '{name}' has no BTF entry (not in {self.path}: it may be inlined, "
                           f"static, or in a module){hint}")
        func = funcs[0]
        proto_id = self._ref(func, func.type_id)
        proto = self.type(proto_id)
        if not isinstance(proto, FuncProto):
            raise self._corrupt(f"function '{name}' (type id {func.id}) points at a {proto.kind.name}, "
                                f"not a FUNC_PROTO")
        params = list(proto.params)
        variadic = proto.variadic
        if variadic:
            params.pop()
        for p in params:
            self._ref(proto, p.type_id)
        ret = self._ref(proto, proto.return_type_id)
        return Function(
            id=func.id, name=name, linkage=func.linkage,
            proto_id=proto_id, return_type_id=ret, return_type=self.type_name(ret),
            params=tuple((p.name, self.type_name(p.type_id)) for p in params),
            param_type_ids=tuple(p.type_id for p in params), variadic=variadic)

    def enum(self, name: str) -> dict[str, int]:
        """The enumerators of an enum ("bpf_func_id" or "enum bpf_func_id"), name -> value."""
        t = self.type(self.find(name if name.startswith("enum ") else f"enum {name}"))
        if not isinstance(t, (Enum, Enum64)):  # find() gave an enum's id
            raise self._corrupt(f"type id {t.id} ({t.kind.name}) was taken for an enum")
        return {v.name: v.value for v in t.values}

    def member(self, struct: str | int, path: str) -> MemberInfo:
        """Where ``path`` ("len", "__sk_common.skc_family", "cb[4]") lies in a struct or union.

        Anonymous structs and unions are looked through. Stepping through a pointer is an error: the
        probe must read the pointer and dereference it itself.
        """
        top = self._type_of(struct)
        top_name = self.type_name(top)
        cur = self.resolve(top)
        if self.kind(cur) not in (Kind.STRUCT, Kind.UNION):
            raise BtfError(f"{top_name} is not a struct or union, so it has no member '{path}'")
        bits = 0
        bitfield = 0
        done = ""  # the part of path walked so far
        segments = re.split(r"\.|->", path.strip())
        if not path.strip() or any(not s for s in segments):
            raise BtfError(f"'{path}' is not a member path (write it like 'a.b[2].c')")
        for seg in segments:
            m = _SEGMENT.fullmatch(seg.strip())
            if m is None:
                raise BtfError(f"'{seg}' in '{path}' is not a member name (write it like 'a.b[2].c')")
            field, indices = m.group(1), [int(x) for x in re.findall(r"\d+", m.group(2))]
            here = f"{top_name}.{done}" if done else top_name
            outer = self.type(cur)
            if isinstance(outer, Pointer):
                raise BtfError(f"'{done}' in {top_name} is a pointer ({self.type_name(cur)}): a pointer must be "
                               f"dereferenced by the probe (bpf_probe_read_kernel) before reading '{field}'")
            if not isinstance(outer, (Struct, Union)):
                raise BtfError(f"'{done}' in {top_name} is {self.type_name(cur)}, not a struct or union, "
                               f"so it has no member '{field}'")
            found = self._find_member(outer, field, 0)
            if found is None:
                hint = _did_you_mean(field, self._member_names(outer, 0))
                raise BtfError(f"{self.type_name(cur) if done else top_name} has no member '{field}'"
                               f"{f' (at {here})' if done else ''}{hint}")
            mem, at, owner = found
            bits += at
            bitfield = mem.bitfield_size
            mtype = self._ref(owner, mem.type_id)
            done = f"{done}.{field}" if done else field
            if not bitfield:
                legacy = self.type(self.resolve(mtype))
                if isinstance(legacy, Int) and legacy.bits < legacy.size * 8:
                    bitfield = legacy.bits  # bitfield in the old (kind_flag 0) encoding
                    bits += legacy.bit_offset
            cur = self.resolve(mtype)
            for idx in indices:
                arr = self.type(cur)
                if isinstance(arr, Pointer):
                    raise BtfError(f"'{done}' in {top_name} is a pointer ({self.type_name(cur)}): a pointer must "
                                   f"be dereferenced by the probe (bpf_probe_read_kernel) before indexing it")
                if not isinstance(arr, Array):
                    raise BtfError(f"'{done}' in {top_name} is {self.type_name(cur)}, not an array, "
                                   f"so it cannot be indexed with [{idx}]")
                if arr.nelems and idx >= arr.nelems:
                    raise BtfError(f"index {idx} is out of range for '{done}' in {top_name} "
                                   f"({self.type_name(cur)} has {arr.nelems} elements)")
                mtype = self._ref(arr, arr.type_id)
                bits += idx * self.size_of(mtype) * 8
                done += f"[{idx}]"
                cur = self.resolve(mtype)
        size = self.size_of(mtype)
        offset = bits // 8
        if bitfield and size:
            unit = bits // (size * 8) * size
            if bits + bitfield <= (unit + size) * 8:
                offset = unit
        return MemberInfo(struct=top_name, path=done, offset=offset, size=size, type_id=mtype,
                          type_name=self.type_name(mtype), bit_offset=bits, bitfield_size=bitfield)

    def member_offset(self, struct: str | int, path: str) -> int:
        """Byte offset of ``path`` inside a struct: ``member(struct, path).offset``."""
        return self.member(struct, path).offset

    def _find_member(self, owner: Struct | Union, name: str,
                     depth: int) -> tuple[Member, int, Struct | Union] | None:
        """The member called ``name``, looking through anonymous members: it, its bit offset, its struct."""
        if depth > _MAX_DEPTH:
            raise self._corrupt(f"anonymous members of type id {owner.id} nest too deep or are circular")
        for m in owner.members:
            if m.name == name:
                return m, m.bit_offset, owner
        for m in owner.members:
            if not m.name:
                inner = self.type(self.resolve(self._ref(owner, m.type_id)))
                if isinstance(inner, (Struct, Union)):
                    found = self._find_member(inner, name, depth + 1)
                    if found is not None:
                        return found[0], m.bit_offset + found[1], found[2]
        return None

    def _member_names(self, owner: Struct | Union, depth: int) -> list[str]:
        """Names reachable from a struct without a dot (through anonymous members)."""
        if depth > _MAX_DEPTH:
            return []
        names = []
        for m in owner.members:
            if m.name:
                names.append(m.name)
            elif 0 <= m.type_id < len(self):
                inner = self.type(self.resolve(m.type_id))
                if isinstance(inner, (Struct, Union)):
                    names += self._member_names(inner, depth + 1)
        return names


def _kinds_for(kind: Kind) -> tuple[Kind, ...]:
    kind = Kind(kind)
    return (Kind.ENUM, Kind.ENUM64) if kind in (Kind.ENUM, Kind.ENUM64) else (kind,)


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _rank(kind: Kind) -> int:
    return _PREFERENCE.index(kind) if kind in _PREFERENCE else len(_PREFERENCE)


def _join(base: str, decl: str) -> str:
    if not decl:
        return base
    if decl[0] == "[":
        return base + decl
    return f"{base} {decl}"


@functools.cache
def vmlinux() -> Btf:
    """The running kernel's BTF, loaded once and shared."""
    return Btf.load(VMLINUX)


def load_module(name: str) -> Btf:
    """A loaded module's BTF (/sys/kernel/btf/<name>) on top of the shared vmlinux BTF."""
    return Btf.for_module(name)
