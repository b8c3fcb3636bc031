"""netprof.loader.btf against this machine's real /sys/kernel/btf/vmlinux (readable without root).

The reference for offsets and for every decoded type is bpftool (Debian package ``bpftool``):
tests that compare with it fail, saying so, when it is not installed.
"""

import random
import shutil
import struct
import subprocess
import typing
from dataclasses import replace
from pathlib import Path

import pytest

import needs

from netprof.asm.helpers import Helper
from netprof.loader.btf import (
    VMLINUX, Array, Btf, BtfError, Const, Datasec, DeclTag, Enum, Enum64, Float, Func, FuncLinkage, FuncProto, Fwd,
    FwdKind, Int, Kind, Pointer, Restrict, Struct, Type, Typedef, TypeTag, Union, Var, Volatile, Void, vmlinux,
)

SYSFS = Path("/sys/kernel/btf")


@pytest.fixture(scope="module")
def btf() -> Btf:
    if not Path(VMLINUX).exists():
        pytest.fail(f"{VMLINUX} is missing: these tests need a kernel built with CONFIG_DEBUG_INFO_BTF")
    return Btf.load()


def bpftool(*args: str) -> str:
    exe = needs.tool("bpftool")
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def raw_dump() -> str:
    return bpftool("btf", "dump", "file", VMLINUX, "format", "raw")


@pytest.fixture(scope="module")
def raw_types(raw_dump) -> dict:
    return bpftool_types(raw_dump)


# ---- the reference: bpftool's "format raw", rebuilt from our decoding ---------------------------

_INT_ENC = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}
_LINKAGE = {0: "static", 1: "global", 2: "extern"}


def raw_lines(b: Btf, type_id: int) -> str:
    """One type as ``bpftool btf dump ... format raw`` prints it (bpftool's dump_btf_type)."""
    t = b.type(type_id)
    out = f"[{t.id}] {t.kind.name} '{t.name or '(anon)'}'"
    match t:
        case Int():
            out += (f" size={t.size} bits_offset={t.bit_offset} nr_bits={t.bits} "
                    f"encoding={_INT_ENC.get(int(t.encoding), 'UNKN')}")
        case Pointer() | Const() | Volatile() | Restrict() | Typedef() | TypeTag():
            out += f" type_id={t.type_id}"
        case Array():
            out += f" type_id={t.type_id} index_type_id={t.index_type_id} nr_elems={t.nelems}"
        case Struct() | Union():
            out += f" size={t.size} vlen={len(t.members)}"
            for m in t.members:
                out += f"\n\t'{m.name or '(anon)'}' type_id={m.type_id} bits_offset={m.bit_offset}"
                if m.bitfield_size:
                    out += f" bitfield_size={m.bitfield_size}"
        case Enum() | Enum64():
            out += f" encoding={'SIGNED' if t.signed else 'UNSIGNED'} size={t.size} vlen={len(t.values)}"
            suffix = ("LL" if t.signed else "ULL") if isinstance(t, Enum64) else ""
            for v in t.values:
                out += f"\n\t'{v.name or '(anon)'}' val={v.value}{suffix}"
        case Fwd():
            out += f" fwd_kind={'union' if t.fwd_kind == FwdKind.UNION else 'struct'}"
        case Func():
            out += f" type_id={t.type_id} linkage={_LINKAGE[t.linkage]}"
        case FuncProto():
            out += f" ret_type_id={t.return_type_id} vlen={len(t.params)}"
            for p in t.params:
                out += f"\n\t'{p.name or '(anon)'}' type_id={p.type_id}"
        case Var():
            out += f" type_id={t.type_id}, linkage={_LINKAGE[t.linkage]}"
        case Datasec():
            out += f" size={t.size} vlen={len(t.vars)}"
            for s in t.vars:
                out += f"\n\ttype_id={s.type_id} offset={s.offset} size={s.size} ({b.kind(s.type_id).name} " \
                       f"'{b.name(s.type_id)}')"
        case Float():
            out += f" size={t.size}"
        case DeclTag():
            out += f" type_id={t.type_id} component_idx={t.component_idx}"
    return out


