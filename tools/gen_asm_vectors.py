#!/usr/bin/env python3
"""Generate tests/data/asm_vectors.txt: every instruction form, encoded by the reference encoder.

Needs Debian's llvm-19 (``llvm-mc-19 -triple bpfel -mcpu=v4 -show-encoding``); the tests only
read the output. Each line is ``SOURCE<TAB>HEX<TAB>TEXT`` where TEXT is netprof's canonical text
and SOURCE says who encoded it: ``llvm`` (llvm-mc, from TEXT or from the llvm spelling given
here), or ``uapi`` for the forms llvm-19 cannot spell (kfunc and bpf-to-bpf calls with numeric
operands, pseudo ld_imm64 sources with a second immediate, load-acquire/store-release from
cpu v4's 6.15 extension, indexed skb loads with an offset), encoded by hand below from the
field layout in include/uapi/linux/bpf.h.

Usage: tools/gen_asm_vectors.py [--llvm-mc llvm-mc-19]
"""

import argparse
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests/data/asm_vectors.txt"

IMMS = [0, 1, -1, 7, 2147483647, -2147483648]
OFFS = [0, 8, -8, 32767, -32768]
ALU = ["+=", "-=", "*=", "/=", "s/=", "%=", "s%=", "|=", "&=", "<<=", ">>=", "s>>=", "^=", "="]
JUMPS = ["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"]
HELPERS = {1: "bpf_map_lookup_elem", 5: "bpf_ktime_get_ns", 8: "bpf_get_smp_processor_id",
           14: "bpf_get_current_pid_tgid", 130: "bpf_ringbuf_output", 131: "bpf_ringbuf_reserve",
           211: "bpf_cgrp_storage_delete"}


def mem(reg, off):
    return f"(r{reg} + {off})" if off >= 0 else f"(r{reg} - {-off})"


def rel(off):
    return f"+{off}" if off >= 0 else str(off)


def llvm_cases():
    """(canonical text, llvm spelling) pairs."""
    cases = []
    add = lambda text, spelling=None: cases.append((text, spelling or text))  # noqa: E731
    for r in ("r", "w"):
        for op in ALU:
            add(f"{r}1 {op} {r}2")
            add(f"{r}9 {op} {r}0")
            for imm in IMMS:
                add(f"{r}3 {op} {imm}")
        add(f"{r}4 = -{r}4")
        add(f"{r}1 = {r}10")
        for bits in (8, 16) + ((32,) if r == "r" else ()):
            add(f"{r}1 = (s{bits}){r}2")
    add("w0 = -1", "w0 = 0xffffffff")
    for a, b in ((0, 1), (1, 0), (65535, 7)):
        add(f"r1 = addr_space_cast(r2, {a}, {b})")
    for kind in ("le", "be", "bswap"):
        for bits in (16, 32, 64):
            add(f"r5 = {kind}{bits} r5")
    for t in ("u8", "u16", "u32", "u64", "s8", "s16", "s32"):
        for off in OFFS:
            add(f"r1 = *({t} *){mem(10, off)}")
        add(f"r0 = *({t} *)(r9 + 1)")
    for t in ("u8", "u16", "u32", "u64"):
        for off in OFFS:
            add(f"*({t} *){mem(10, off)} = r1")
            add(f"*({t} *){mem(1, off)} = -5")
        add(f"*({t} *)(r2 + 0) = 2147483647")
        add(f"*({t} *)(r2 + 0) = -2147483648")
    for t in ("u8", "u16", "u32"):
        add(f"r0 = *({t} *)skb[5]")
        add(f"r0 = *({t} *)skb[-1]")
        add(f"r0 = *({t} *)skb[r3]")
    for size, r, xchg, cmpxchg in (("u32", "w", "xchg32_32", "cmpxchg32_32"), ("u64", "r", "xchg_64", "cmpxchg_64")):
        for sym in ("+=", "|=", "&=", "^="):
            add(f"lock *({size} *)(r1 + 8) {sym} {r}2")
            add(f"lock *({size} *)(r10 - 16) {sym} {r}9")
        for name in ("add", "or", "and", "xor"):
            add(f"{r}2 = atomic_fetch_{name}(({size} *)(r1 + 8), {r}2)")
            add(f"{r}3 = atomic_fetch_{name}(({size} *)(r1 - 8), {r}3)")
        add(f"{r}2 = {xchg}(r1 + 0, {r}2)")
        add(f"{r}7 = {xchg}(r10 - 8, {r}7)")
        add(f"{r}0 = {cmpxchg}(r1 + 0, {r}0, {r}2)")
        add(f"{r}0 = {cmpxchg}(r10 - 24, {r}0, {r}9)")
    for value in (0, 1, -1, 4660, 2147483647, -2147483648):
        add(f"r1 = {value} ll")
    for value in (1 << 32, (1 << 63) - 1, 0xDEADBEEFCAFEBABE, 0x8000000000000000, 0xFFFFFFFF):
        text = f"r2 = {hex(value)} ll" if value >= (1 << 31) else f"r2 = {value} ll"
        add(text, f"r2 = {hex(value)} ll")
    add("r1 = map_fd(5) ll", "ld_pseudo r1, 1, 5")
    add("r9 = btf_id(1234) ll", "ld_pseudo r9, 3, 1234")
    add("r3 = func(+3) ll", "ld_pseudo r3, 4, 3")
    add("r3 = func(-3) ll", "ld_pseudo r3, 4, -3")
    add("r4 = map_idx(0) ll", "ld_pseudo r4, 5, 0")
    for r in ("r", "w"):  # JMP, JMP32
        for op in JUMPS:
            for off in (0, 1, -1, 32767, -32768):
                add(f"if {r}1 {op} {r}2 goto {rel(off)}")
            for imm in IMMS:
                add(f"if {r}3 {op} {imm} goto +5")
    for off in (0, 1, -1, 32767, -32768):
        add(f"goto {rel(off)}")
        add(f"may_goto {rel(off)}")
    for off in (7, -7, 0):
        add(f"gotol {rel(off)}")
    for helper_id, name in HELPERS.items():
        add(f"call {name}", f"call {helper_id}")
    add("call 250")
    for helper_id in (0, -1, 2147483647, -2147483648):  # any 32-bit id encodes; "call -1" is objdump's unresolved call
        add(f"call {helper_id}")
    add("exit")
    return cases


