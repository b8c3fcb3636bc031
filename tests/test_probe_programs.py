"""The probe programs as values: they link, their fragments compose, their stack stays in bounds.
(tests/test_attach.py runs them in the kernel.)"""

from netprof.asm import Frame, Program, Return
from netprof.probes import span_probe as spans


def test_count_lost_can_be_used_twice_in_one_program():
    frame = Frame()
    program = Program(spans.count_lost(1, frame), spans.count_lost(2, frame), Return(0))
    code = program.encode({"lost": 3})
    assert len(code) == 8 * program.link().slot_count


def test_count_lost_keeps_its_key_in_a_slot_of_the_program_frame():
    frame = Frame()
    record = frame.slot(32)
    store = spans.count_lost(1, frame)[0]
    assert str(store) == "*(u32 *)(r10 - 40) = 1"
    assert store.off < record and frame.used == 40
