"""Instructions to text in the syntax llvm-mc and the kernel verifier use (``r1 += 8``).

The printed form is what ``netprof.asm.syntax`` parses back: one text per valid instruction.
Extensions over llvm's syntax, for what llvm cannot spell: helper names in calls
(``call bpf_map_lookup_elem``), ``call pc+3`` for bpf-to-bpf calls (as the verifier prints),
``call kfunc(ID)``, and the pseudo ``ld_imm64`` sources ``map_fd(FD)``, ``map_value(FD, OFF)``,
``btf_id(ID)``, ``func(+N)``, ``map_idx(I)``, ``map_idx_value(I, OFF)``.
"""

from __future__ import annotations

from .helpers import Helper
from .instruction import Instruction
from .isa import (
    ATOMIC_FETCH,
    mem_type,
)
from .plain import ALU_OP, ATOMIC_OP, CLASS, JMP_OP, MODE, PSEUDO_CALL, PSEUDO_SRC, SIZE, SOURCE

ALU_SYMBOLS = {
    ALU_OP.ADD: "+=", ALU_OP.SUB: "-=", ALU_OP.MUL: "*=", ALU_OP.DIV: "/=", ALU_OP.OR: "|=",
    ALU_OP.AND: "&=", ALU_OP.LSH: "<<=", ALU_OP.RSH: ">>=", ALU_OP.MOD: "%=", ALU_OP.XOR: "^=",
    ALU_OP.MOV: "=", ALU_OP.ARSH: "s>>=",
}
SIGNED_ALU_SYMBOLS = {ALU_OP.DIV: "s/=", ALU_OP.MOD: "s%="}
JUMP_SYMBOLS = {
    JMP_OP.JEQ: "==", JMP_OP.JGT: ">", JMP_OP.JGE: ">=", JMP_OP.JSET: "&", JMP_OP.JNE: "!=",
    JMP_OP.JSGT: "s>", JMP_OP.JSGE: "s>=", JMP_OP.JLT: "<", JMP_OP.JLE: "<=", JMP_OP.JSLT: "s<",
    JMP_OP.JSLE: "s<=",
}
ATOMIC_NAMES = {ATOMIC_OP.ADD: "add", ATOMIC_OP.OR: "or", ATOMIC_OP.AND: "and", ATOMIC_OP.XOR: "xor"}
ATOMIC_SYMBOLS = {ATOMIC_OP.ADD: "+=", ATOMIC_OP.OR: "|=", ATOMIC_OP.AND: "&=", ATOMIC_OP.XOR: "^="}
PSEUDO_NAMES = {
    PSEUDO_SRC.MAP_FD: "map_fd", PSEUDO_SRC.MAP_VALUE: "map_value", PSEUDO_SRC.BTF_ID: "btf_id",
    PSEUDO_SRC.FUNC: "func", PSEUDO_SRC.MAP_IDX: "map_idx", PSEUDO_SRC.MAP_IDX_VALUE: "map_idx_value",
}
_HELPER_NAMES = {h.value: str(h) for h in Helper if h.value}


def rel(offset: int) -> str:
    return f"+{offset}" if offset >= 0 else str(offset)


def mem(base: int, off: int) -> str:
    return f"(r{base} + {off})" if off >= 0 else f"(r{base} - {-off})"


def format_instruction(insn: Instruction) -> str:
    """The text of one instruction; labels and maps print by name."""
    return _FORMATTERS[insn.opcode & 0x07](insn)


def _target(insn: Instruction, offset: int) -> str:
    return insn.target if insn.target is not None else rel(offset)


def _fmt_ld(insn: Instruction) -> str:
    if insn.is_ld_imm64:
        return f"r{insn.dst} = {_imm64_operand(insn)} ll"
    width = mem_type(insn.opcode & 0x18)
    if insn.opcode & 0xE0 == MODE.ABS:
        return f"r0 = *({width} *)skb[{insn.imm}]"
    index = f"r{insn.src}" if not insn.imm else f"r{insn.src} {'+' if insn.imm > 0 else '-'} {abs(insn.imm)}"
    return f"r0 = *({width} *)skb[{index}]"


def _imm64_operand(insn: Instruction) -> str:
    src, imm = insn.src, insn.imm
    if src == PSEUDO_SRC.IMM:
        return str(imm) if -(1 << 31) <= imm < (1 << 31) else hex(imm & 0xFFFF_FFFF_FFFF_FFFF)
    lo, hi = imm & 0xFFFF_FFFF, (imm >> 32) & 0xFFFF_FFFF
    if lo & 0x8000_0000:
        lo -= 1 << 32
    if insn.map is not None:
        return insn.map if src == PSEUDO_SRC.MAP_FD else f"map_value({insn.map}, {hi})"
    if src == PSEUDO_SRC.FUNC:
        return f"func({_target(insn, lo)})"
    args = [str(lo)]
    if src in (PSEUDO_SRC.MAP_VALUE, PSEUDO_SRC.MAP_IDX_VALUE) or (src == PSEUDO_SRC.BTF_ID and hi):
        args.append(str(hi))
    return f"{PSEUDO_NAMES[src]}({', '.join(args)})"