def test_every_type_decodes_as_bpftool_prints_it(btf, raw_dump):
    ours = "\n".join(raw_lines(btf, i) for i in range(btf.first_id, len(btf)))
    theirs = raw_dump.rstrip("\n")
    if ours != theirs:
        for n, (a, b) in enumerate(zip(ours.splitlines(), theirs.splitlines(), strict=False)):
            assert a == b, f"line {n + 1} differs from bpftool"
    assert ours == theirs


# ---- one class per kind -----------------------------------------------------------------------

CLASSES: dict[Kind, type] = {
    Kind.UNKN: Void, Kind.INT: Int, Kind.PTR: Pointer, Kind.ARRAY: Array, Kind.STRUCT: Struct, Kind.UNION: Union,
    Kind.ENUM: Enum, Kind.FWD: Fwd, Kind.TYPEDEF: Typedef, Kind.VOLATILE: Volatile, Kind.CONST: Const,
    Kind.RESTRICT: Restrict, Kind.FUNC: Func, Kind.FUNC_PROTO: FuncProto, Kind.VAR: Var, Kind.DATASEC: Datasec,
    Kind.FLOAT: Float, Kind.DECL_TAG: DeclTag, Kind.TYPE_TAG: TypeTag, Kind.ENUM64: Enum64,
}


def test_type_is_one_class_per_kind():
    classes = typing.get_args(Type)
    assert set(classes) == set(CLASSES.values()) and len(classes) == len(Kind)
    for kind, cls in CLASSES.items():
        assert cls.kind == kind, cls


def test_a_type_of_each_kind_in_vmlinux_decodes_to_its_class(btf):
    first: dict[Kind, int] = {}
    for i in range(btf.first_id, len(btf)):
        first.setdefault(btf.kind(i), i)
    # every kind this kernel's BTF has (on 6.x kernels with pahole >= 1.23: all of them)
    assert {Kind.INT, Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.TYPEDEF,
            Kind.VOLATILE, Kind.CONST, Kind.FUNC, Kind.FUNC_PROTO, Kind.VAR, Kind.DATASEC} <= set(first)
    for kind, type_id in first.items():
        t = btf.type(type_id)
        assert type(t) is CLASSES[kind] and t.kind == kind and t.id == type_id and t.name == btf.name(type_id)
    assert btf.type(0) == Void() and btf.type(0).kind == Kind.UNKN


def test_classes_carry_their_kinds_fields(btf):
    sk_buff = btf.type(btf.find("struct sk_buff"))
    assert isinstance(sk_buff, Struct) and sk_buff.size == btf.size_of("struct sk_buff")
    assert "len" in [m.name for m in sk_buff.members]
    func = btf.type(btf.function("tcp_v4_rcv").id)
    assert isinstance(func, Func) and isinstance(func.linkage, FuncLinkage) and func.name == "tcp_v4_rcv"
    proto = btf.type(func.type_id)
    assert isinstance(proto, FuncProto) and [p.name for p in proto.params] == ["skb"] and not proto.variadic
    enum = btf.type(btf.find("enum bpf_func_id"))
    assert isinstance(enum, Enum) and enum.values[1].name == "BPF_FUNC_map_lookup_elem" and enum.values[1].value == 1
    u32 = btf.type(btf.resolve(btf.find("u32")))
    assert isinstance(u32, Int) and (u32.size, u32.bits, u32.signed) == (4, 32, False)
    cb = btf.type(btf.member("struct sk_buff", "cb").type_id)
    assert isinstance(cb, Array) and cb.nelems == 48
    typedef = btf.type(btf.find("u32"))
    assert isinstance(typedef, Typedef) and btf.resolve(typedef.id) == u32.id


