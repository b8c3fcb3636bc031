"""The ISA enums as plain ints under the same names, for the parser's and printer's hot paths:
IntEnum attribute access and arithmetic cost several times more than the same on ints.

    from .plain import Class, AluOp      # Class.ALU64 == 7, an int
"""

from . import isa

AluOp = isa.plain_ints(isa.AluOp)
AtomicOp = isa.plain_ints(isa.AtomicOp)
Class = isa.plain_ints(isa.Class)
JmpOp = isa.plain_ints(isa.JmpOp)
Mode = isa.plain_ints(isa.Mode)
PseudoCall = isa.plain_ints(isa.PseudoCall)
PseudoSrc = isa.plain_ints(isa.PseudoSrc)
Size = isa.plain_ints(isa.Size)
Source = isa.plain_ints(isa.Source)
