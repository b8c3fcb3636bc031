"""One eBPF instruction as a value: checked on creation, bit-exact encode and decode.

``struct bpf_insn`` (include/uapi/linux/bpf.h) is 8 bytes, little-endian here:
``u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm``. ``ld_imm64`` takes two slots; its
second slot carries only the upper 32 bits of the immediate, so ``Instruction.imm`` holds the
whole 64-bit value there. An instruction may name a label (``target``) or a map (``map``)
that linking resolves; such an instruction cannot be encoded until then.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from .errors import AsmError, Location
from .isa import (
    ATOMIC_FETCH,
    CALL,
    CONDITIONAL_JUMPS,
    FRAME_POINTER,
    LD_IMM64,
    MAX_REGISTER,
    RMW_ATOMICS,
    AluOp,
    AtomicOp,
    Class,
    JmpOp,
    Mode,
    PseudoCall,
    PseudoSrc,
    Size,
    Source,
)

_SLOT = struct.Struct("<BBhi")

# (lowest, highest) of the signed fields; the memory types S16, S32 are isa.MemType's.
INT16_RANGE = (-(1 << 15), (1 << 15) - 1)
INT32_RANGE = (-(1 << 31), (1 << 31) - 1)
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)


@dataclass(frozen=True, slots=True)
class Instruction:
    """A single eBPF instruction; ``ld_imm64`` (16 bytes) included.

    ``target`` names the label a jump, a bpf-to-bpf call or a ``func`` load refers to;
    ``map`` names the map an ``ld_imm64`` refers to. Both are resolved by linking.
    """

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None
    map: str | None = None
    location: Location | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.opcode == LD_IMM64 and self.imm > INT64_RANGE[1]:
            object.__setattr__(self, "imm", self.imm - (1 << 64))  # one value per bit pattern
        problem = check(self)
        if problem:
            raise AsmError(problem, self.location)

    @property
    def cls(self) -> int:
        return self.opcode & 0x07

    @property
    def op(self) -> int:
        return self.opcode & 0xF0

    @property
    def is_ld_imm64(self) -> bool:
        return self.opcode == LD_IMM64

    @property
    def slots(self) -> int:
        """Number of 8-byte slots: 2 for ld_imm64, else 1."""
        return 2 if self.opcode == LD_IMM64 else 1

    @property
    def is_jump(self) -> bool:
        """A jump whose ``off`` (or, for gotol, ``imm``) is a relative target."""
        return self.opcode in _JUMPS

    @property
    def is_pseudo_call(self) -> bool:
        return self.opcode == CALL and self.src == PseudoCall.CALL

    @property
    def is_func_ref(self) -> bool:
        return self.opcode == LD_IMM64 and self.src == PseudoSrc.FUNC

    @property
    def is_gotol(self) -> bool:
        return self.opcode == _GOTOL

    @property
    def relative(self) -> int | None:
        """The offset (in slots after this one) a jump, bpf-to-bpf call or func load refers to."""
        opcode = self.opcode
        if opcode in _JUMPS:
            return self.imm if opcode == _GOTOL else self.off
        if opcode == CALL:
            return self.imm if self.src == PseudoCall.CALL else None
        if opcode == LD_IMM64 and self.src == PseudoSrc.FUNC:
            return _s32(self.imm & 0xFFFF_FFFF)
        return None

    def pointing_at(self, label: str) -> Instruction:
        """This reference with its numeric offset replaced by ``label``."""
        if self.is_gotol or self.is_pseudo_call or self.is_func_ref:
            return replace(self, imm=0, target=label)
        return replace(self, off=0, target=label)

    def _located(self, location: Location | None) -> Instruction:
        """This instruction placed at ``location``, without checking it again."""
        return _unchecked(self.opcode, self.dst, self.src, self.off, self.imm, self.target, self.map, location)

    def _relocated(self, distance: int) -> Instruction:
        """This reference resolved to ``distance``, already range-checked by the linker."""
        if self.opcode == _GOTOL or self.opcode == CALL:
            off, imm = self.off, distance
        elif self.opcode == LD_IMM64:
            off, imm = self.off, distance & 0xFFFF_FFFF
        else:
            off, imm = distance, self.imm
        return _unchecked(self.opcode, self.dst, self.src, off, imm, None, self.map, self.location)

    @property
    def resolved(self) -> bool:
        return self.target is None and self.map is None

    def with_location(self, location: Location | None) -> Instruction:
        return replace(self, location=location)

    def encode(self) -> bytes:
        """The 8 (or 16) bytes of this instruction; labels and maps must be resolved."""
        if self.target is not None:
            raise AsmError(f"label {self.target!r} is not resolved: link the program first", self.location)
        if self.map is not None:
            raise AsmError(f"map {self.map!r} is not resolved: no file descriptor was given for it",
                           self.location)
        regs = self.dst | (self.src << 4)
        if self.opcode == LD_IMM64:
            imm = self.imm & 0xFFFF_FFFF_FFFF_FFFF
            lo, hi = _s32(imm & 0xFFFF_FFFF), _s32(imm >> 32)
            return _SLOT.pack(self.opcode, regs, self.off, lo) + _SLOT.pack(0, 0, 0, hi)
        return _SLOT.pack(self.opcode, regs, self.off, self.imm)

    def __str__(self) -> str:
        from .printer import format_instruction

        return format_instruction(self)


_GOTOL = Class.JMP32 | JmpOp.JA
_JUMPS = frozenset(
    [Class.JMP | JmpOp.JA, Class.JMP | JmpOp.JCOND, _GOTOL]
    + [cls | op | src for cls in (Class.JMP, Class.JMP32) for op in CONDITIONAL_JUMPS for src in (0, Source.X)]
)


def _unchecked(opcode: int, dst: int, src: int, off: int, imm: int, target: str | None, map: str | None,
               location: Location | None) -> Instruction:
    """An Instruction built from fields known to be valid (the linker's and parser's fast path)."""
    new = object.__new__(Instruction)
    setattr_ = object.__setattr__
    setattr_(new, "opcode", opcode)
    setattr_(new, "dst", dst)
    setattr_(new, "src", src)
    setattr_(new, "off", off)
    setattr_(new, "imm", imm)
    setattr_(new, "target", target)
    setattr_(new, "map", map)
    setattr_(new, "location", location)
    return new


def _s32(value: int) -> int:
    return value - (1 << 32) if value & 0x8000_0000 else value


def decode(code: bytes | bytearray | memoryview) -> list[Instruction]:
    """Decode a whole program; raises AsmError naming the slot of a bad instruction."""
    view = memoryview(code).cast("B")
    if len(view) % 8:
        raise AsmError(f"program is {len(view)} bytes, not a multiple of 8")
    slots = list(_SLOT.iter_unpack(view))
    out = []
    i = 0
    while i < len(slots):
        opcode, regs, off, imm = slots[i]
        dst, src = regs & 0x0F, regs >> 4
        try:
            if opcode == LD_IMM64:
                if i + 1 >= len(slots):
                    raise AsmError("ld_imm64 is missing its second slot")
                code2, regs2, off2, hi = slots[i + 1]
                if code2 or regs2 or off2:
                    raise AsmError("ld_imm64 second slot must hold only the upper 32 bits of imm")
                value = (imm & 0xFFFF_FFFF) | (hi << 32)
                out.append(Instruction(opcode, dst, src, off, value))
                i += 2
                continue
            out.append(Instruction(opcode, dst, src, off, imm))
        except AsmError as err:
            raise AsmError(f"instruction {i} ({view[i * 8:i * 8 + 8].hex(' ')}): {err.message}") from None
        i += 1
    return out


def check(insn: Instruction) -> str | None:
    """Why ``insn`` is not a valid instruction, or None. Mirrors the kernel verifier's
    reserved-field checks, so that every valid instruction has exactly one text form."""
    code, dst, src, off, imm = insn.opcode, insn.dst, insn.src, insn.off, insn.imm
    if not 0 <= code <= 0xFF:
        return f"opcode {code:#x} does not fit in 8 bits"
    if not 0 <= dst <= 15:
        return f"dst register {dst} does not fit in 4 bits"
    if not 0 <= src <= 15:
        return f"src register {src} does not fit in 4 bits"
    if not -0x8000 <= off <= 0x7FFF:
        return f"offset {off} is out of range [-32768, 32767]"
    if code == LD_IMM64:
        if not INT64_RANGE[0] <= imm <= (1 << 64) - 1:
            return f"immediate {imm} does not fit in 64 bits"
    elif not -0x8000_0000 <= imm <= 0x7FFF_FFFF:
        return f"immediate {imm} is out of range [-2147483648, 2147483647]"
    if insn.target is not None and not (code in _JUMPS or insn.is_pseudo_call or insn.is_func_ref):
        return "only jumps, calls and func loads can name a label"
    if insn.map is not None and not (code == LD_IMM64 and src in _MAP_PSEUDOS):
        return "only ld_imm64 of a map can name a map"
    return _CHECKS[code & 0x07](code, dst, src, off, imm) or None


# Plain ints: comparing with IntEnum members costs an attribute lookup each time.
_MAP_PSEUDOS = frozenset(int(p) for p in (PseudoSrc.MAP_FD, PseudoSrc.MAP_VALUE, PseudoSrc.MAP_IDX,
                                          PseudoSrc.MAP_IDX_VALUE))
_PSEUDO_SRCS = frozenset(int(p) for p in PseudoSrc)
_SMALL_PSEUDOS = frozenset(int(p) for p in (PseudoSrc.MAP_FD, PseudoSrc.MAP_IDX, PseudoSrc.FUNC))
_ALU_OPS = frozenset(int(op) for op in AluOp)
_COND_OPS = frozenset(int(op) for op in CONDITIONAL_JUMPS)
_RMW = frozenset(int(op) for op in RMW_ATOMICS)
_X, _FETCH = int(Source.X), ATOMIC_FETCH
_ALU64, _JMP32 = int(Class.ALU64), int(Class.JMP32)
_END, _NEG, _MOV, _DIV, _MOD = int(AluOp.END), int(AluOp.NEG), int(AluOp.MOV), int(AluOp.DIV), int(AluOp.MOD)
_JA, _CALL_OP, _EXIT_OP, _JCOND = int(JmpOp.JA), int(JmpOp.CALL), int(JmpOp.EXIT), int(JmpOp.JCOND)
_MEM, _MEMSX, _ATOMIC, _ABS, _IND = int(Mode.MEM), int(Mode.MEMSX), int(Mode.ATOMIC), int(Mode.ABS), int(Mode.IND)
_W, _DW = int(Size.W), int(Size.DW)
_CMPXCHG, _LOAD_ACQ, _STORE_REL = int(AtomicOp.CMPXCHG), int(AtomicOp.LOAD_ACQ), int(AtomicOp.STORE_REL)
_KFUNC = int(PseudoCall.KFUNC_CALL)

# llvm-mc encodes "callx r1" (BPF_CALL | BPF_X, the register in dst) but the kernel refuses it.
CALLX_REFUSED = ("callx (a call through a register) is reserved: the kernel verifier refuses BPF_CALL | BPF_X "
                 "(\"BPF_CALL uses reserved fields\")")


def _reg(reg: int, role: str) -> str | None:
    if reg > MAX_REGISTER:
        return f"{role} register r{reg} does not exist (r0..r10)"
    return None


def _written(reg: int, role: str = "destination") -> str | None:
    if reg >= FRAME_POINTER:
        if reg > MAX_REGISTER:
            return f"{role} register r{reg} does not exist (r0..r10)"
        return "r10 is the read-only frame pointer and cannot be written"
    return None


def _zero(*fields: tuple[str, int]) -> str | None:
    for name, value in fields:
        if value:
            return f"{name} must be 0 here (reserved field), not {value}"
    return None


def _check_ld(code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    mode, size = code & 0xE0, code & 0x18
    if code == LD_IMM64:
        if src not in _PSEUDO_SRCS:
            return f"ld_imm64 pseudo source {src} is unknown (0..6)"
        if src in _SMALL_PSEUDOS and (imm & 0xFFFF_FFFF_FFFF_FFFF) >> 32:
            return f"ld_imm64 of {PseudoSrc(src).name.lower()} takes a 32-bit immediate"
        return _written(dst) or (_zero(("off", off)) if off else None)
    if (mode == _ABS or mode == _IND) and size != _DW:
        if mode == _ABS:
            return _zero(("dst", dst), ("src", src), ("off", off))
        return _zero(("dst", dst), ("off", off)) or _reg(src, "source")
    return f"opcode {code:#04x} is not a valid BPF_LD instruction"


def _check_ldx(code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    mode = code & 0xE0
    if mode == _MEM or (mode == _MEMSX and code & 0x18 != _DW):
        return _written(dst) or _reg(src, "source") or (_zero(("imm", imm)) if imm else None)
    return f"opcode {code:#04x} is not a valid BPF_LDX instruction"


def _check_st(code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    if code & 0xE0 == _MEM:
        return _reg(dst, "base") or (_zero(("src", src)) if src else None)
    return f"opcode {code:#04x} is not a valid BPF_ST instruction"


def _check_stx(code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    mode, size = code & 0xE0, code & 0x18
    if mode == _MEM:
        return _reg(dst, "base") or _reg(src, "source") or (_zero(("imm", imm)) if imm else None)
    if mode != _ATOMIC:
        return f"opcode {code:#04x} is not a valid BPF_STX instruction"
    if imm in _RMW:
        if size != _W and size != _DW:
            return "atomic read-modify-write operations are 32 or 64 bits wide"
        if imm & _FETCH and imm != _CMPXCHG:
            return _reg(dst, "base") or _written(src, "fetch destination")
        return _reg(dst, "base") or _reg(src, "source")
    if imm == _LOAD_ACQ:
        return _written(dst) or _reg(src, "address")
    if imm == _STORE_REL:
        return _reg(dst, "address") or _reg(src, "source")
    return f"atomic operation {imm:#x} is unknown"


def _check_alu(code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    op, x, alu64 = code & 0xF0, code & _X, code & 0x07 == _ALU64
    if op not in _ALU_OPS:
        return f"opcode {code:#04x} is not a valid ALU instruction"
    if dst >= FRAME_POINTER:
        return _written(dst)
    if op == _END:
        if alu64 and x:
            return "bswap has no byte-order bit: use the ALU64 opcode with BPF_TO_LE"
        if imm != 16 and imm != 32 and imm != 64:
            return f"byte swap width must be 16, 32 or 64, not {imm}"
        return _zero(("src", src), ("off", off))
    if op == _NEG:
        return _zero(("src_bit", x), ("src", src), ("off", off), ("imm", imm))
    if off and (op == _DIV or op == _MOD) and off != 1:
        return f"offset of div/mod is 0 (unsigned) or 1 (signed), not {off}"
    if not x:
        if off and op != _DIV and op != _MOD:
            return _zero(("off", off))
        return _zero(("src", src)) if src else None
    if src > MAX_REGISTER:
        return _reg(src, "source")
    if op == _MOV:
        if off:
            if alu64 and off == 1:  # addr_space_cast: imm = dst_as << 16 | src_as
                return None
            allowed = (0, 8, 16, 32) if alu64 else (0, 8, 16)
            if off not in allowed:
                return f"sign-extending move takes offset {', '.join(map(str, allowed))}, not {off}"
    elif off and op != _DIV and op != _MOD:
        return _zero(("off", off))
    return _zero(("imm", imm)) if imm else None


def _check_jmp(code: int, dst: int, src: int, off: int, imm: int) -> str | None:
    op, x, jmp32 = code & 0xF0, code & _X, code & 0x07 == _JMP32
    if op in _COND_OPS:
        if x:
            return _reg(dst, "left") or _reg(src, "right") or (_zero(("imm", imm)) if imm else None)
        return _reg(dst, "left") or (_zero(("src", src)) if src else None)
    if op == _JA:
        if jmp32:
            return _zero(("src_bit", x), ("dst", dst), ("src", src), ("off", off))
        return _zero(("src_bit", x), ("dst", dst), ("src", src), ("imm", imm))
    if jmp32:
        return f"opcode {code:#04x} is not a valid JMP32 instruction"
    if op == _CALL_OP:
        if x:
            return CALLX_REFUSED
        if src > _KFUNC:
            return f"call source {src} is unknown (0 helper, 1 bpf-to-bpf, 2 kfunc)"
        if src == _KFUNC:
            return _zero(("dst", dst)) if dst else None
        # Any helper id encodes, negative ones too: llvm-mc writes "call -1" (what llvm-objdump
        # prints for a call its linker has not resolved) as imm -1; the verifier judges the id.
        return _zero(("dst", dst), ("off", off))
    if op == _EXIT_OP:
        return _zero(("src_bit", x), ("dst", dst), ("src", src), ("off", off), ("imm", imm))
    if op == _JCOND:
        return _zero(("src_bit", x), ("dst", dst), ("src", src), ("imm", imm))
    return f"opcode {code:#04x} is not a valid JMP instruction"


_CHECKS = (_check_ld, _check_ldx, _check_st, _check_stx, _check_alu, _check_jmp, _check_jmp, _check_alu)
