"""netprof.loader.elf: probe targets resolved to file offsets, checked against readelf and objdump."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

import needs

from netprof.loader import elf as elf_module
from netprof.loader.elf import (
    ElfError,
    decode_x86,
    cheaper_site,
    locate,
    parse_target,
    resolve,
    resolve_target,
    site,
)

needs.tool("gcc")
for _tool in ("readelf", "objdump", "strip"):
    needs.tool(_tool, "binutils")

PROG = r"""
#include <stdio.h>
int counter = 1;
static int helper(int x) { return x * 3 + counter; }
__attribute__((noinline)) int compute(int x) { return helper(x) + 1; }
int use_a(int x);
int use_b(int x);
int main(int argc, char **argv) { printf("%d\n", compute(argc) + use_a(argc) + use_b(argc)); return 0; }
"""
# Two static functions of the same name in two translation units: one name, two addresses.
DUP_A = "static int dup_fn(int x) { return x + 1; }\nint use_a(int x) { return dup_fn(x); }\n"
DUP_B = "static int dup_fn(int x) { return x * 2; }\nint use_b(int x) { return dup_fn(x); }\n"
LIB = "int lib_func(int x) { return x + 7; }\nint lib_other(int x) { return x * x; }\n"
USER = "#include <stdio.h>\nint lib_func(int x);\nint main(int c, char **v) { printf(\"%d\\n\", lib_func(c)); }\n"
FLAGS = ["-O0", "-fno-omit-frame-pointer", "-g0"]


def _gcc(*args: str | Path) -> None:
    subprocess.run(["gcc", *FLAGS, *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("elf")
    for name, text in {"prog.c": PROG, "a.c": DUP_A, "b.c": DUP_B, "lib.c": LIB, "user.c": USER}.items():
        (d / name).write_text(text)
    srcs = [d / "prog.c", d / "a.c", d / "b.c"]
    out = {
        "exe": d / "exe",
        "pie": d / "pie",
        "nocet": d / "nocet",
        "lib": d / "libnpt.so",
        "user": d / "user",
        "obj": d / "lib.o",
    }
    _gcc("-no-pie", "-fno-pie", "-fcf-protection=full", *srcs, "-o", out["exe"])
    _gcc("-pie", "-fPIE", "-fcf-protection=full", *srcs, "-o", out["pie"])
    _gcc("-fcf-protection=none", *srcs, "-o", out["nocet"])
    _gcc("-shared", "-fPIC", d / "lib.c", "-o", out["lib"])
    _gcc(d / "user.c", f"-L{d}", "-lnpt", f"-Wl,-rpath,{d}", "-o", out["user"])
    _gcc("-c", d / "lib.c", "-o", out["obj"])
    out["stripped"] = d / "exe.stripped"
    out["lib_stripped"] = d / "libnpt.stripped.so"
    subprocess.run(["strip", "-o", str(out["stripped"]), str(out["exe"])], check=True)
    subprocess.run(["strip", "-o", str(out["lib_stripped"]), str(out["lib"])], check=True)
    return out


# -- ground truth from binutils ------------------------------------------------------------------


def _symbols(path: Path, dynamic: bool = False) -> dict[str, list[tuple[int, int, str]]]:
    """{name: [(value, size, type)]} of defined symbols, from ``readelf -sW`` (or --dyn-syms)."""
    out = subprocess.run(["readelf", "-W", "--dyn-syms" if dynamic else "-s", str(path)],
                         check=True, capture_output=True, text=True).stdout
    syms: dict[str, list[tuple[int, int, str]]] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0][:-1].isdigit() and f[6] != "UND":
            syms.setdefault(f[7].split("@")[0], []).append((int(f[1], 16), int(f[2], 0), f[3]))
    return syms


def _loads(path: Path) -> list[tuple[int, int, int, str]]:
    """[(offset, vaddr, filesz, flags)] of the PT_LOAD segments, from ``readelf -lW``."""
    out = subprocess.run(["readelf", "-lW", str(path)], check=True, capture_output=True, text=True).stdout
    loads = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16), " ".join(f[6:-1])))
    return loads


def _offset_of(path: Path, address: int) -> int:
    for off, vaddr, filesz, _flags in _loads(path):
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + off
    raise AssertionError(f"{address:#x} in no PT_LOAD of {path}")


def _objdump_bytes(path: Path, address: int, n: int = 8) -> bytes:
    """The bytes objdump disassembles from ``address`` on (at least ``n`` when the code is that long)."""
    out = subprocess.run(
        ["objdump", "-d", f"--start-address={address:#x}", f"--stop-address={address + n:#x}", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    data = b""
    for line in out.splitlines():
        m = re.match(r"\s*[0-9a-f]+:\t((?:[0-9a-f]{2} )+)", line)
        if m:
            data += bytes.fromhex(m.group(1))
    return data[:n]


def _file_bytes(path: str | Path, offset: int, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


# -- resolving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which, kind", [("exe", "executable"), ("pie", "pie"), ("lib", "shared library")])
def test_offsets_match_readelf_and_bytes_match_objdump(bins, which, kind):
    path = bins[which]
    truth = _symbols(path)
    names = ["lib_func", "lib_other"] if which == "lib" else ["main", "compute", "helper", "use_a"]
    for name in names:
        ((value, size, _typ),) = set(truth[name])  # readelf -s lists .dynsym and .symtab
        t = resolve(str(path), name)
        assert (t.path, t.kind, t.symbol, t.address, t.size) == (os.path.realpath(path), kind, name, value, size)
        assert t.offset == _offset_of(path, value)
        want = _objdump_bytes(path, value)
        assert len(want) == 8 and _file_bytes(path, t.offset) == want
    if kind == "executable":
        assert t.address != t.offset  # linked at 0x400000: address and file offset differ


def test_symbol_plus_offset_and_raw_offset(bins):
    exe = str(bins["exe"])
    base = resolve(exe, "compute")
    t = resolve(exe, "compute+0x4")
    assert (t.offset, t.address, t.symbol_offset) == (base.offset + 4, base.address + 4, 4)
    assert resolve(exe, "compute+4") == t
    raw = resolve(exe, hex(base.offset + 4))
    assert (raw.offset, raw.address, raw.symbol, raw.symbol_offset) == (t.offset, t.address, "compute", 4)
    assert resolve_target(f"{exe}:compute+0x4") == t
    assert "compute+0x4" in str(t)


def test_dynsym_used_when_stripped(bins):
    full = resolve(str(bins["lib"]), "lib_func")
    stripped = resolve(str(bins["lib_stripped"]), "lib_func")
    assert (stripped.offset, stripped.size) == (full.offset, full.size)


def test_libc_versioned_symbol():
    t = resolve_target("libc.so.6:getpid")
    assert t.path == os.path.realpath(t.path) and t.kind == "shared library"
    path = Path(t.path)
    ((value, _size, _typ),) = set(_symbols(path, dynamic=True)["getpid"])
    assert t.address == value and t.offset == _offset_of(path, value)
    assert _file_bytes(path, t.offset) == _objdump_bytes(path, value)


def test_libc_default_version_wins():
    libc = locate("libc.so.6")
    memcpys = {v for v, _s, _t in _symbols(Path(libc), dynamic=True).get("memcpy", [])}
    if len(memcpys) < 2:
        pytest.skip("this libc has one memcpy")
    default = resolve(libc, "memcpy")
    assert resolve(libc, "memcpy@@GLIBC_2.14").offset == default.offset
    compat = resolve(libc, "memcpy@GLIBC_2.2.5")
    assert compat.address != default.address and {compat.address, default.address} == memcpys


def test_locate():
    assert locate("sh") == os.path.realpath(shutil.which("sh"))
    assert os.path.basename(locate("libc.so.6")) == "libc.so.6"


def test_parse_target():
    assert parse_target("/usr/bin/curl:main") == ("/usr/bin/curl", "main")
    assert parse_target("libc.so.6:memcpy@@GLIBC_2.14") == ("libc.so.6", "memcpy@@GLIBC_2.14")
    assert parse_target("/bin/x:0x1139") == ("/bin/x", "0x1139")
    assert parse_target("/bin/x:f+0x10") == ("/bin/x", "f+0x10")
    for bad in ("main", ":main", "/bin/x:"):
        with pytest.raises(ElfError, match="not PATH:SYMBOL"):
            parse_target(bad)


# -- errors ------------------------------------------------------------------------------------


def _patched(src: Path, dst: Path, at: int, value: bytes) -> str:
    data = bytearray(src.read_bytes())
    data[at : at + len(value)] = value
    dst.write_bytes(bytes(data))
    return str(dst)


def test_errors(bins, tmp_path):
    exe, user, lib = str(bins["exe"]), str(bins["user"]), os.path.realpath(bins["lib"])
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    cases = [
        ((str(tmp_path / "nope"), "main"), "no such file"),
        (("netprof-no-such-program", "main"), "cannot find"),
        ((str(tmp_path), "main"), "is a directory"),
        ((str(text), "main"), "is not an ELF file"),
        ((_patched(bins["exe"], tmp_path / "e32", 4, b"\x01"), "main"), "32-bit"),
        ((_patched(bins["exe"], tmp_path / "ebe", 5, b"\x02"), "main"), "big-endian"),
        ((_patched(bins["exe"], tmp_path / "earm", 18, b"\x28\x00"), "main"), "machine 40"),
        ((str(bins["obj"]), "lib_func"), "relocatable object"),
        ((str(bins["stripped"]), "main"), "is stripped"),
        ((exe, "mian"), f"no function 'mian' in {exe} (did you mean 'main'?)"),
        ((exe, "zzzqqq"), "no function 'zzzqqq'"),
        ((exe, "counter"), "counter is a data object, not a function"),
        ((exe, "dup_fn"), "'dup_fn' names 2 different functions"),
        ((exe, "printf"), f"printf is not defined in {exe} (it is imported): probe {locate('libc.so.6')}:printf"),
        ((user, "lib_func"), f"lib_func is not defined in {user} (it is imported): probe {lib}:lib_func instead"),
        ((exe, "compute+0x10000"), "past the end of compute"),
        ((exe, "0x7fffffff"), "not in an executable segment"),
        ((exe, "main+zz"), "SYMBOL+0x10"),
    ]
    for (path, symbol), words in cases:
        with pytest.raises(ElfError) as info:
            resolve(path, symbol)
        assert words in str(info.value), (path, symbol)


def test_ambiguous_lists_the_file_offsets(bins):
    exe = bins["exe"]
    offsets = sorted({_offset_of(exe, v) for v, _s, _t in _symbols(exe)["dup_fn"]})
    with pytest.raises(ElfError, match="PATH:0xOFFSET") as info:
        resolve(str(exe), "dup_fn")
    assert all(f"{o:#x}" in str(info.value) for o in offsets)
    assert resolve(str(exe), hex(offsets[1])).symbol == "dup_fn"


def test_data_offset_is_not_code(bins):
    exe = bins["exe"]
    ((value, _s, _t),) = set(_symbols(exe)["counter"])
    with pytest.raises(ElfError, match="not in an executable segment"):
        resolve(str(exe), hex(_offset_of(exe, value)))


@pytest.mark.parametrize("cut", [64, 200, 4096])
def test_truncated_file(bins, tmp_path, cut):
    short = tmp_path / "short"
    short.write_bytes(bins["exe"].read_bytes()[:cut])
    with pytest.raises(ElfError):
        resolve(str(short), "main")


@pytest.mark.parametrize("seed", range(40))
def test_damaged_headers_give_one_clear_error(bins, tmp_path, seed):
    """Random bytes over the ELF, program and section headers: a target or an ElfError, nothing else."""
    import random
    import struct as st

    rng = random.Random(seed)
    data = bytearray(bins["pie"].read_bytes())
    phoff, shoff = st.unpack_from("<QQ", data, 32)
    (shnum,) = st.unpack_from("<H", data, 60)
    regions = [(16, 64), (phoff, phoff + 56 * 4), (shoff, shoff + 64 * shnum)]
    for _ in range(rng.randrange(1, 6)):
        start, end = rng.choice(regions)
        at = rng.randrange(start, min(end, len(data)))
        data[at] = rng.randrange(256)
    damaged = tmp_path / "damaged"
    damaged.write_bytes(bytes(data))
    try:
        resolve(str(damaged), "main")
    except ElfError as e:
        assert "\n" not in str(e)


# -- instruction boundaries ---------------------------------------------------------------------


def _objdump_starts(path: Path, address: int, size: int) -> list[int]:
    """Offsets from ``address`` of the instructions objdump -d prints in [address, address + size)."""
    out = subprocess.run(["objdump", "-d", "-w", "--insn-width=15", f"--start-address={address:#x}",
                          f"--stop-address={address + size:#x}", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return [int(m.group(1), 16) - address for m in re.finditer(r"^ *([0-9a-f]+):\t", out, re.MULTILINE)]


@pytest.mark.parametrize("which", ["exe", "pie", "lib"])
def test_only_instruction_starts_are_accepted(bins, which):
    """Every byte of a function: accepted where objdump starts an instruction, refused everywhere else."""
    path = bins[which]
    name = "lib_other" if which == "lib" else "compute"
    ((value, size, _typ),) = set(_symbols(path)[name])
    starts = _objdump_starts(path, value, size)
    base = resolve(str(path), name).offset
    assert len(starts) > 4 and starts[0] == 0
    for delta in range(size):
        if delta in starts:
            assert resolve(str(path), f"{name}+{delta}").offset == base + delta
            assert resolve(str(path), hex(base + delta)).symbol_offset == delta
            continue
        before = max(s for s in starts if s < delta)
        after = min([s for s in starts if s > delta] + [size])
        want = (f"{os.path.realpath(path)}: offset {base + delta:#x} ({name}+{delta:#x}) is inside an instruction: "
                f"the nearest boundaries are {name}+{before:#x} ({base + before:#x}) and {name}+{after:#x} "
                f"({base + after:#x})")
        for symbol in (f"{name}+{delta:#x}", hex(base + delta)):
            with pytest.raises(ElfError) as info:
                resolve(str(path), symbol)
            assert str(info.value) == want


def test_main_plus_one_names_both_boundaries(bins):
    t = resolve(str(bins["exe"]), "main")
    with pytest.raises(ElfError, match=rf"offset {t.offset + 1:#x} \(main\+0x1\) is inside an instruction: the "
                                       rf"nearest boundaries are main\+0x0 \({t.offset:#x}\) and main\+0x4 "
                                       rf"\({t.offset + 4:#x}\)$"):
        resolve(str(bins["exe"]), "main+1")


def test_raw_offset_outside_every_function(bins):
    exe, stripped = str(bins["exe"]), str(bins["stripped"])
    main = resolve(exe, "main")
    with pytest.raises(ElfError, match="is in no function its symbol tables know \\(it has no .symtab\\), so netprof "
                                       "cannot check"):
        resolve(stripped, hex(main.offset))
    ((init, size, _t),) = set(_symbols(bins["exe"])["_init"])  # crti.o's _init: a function with no size
    assert size == 0
    t = resolve(exe, hex(_offset_of(bins["exe"], init)))
    assert (t.symbol, t.symbol_offset, t.address) == ("_init", 0, init)
    with pytest.raises(ElfError, match="is in no function"):
        resolve(exe, hex(_offset_of(bins["exe"], init) + 1))


def test_undecodable_bytes_cannot_be_checked(bins, tmp_path):
    t = resolve(str(bins["nocet"]), "compute")  # push %rbp; mov %rsp,%rbp; ...
    broken = _patched(bins["nocet"], tmp_path / "broken", t.offset + 1, b"\x06")  # no instruction in 64-bit mode
    assert resolve(broken, "compute+1").symbol_offset == 1
    with pytest.raises(ElfError, match=r"\(compute\+0x4\) cannot be checked: netprof decodes compute only up to "
                                       rf"compute\+0x1 \({t.offset + 1:#x}\), whose bytes 06"):
        resolve(broken, "compute+4")


def _tiny_elf(machine: int, code: bytes, name: str = "work") -> bytes:
    """A minimal ELF64 executable made with struct: one R+X PT_LOAD, .text holding ``code``, a .symtab
    naming it ``name``."""
    base, text = 0x400000, 0x100
    strtab, shstrtab = b"\0" + name.encode() + b"\0", b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    symtab_at = (text + len(code) + 7) // 8 * 8
    symtab = bytes(24) + struct.pack("<IBBHQQ", 1, 0x12, 0, 1, base + text, len(code))  # GLOBAL FUNC
    strtab_at = symtab_at + len(symtab)
    shstrtab_at = strtab_at + len(strtab)
    shoff = (shstrtab_at + len(shstrtab) + 7) // 8 * 8
    sections = [
        bytes(64),
        struct.pack("<IIQQQQIIQQ", 1, 1, 6, base + text, text, len(code), 0, 0, 4, 0),  # .text
        struct.pack("<IIQQQQIIQQ", 7, 2, 0, 0, symtab_at, len(symtab), 3, 1, 8, 24),     # .symtab
        struct.pack("<IIQQQQIIQQ", 15, 3, 0, 0, strtab_at, len(strtab), 0, 0, 1, 0),     # .strtab
        struct.pack("<IIQQQQIIQQ", 23, 3, 0, 0, shstrtab_at, len(shstrtab), 0, 0, 1, 0),  # .shstrtab
    ]
    size = shoff + 64 * len(sections)
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    image = bytearray(size)
    image[0:64] = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, machine, 1, base + text, 64, shoff, 0, 64, 56, 1, 64,
                              len(sections), 4)
    image[64:120] = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    for at, blob in ((text, code), (symtab_at, symtab), (strtab_at, strtab), (shstrtab_at, shstrtab),
                     (shoff, b"".join(sections))):
        image[at:at + len(blob)] = blob
    return bytes(image)


AARCH64_CODE = struct.pack("<4I", 0xD503201F, 0xD503201F, 0xD503201F, 0xD65F03C0)  # nop, nop, nop, ret


def test_program_for_another_machine_is_refused(tmp_path):
    arm = tmp_path / "arm"
    arm.write_bytes(_tiny_elf(183, AARCH64_CODE))  # EM_AARCH64
    if os.uname().machine == "aarch64":
        pytest.skip("this machine is aarch64")
    for symbol in ("work", "work+4", "0x104"):
        with pytest.raises(ElfError) as info:
            resolve(str(arm), symbol)
        assert str(info.value) == (f"{arm} is an aarch64 program but this machine is x86_64: a uprobe traces only "
                                   f"programs that run here; probe the x86_64 build of it")
    x86 = tmp_path / "x86"
    x86.write_bytes(_tiny_elf(62, b"\x55\x48\x89\xe5\x5d\xc3"))  # the same file for x86-64 is fine
    assert resolve(str(x86), "work+1").offset == 0x101


def test_aarch64_sites_are_checked_for_alignment_only(tmp_path, monkeypatch):
    arm = tmp_path / "arm"
    arm.write_bytes(_tiny_elf(183, AARCH64_CODE))
    monkeypatch.setattr(elf_module, "_host_machine", lambda: "aarch64")
    t = resolve(str(arm), "work+8")
    assert (t.offset, t.symbol_offset, t.machine) == (0x108, 8, "aarch64")
    assert resolve(str(arm), "0x10c").symbol_offset == 12
    assert site(t) is None and cheaper_site(t) is None
    for symbol in ("work+6", "0x106"):
        with pytest.raises(ElfError) as info:
            resolve(str(arm), symbol)
        assert str(info.value) == (f"{arm}: offset 0x106 (work+0x6) is not 4-byte aligned, so not an instruction "
                                   f"start: the nearest are work+0x4 (0x104) and work+0x8 (0x108) (on aarch64 "
                                   f"netprof checks alignment only)")


def test_session_refuses_a_site_inside_an_instruction_in_one_line(bins, tmp_path):
    from netprof.capture.options import CaptureOptions
    from netprof.capture.plan import Planner, SessionError

    planner = Planner(CaptureOptions(user=[f"{bins['exe']}:main+2"], output=str(tmp_path / "t.trace")))
    with pytest.raises(SessionError, match="is inside an instruction") as info:
        planner.plan()  # planning only: nothing is loaded or attached
    assert "\n" not in str(info.value)


# -- probe-site cost ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["exe", "pie"])
def test_endbr64_site_and_cheaper_site(bins, which):
    t = resolve(str(bins[which]), "main")
    first = site(t)
    assert (first.insn_hex, first.description, first.emulated) == ("f30f1efa", "endbr64", False)
    better = cheaper_site(t)
    assert better == replace(t, offset=t.offset + 4, address=t.address + 4, symbol_offset=4)
    after = site(better)
    assert (after.insn_hex, after.description, after.emulated) == ("55", "push %rbp", True)
    assert cheaper_site(better) is None


class _Costs:
    """A calibration stand-in: what each kind of instruction costs."""

    def __init__(self, **ns):
        self.ns = ns

    def for_instruction(self, code):
        from types import SimpleNamespace

        return SimpleNamespace(cost_ns=self.ns[decode_x86(code)[0]])


def test_cheaper_site_follows_the_measured_costs(bins):
    t = resolve(str(bins["exe"]), "main")
    assert cheaper_site(t, _Costs(**{"endbr64": 10_000, "push %rbp": 1_300})).symbol_offset == 4
    # a kernel that single-stepped push as well: nothing gained, the function's own first byte kept
    assert cheaper_site(t, _Costs(**{"endbr64": 10_000, "push %rbp": 10_100})) is None


def test_push_site_without_cet(bins):
    t = resolve(str(bins["nocet"]), "compute")
    assert site(t).description == "push %rbp" and site(t).emulated
    assert cheaper_site(t) is None


def test_not_x86_has_no_cost(bins):
    t = replace(resolve(str(bins["exe"]), "main"), machine="aarch64")
    assert site(t) is None and cheaper_site(t) is None


@pytest.mark.parametrize(
    "code, description, emulated, length",
    [
        ("55", "push %rbp", True, 1),
        ("53", "push %rbx", True, 1),
        ("4154", "push %r12", True, 2),
        ("90", "nop", True, 1),
        ("6690", "xchg %ax,%ax (nop)", True, 2),
        ("0f1f4000", "nopl", True, 4),
        ("0f1f440000", "nopl", True, 5),
        ("0f1f8000000000", "nopl", True, 7),
        ("660f1f440000", "nopw", True, 6),
        ("f30f1efa", "endbr64", False, 4),
        ("e800000000", "call rel32", True, 5),
        ("e900000000", "jmp rel32", True, 5),
        ("eb00", "jmp rel8", True, 2),
        ("7400", "je rel8", True, 2),
        ("0f8500000000", "jne rel32", True, 6),
        ("c3", "ret", False, 1),
        ("4883ec10", "other", False, 4),
        ("48b88877665544332211", "other", False, 10),
        ("06", "other", False, None),
    ],
)
def test_decode_x86(code, description, emulated, length):
    assert decode_x86(bytes.fromhex(code) + b"\xcc" * 8) == (description, emulated, length)
