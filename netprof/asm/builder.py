"""Instructions as values, in the style of cilium/ebpf's asm package.

    Program(
        Mov(R0, 0),
        LoadMapPtr(R1, "events"),
        JEq(R2, 0, "out"),          # a jump names its label
        Add(W3, 1),                 # w registers select the 32-bit ALU / JMP32 forms
        Label("out"),
        Exit(),
    )

Each function returns an Instruction, checked at once, that remembers the Python line that
built it (for verifier errors). ``If`` and ``Loop`` are a thin structured layer on top; a
fragment of your own that jumps names its labels with ``unique_label``, so that it can be used
more than once in a program.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Protocol

from .errors import AsmError, Location
from .helpers import Helper
from .instruction import Instruction
from .isa import (
    ATOMIC_FETCH,
    CALL,
    EXIT,
    LD_IMM64,
    AluOp,
    AtomicOp,
    Class,
    JmpOp,
    MemType,
    Mode,
    PseudoCall,
    R0,
    PseudoSrc,
    Register,
    Size,
    Source,
)
from .program import Item, Label

_PACKAGE = str(Path(__file__).parent)


def _caller() -> Location | None:
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    if frame is None:
        return None
    return Location(frame.f_lineno, 1, file=frame.f_code.co_filename)


def _imm32(value: int) -> int:
    """A 32-bit immediate written signed or unsigned, stored signed (as llvm-mc does)."""
    if not isinstance(value, int):
        raise AsmError(f"immediate must be an int, not {value!r}")
    if (1 << 31) <= value < (1 << 32):
        return value - (1 << 32)
    return value


def _reg(value: object, role: str) -> Register:
    if not isinstance(value, Register):
        raise AsmError(f"{role} must be a register (R0..R10 or W0..W10), not {value!r}")
    return value


def _type(value: object) -> MemType:
    if not isinstance(value, MemType):
        raise AsmError(f"memory type must be one of {', '.join(t.name for t in MemType)}, not {value!r}")
    return value


def _map(value: object) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AsmError(f"map must be a name or a file descriptor, not {value!r}")
    return value


def _class(dst: Register, src: Register | int, narrow: Class, wide: Class, what: str) -> Class:
    if isinstance(src, Register) and src.is32 != dst.is32:
        raise AsmError(f"{what} mixes {dst} and {src}: use both r or both w registers")
    return narrow if dst.is32 else wide


def _make(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
          target: str | None = None, map: str | None = None) -> Instruction:
    location = _caller()
    for what, value in (("offset", off), ("immediate", imm)):
        if not isinstance(value, int):
            raise AsmError(f"{what} must be an int, not {value!r}", location)
    try:
        return Instruction(opcode, dst, src, off, imm, target, map, location)
    except AsmError as err:
        raise err.at(location) from None


# The signatures of the builders that _alu, _atomic and _jump make, one per family.

class _AluBuilder(Protocol):
    def __call__(self, dst: Register, src: Register | int) -> Instruction: ...


class _AtomicBuilder(Protocol):
    def __call__(self, base: Register, off: int, src: Register, fetch: bool = False) -> Instruction: ...


class _JumpBuilder(Protocol):
    def __call__(self, dst: Register, src: Register | int, target: str | int) -> Instruction: ...


# --- ALU ------------------------------------------------------------------------------------

def _alu(op: AluOp, name: str, off: int = 0) -> _AluBuilder:
    def build(dst: Register, src: Register | int) -> Instruction:
        dst = _reg(dst, "destination")
        cls = _class(dst, src, Class.ALU, Class.ALU64, name)
        if isinstance(src, Register):
            return _make(cls | op | Source.X, dst.index, src.index, off)
        return _make(cls | op | Source.K, dst.index, off=off, imm=_imm32(src))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"``dst {name.lower()} src``: a register (r or w, same width) or an immediate."
    return build


Add = _alu(AluOp.ADD, "Add")
Sub = _alu(AluOp.SUB, "Sub")
Mul = _alu(AluOp.MUL, "Mul")
Div = _alu(AluOp.DIV, "Div")
SDiv = _alu(AluOp.DIV, "SDiv", off=1)
Mod = _alu(AluOp.MOD, "Mod")
SMod = _alu(AluOp.MOD, "SMod", off=1)
Or = _alu(AluOp.OR, "Or")
And = _alu(AluOp.AND, "And")
Lsh = _alu(AluOp.LSH, "Lsh")
Rsh = _alu(AluOp.RSH, "Rsh")
Arsh = _alu(AluOp.ARSH, "Arsh")
Xor = _alu(AluOp.XOR, "Xor")
Mov = _alu(AluOp.MOV, "Mov")


def Neg(dst: Register) -> Instruction:
    dst = _reg(dst, "destination")
    return _make((Class.ALU if dst.is32 else Class.ALU64) | AluOp.NEG, dst.index)


def MovSx(dst: Register, src: Register, bits: int) -> Instruction:
    """``dst = (s<bits>)src``: sign-extending move of the low 8, 16 (or, 64-bit, 32) bits."""
    cls = _class(_reg(dst, "destination"), _reg(src, "source"), Class.ALU, Class.ALU64, "MovSx")
    return _make(cls | AluOp.MOV | Source.X, dst.index, src.index, off=bits)


def AddrSpaceCast(dst: Register, src: Register, dst_as: int, src_as: int) -> Instruction:
    """Arena pointer cast between address spaces (``r1 = addr_space_cast(r2, 0, 1)``)."""
    return _make(Class.ALU64 | AluOp.MOV | Source.X, _reg(dst, "destination").index,
                 _reg(src, "source").index, off=1, imm=(dst_as << 16) | src_as)


def ToLE(dst: Register, bits: int) -> Instruction:
    return _make(Class.ALU | AluOp.END | Source.TO_LE, _reg(dst, "destination").index, imm=bits)


def ToBE(dst: Register, bits: int) -> Instruction:
    return _make(Class.ALU | AluOp.END | Source.TO_BE, _reg(dst, "destination").index, imm=bits)


def Bswap(dst: Register, bits: int) -> Instruction:
    """Unconditional byte swap (cpu v4)."""
    return _make(Class.ALU64 | AluOp.END, _reg(dst, "destination").index, imm=bits)


# --- memory ---------------------------------------------------------------------------------

def Load(dst: Register, base: Register, off: int, type: MemType) -> Instruction:
    """``dst = *(type *)(base + off)``; a signed type sign-extends (MEMSX)."""
    mode = Mode.MEMSX if _type(type).signed else Mode.MEM
    return _make(Class.LDX | mode | type.size, _reg(dst, "destination").index,
                 _reg(base, "base").index, off)


def Store(base: Register, off: int, value: Register | int, type: MemType) -> Instruction:
    """``*(type *)(base + off) = value``: a register (STX) or an immediate (ST)."""
    if _type(type).signed:
        raise AsmError(f"stores take an unsigned type, not {type}")
    base = _reg(base, "base")
    if isinstance(value, Register):
        return _make(Class.STX | Mode.MEM | type.size, base.index, value.index, off)
    return _make(Class.ST | Mode.MEM | type.size, base.index, off=off, imm=_imm32(value))


def LoadAbs(off: int, type: MemType) -> Instruction:
    """Legacy packet load ``r0 = *(type *)skb[off]`` (socket filters)."""
    return _make(Class.LD | Mode.ABS | _type(type).size, imm=_imm32(off))


def LoadInd(src: Register, off: int, type: MemType) -> Instruction:
    """Legacy packet load ``r0 = *(type *)skb[src + off]``."""
    return _make(Class.LD | Mode.IND | _type(type).size, src=_reg(src, "index").index, imm=_imm32(off))


def _atomic(op: int, name: str) -> _AtomicBuilder:
    def build(base: Register, off: int, src: Register, fetch: bool = False) -> Instruction:
        size = Size.W if _reg(src, "source").is32 else Size.DW
        imm = op | (ATOMIC_FETCH if fetch else 0)
        return _make(Class.STX | Mode.ATOMIC | size, _reg(base, "base").index, src.index, off, imm)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"Atomic ``*(base + off) {name[6:].lower()}= src``; the width follows src "
                     "(w: 32 bits); ``fetch=True`` returns the old value in src.")
    return build


AtomicAdd = _atomic(AtomicOp.ADD, "AtomicAdd")
AtomicOr = _atomic(AtomicOp.OR, "AtomicOr")
AtomicAnd = _atomic(AtomicOp.AND, "AtomicAnd")
AtomicXor = _atomic(AtomicOp.XOR, "AtomicXor")


def AtomicXchg(base: Register, off: int, src: Register) -> Instruction:
    """``src = xchg(base + off, src)``."""
    size = Size.W if _reg(src, "source").is32 else Size.DW
    return _make(Class.STX | Mode.ATOMIC | size, _reg(base, "base").index, src.index, off,
                 AtomicOp.XCHG)


def AtomicCmpXchg(base: Register, off: int, src: Register) -> Instruction:
    """``r0 = cmpxchg(base + off, r0, src)``."""
    size = Size.W if _reg(src, "source").is32 else Size.DW
    return _make(Class.STX | Mode.ATOMIC | size, _reg(base, "base").index, src.index, off,
                 AtomicOp.CMPXCHG)


def LoadAcquire(dst: Register, base: Register, off: int, type: MemType) -> Instruction:
    return _make(Class.STX | Mode.ATOMIC | _type(type).size, _reg(dst, "destination").index,
                 _reg(base, "base").index, off, AtomicOp.LOAD_ACQ)


def StoreRelease(base: Register, off: int, src: Register, type: MemType) -> Instruction:
    return _make(Class.STX | Mode.ATOMIC | _type(type).size, _reg(base, "base").index,
                 _reg(src, "source").index, off, AtomicOp.STORE_REL)


# --- 64-bit immediates ----------------------------------------------------------------------

def LoadImm64(dst: Register, value: int) -> Instruction:
    return _make(LD_IMM64, _reg(dst, "destination").index, imm=value)


def LoadMapPtr(dst: Register, map: str | int) -> Instruction:
    """``dst = <map> ll``: a map by name (resolved at load) or by file descriptor."""
    map = _map(map)
    if isinstance(map, str):
        return _make(LD_IMM64, _reg(dst, "destination").index, PseudoSrc.MAP_FD, map=map)
    return _make(LD_IMM64, _reg(dst, "destination").index, PseudoSrc.MAP_FD, imm=map)


def LoadMapValue(dst: Register, map: str | int, off: int = 0) -> Instruction:
    """``dst = &<map>[0] + off``: the address of an array map's value (global data)."""
    if not isinstance(off, int):
        raise AsmError(f"offset must be an int, not {off!r}")
    map = _map(map)
    if isinstance(map, str):
        return _make(LD_IMM64, _reg(dst, "destination").index, PseudoSrc.MAP_VALUE, imm=off << 32,
                     map=map)
    return _make(LD_IMM64, _reg(dst, "destination").index, PseudoSrc.MAP_VALUE,
                 imm=(off << 32) | (map & 0xFFFF_FFFF))