def slot(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def uapi_cases():
    """(canonical text, bytes) for forms llvm-19 cannot spell, from the uapi field layout."""
    BPF_STX, BPF_ATOMIC, BPF_JMP, BPF_CALL, BPF_LD, BPF_IND, BPF_IMM, BPF_DW = 3, 0xC0, 5, 0x80, 0, 0x40, 0, 0x18
    sizes = {"u8": 0x10, "u16": 0x08, "u32": 0x00, "u64": 0x18}
    cases = []
    for t, size in sizes.items():
        r = "r" if t == "u64" else "w"
        cases.append((f"{r}0 = load_acquire(({t} *)(r1 + 8))", slot(BPF_STX | BPF_ATOMIC | size, 0, 1, 8, 0x100)))
        cases.append((f"store_release(({t} *)(r1 - 8), {r}2)", slot(BPF_STX | BPF_ATOMIC | size, 1, 2, -8, 0x110)))
    cases.append(("call pc+3", slot(BPF_JMP | BPF_CALL, 0, 1, 0, 3)))
    cases.append(("call pc-10", slot(BPF_JMP | BPF_CALL, 0, 1, 0, -10)))
    cases.append(("call kfunc(12345)", slot(BPF_JMP | BPF_CALL, 0, 2, 0, 12345)))
    cases.append(("call kfunc(12345, 2)", slot(BPF_JMP | BPF_CALL, 0, 2, 2, 12345)))
    ld = BPF_LD | BPF_IMM | BPF_DW
    cases.append(("r1 = map_value(5, 8) ll", slot(ld, 1, 2, 0, 5) + slot(0, imm=8)))
    cases.append(("r1 = map_idx_value(1, 16) ll", slot(ld, 1, 6, 0, 1) + slot(0, imm=16)))
    cases.append(("r1 = btf_id(77, 9) ll", slot(ld, 1, 3, 0, 77) + slot(0, imm=9)))
    cases.append(("r0 = *(u16 *)skb[r3 + 14]", slot(BPF_LD | BPF_IND | 0x08, 0, 3, 0, 14)))
    cases.append(("r0 = *(u8 *)skb[r3 - 2]", slot(BPF_LD | BPF_IND | 0x10, 0, 3, 0, -2)))
    cases.append(("gotol +70000", slot(6, imm=70000)))
    cases.append(("gotol -2147483648", slot(6, imm=-(1 << 31))))
    return cases


def encode_with_llvm(llvm_mc, spellings):
    with tempfile.NamedTemporaryFile("w", suffix=".s") as source:
        source.write("\n".join(spellings) + "\n")
        source.flush()
        result = subprocess.run([llvm_mc, "-triple", "bpfel", "-mcpu=v4", "-show-encoding", source.name],
                                capture_output=True, text=True, check=False)
    if result.returncode or result.stderr.strip():
        sys.exit(f"{llvm_mc} rejected the input:\n{result.stderr}")
    encodings = []
    for line in result.stdout.splitlines():
        m = re.search(r"# encoding: \[([^\]]*)\]", line)
        if m:
            encodings.append((line.split("#")[0].strip(), bytes(int(b, 16) for b in m.group(1).split(","))))
    if len(encodings) != len(spellings):
        sys.exit(f"expected {len(spellings)} encodings, got {len(encodings)}")
    return encodings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llvm-mc", default="llvm-mc-19")
    args = parser.parse_args()
    cases = llvm_cases()
    encodings = encode_with_llvm(args.llvm_mc, [spelling for _, spelling in cases])
    lines = [f"# generated by tools/gen_asm_vectors.py with {args.llvm_mc} -triple bpfel -mcpu=v4; do not edit"]
    seen = set()
    for (text, _), (_, code) in zip(cases, encodings, strict=True):
        if text not in seen:
            seen.add(text)
            lines.append(f"llvm\t{code.hex()}\t{text}")
    for text, code in uapi_cases():
        lines.append(f"uapi\t{code.hex()}\t{text}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 1} vectors to {OUT}")


if __name__ == "__main__":
    main()
