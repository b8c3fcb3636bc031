"""netprof.loader.x86: instruction lengths checked against objdump, which nobody here wrote.

Hand-picked hard encodings (assembled by `as`), whole programs gcc compiles at several levels and
for SSE, AVX2 and AVX-512, the system's libc and python3, and random bytes.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import pytest

import needs
from x86_truth import compare

from netprof.loader.x86 import MAX_LENGTH, instruction_length, instruction_starts

needs.tool("gcc")
for _tool in ("as", "objdump"):
    needs.tool(_tool, "binutils")

DATA = Path(__file__).resolve().parent / "data"
_LINE = re.compile(r"^ *([0-9a-f]+):\t([0-9a-f ]+)\t(.*)$", re.MULTILINE)


def _objdump_lines(*args: str) -> list[tuple[int, bytes, str]]:
    """[(address, bytes, text)] of each instruction objdump -d prints (one line each)."""
    out = subprocess.run(["objdump", "-w", "--insn-width=15", *args], check=True, capture_output=True,
                         text=True).stdout
    return [(int(m.group(1), 16), bytes.fromhex(m.group(2)), m.group(3)) for m in _LINE.finditer(out)]


def test_hard_encodings_match_objdump(tmp_path):
    obj = tmp_path / "encodings.o"
    subprocess.run(["as", "--64", str(DATA / "x86_encodings.s"), "-o", str(obj)], check=True, capture_output=True)
    lines = _objdump_lines("-d", str(obj))
    assert len(lines) > 280
    code = b"".join(raw for _a, raw, _t in lines)  # the whole .text: objdump prints every byte
    wrong = [(raw.hex(), text, instruction_length(code, at)) for at, raw, text in lines
             if instruction_length(code, at) != len(raw)]
    assert wrong == []
    assert instruction_starts(code) == ([at for at, _r, _t in lines], len(code))


@pytest.mark.parametrize("code, length", [
    ("48b88877665544332211", 10),  # movabs $imm64, %rax
    ("66b83412", 4),               # mov $imm16, %ax
    ("a18877665544332211", 9),     # mov moffs64, %eax
    ("67a144332211", 6),           # mov moffs32, %eax
    ("f60001", 3), ("f610", 2),    # test $1, (%rax); not (%rax)
    ("66f7c03412", 5), ("f7d8", 2),
    ("c8100001", 4),               # enter $16, $1
    ("66e900000000", 6),           # 66 on a near jmp: ignored in 64-bit mode (Intel, the kernel)
    ("0f20c0", 3), ("0f2000", 3),  # mov %cr0: ModRM.mod is ignored, no memory operand
    ("c5f877", 3),                 # vzeroupper: VEX, no ModRM
    ("0f0fc19e", 4),               # pfadd: 3DNow!, opcode last
    ("660f78c00102", 6),           # extrq $1, $2: two immediates
    ("62f37d483ec101", 7),         # EVEX map 3 with imm8
    ("8fe87890c101", 6),           # XOP map 8: imm8
    ("8fea78101234120000", 9),     # XOP map 10 (bextr): imm32
    ("8f00", 2),                   # pop (%rax)
    ("9b", 1),                     # fwait: its own instruction, though objdump prints it with the next
])
def test_lengths(code, length):
    raw = bytes.fromhex(code)
    assert instruction_length(raw + b"\x90" * 16) == length
    assert instruction_length(raw[:-1]) is None  # cut short


@pytest.mark.parametrize("code", ["06", "0f04", "62f07c", "c4e0", "c4e4", "8fe0", "d6", "f0" * 15 + "90"])
def test_not_instructions(code):
    assert instruction_length(bytes.fromhex(code) + b"\x90" * 16) is None


@pytest.mark.parametrize("flags", [
    ["-O0"], ["-O2"], ["-O3"], ["-Os"], ["-O2", "-mavx2", "-no-pie"], ["-O3", "-march=x86-64-v4"],
], ids=lambda f: " ".join(f))
def test_compiled_programs_match_objdump(tmp_path, flags):
    exe = tmp_path / "prog"
    subprocess.run(["gcc", *flags, "-fcf-protection=full", str(DATA / "x86_prog.c"), "-o", str(exe), "-lm"],
                   check=True, capture_output=True)
    by_function, by_region = compare(exe)
    for cov in (by_function, by_region):
        assert cov.mismatches == [] and cov.skipped_bad == []
    assert by_function.functions >= 28 and by_function.instructions > 400


@pytest.mark.parametrize("path", ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3"])
def test_system_binaries_match_objdump(path):
    """Their .dynsym functions, and all their code between objdump's labels (AVX2 and AVX-512 in libc)."""
    if not os.path.isfile(path) or os.uname().machine != "x86_64":
        pytest.skip(f"no x86-64 {path} here")
    by_function, by_region = compare(os.path.realpath(path))
    for cov in (by_function, by_region):
        assert cov.mismatches == [], cov.mismatches[:5]
    assert by_function.functions > 500 and by_region.instructions > 100_000


_PREFIXES = {"rex", "data16", "addr32", "cs", "ds", "es", "ss", "fs", "gs", "lock", "repz", "repnz", "bnd",
             "notrack"}


def test_random_bytes_agree_with_objdump(tmp_path):
    """Wherever objdump decodes an instruction in random bytes, it has the same length here, but for
    three things objdump does differently from the CPU, all refused by netprof as the safe side: it
    prints REX-then-prefix as an instruction of its own (the CPU ignores the REX), joins fwait to the
    x87 instruction after it, and follows AMD where a 66 prefix shortens a near jump or call."""
    code = random.Random(12).randbytes(200_000)
    (tmp_path / "random").write_bytes(code)
    checked = 0
    for at, raw, text in _objdump_lines("-D", "-b", "binary", "-m", "i386:x86-64", str(tmp_path / "random")):
        words = text.split()
        if "(bad)" in text or at + len(raw) == len(code) or all(w.split(".")[0] in _PREFIXES for w in words):
            continue
        if raw[0] == 0x9B and len(raw) > 1:  # fwait
            at, raw = at + 1, raw[1:]
        if words[0] in ("jmpw", "callw") or re.fullmatch(r"j[a-z]+w", words[0]) and raw[0] == 0x66:
            continue
        assert instruction_length(code, at) == len(raw), (raw.hex(), text)
        checked += 1
    assert checked > 50_000


def test_speed():
    """A 4 KB function in well under the time of one uprobe attach (measured: about 0.5 µs an instruction)."""
    code = bytes.fromhex("f30f1efa554889e54883ec10897dfc8b45fc0fafc0c5fd6f0762f37d483ec101c9c3") * 120
    starts, end = instruction_starts(code)
    t0 = time.perf_counter()
    for _ in range(10):
        instruction_starts(code)
    assert end == len(code) and len(starts) == 11 * 120
    assert (time.perf_counter() - t0) / 10 < 0.02


def test_max_length():
    assert instruction_length(b"\x66" * 14 + b"\x90") == MAX_LENGTH
    assert instruction_length(b"\x66" * 15 + b"\x90") is None