def LoadBtfId(dst: Register, btf_id: int, btf_fd: int = 0) -> Instruction:
    """Address of a kernel variable (ksym) by BTF id; ``btf_fd`` for a module's BTF."""
    return _make(LD_IMM64, _reg(dst, "destination").index, PseudoSrc.BTF_ID,
                 imm=(btf_fd << 32) | btf_id)


def LoadFunc(dst: Register, label: str) -> Instruction:
    """Address of the bpf function at ``label`` (for callbacks such as bpf_loop)."""
    return _make(LD_IMM64, _reg(dst, "destination").index, PseudoSrc.FUNC, target=label)


# --- jumps and calls ------------------------------------------------------------------------

def _where(target: str | int) -> tuple[str | None, int]:
    if isinstance(target, bool) or not isinstance(target, (str, int)):
        raise AsmError(f"jump target must be a label name or an int offset, not {target!r}")
    return (target, 0) if isinstance(target, str) else (None, target)


def _jump(op: JmpOp, name: str) -> _JumpBuilder:
    def build(dst: Register, src: Register | int, target: str | int) -> Instruction:
        dst = _reg(dst, "left operand")
        cls = _class(dst, src, Class.JMP32, Class.JMP, name)
        label, off = _where(target)
        if isinstance(src, Register):
            return _make(cls | op | Source.X, dst.index, src.index, off, target=label)
        return _make(cls | op | Source.K, dst.index, off=off, imm=_imm32(src), target=label)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"``if dst {name} src goto target``; w registers compare 32 bits (JMP32)."
    return build


