"""The eBPF instruction set up to cpu v4, as named constants.

Values and names follow include/uapi/linux/bpf.h, bpf_common.h and
Documentation/bpf/standardization/instruction-set.rst.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from types import SimpleNamespace


class Class(IntEnum):
    """Instruction class, the low 3 bits of the opcode (BPF_CLASS)."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Size(IntEnum):
    """Load/store width (BPF_SIZE)."""

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18

    @property
    def bytes(self) -> int:
        return _SIZE_BYTES[self]


_SIZE_BYTES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}


class Mode(IntEnum):
    """Load/store mode (BPF_MODE)."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class Source(IntEnum):
    """Operand source bit (BPF_SRC); for BPF_END it selects the byte order."""

    K = 0x00
    X = 0x08
    TO_LE = 0x00
    TO_BE = 0x08


class AluOp(IntEnum):
    """ALU and ALU64 operations (BPF_OP)."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JmpOp(IntEnum):
    """JMP and JMP32 operations (BPF_OP)."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0


CONDITIONAL_JUMPS = frozenset(
    {JmpOp.JEQ, JmpOp.JGT, JmpOp.JGE, JmpOp.JSET, JmpOp.JNE, JmpOp.JSGT, JmpOp.JSGE,
     JmpOp.JLT, JmpOp.JLE, JmpOp.JSLT, JmpOp.JSLE}
)


class AtomicOp(IntEnum):
    """The imm field of BPF_STX | BPF_ATOMIC instructions."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100
    STORE_REL = 0x110


ATOMIC_FETCH = 0x01  # BPF_FETCH: or-ed into an atomic op, the old value comes back in src

RMW_ATOMICS = frozenset(
    {AtomicOp.ADD, AtomicOp.OR, AtomicOp.AND, AtomicOp.XOR, AtomicOp.FETCH_ADD, AtomicOp.FETCH_OR,
     AtomicOp.FETCH_AND, AtomicOp.FETCH_XOR, AtomicOp.XCHG, AtomicOp.CMPXCHG}
)


class PseudoSrc(IntEnum):
    """The src_reg of ``ld_imm64`` (BPF_PSEUDO_*): how the loader treats the immediate."""

    IMM = 0
    MAP_FD = 1
    MAP_VALUE = 2
    BTF_ID = 3
    FUNC = 4
    MAP_IDX = 5
    MAP_IDX_VALUE = 6


class PseudoCall(IntEnum):
    """The src_reg of ``call``: helper id, bpf-to-bpf call, or kfunc BTF id."""

    HELPER = 0
    CALL = 1
    KFUNC_CALL = 2


MAY_GOTO = 0  # src_reg of BPF_JMP | BPF_JCOND (BPF_MAY_GOTO)

MAX_REGISTER = 10
FRAME_POINTER = 10
STACK_SIZE = 512  # MAX_BPF_STACK (include/linux/filter.h): the stack of one BPF function

# Opcodes used often enough by the encoder and printer to deserve a name.
LD_IMM64 = Class.LD | Mode.IMM | Size.DW
CALL = Class.JMP | JmpOp.CALL
EXIT = Class.JMP | JmpOp.EXIT


@dataclass(frozen=True, slots=True)
class Register:
    """r0..r10, or their 32-bit views w0..w10 (which select ALU/JMP32 in the builder)."""

    index: int
    is32: bool = False

    def __index__(self) -> int:
        return self.index

    def __str__(self) -> str:
        return f"{'w' if self.is32 else 'r'}{self.index}"

    __repr__ = __str__

    @property
    def wide(self) -> Register:
        return Register(self.index, False)

    @property
    def narrow(self) -> Register:
        return Register(self.index, True)


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (Register(i) for i in range(11))
W0, W1, W2, W3, W4, W5, W6, W7, W8, W9, W10 = (Register(i, True) for i in range(11))
FP = R10


class MemType(IntEnum):
    """The C type of a memory operand: width in bytes, signed when negative."""

    U8 = 1
    U16 = 2
    U32 = 4
    U64 = 8
    S8 = -1
    S16 = -2
    S32 = -4

    @property
    def size(self) -> Size:
        return _BYTES_SIZE[abs(self.value)]

    @property
    def signed(self) -> bool:
        return self.value < 0

    def __str__(self) -> str:
        return self.name.lower()


_BYTES_SIZE = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}
U8, U16, U32, U64 = MemType.U8, MemType.U16, MemType.U32, MemType.U64
S8, S16, S32 = MemType.S8, MemType.S16, MemType.S32


def mem_type(size: int, signed: bool = False) -> MemType:
    """The MemType of a BPF_SIZE value."""
    return MemType(-_SIZE_BYTES[Size(size)] if signed else _SIZE_BYTES[Size(size)])


def plain_ints(enum: type[IntEnum]) -> SimpleNamespace:
    """An IntEnum's members as plain ints under the same names: ``plain_ints(Class).ALU == 4``.

    For hot paths (the parser, the printer): IntEnum attribute access and arithmetic cost
    several times more than the same on ints.
    """
    return SimpleNamespace(**{name: int(member) for name, member in enum.__members__.items()})
