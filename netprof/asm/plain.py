"""The ISA enums of isa.py as namespaces of plain ints, for the parser's and printer's hot paths:
IntEnum attribute access and arithmetic cost several times more than the same on ints.

Each is named as its enum is, in capitals, so that the two are never mistaken for each other:
``isa.Class`` is the IntEnum type, ``plain.CLASS`` the namespace of its values.

    from .plain import CLASS, ALU_OP      # CLASS.ALU64 == 7, an int
"""

from . import isa

ALU_OP = isa.plain_ints(isa.AluOp)
ATOMIC_OP = isa.plain_ints(isa.AtomicOp)
CLASS = isa.plain_ints(isa.Class)
JMP_OP = isa.plain_ints(isa.JmpOp)
MODE = isa.plain_ints(isa.Mode)
PSEUDO_CALL = isa.plain_ints(isa.PseudoCall)
PSEUDO_SRC = isa.plain_ints(isa.PseudoSrc)
SIZE = isa.plain_ints(isa.Size)
SOURCE = isa.plain_ints(isa.Source)