JEq = _jump(JmpOp.JEQ, "JEq")
JNe = _jump(JmpOp.JNE, "JNe")
JGt = _jump(JmpOp.JGT, "JGt")
JGe = _jump(JmpOp.JGE, "JGe")
JLt = _jump(JmpOp.JLT, "JLt")
JLe = _jump(JmpOp.JLE, "JLe")
JSGt = _jump(JmpOp.JSGT, "JSGt")
JSGe = _jump(JmpOp.JSGE, "JSGe")
JSLt = _jump(JmpOp.JSLT, "JSLt")
JSLe = _jump(JmpOp.JSLE, "JSLe")
JSet = _jump(JmpOp.JSET, "JSet")


def Ja(target: str | int) -> Instruction:
    """``goto target``; linking turns it into ``gotol`` when it does not reach in 16 bits."""
    label, off = _where(target)
    return _make(Class.JMP | JmpOp.JA, off=off, target=label)


def Gotol(target: str | int) -> Instruction:
    """``gotol target``: unconditional jump with a 32-bit offset (cpu v4)."""
    label, off = _where(target)
    return _make(Class.JMP32 | JmpOp.JA, imm=off, target=label)


def MayGoto(target: str | int) -> Instruction:
    """``may_goto target``: leaves a loop when the verifier's iteration budget runs out."""
    label, off = _where(target)
    return _make(Class.JMP | JmpOp.JCOND, off=off, target=label)