def bpftool_types(raw: str) -> dict[int, tuple[str, str, list[tuple[str, int, int]]]]:
    """bpftool's raw dump as id -> (kind, name, [(member name, type id, bits_offset)])."""
    types: dict[int, tuple[str, str, list[tuple[str, int, int]]]] = {}
    members: list[tuple[str, int, int]] = []
    for line in raw.splitlines():
        if line.startswith("["):
            fields = line.split()
            members = []
            types[int(fields[0][1:-1])] = (fields[1], fields[2].strip("'"), members)
        elif "bits_offset=" in line:
            fields = line.split()
            members.append((fields[0].strip("'"), int(fields[1].split("=")[1]), int(fields[2].split("=")[1])))
    return types


def bpftool_bits(types, struct_name: str, member: str) -> tuple[int, int]:
    """(bit offset, type id) of a member of a named struct, looking through anonymous members, from
    bpftool's dump alone (an independent reference for our decoding and path walking)."""
    def walk(type_id: int) -> tuple[int, int] | None:
        for name, mtype, bits in types[type_id][2]:
            if name == member:
                return bits, mtype
        for name, mtype, bits in types[type_id][2]:
            if name == "(anon)" and types[mtype][0] in ("STRUCT", "UNION"):
                found = walk(mtype)
                if found:
                    return bits + found[0], found[1]
        return None

    top = next(i for i, (kind, name, _) in types.items() if kind == "STRUCT" and name == struct_name)
    found = walk(top)
    assert found, f"bpftool shows no member {member} in struct {struct_name}"
    return found


# ---- struct members -----------------------------------------------------------------------------

def test_list_head(btf):
    assert btf.size_of("struct list_head") == 16
    assert btf.member_offset("struct list_head", "next") == 0
    assert btf.member_offset("struct list_head", "prev") == 8
    nxt = btf.member("list_head", "next")
    assert nxt.size == 8 and nxt.type_name == "struct list_head *" and nxt.bitfield_size == 0


def test_iphdr_bitfields(btf):
    ihl = btf.member("struct iphdr", "ihl")
    version = btf.member("struct iphdr", "version")
    assert (ihl.offset, ihl.bit_offset, ihl.bitfield_size, ihl.bit_shift) == (0, 0, 4, 0)
    assert (version.offset, version.bit_offset, version.bitfield_size, version.bit_shift) == (0, 4, 4, 4)
    saddr = btf.member("struct iphdr", "saddr")
    assert (saddr.offset, saddr.size, saddr.bitfield_size) == (12, 4, 0)
    assert btf.size_of("struct iphdr") == 20


def test_sk_buff_len_matches_bpftool(btf, raw_types):
    bits, type_id = bpftool_bits(raw_types, "sk_buff", "len")
    got = btf.member("struct sk_buff", "len")
    assert got.bit_offset == bits and got.offset == bits // 8
    assert got.type_id == type_id and got.size == 4 and got.type_name == "unsigned int"


@pytest.mark.parametrize("name", ["tstamp", "_sk_redir", "mark", "protocol", "priority", "pkt_type"])
def test_anonymous_members_add_their_offsets(btf, raw_types, name):
    # struct sk_buff keeps many members in anonymous unions at non-zero offsets, some of them inside an
    # anonymous struct inside an anonymous union: each level's offset adds up.
    bits, type_id = bpftool_bits(raw_types, "sk_buff", name)
    got = btf.member("struct sk_buff", name)
    assert (got.bit_offset, got.type_id) == (bits, type_id)
    top = btf.type(btf.find("struct sk_buff")).members
    assert name not in [m.name for m in top]  # really reached through an anonymous member


def test_nested_paths(btf):
    # struct sock -> __sk_common (a named struct) -> an anonymous union -> skc_family
    fam = btf.member("struct sock", "__sk_common.skc_family")
    assert fam.offset == btf.member_offset("struct sock_common", "skc_family") and fam.size == 2
    assert btf.member("struct task_struct", "se.vruntime").offset == (
        btf.member_offset("struct task_struct", "se") + btf.member_offset("struct sched_entity", "vruntime"))
    protocol = btf.member("struct sk_buff", "protocol")
    assert btf.member("struct sk_buff", "headers.protocol") == replace(protocol, path="headers.protocol")


