"""Stack slots below the frame pointer, handed out by size instead of counted by hand.

    frame = Frame()
    key = frame.slot(24)                  # -24: the 24 bytes at r10 - 24
    ptr = frame.slot(8)                   # -32
    Store(FP, ptr, R0, U64), Mov(R2, FP), Add(R2, key)
"""

from __future__ import annotations

from .errors import AsmError
from .isa import STACK_SIZE

SLOT_ALIGNMENT = 8  # every slot can hold a u64 or a pointer, which the verifier wants 8-byte aligned


class Frame:
    """The stack of one BPF function. Each ``slot(size)`` is the offset from FP (r10) of ``size``
    bytes that no other slot of this frame overlaps; slots are 8-byte aligned, and together
    stay within the kernel's 512-byte stack."""

    def __init__(self) -> None:
        self.used = 0  # bytes below FP handed out so far

    def slot(self, size: int) -> int:
        """The (negative) offset from FP of ``size`` fresh bytes."""
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise AsmError(f"a stack slot's size is a positive number of bytes, not {size!r}")
        used = self.used + -(-size // SLOT_ALIGNMENT) * SLOT_ALIGNMENT
        if used > STACK_SIZE:
            raise AsmError(f"a {size}-byte stack slot does not fit: {self.used} of the {STACK_SIZE}-byte "
                           "BPF stack are in use")
        self.used = used
        return -used

    def __repr__(self) -> str:
        return f"<Frame {self.used} of {STACK_SIZE} bytes used>"