def Call(helper: Helper | int | str) -> Instruction:
    """Call a helper by Helper member, id, or name (``"map_lookup_elem"`` or ``"bpf_..."``)."""
    if isinstance(helper, str):
        name = helper.removeprefix("bpf_")
        if name not in Helper.__members__:
            raise AsmError(f"unknown helper {helper!r}", _caller())
        helper = Helper[name]
    elif isinstance(helper, bool) or not isinstance(helper, int):
        raise AsmError(f"helper must be a Helper, a helper id or a helper name, not {helper!r}", _caller())
    return _make(CALL, imm=_imm32(int(helper)))


def CallFunc(target: str | int) -> Instruction:
    """bpf-to-bpf call of the function that starts at label ``target``."""
    label, off = _where(target)
    return _make(CALL, src=PseudoCall.CALL, imm=off, target=label)


def CallKfunc(btf_id: int, module: int = 0) -> Instruction:
    """Call a kernel function by BTF id; ``module`` indexes fd_array for a module's BTF."""
    return _make(CALL, src=PseudoCall.KFUNC_CALL, off=module, imm=btf_id)


def Exit() -> Instruction:
    return _make(EXIT)


def Return(value: int | Register) -> list[Instruction]:
    """``r0 = value; exit``."""
    return [Mov(R0, value), Exit()]

# --- structured layer -----------------------------------------------------------------------

_fresh = itertools.count()


def unique_label(stem: str) -> str:
    """A label name that no other call returns, for a fragment (a function that returns
    instructions) that may appear more than once in one program: ``done = unique_label("done")``
    gives ``"__done7"``. ``If`` and ``Loop`` name their labels so."""
    if not isinstance(stem, str) or not stem.isidentifier():
        raise AsmError(f"label stem {stem!r} is not an identifier", _caller())
    return f"__{stem}{next(_fresh)}"


_INVERSE = {
    JmpOp.JEQ: JmpOp.JNE, JmpOp.JNE: JmpOp.JEQ, JmpOp.JGT: JmpOp.JLE, JmpOp.JLE: JmpOp.JGT,
    JmpOp.JGE: JmpOp.JLT, JmpOp.JLT: JmpOp.JGE, JmpOp.JSGT: JmpOp.JSLE, JmpOp.JSLE: JmpOp.JSGT,
    JmpOp.JSGE: JmpOp.JSLT, JmpOp.JSLT: JmpOp.JSGE,
}


def If(condition: Instruction, then: Iterable[Item], orelse: Iterable[Item] = ()) -> list[Item]:
    """Run ``then`` when the jump ``condition`` (built with target 0) would be taken, else ``orelse``.

        If(JEq(R0, 0, 0), Return(0), orelse=[...])
    """
    wanted = "If takes a conditional jump built with target 0, e.g. JEq(R0, 0, 0)"
    if not isinstance(condition, Instruction):
        raise AsmError(f"{wanted}, not {condition!r}")
    if condition.op not in _INVERSE and condition.op != JmpOp.JSET or not condition.is_jump \
            or condition.target is not None or condition.off:
        raise AsmError(f"{wanted}, not {condition}", condition.location)
    name = unique_label("if")
    then_label, else_label, end_label = f"{name}_then", f"{name}_else", f"{name}_end"
    then, orelse = list(then), list(orelse)
    if condition.op == JmpOp.JSET:  # no inverse: jump into the then-block
        return [replace(condition, target=then_label), orelse, Ja(end_label), Label(then_label), then,
                Label(end_label)]
    skip = replace(condition, opcode=(condition.opcode & 0x0F) | _INVERSE[JmpOp(condition.op)],
                   target=else_label if orelse else end_label)
    if not orelse:
        return [skip, then, Label(end_label)]
    return [skip, then, Ja(end_label), Label(else_label), orelse, Label(end_label)]


def Loop(counter: Register, limit: Register | int, body: Iterable[Item]) -> list[Item]:
    """``for (counter = 0; counter < limit; counter++) body`` as a verifier-friendly loop."""
    name = unique_label("loop")
    top, end = f"{name}_top", f"{name}_end"
    return [
        Mov(counter, 0), Label(top), JGe(counter, limit, end), list(body), Add(counter, 1),
        Ja(top), Label(end),
    ]