def test_array_elements(btf):
    cb = btf.member("struct sk_buff", "cb")
    assert cb.type_name == "char[48]" and cb.size == 48
    assert btf.member("struct sk_buff", "cb[4]").offset == cb.offset + 4
    assert btf.member("struct sk_buff", "cb[4]").size == 1
    with pytest.raises(BtfError, match=r"index 48 is out of range for 'cb' in struct sk_buff"):
        btf.member("struct sk_buff", "cb[48]")


def test_pointer_in_a_path_must_be_dereferenced(btf):
    with pytest.raises(BtfError, match=r"'sk' in struct sk_buff is a pointer \(struct sock \*\): "
                                       r"a pointer must be dereferenced by the probe"):
        btf.member("struct sk_buff", "sk.__sk_common")


def test_unknown_member_names_struct_and_close_matches(btf):
    with pytest.raises(BtfError) as e:
        btf.member("struct sk_buff", "lenn")
    assert str(e.value) == "struct sk_buff has no member 'lenn' (did you mean 'len'?)"
    with pytest.raises(BtfError, match=r"struct sock_common has no member 'skc_famly' .*'skc_family'"):
        btf.member("struct sock", "__sk_common.skc_famly")


# ---- names, types, functions, enums -------------------------------------------------------------

def test_c_spellings(btf):
    sk_buff = btf.find("struct sk_buff")
    assert btf.find("sk_buff") == sk_buff == btf.find("sk_buff", Kind.STRUCT)
    assert btf.kind(btf.find("union bpf_attr")) == Kind.UNION
    assert btf.kind(btf.find("enum bpf_func_id")) == Kind.ENUM
    assert btf.kind(btf.find("u32")) == Kind.TYPEDEF
    assert btf.kind(btf.find("tcp_v4_rcv", Kind.FUNC)) == Kind.FUNC
    assert btf.type_name(sk_buff) == "struct sk_buff"


def test_type_names(btf):
    u32 = btf.find("u32")
    assert btf.type_name(u32) == "u32"
    assert btf.type_name(btf.resolve(u32)) == "unsigned int"
    assert btf.size_of("u32") == 4 and btf.size_of(u32) == 4
    # the prototype of a function pointer member: struct proto.close is void (*)(struct sock *, long int)
    close = btf.member("struct proto", "close")
    assert close.type_name == "void (*)(struct sock *, long int)" and close.size == 8
    assert btf.member("struct net_device", "name").type_name == "char[16]"
    assert btf.type_name(btf.function("strlen").param_type_ids[0]) == "const char *"


def test_function_prototypes(btf):
    f = btf.function("tcp_v4_rcv")
    assert btf.kind(f.id) == Kind.FUNC and f.name == "tcp_v4_rcv"
    assert f.params == (("skb", "struct sk_buff *"),) and f.nargs == 1
    assert f.return_type == "int" and isinstance(f.linkage, FuncLinkage)
    p = btf.function("__task_pid_nr_ns")
    assert [name for name, _ in p.params] == ["task", "type", "ns"]
    assert p.params[0] == ("task", "struct task_struct *")
    with pytest.raises(BtfError) as e:
        btf.function("tcp_v4_rvc")
    assert str(e.value).startswith(f"kernel function 'tcp_v4_rvc' has no BTF entry (not in {VMLINUX}: "
                                   "it may be inlined, static, or in a module)")
    assert "'tcp_v4_rcv'" in str(e.value)


def test_enum(btf):
    ids = btf.enum("bpf_func_id")
    assert ids["BPF_FUNC_map_lookup_elem"] == 1 and ids["BPF_FUNC_unspec"] == 0
    assert btf.enum("enum bpf_func_id") == ids


def test_typos_suggest_close_names(btf):
    with pytest.raises(BtfError) as e:
        btf.find("struct sk_buf")
    assert str(e.value).startswith(f"no struct named 'sk_buf' in {VMLINUX} (did you mean 'sk_buff'")
    assert isinstance(e.value, LookupError)
    with pytest.raises(BtfError, match=r"no struct named 'u32' .*'u32' is a typedef"):
        btf.find("struct u32")


