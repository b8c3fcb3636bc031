"""The probe programs as values: they link, their fragments compose, their stack stays in bounds.
(tests/test_attach.py runs them in the kernel.)"""

from netprof.asm import Program, Return
from netprof.probes import packets, spans


def test_count_lost_can_be_used_twice_in_one_program():
    program = Program(spans.count_lost(1), spans.count_lost(2), Return(0))
    code = program.encode({"lost": 3})
    assert len(code) == 8 * program.link().slot_count
