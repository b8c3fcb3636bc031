"""Assembler text, both ways: ``parse``/``assemble`` read it, ``disassemble`` writes it.

The syntax is llvm-mc's (``r1 = *(u32 *)(r10 - 8)``, ``if w1 s< w2 goto +2``) plus what the
kernel verifier log prints (``(r10 -8)``, ``goto pc+2``, ``call bpf_map_lookup_elem#1``,
``atomic64_fetch_add(...)``; a ``12: (b7)`` prefix is skipped) and llvm-objdump's hex
operands. Labels are ``name:``; ``goto name``, ``call name`` (a label: bpf-to-bpf call;
otherwise a helper), ``r1 = name ll`` (a map, or a label: function address) refer to them.
Comments start with ``#``, ``;`` or ``//`` after a blank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import AsmError, Location
from .helpers import Helper
from .instruction import CALLX_REFUSED, Instruction, decode
from .isa import (
    CALL,
    EXIT,
    LD_IMM64,
    MemType,
    Size,
)
from .plain import ALU_OP, ATOMIC_OP, CLASS, JMP_OP, MODE, PSEUDO_CALL, PSEUDO_SRC, SOURCE
from .printer import format_instruction
from .program import Label, Program

_N = r"[+-]?\s*(?:0x[0-9a-fA-F]+|\d+)"
_REG = r"([rw])(\d+)"
_PTYPE = r"\(\s*([us](?:8|16|32|64))\s*\*\s*\)"
_MEM = r"\(\s*r(\d+)\s*(?:([+-])\s*(0x[0-9a-fA-F]+|\d+))?\s*\)"
_BARE_MEM = r"r(\d+)\s*(?:([+-])\s*(0x[0-9a-fA-F]+|\d+))?"
_TARGET = r"(pc\s*[+-]\s*\d+|" + _N + r"|[A-Za-z_.$][\w.$]*)(?:\s*<[^>]*>)?"
_IDENT = re.compile(r"[A-Za-z_.$][\w.$]*")

_COMMENT = re.compile(r"(?:^|\s)(?:#|//|;)")
_LOG_PREFIX = re.compile(r"\s*\d+:\s*(?:\(([0-9a-f]{2})\)\s*)?")
_DUMP_PREFIX = re.compile(r"\s*\d+:\s+((?:[0-9a-f]{2} ){7}[0-9a-f]{2}(?: (?:[0-9a-f]{2} ){7}[0-9a-f]{2})?)\s+")
_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*)\s*:(?!=)")
_BAD_REG = re.compile(r"(?<![\w.$])[rw](?:1[1-9]|[2-9]\d|\d{3,})\b")  # r11 and up

_IF = re.compile(r"if\s+" + _REG + r"\s*(==|!=|s>=|s<=|s>|s<|>=|<=|>|<|&)\s*(?:" + _REG + r"|(" + _N
                 + r"))\s+goto\s+" + _TARGET)
_GOTO = re.compile(r"(goto|gotol|may_goto|ja)\s+" + _TARGET)
_CALL = re.compile(r"call\s+(?:(pc\s*[+-]\s*\d+)|(" + _N + r")|kfunc\(\s*(" + _N + r")\s*(?:,\s*(" + _N
                   + r")\s*)?\)|([A-Za-z_.$][\w.$-]*)(?:#(\d+))?)")
_LOCK = re.compile(r"lock\s+\*\s*" + _PTYPE + r"\s*" + _MEM + r"\s*(\+|\||&|\^)=\s*" + _REG)
_STORE = re.compile(r"\*\s*" + _PTYPE + r"\s*" + _MEM + r"\s*=\s*(?:" + _REG + r"|(" + _N + r"))")
_STORE_REL = re.compile(r"store_release\(\s*" + _PTYPE + r"\s*" + _MEM + r"\s*,\s*" + _REG + r"\s*\)")
_LD_PSEUDO = re.compile(r"ld_pseudo\s+r(\d+)\s*,\s*(" + _N + r")\s*,\s*(" + _N + r")")
_ASSIGN = re.compile(_REG + r"\s*(s>>=|s/=|s%=|<<=|>>=|\+=|-=|\*=|/=|%=|\|=|&=|\^=|=)\s*(.*)")

_R_LOAD = re.compile(r"\*\s*" + _PTYPE + r"\s*" + _MEM)
_R_SKB = re.compile(r"\*\s*" + _PTYPE + r"\s*skb\[\s*(?:r(\d+)\s*(?:([+-])\s*(0x[0-9a-fA-F]+|\d+))?|("
                    + _N + r"))\s*\]")
_R_MOVSX = re.compile(r"\(\s*s(8|16|32)\s*\)\s*" + _REG)
_R_END = re.compile(r"(le|be|bswap)(16|32|64)\s+" + _REG)
_R_NEG = re.compile(r"-\s*" + _REG)
_R_IMM64 = re.compile(r"(.+?)\s+ll")
_R_FETCH = re.compile(r"atomic(?:64)?_fetch_(add|or|and|xor)\(\s*" + _PTYPE + r"\s*" + _MEM + r"\s*,\s*"
                      + _REG + r"\s*\)")
_R_XCHG = re.compile(r"(?:xchg_64|xchg32_32|atomic64_xchg|atomic_xchg)\(\s*(?:" + _PTYPE + r"\s*)?(?:"
                     + _MEM + "|" + _BARE_MEM + r")\s*,\s*" + _REG + r"\s*\)")
_R_CMPXCHG = re.compile(r"(?:cmpxchg_64|cmpxchg32_32|atomic64_cmpxchg|atomic_cmpxchg)\(\s*(?:" + _PTYPE
                        + r"\s*)?(?:" + _MEM + "|" + _BARE_MEM + r")\s*,\s*" + _REG + r"\s*,\s*" + _REG
                        + r"\s*\)")
_R_LOAD_ACQ = re.compile(r"load_acquire\(\s*" + _PTYPE + r"\s*" + _MEM + r"\s*\)")
_R_ASCAST = re.compile(r"addr_space_cast\(\s*r(\d+)\s*,\s*(" + _N + r")\s*,\s*(" + _N + r")\s*\)")
_R_REG = re.compile(_REG)
_R_NUM = re.compile(_N)
_R_PSEUDO = re.compile(r"(map_fd|map_value|btf_id|func|map_idx|map_idx_value)\(\s*([^,()]+?)\s*(?:,\s*("
                       + _N + r")\s*)?\)")
_R_MAP_ID = re.compile(r"map\[id:\d+\]")

_ALU_OPS = {
    "+=": ALU_OP.ADD, "-=": ALU_OP.SUB, "*=": ALU_OP.MUL, "/=": ALU_OP.DIV, "|=": ALU_OP.OR,
    "&=": ALU_OP.AND, "<<=": ALU_OP.LSH, ">>=": ALU_OP.RSH, "%=": ALU_OP.MOD, "^=": ALU_OP.XOR,
    "=": ALU_OP.MOV, "s>>=": ALU_OP.ARSH, "s/=": ALU_OP.DIV, "s%=": ALU_OP.MOD,
}
_JMP_OPS = {
    "==": JMP_OP.JEQ, "!=": JMP_OP.JNE, ">": JMP_OP.JGT, ">=": JMP_OP.JGE, "<": JMP_OP.JLT,
    "<=": JMP_OP.JLE, "s>": JMP_OP.JSGT, "s>=": JMP_OP.JSGE, "s<": JMP_OP.JSLT, "s<=": JMP_OP.JSLE,
    "&": JMP_OP.JSET,
}
_LOCK_OPS = {"+": ATOMIC_OP.ADD, "|": ATOMIC_OP.OR, "&": ATOMIC_OP.AND, "^": ATOMIC_OP.XOR}
_FETCH_OPS = {"add": ATOMIC_OP.FETCH_ADD, "or": ATOMIC_OP.FETCH_OR, "and": ATOMIC_OP.FETCH_AND,
              "xor": ATOMIC_OP.FETCH_XOR}
_PSEUDO = {
    "map_fd": PSEUDO_SRC.MAP_FD, "map_value": PSEUDO_SRC.MAP_VALUE, "btf_id": PSEUDO_SRC.BTF_ID,
    "func": PSEUDO_SRC.FUNC, "map_idx": PSEUDO_SRC.MAP_IDX, "map_idx_value": PSEUDO_SRC.MAP_IDX_VALUE,
}
_TYPES = {t.name.lower(): t for t in MemType}
_MNEMONICS = ("if", "goto", "gotol", "may_goto", "ja", "call", "exit", "lock", "store_release",
              "ld_pseudo")

IMM32 = (-(1 << 31), (1 << 32) - 1)
OFF16 = (-(1 << 15), (1 << 15) - 1)
IMM64 = (-(1 << 63), (1 << 64) - 1)


@dataclass
class _Deferred:
    """``call NAME`` or ``rN = NAME ll``: a label or a helper/map, known once all labels are."""

    kind: str
    name: str
    dst: int
    location: Location


class _Line:
    """One statement being parsed: its text, where it starts, and number conversion."""

    def __init__(self, text: str, number: int, start: int, raw: str):
        self.text, self.number, self.start, self.raw = text, number, start, raw

    def loc(self, pos: int = 0) -> Location:
        return Location(self.number, self.start + pos + 1, self.raw)

    def error(self, message: str, pos: int = 0) -> AsmError:
        return AsmError(message, self.loc(pos))

    def num(self, m: re.Match[str], group: int, bounds: tuple[int, int], what: str, base: int = 0) -> int:
        text = m.group(group)
        if text is None:
            return 0
        value = int(text.replace(" ", "").replace("\t", ""), 0)
        if not bounds[0] <= value <= bounds[1]:
            raise self.error(f"{what} {value} is out of range [{bounds[0]}, {bounds[1]}]", base + m.start(group))
        return value

    def reg(self, m: re.Match[str], group: int) -> tuple[int, bool]:
        """(index, is32) of a register captured as two groups (letter, number)."""
        return int(m.group(group + 1)), m.group(group) == "w"

    def mem_off(self, m: re.Match[str], sign_group: int, base: int = 0) -> int:
        if m.group(sign_group) is None:
            return 0
        value = int(m.group(sign_group + 1), 0)
        value = -value if m.group(sign_group) == "-" else value
        if not OFF16[0] <= value <= OFF16[1]:
            raise self.error(f"offset {value} is out of range [-32768, 32767]", base + m.start(sign_group))
        return value


def _wrap32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def _relative(line: _Line, m: re.Match[str], group: int, bounds: tuple[int, int]) -> tuple[str | None, int]:
    """A jump target: a label name, or a relative offset (``+3``, ``-1``, ``pc+3``)."""
    text = m.group(group)
    if _IDENT.fullmatch(text) and not text.startswith("pc"):
        return text, 0
    if text.startswith("pc"):
        text = text[2:]
    value = int(text.replace(" ", ""), 0)
    if not bounds[0] <= value <= bounds[1]:
        raise line.error(f"jump offset {value} is out of range [{bounds[0]}, {bounds[1]}]", m.start(group))
    return None, value


def _same_width(line: _Line, a: bool, b: bool, pos: int) -> None:
    if a != b:
        raise line.error("operands mix r and w registers: use both r or both w", pos)


def _make(line: _Line, opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
          target: str | None = None, map: str | None = None) -> Instruction:
    return Instruction(opcode, dst, src, off, imm, target, map, line.loc())


def _parse_if(line: _Line, m: re.Match[str]) -> Instruction:
    dst, d32 = line.reg(m, 1)
    op = _JMP_OPS[m.group(3)]
    target, off = _relative(line, m, 7, OFF16)
    cls = CLASS.JMP32 if d32 else CLASS.JMP
    if m.group(4):
        src, s32 = line.reg(m, 4)
        _same_width(line, d32, s32, m.start(4))
        return _make(line, cls | op | SOURCE.X, dst, src, off, target=target)
    imm = _wrap32(line.num(m, 6, IMM32, "immediate"))
    return _make(line, cls | op | SOURCE.K, dst, off=off, imm=imm, target=target)


def _parse_goto(line: _Line, m: re.Match[str]) -> Instruction:
    kind = m.group(1)
    if kind == "gotol":
        target, imm = _relative(line, m, 2, (-(1 << 31), (1 << 31) - 1))
        return _make(line, CLASS.JMP32 | JMP_OP.JA, imm=imm, target=target)
    target, off = _relative(line, m, 2, OFF16)
    op = JMP_OP.JCOND if kind == "may_goto" else JMP_OP.JA
    return _make(line, CLASS.JMP | op, off=off, target=target)


def _parse_call(line: _Line, m: re.Match[str]) -> Instruction | _Deferred:
    if m.group(1):
        return _make(line, CALL, src=PSEUDO_CALL.CALL, imm=int(m.group(1)[2:].replace(" ", ""), 0))
    if m.group(2):  # as llvm-mc: a 32-bit id, signed or not ("call -1" == "call 0xffffffff")
        return _make(line, CALL, imm=_wrap32(line.num(m, 2, IMM32, "helper id")))
    if m.group(3):
        btf_id = _wrap32(line.num(m, 3, IMM32, "kfunc BTF id"))
        return _make(line, CALL, src=PSEUDO_CALL.KFUNC_CALL, off=line.num(m, 4, OFF16, "kfunc module"),
                     imm=btf_id)
    name, number = m.group(5), m.group(6)
    if _R_REG.fullmatch(name):
        raise line.error(CALLX_REFUSED, m.start(5))
    if number is not None:  # the verifier log's "call bpf_map_lookup_elem#1" / "call bpf_kfunc#12345"
        helper = Helper.__members__.get(name.removeprefix("bpf_"))
        if helper is not None and helper.value == int(number):
            return _make(line, CALL, imm=helper.value)
        if helper is not None:
            raise line.error(f"helper {name} has id {helper.value}, not {number}", m.start(6))
        return _make(line, CALL, src=PSEUDO_CALL.KFUNC_CALL, imm=_wrap32(int(number)))
    return _Deferred("call", name, 0, line.loc(m.start(5)))


def _parse_lock(line: _Line, m: re.Match[str]) -> Instruction:
    width = _TYPES[m.group(1)]
    if width not in (MemType.U32, MemType.U64):
        raise line.error(f"atomic operations are on u32 or u64, not {width}", m.start(1))
    src, _ = line.reg(m, 6)
    return _make(line, CLASS.STX | MODE.ATOMIC | width.size, int(m.group(2)), src, line.mem_off(m, 3),
                 _LOCK_OPS[m.group(5)])


def _parse_store(line: _Line, m: re.Match[str]) -> Instruction:
    width = _TYPES[m.group(1)]
    if width.signed:
        raise line.error(f"stores take an unsigned type, not {width}", m.start(1))
    base, off = int(m.group(2)), line.mem_off(m, 3)
    if m.group(5):
        src, _ = line.reg(m, 5)
        return _make(line, CLASS.STX | MODE.MEM | width.size, base, src, off)
    imm = _wrap32(line.num(m, 7, IMM32, "immediate"))
    return _make(line, CLASS.ST | MODE.MEM | width.size, base, off=off, imm=imm)


def _parse_store_release(line: _Line, m: re.Match[str]) -> Instruction:
    width = _TYPES[m.group(1)]
    src, _ = line.reg(m, 5)
    return _make(line, CLASS.STX | MODE.ATOMIC | width.size, int(m.group(2)), src, line.mem_off(m, 3),
                 ATOMIC_OP.STORE_REL)


def _parse_ld_pseudo(line: _Line, m: re.Match[str]) -> Instruction:
    src = line.num(m, 2, (0, 15), "pseudo source")
    return _make(line, LD_IMM64, int(m.group(1)), src, imm=line.num(m, 3, IMM32, "immediate") & 0xFFFF_FFFF)


def _atomic_size(line: _Line, type_name: str | None, is32: bool, pos: int,
                 ops: tuple[MemType, ...] = (MemType.U32, MemType.U64)) -> Size:
    width = _TYPES[type_name] if type_name else (MemType.U32 if is32 else MemType.U64)
    if width not in ops:
        raise line.error(f"atomic operations are on u32 or u64, not {width}", pos)
    return width.size


def _parse_assign(line: _Line, m: re.Match[str], ld_imm64_hint: bool) -> Instruction | _Deferred:
    dst, d32 = line.reg(m, 1)
    op_text, rhs, base = m.group(3), m.group(4).strip(), m.start(4)
    alu = CLASS.ALU if d32 else CLASS.ALU64
    if op_text != "=":
        op = _ALU_OPS[op_text]
        off = 1 if op_text in ("s/=", "s%=") else 0
        r = _R_REG.fullmatch(rhs)
        if r:
            src, s32 = line.reg(r, 1)
            _same_width(line, d32, s32, base)
            return _make(line, alu | op | SOURCE.X, dst, src, off)
        n = _R_NUM.fullmatch(rhs)
        if n:
            return _make(line, alu | op | SOURCE.K, dst, off=off, imm=_wrap32(line.num(n, 0, IMM32, "immediate", base)))
        raise line.error(f"cannot read operand {rhs!r}: expected a register or an immediate", base)

    if (r := _R_REG.fullmatch(rhs)):
        src, s32 = line.reg(r, 1)
        _same_width(line, d32, s32, base)
        return _make(line, alu | ALU_OP.MOV | SOURCE.X, dst, src)
    if (n := _R_NUM.fullmatch(rhs)):
        if ld_imm64_hint:
            return _make(line, LD_IMM64, dst, imm=line.num(n, 0, IMM64, "immediate", base))
        return _make(line, alu | ALU_OP.MOV | SOURCE.K, dst, imm=_wrap32(line.num(n, 0, IMM32, "immediate", base)))
    if (r := _R_LOAD.fullmatch(rhs)):
        width = _TYPES[r.group(1)]
        mode = MODE.MEMSX if width.signed else MODE.MEM
        return _make(line, CLASS.LDX | mode | width.size, dst, int(r.group(2)), line.mem_off(r, 3, base))
    if (r := _R_IMM64.fullmatch(rhs)) or (ld_imm64_hint and _IDENT.fullmatch(rhs)):
        return _parse_imm64(line, dst, r.group(1) if r else rhs, base)
    if (r := _R_MOVSX.fullmatch(rhs)):
        src, s32 = line.reg(r, 2)
        _same_width(line, d32, s32, base + r.start(2))
        return _make(line, alu | ALU_OP.MOV | SOURCE.X, dst, src, int(r.group(1)))
    if (r := _R_END.fullmatch(rhs)):
        src, _ = line.reg(r, 3)
        if src != dst:
            raise line.error(f"byte swap works in place: write r{dst} = {r.group(1)}{r.group(2)} r{dst}", base)
        kind = r.group(1)
        opcode = CLASS.ALU64 | ALU_OP.END if kind == "bswap" else CLASS.ALU | ALU_OP.END | (
            SOURCE.TO_BE if kind == "be" else SOURCE.TO_LE)
        return _make(line, opcode, dst, imm=int(r.group(2)))
    if (r := _R_NEG.fullmatch(rhs)):
        src, s32 = line.reg(r, 1)
        if src != dst or s32 != d32:
            raise line.error(f"negation works in place: write {m.group(1)}{dst} = -{m.group(1)}{dst}", base)
        return _make(line, alu | ALU_OP.NEG, dst)
    if (r := _R_SKB.fullmatch(rhs)):
        width = _TYPES[r.group(1)]
        if dst != 0 or width.signed or width == MemType.U64:
            raise line.error("legacy packet loads write r0 from a u8, u16 or u32: r0 = *(u32 *)skb[...]", 0)
        if r.group(2) is not None:
            imm = int(r.group(4), 0) * (-1 if r.group(3) == "-" else 1) if r.group(3) else 0
            if not IMM32[0] <= imm < (1 << 31):
                raise line.error(f"offset {imm} is out of range [-2147483648, 2147483647]", base + r.start(3))
            return _make(line, CLASS.LD | MODE.IND | width.size, src=int(r.group(2)), imm=imm)
        return _make(line, CLASS.LD | MODE.ABS | width.size, imm=_wrap32(line.num(r, 5, IMM32, "offset", base)))
    if (r := _R_FETCH.fullmatch(rhs)):
        src, s32 = line.reg(r, 6)
        if src != dst:
            raise line.error("atomic fetch returns the old value in its source register: "
                             f"write {m.group(1)}{src} = atomic_fetch_...(..., {m.group(1)}{src})", base)
        size = _atomic_size(line, r.group(2), s32, base + r.start(2))
        return _make(line, CLASS.STX | MODE.ATOMIC | size, int(r.group(3)), src,
                     line.mem_off(r, 4, base), _FETCH_OPS[r.group(1)])
    if (r := _R_XCHG.fullmatch(rhs)):
        src, s32 = line.reg(r, 8)
        if src != dst:
            raise line.error("xchg returns the old value in its source register", base)
        size = _atomic_size(line, r.group(1), s32 or "32_32" in rhs, base)
        ptr, sign = (2, 3) if r.group(2) else (5, 6)
        return _make(line, CLASS.STX | MODE.ATOMIC | size, int(r.group(ptr)), src,
                     line.mem_off(r, sign, base), ATOMIC_OP.XCHG)
    if (r := _R_CMPXCHG.fullmatch(rhs)):
        old, _ = line.reg(r, 8)
        src, s32 = line.reg(r, 10)
        if dst != 0 or old != 0:
            raise line.error("cmpxchg compares with and returns into r0: r0 = cmpxchg_64(rX + off, r0, rY)", base)
        size = _atomic_size(line, r.group(1), s32 or "32_32" in rhs, base)
        ptr, sign = (2, 3) if r.group(2) else (5, 6)
        return _make(line, CLASS.STX | MODE.ATOMIC | size, int(r.group(ptr)), src,
                     line.mem_off(r, sign, base), ATOMIC_OP.CMPXCHG)
    if (r := _R_LOAD_ACQ.fullmatch(rhs)):
        width = _TYPES[r.group(1)]
        if width.signed:
            raise line.error(f"load_acquire takes an unsigned type, not {width}", base + r.start(1))
        return _make(line, CLASS.STX | MODE.ATOMIC | width.size, dst, int(r.group(2)), line.mem_off(r, 3, base),
                     ATOMIC_OP.LOAD_ACQ)
    if (r := _R_ASCAST.fullmatch(rhs)):
        dst_as = line.num(r, 2, (0, 0xFFFF), "address space", base)
        src_as = line.num(r, 3, (0, 0xFFFF), "address space", base)
        return _make(line, CLASS.ALU64 | ALU_OP.MOV | SOURCE.X, dst, int(r.group(1)), 1,
                     _wrap32((dst_as << 16) | src_as))
    if _R_MAP_ID.fullmatch(rhs):
        raise line.error("a map id from a verifier log cannot be assembled: name the map (r1 = my_map ll)", base)
    raise line.error(f"cannot read {rhs!r}", base)


def _parse_imm64(line: _Line, dst: int, operand: str, base: int) -> Instruction | _Deferred:
    if (n := _R_NUM.fullmatch(operand)):
        return _make(line, LD_IMM64, dst, imm=line.num(n, 0, IMM64, "immediate", base))
    if (p := _R_PSEUDO.fullmatch(operand)):
        src = _PSEUDO[p.group(1)]
        first, second = p.group(2), p.group(3)
        hi = line.num(p, 3, IMM32, "second immediate", base) & 0xFFFF_FFFF
        if src == PSEUDO_SRC.FUNC:
            if second is not None:
                raise line.error("func() takes one label or offset", base)
            if _IDENT.fullmatch(first):
                return _make(line, LD_IMM64, dst, src, target=first)
            return _make(line, LD_IMM64, dst, src, imm=_wrap32(_plain(line, first, IMM32, base)) & 0xFFFF_FFFF)
        if src in (PSEUDO_SRC.MAP_FD, PSEUDO_SRC.MAP_VALUE) and _IDENT.fullmatch(first):
            return _make(line, LD_IMM64, dst, src, imm=hi << 32, map=first)
        if src in (PSEUDO_SRC.MAP_FD, PSEUDO_SRC.MAP_IDX) and second is not None:
            raise line.error(f"{p.group(1)}() takes one argument", base)
        lo = _plain(line, first, IMM32, base) & 0xFFFF_FFFF
        return _make(line, LD_IMM64, dst, src, imm=(hi << 32) | lo)
    if _IDENT.fullmatch(operand):
        return _Deferred("ld_imm64", operand, dst, line.loc(base))
    raise line.error(f"cannot read 64-bit immediate {operand!r}", base)


def _plain(line: _Line, text: str, bounds: tuple[int, int], base: int) -> int:
    if not _R_NUM.fullmatch(text):
        raise line.error(f"expected a number, not {text!r}", base)
    value = int(text.replace(" ", ""), 0)
    if not bounds[0] <= value <= bounds[1]:
        raise line.error(f"immediate {value} is out of range [{bounds[0]}, {bounds[1]}]", base)
    return value


def _parse_statement(line: _Line, hint: str | None) -> Instruction | _Deferred:
    text = line.text
    word = text.split(None, 1)[0].split("(", 1)[0]
    if word == "exit":
        if text != "exit":
            raise line.error("exit takes no operand", 4)
        return _make(line, EXIT)
    if word == "callx":
        raise line.error(CALLX_REFUSED, 0)
    if word in ("if", "goto", "gotol", "may_goto", "ja", "call", "lock", "store_release", "ld_pseudo"):
        regex, handler = _KEYWORD_FORMS[word]
        m = regex.fullmatch(text)
        if not m:
            raise line.error(f"cannot read this {word} instruction", 0)
        return handler(line, m)
    if text.startswith("*"):
        m = _STORE.fullmatch(text)
        if not m:
            raise line.error("cannot read this store: expected *(u32 *)(r1 + 8) = r2 or = 5", 0)
        return _parse_store(line, m)
    m = _ASSIGN.fullmatch(text)
    if m:
        return _parse_assign(line, m, hint == "18")
    mnemonic = re.match(r"([A-Za-z_]\w*)\s*(?:=|$|\s)", text)
    if mnemonic and not re.match(r"[rw]\d+\b", text):
        raise line.error(f"unknown mnemonic {mnemonic.group(1)!r}", 0)
    raise line.error("cannot read this instruction", 0)


_KEYWORD_FORMS = {
    "if": (_IF, _parse_if),
    "goto": (_GOTO, _parse_goto),
    "gotol": (_GOTO, _parse_goto),
    "may_goto": (_GOTO, _parse_goto),
    "ja": (_GOTO, _parse_goto),
    "call": (_CALL, _parse_call),
    "lock": (_LOCK, _parse_lock),
    "store_release": (_STORE_REL, _parse_store_release),
    "ld_pseudo": (_LD_PSEUDO, _parse_ld_pseudo),
}


# Statement text -> Instruction: programs repeat lines (r2 = r10, call ...), parsing is pure.
_parsed: dict[tuple[str, str | None], Instruction] = {}
_PARSED_MAX = 16384


def parse(text: str) -> Program:
    """Parse assembler text into a Program (labels and map symbols still symbolic)."""
    items: list[Instruction | Label | _Deferred] = []
    labels: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        body = raw
        if "#" in raw or ";" in raw or "/" in raw:
            cut = _COMMENT.search(raw)
            body = raw[:cut.start()] if cut else raw
        pos, hint = 0, None
        if ":" in body:  # a label, or a verifier-log / objdump prefix
            prefix = _DUMP_PREFIX.match(body) or _LOG_PREFIX.match(body)
            if prefix and body[:prefix.end()].strip():
                pos = prefix.end()
                hint = prefix.group(1)[:2] if prefix.group(1) else None
            while (lm := _LABEL.match(body, pos)) is not None:
                name, where = lm.group(1), Location(number, lm.start(1) + 1, raw)
                if name in labels:
                    raise AsmError(f"duplicate label {name!r}", where)
                labels.add(name)
                items.append(Label(name, where))
                pos = lm.end()
        statement = body[pos:]
        stripped = statement.strip()
        if not stripped or stripped == ".text":
            continue
        line = _Line(stripped, number, pos + len(statement) - len(statement.lstrip()), raw)
        bad = _BAD_REG.search(stripped)
        if bad:
            raise line.error(f"bad register {bad.group(0)!r}: registers are r0..r10 (w0..w10)", bad.start())
        known = _parsed.get((stripped, hint))
        if known is not None:
            items.append(known._located(line.loc()))
            continue
        try:
            parsed = _parse_statement(line, hint)
        except AsmError as err:
            raise err.at(line.loc()) from None
        if isinstance(parsed, Instruction):
            if len(_parsed) >= _PARSED_MAX:
                _parsed.clear()
            _parsed[stripped, hint] = parsed
        items.append(parsed)
    return Program(_resolve_names(items, labels))


def _resolve_names(items: list[Instruction | Label | _Deferred], labels: set[str]) -> list[Instruction | Label]:
    out: list[Instruction | Label] = []
    for item in items:
        if not isinstance(item, _Deferred):
            out.append(item)
            continue
        name, loc = item.name, item.location
        if item.kind == "call":
            if name in labels:
                out.append(Instruction(CALL, src=PSEUDO_CALL.CALL, target=name, location=loc))
                continue
            helper = Helper.__members__.get(name.removeprefix("bpf_"))
            if helper is None or helper == Helper.unspec:
                raise AsmError(f"undefined label or unknown helper {name!r}", loc)
            out.append(Instruction(CALL, imm=helper.value, location=loc))
        elif name in labels:
            out.append(Instruction(LD_IMM64, item.dst, PSEUDO_SRC.FUNC, target=name, location=loc))
        else:
            out.append(Instruction(LD_IMM64, item.dst, PSEUDO_SRC.MAP_FD, map=name, location=loc))
    return out


def assemble(text: str, maps: Mapping[str, int] | None = None) -> bytes:
    """Assemble text to bytecode; ``maps`` gives the file descriptor of each map symbol."""
    return parse(text).encode(maps)


def disassemble(code: bytes | bytearray | memoryview, labels: bool = False) -> str:
    """One instruction per line in the syntax ``assemble`` reads: ``assemble(disassemble(b)) == b``.

    With ``labels=True``, jump targets inside the program get labels (``L3:``) instead of offsets.
    """
    insns = decode(code)
    if not labels:
        return "".join(format_instruction(i) + "\n" for i in insns)
    starts, slot = [], 0
    for insn in insns:
        starts.append(slot)
        slot += insn.slots
    index_of = {s: i for i, s in enumerate(starts)}
    named: dict[int, str] = {}
    for i, insn in enumerate(insns):
        if insn.relative is not None:
            target = index_of.get(starts[i] + 1 + insn.relative)
            if target is not None:
                insns[i] = insn.pointing_at(named.setdefault(target, f"L{starts[target]}"))
    lines = []
    for i, insn in enumerate(insns):
        if i in named:
            lines.append(f"{named[i]}:")
        lines.append(f"\t{format_instruction(insn)}")
    return "\n".join(lines) + "\n"