def test_helper_ids_match_kernel(btf):
    for name, value in btf.enum("bpf_func_id").items():
        if name == "__BPF_FUNC_MAX_ID":
            continue
        short = name.removeprefix("BPF_FUNC_")
        assert short in Helper.__members__, f"Helper lacks {name} = {value}"
        assert Helper[short] == value, f"Helper.{short} is {int(Helper[short])}, the kernel's {name} is {value}"


def test_vmlinux_is_shared():
    assert vmlinux() is vmlinux()


# ---- split BTF (modules) ------------------------------------------------------------------------

def split_btf(base: Btf) -> bytes:
    """A tiny module-style split BTF: struct netprof_test { struct list_head head; int x; } and a function
    int netprof_test_fn(struct netprof_test *t), referring to the base's list_head and int."""
    strings = b"netprof_test\0head\0x\0netprof_test_fn\0t\0"
    s0 = base._str_len_total  # the split's own strings start after the base's
    name = {n.decode(): s0 + strings.index(n + b"\0") for n in strings.split(b"\0")[:-1]}
    first = len(base)
    list_head, int_id = base.find("struct list_head"), base.find("int")
    types = b"".join([
        struct.pack("<III", name["netprof_test"], (Kind.STRUCT << 24) | 2, 24),
        struct.pack("<III", name["head"], list_head, 0),
        struct.pack("<III", name["x"], int_id, 128),
        struct.pack("<III", 0, Kind.PTR << 24, first),  # first + 1
        struct.pack("<III", 0, (Kind.FUNC_PROTO << 24) | 1, int_id),  # first + 2
        struct.pack("<II", name["t"], first + 1),
        struct.pack("<III", name["netprof_test_fn"], (Kind.FUNC << 24) | 1, first + 2),
    ])
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings)) + types + strings


def test_split_btf(btf, tmp_path):
    path = tmp_path / "netprof_test"
    path.write_bytes(split_btf(btf))
    mod = Btf.load(path, base=btf)
    assert mod.first_id == len(btf)
    t = mod.find("struct netprof_test")
    assert t == len(btf) and mod.size_of(t) == 24
    assert mod.member_offset("netprof_test", "x") == 16
    assert mod.member("struct netprof_test", "head.prev").offset == 8
    f = mod.function("netprof_test_fn")
    assert f.params == (("t", "struct netprof_test *"),) and f.return_type == "int"
    assert mod.find("struct sk_buff") == btf.find("struct sk_buff")  # base types stay reachable
    # bpftool reads the same file the same way
    theirs = bpftool("btf", "dump", "file", str(path), "-B", VMLINUX, "format", "raw").rstrip("\n")
    assert "\n".join(raw_lines(mod, i) for i in range(mod.first_id, len(mod))) == theirs


def test_missing_module():
    with pytest.raises(BtfError, match=r"no BTF for module 'no_such_module' at /sys/kernel/btf/no_such_module"):
        Btf.for_module("no_such_module")


# ---- bad files ----------------------------------------------------------------------------------

def queries(b: Btf) -> list:
    """Everything a user might ask of a file, one call each."""
    calls = [lambda: b.member("struct sk_buff", "len"), lambda: b.member("struct list_head", "next"),
             lambda: b.member("struct sock", "__sk_common.skc_family"), lambda: b.function("tcp_v4_rcv"),
             lambda: b.enum("bpf_func_id"), lambda: b.find("struct sk_bu")]
    for i in range(b.first_id, min(len(b), 2000)):
        calls += [lambda i=i: b.type_name(i), lambda i=i: b.resolve(i), lambda i=i: b.size_of(i)]
    return calls


def ask_all(b: Btf) -> list[str]:
    """Run every query; the BtfError messages (a query that raises anything else fails the test)."""
    errors = []
    for call in queries(b):
        try:
            call()
        except BtfError as e:
            errors.append(str(e))
    return errors


