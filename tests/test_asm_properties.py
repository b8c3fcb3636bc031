"""Property tests: every valid instruction encodes, decodes, prints and parses back to itself."""

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from netprof.asm import AsmError, Instruction, assemble, decode, disassemble, parse

TEMPLATES = [
    decode(bytes.fromhex(line.split("\t")[1]))[0]
    for line in (Path(__file__).parent / "data/asm_vectors.txt").read_text().splitlines()
    if line and not line.startswith("#")
]

FIELDS = {
    "dst": st.integers(0, 15),
    "src": st.integers(0, 15),
    "off": st.one_of(st.integers(-(1 << 15), (1 << 15) - 1), st.sampled_from([0, 1, 8, 16, 32, -1])),
    "imm": st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.sampled_from([0, 1, 16, 32, 64, 0x100])),
}


@st.composite
def instructions(draw):
    """A valid instruction: a vector's form with each field varied wherever it stays valid."""
    insn = draw(st.sampled_from(TEMPLATES))
    for name, values in FIELDS.items():
        if name == "imm" and insn.is_ld_imm64:
            values = st.integers(-(1 << 63), (1 << 63) - 1)
        try:
            insn = replace(insn, **{name: draw(values)})
        except AsmError:
            pass
    return insn


@settings(max_examples=3000)
@given(instructions())
def test_instruction_round_trips(insn):
    code = insn.encode()
    assert len(code) == 8 * insn.slots
    assert decode(code) == [insn]
    text = str(insn)
    assert parse(text).instructions == [insn]
    assert assemble(text) == code


@settings(max_examples=300)
@given(st.lists(instructions(), min_size=1, max_size=60))
def test_program_round_trips(program):
    code = b"".join(insn.encode() for insn in program)
    assert assemble(disassemble(code)) == code
    assert assemble(disassemble(code, labels=True)) == code


@settings(max_examples=2000)
@given(st.binary(min_size=8, max_size=8))
def test_random_slots_decode_or_fail_cleanly(data):
    try:
        (insn,) = decode(data)
    except AsmError as err:
        assert "instruction 0" in str(err)
        return
    assert insn.encode() == data
    assert assemble(disassemble(data)) == data


def test_invalid_instructions_are_refused():
    for bad in ({"opcode": 0x95, "imm": 1}, {"opcode": 0xB7, "dst": 10}, {"opcode": 0xB7, "dst": 11},
                {"opcode": 0xD7, "imm": 8}, {"opcode": 0xFF}, {"opcode": 0x8D}):
        try:
            Instruction(**bad)
        except AsmError:
            continue
        raise AssertionError(f"{bad} was accepted")
