"""netprof.asm: the eBPF assembler. Instructions as values, text both ways, no kernel needed.

    from netprof.asm import *
    prog = Program(Mov(R0, 0), Exit())
    code = prog.encode()                      # bytes for bpf(BPF_PROG_LOAD)
    assemble("r0 = 0\\nexit") == code
    print(disassemble(code))
"""

import typing as _typing
from types import ModuleType as _ModuleType

from .builder import (
    Add, AddrSpaceCast, And, Arsh, AtomicAdd, AtomicAnd, AtomicCmpXchg, AtomicOr, AtomicXchg,
    AtomicXor, Bswap, Call, CallFunc, CallKfunc, Div, Exit, Gotol, If, Ja, JEq, JGe, JGt, JLe,
    JLt, JNe, JSet, JSGe, JSGt, JSLe, JSLt, Load, LoadAbs, LoadAcquire, LoadBtfId, LoadFunc,
    LoadImm64, LoadInd, LoadMapPtr, LoadMapValue, Loop, Lsh, MayGoto, Mod, Mov, MovSx, Mul, Neg,
    Or, Return, Rsh, SDiv, SMod, Store, StoreRelease, Sub, ToBE, ToLE, Xor, unique_label,
)
from .errors import AsmError, Location
from .frame import Frame
from .helpers import Helper
from .instruction import Instruction, decode
from .isa import (
    FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, S8, S16, S32, U8, U16, U32, U64, W0, W1,
    W2, W3, W4, W5, W6, W7, W8, W9, W10, AluOp, AtomicOp, Class, JmpOp, MemType, Mode,
    PseudoCall, PseudoSrc, Register, Size, Source,
)
from .printer import format_instruction
from .program import Label, LinkedProgram, Program

_TEXT = ("assemble", "disassemble", "parse")  # netprof.asm.syntax: its regexes load on first use

__all__ = [name for name, value in dict(globals()).items()
           if not name.startswith("_") and not isinstance(value, _ModuleType)] + list(_TEXT)


# A type checker sees the three lazy names imported, with their signatures, and no __getattr__
# (which would make any misspelt name an object rather than an error).
if _typing.TYPE_CHECKING:
    from .syntax import assemble, disassemble, parse
else:
    def __getattr__(name: str) -> object:
        if name in _TEXT:
            from . import syntax

            return getattr(syntax, name)
        raise AttributeError(f"module 'netprof.asm' has no attribute {name!r}")
