"""netprof.loader.debug_info without a kernel: the BTF blob (read back with netprof's own BTF
parser), one func_info per subprogram, one line_info per change of source line, each at the slot
where its instruction starts."""

from __future__ import annotations

import pytest

from netprof.asm import R0, R1, R2, CallFunc, Exit, Label, LoadImm64, Location, Mov, Program, Return, parse
from netprof.loader import debug_info
from netprof.loader.btf import Btf, Kind
from netprof.loader.debug_info import FUNC_INFO, LINE_INFO, TEXT_FILE


def funcs(info):
    return [FUNC_INFO.unpack_from(info.func_info, o) for o in range(0, len(info.func_info), FUNC_INFO.size)]


def lines(info):
    """(slot, file, line text, line number, column) of each line_info record."""
    btf = info.btf
    strings = btf[24 + int.from_bytes(btf[16:20], "little"):]

    def string(off):
        return strings[off:strings.index(b"\0", off)].decode()

    out = []
    for o in range(0, len(info.line_info), LINE_INFO.size):
        slot, file_off, line_off, line_col = LINE_INFO.unpack_from(info.line_info, o)
        out.append((slot, string(file_off), string(line_off), line_col >> 10, line_col & 0x3FF))
    return out


def test_one_line_record_per_source_line_at_instruction_starts():
    first = Program(Mov(R0, 0), LoadImm64(R2, 1 << 40),
                    Return(7))
    info = debug_info.build(first.link(), "demo")
    here = first.instructions[0].location.line
    assert lines(info) == [
        (0, __file__, "first = Program(Mov(R0, 0), LoadImm64(R2, 1 << 40),", here, 1),
        (3, __file__, "Return(7))", here + 1, 1),  # after the two slots of ld_imm64; Return is two instructions
    ]
    assert funcs(info) == [(0, 4)]


def test_each_subprogram_has_a_func_and_a_line_record_named_by_its_label():
    program = Program(Mov(R0, 0), CallFunc("double_it"), Exit(), Label("double_it"), Mov(R0, 21), Exit())
    info = debug_info.build(program.link(), "my-prog")
    assert funcs(info) == [(0, 4), (3, 5)]
    assert [slot for slot, *_ in lines(info)] == [0, 3]  # one Python line, and a function starting at 3
    btf = Btf(info.btf)
    assert [btf.name(4), btf.name(5)] == ["my_prog", "double_it"]
    for func in (4, 5):
        assert btf.kind(func) == Kind.FUNC
        assert btf.type_name(func) == f"int {btf.name(func)}(void *)"


def test_assembler_text_keeps_its_lines_and_has_no_file():
    info = debug_info.build(parse("r0 = 1\n\n  r1 = r0   # a comment\nexit\n").link(), "text")
    assert lines(info) == [(0, TEXT_FILE, "r0 = 1", 1, 1), (1, TEXT_FILE, "r1 = r0   # a comment", 3, 3),
                           (2, TEXT_FILE, "exit", 4, 1)]


def test_instructions_without_a_location_continue_the_line_before_them():
    program = Program(Mov(R0, 0), Mov(R1, 1).with_location(None), Exit().with_location(None))
    assert [slot for slot, *_ in lines(debug_info.build(program.link(), "p"))] == [0]
    unknown_start = Program(Mov(R0, 0).with_location(None), Exit())
    assert lines(debug_info.build(unknown_start.link(), "p"))[0] == (0, "", "", 0, 0)


def test_no_location_anywhere_is_no_debug_info():
    program = Program(Mov(R0, 0).with_location(None), Exit().with_location(None))
    assert debug_info.build(program.link(), "p") is None


def test_a_call_outside_the_program_is_left_to_the_verifier():
    program = Program(CallFunc(5), Exit())
    assert debug_info.build(program.link(), "p") is None


def test_line_and_column_beyond_the_record_fields_are_clipped():
    far = Location(1 << 23, 5000, "r0 = 1")
    info = debug_info.build(Program(Mov(R0, 1).with_location(far), Exit()).link(), "p")
    assert lines(info)[0][3:] == (0, 1023)


@pytest.mark.parametrize("name, expected", [("my-prog", "my_prog"), ("9lives", "_9lives"), ("", "prog"),
                                            ("näme", "n_me")])
def test_func_names_are_c_identifiers(name, expected):
    assert debug_info.identifier(name, "prog") == expected