def test_missing_and_not_btf(tmp_path):
    with pytest.raises(BtfError, match=r"no BTF at .*/nothing: no such file"):
        Btf.load(tmp_path / "nothing")
    (tmp_path / "elf").write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(BtfError, match=r"is not BTF \(magic 0x457f"):
        Btf.load(tmp_path / "elf")
    (tmp_path / "short").write_bytes(b"\x9f\xeb")
    with pytest.raises(BtfError, match=r"is not BTF \(only 2 bytes"):
        Btf.load(tmp_path / "short")


def test_kernel_without_btf(tmp_path, monkeypatch):
    import netprof.loader.btf as btf_module

    monkeypatch.setattr(btf_module, "VMLINUX", str(tmp_path / "vmlinux"))
    with pytest.raises(BtfError, match=r"no BTF at .*: this kernel was built without CONFIG_DEBUG_INFO_BTF"):
        btf_module.Btf.load(str(tmp_path / "vmlinux"))


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.6, 0.99])
def test_truncated(tmp_path, fraction):
    data = Path(VMLINUX).read_bytes()
    path = tmp_path / "vmlinux"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(BtfError, match="truncated"):
        Btf.load(path)


def corrupt(data: bytes, b: Btf, what: str) -> bytes:
    data = bytearray(data)
    hdr = 24
    list_head = b._offsets[b.find("struct list_head") - 1]
    ptr_id = next(i for i in range(1, len(b)) if b.kind(i) == Kind.PTR)
    ptr = b._offsets[ptr_id - 1]
    func = b._offsets[b.function("tcp_v4_rcv").id - 1]
    if what == "version":
        data[2] = 2
    elif what == "kind":
        data[list_head + 7] = 0x1F  # kind 31
    elif what == "vlen":
        data[list_head + 4:list_head + 6] = b"\xff\xff"
    elif what == "name":
        data[list_head:list_head + 4] = struct.pack("<I", 0x7FFFFFFF)
    elif what == "member_type":
        data[list_head + 16:list_head + 20] = struct.pack("<I", 0x7FFFFFFF)
    elif what == "loop":
        data[ptr + 8:ptr + 12] = struct.pack("<I", ptr_id)  # a pointer to itself
    elif what == "linkage":
        data[func + 4:func + 6] = b"\x07\x00"  # a FUNC's vlen is its linkage: 7 is none
    elif what == "strings":
        data[-1] = ord("x")
    elif what == "str_len":
        data[hdr - 4:hdr] = struct.pack("<I", 0xFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("what", ["version", "kind", "vlen", "name", "member_type", "loop", "linkage", "strings",
                                  "str_len"])
def test_corrupted(btf, tmp_path, what):
    path = tmp_path / "vmlinux"
    path.write_bytes(corrupt(Path(VMLINUX).read_bytes(), btf, what))
    with pytest.raises(BtfError):
        Btf.load(path)
        for call in queries(Btf.load(path)):
            call()


def test_random_corruption_gives_btf_errors_only(btf, tmp_path):
    """Random ids, sizes and name offsets in well-formed records: every query ends in an answer or a
    BtfError (never struct.error, IndexError, RecursionError ...)."""
    data = Path(VMLINUX).read_bytes()
    rng = random.Random(1)
    values = [0, 1, 2, 5, 95, len(btf) - 1, len(btf), len(btf) + 7, 0x7FFFFFFF, 0xFFFFFFFF]
    for n in range(12):
        bad = bytearray(data)
        for _ in range(40):
            type_id = rng.randrange(1, 2000)
            start = btf._offsets[type_id - 1]
            end = btf._offsets[type_id]
            # any u32 of the record but its info word (which sets the record's length)
            word = rng.choice([w for w in range(start, end, 4) if w != start + 4])
            value = rng.choice(values) if rng.random() < 0.7 else rng.randrange(len(btf))
            bad[word:word + 4] = struct.pack("<I", value)
        try:
            ask_all(Btf(bytes(bad), f"corrupt-{n}"))
        except BtfError:
            pass  # the load itself found the damage
