"""Frame: stack slots handed out by size, 8-byte aligned, within the 512-byte BPF stack."""

import pytest

from netprof.asm import FP, R0, R1, U32, U64, AsmError, Frame, Program, Return, Store, assemble


def test_slots_are_aligned_and_do_not_overlap():
    frame = Frame()
    assert [frame.slot(24), frame.slot(8), frame.slot(1), frame.slot(4), frame.slot(9)] == [-24, -32, -40, -48, -64]
    assert frame.used == 64


def test_slots_are_the_offsets_one_would_write_by_hand():
    frame = Frame()
    key, value = frame.slot(4), frame.slot(8)
    built = Program(Store(FP, key, R0, U32), Store(FP, value, R1, U64), Return(0))
    assert built.encode() == assemble("*(u32 *)(r10 - 8) = r0\n*(u64 *)(r10 - 16) = r1\nr0 = 0\nexit")


def test_the_whole_stack_fits_and_not_a_byte_more():
    frame = Frame()
    assert frame.slot(504) == -504
    assert frame.slot(8) == -512
    with pytest.raises(AsmError, match="a 1-byte stack slot does not fit: 512 of the 512-byte BPF stack are in use"):
        frame.slot(1)
    with pytest.raises(AsmError, match="a 513-byte stack slot does not fit: 0 of the 512"):
        Frame().slot(513)


@pytest.mark.parametrize("size", [0, -8, 2.5, "8", True, None])
def test_a_slot_size_is_a_positive_number_of_bytes(size):
    with pytest.raises(AsmError, match=f"a stack slot's size is a positive number of bytes, not {size!r}"):
        Frame().slot(size)