def _fmt_ldx(insn: Instruction) -> str:
    width = mem_type(insn.opcode & 0x18, signed=insn.opcode & 0xE0 == MODE.MEMSX)
    return f"r{insn.dst} = *({width} *){mem(insn.src, insn.off)}"


def _fmt_st(insn: Instruction) -> str:
    return f"*({mem_type(insn.opcode & 0x18)} *){mem(insn.dst, insn.off)} = {insn.imm}"


def _fmt_stx(insn: Instruction) -> str:
    size = insn.opcode & 0x18
    width = mem_type(size)
    if insn.opcode & 0xE0 == MODE.MEM:
        return f"*({width} *){mem(insn.dst, insn.off)} = r{insn.src}"
    r = "r" if size == SIZE.DW else "w"
    imm, dst, src, at = insn.imm, insn.dst, insn.src, mem(insn.dst, insn.off)
    if imm == ATOMIC_OP.LOAD_ACQ:
        return f"{r}{dst} = load_acquire(({width} *){mem(src, insn.off)})"
    if imm == ATOMIC_OP.STORE_REL:
        return f"store_release(({width} *){at}, {r}{src})"
    suffix = "_64" if size == SIZE.DW else "32_32"
    plain = f"r{dst} + {insn.off}" if insn.off >= 0 else f"r{dst} - {-insn.off}"
    if imm == ATOMIC_OP.XCHG:
        return f"{r}{src} = xchg{suffix}({plain}, {r}{src})"
    if imm == ATOMIC_OP.CMPXCHG:
        return f"{r}0 = cmpxchg{suffix}({plain}, {r}0, {r}{src})"
    if imm & ATOMIC_FETCH:
        return f"{r}{src} = atomic_fetch_{ATOMIC_NAMES[imm & ~ATOMIC_FETCH]}(({width} *){at}, {r}{src})"
    return f"lock *({width} *){at} {ATOMIC_SYMBOLS[imm]} {r}{src}"


def _fmt_alu(insn: Instruction) -> str:
    r = "r" if insn.opcode & 0x07 == CLASS.ALU64 else "w"
    op, x, dst = insn.opcode & 0xF0, insn.opcode & SOURCE.X, f"{r}{insn.dst}"
    if op == ALU_OP.END:
        kind = "bswap" if r == "r" else ("be" if x else "le")
        return f"r{insn.dst} = {kind}{insn.imm} r{insn.dst}"
    if op == ALU_OP.NEG:
        return f"{dst} = -{dst}"
    operand = f"{r}{insn.src}" if x else str(insn.imm)
    if op == ALU_OP.MOV and x and insn.off:
        if r == "r" and insn.off == 1:
            return f"{dst} = addr_space_cast(r{insn.src}, {insn.imm >> 16 & 0xFFFF}, {insn.imm & 0xFFFF})"
        return f"{dst} = (s{insn.off}){operand}"
    symbol = SIGNED_ALU_SYMBOLS[op] if insn.off else ALU_SYMBOLS[op]
    return f"{dst} {symbol} {operand}"


def _fmt_jmp(insn: Instruction) -> str:
    op, x = insn.opcode & 0xF0, insn.opcode & SOURCE.X
    jmp32 = insn.opcode & 0x07 == CLASS.JMP32
    if op == JMP_OP.JA:
        return f"gotol {_target(insn, insn.imm)}" if jmp32 else f"goto {_target(insn, insn.off)}"
    if op == JMP_OP.EXIT:
        return "exit"
    if op == JMP_OP.JCOND:
        return f"may_goto {_target(insn, insn.off)}"
    if op == JMP_OP.CALL:
        if insn.src == PSEUDO_CALL.CALL:
            return f"call {insn.target}" if insn.target is not None else f"call pc{rel(insn.imm)}"
        if insn.src == PSEUDO_CALL.KFUNC_CALL:
            return f"call kfunc({insn.imm})" if not insn.off else f"call kfunc({insn.imm}, {insn.off})"
        return f"call {_HELPER_NAMES.get(insn.imm, insn.imm)}"
    r = "w" if jmp32 else "r"
    rhs = f"{r}{insn.src}" if x else str(insn.imm)
    return f"if {r}{insn.dst} {JUMP_SYMBOLS[op]} {rhs} goto {_target(insn, insn.off)}"


_FORMATTERS = {
    CLASS.LD: _fmt_ld,
    CLASS.LDX: _fmt_ldx,
    CLASS.ST: _fmt_st,
    CLASS.STX: _fmt_stx,
    CLASS.ALU: _fmt_alu,
    CLASS.ALU64: _fmt_alu,
    CLASS.JMP: _fmt_jmp,
    CLASS.JMP32: _fmt_jmp,
}
