"""Every assembler error names the line and column, and says what was wrong."""

import pytest

from netprof.asm import (
    R0, R1, R10, U64, W1, AsmError, Call, Exit, If, Ja, JEq, Label, Load, LoadAbs, LoadImm64, LoadMapPtr, LoadMapValue,
    Mov, Program, Store, assemble, parse,
)


@pytest.mark.parametrize("text,line,column,message", [
    ("r0 = 0\nfrob r1\nexit", 2, 1, "unknown mnemonic 'frob'"),
    ("r0 = 0\n  r11 = 1", 2, 3, "bad register 'r11'"),
    ("r1 = w12", 1, 6, "bad register 'w12'"),
    ("r10 = 1", 1, 1, "r10 is the read-only frame pointer"),
    ("r10 += 8", 1, 1, "r10 is the read-only frame pointer"),
    ("r10 = *(u64 *)(r1 + 0)", 1, 1, "r10 is the read-only frame pointer"),
    ("r1 = 0x100000000", 1, 6, "immediate 4294967296 is out of range"),
    ("r1 += -2147483649", 1, 7, "out of range"),
    ("r1 = *(u64 *)(r10 - 32769)", 1, 19, "offset -32769 is out of range"),
    ("if r1 == 0 goto +32768", 1, 17, "jump offset 32768 is out of range"),
    ("goto nowhere\nexit", 1, 1, "undefined label 'nowhere'"),
    ("a:\nr0 = 0\na:\nexit", 3, 1, "duplicate label 'a'"),
    ("call no_such_helper", 1, 6, "undefined label or unknown helper 'no_such_helper'"),
    ("call bpf_map_lookup_elem#2", 1, 26, "helper bpf_map_lookup_elem has id 1, not 2"),
    ("w1 += r2", 1, 7, "mix r and w"),
    ("if r1 > w2 goto +1", 1, 9, "mix r and w"),
    ("r1 = le16 r2", 1, 6, "byte swap works in place"),
    ("r1 = *(u64 *)skb[4]", 1, 1, "legacy packet loads"),
    ("*(s8 *)(r1 + 0) = 1", 1, 3, "stores take an unsigned type"),
    ("lock *(u16 *)(r1 + 0) += r2", 1, 8, "atomic operations are on u32 or u64"),
    ("r1 = cmpxchg_64(r2 + 0, r0, r3)", 1, 6, "cmpxchg compares with and returns into r0"),
    ("r1 = map[id:3]", 1, 6, "map id from a verifier log"),
    ("exit 1", 1, 5, "exit takes no operand"),
    ("r1 = (s32)r2\nw1 = (s32)w2", 2, 1, "sign-extending move takes offset 0, 8, 16"),
    ("r1 = 5 +", 1, 6, "cannot read"),
    ("r0 = foo ll\nexit", None, None, None),  # a map symbol: fine until encoding
])
def test_error_location(text, line, column, message):
    if message is None:
        assert parse(text).map_names == ["foo"]
        with pytest.raises(AsmError, match="map 'foo' is not resolved") as info:
            assemble(text)
        assert info.value.line == 1
        return
    with pytest.raises(AsmError) as info:
        assemble(text)
    err = info.value
    assert message in err.message
    assert (err.line, err.column) == (line, column), str(err)
    rendered = str(err)
    assert rendered.startswith(f"line {line}, column {column}: ")
    assert rendered.splitlines()[-1].index("^") == 4 + column - 1


def test_builder_errors_point_at_the_python_line():
    with pytest.raises(AsmError) as info:
        Mov(R10, 1)
    assert info.value.location.file == __file__
    with pytest.raises(AsmError, match="mixes r1 and w1"):
        Mov(R1, W1)
    with pytest.raises(AsmError, match="must be a register"):
        Mov(3, R1)
    with pytest.raises(AsmError, match="undefined label 'missing'"):
        Program(Ja("missing"), Exit()).encode()
    with pytest.raises(AsmError, match="duplicate label 'x'"):
        Program(Label("x"), Exit(), Label("x"), Exit())
    with pytest.raises(AsmError, match="marks no instruction"):
        Program(JEq(R0, 0, "end"), Exit(), Label("end")).encode()
    with pytest.raises(AsmError, match="map 'events' is not resolved") as info:
        Program(LoadMapPtr(R1, "events"), Exit()).encode()
    assert info.value.location.file == __file__


@pytest.mark.parametrize("build,message", [
    (lambda: Load(R1, R10, -8, 8), "memory type must be one of U8, U16, U32, U64, S8, S16, S32, not 8"),
    (lambda: Store(R10, -8, R1, "u64"), "memory type must be one of U8, U16, U32, U64, S8, S16, S32, not 'u64'"),
    (lambda: LoadAbs(14, 2), "memory type must be one of"),
    (lambda: Store(R10, "x", R1, U64), "offset must be an int, not 'x'"),
    (lambda: LoadImm64(R1, "x"), "immediate must be an int, not 'x'"),
    (lambda: JEq(R1, 0, 1.5), "jump target must be a label name or an int offset, not 1.5"),
    (lambda: Ja(None), "jump target must be a label name or an int offset, not None"),
    (lambda: Call(3.5), "helper must be a Helper, a helper id or a helper name, not 3.5"),
    (lambda: Call(None), "helper must be a Helper, a helper id or a helper name, not None"),
    (lambda: LoadMapPtr(R1, None), "map must be a name or a file descriptor, not None"),
    (lambda: LoadMapValue(R1, "m", "8"), "offset must be an int, not '8'"),
    (lambda: Label(5), "label 5 is not an identifier"),
    (lambda: If("r0 == 0", []), "If takes a conditional jump .*, not 'r0 == 0'"),
    (lambda: If(JEq(R0, 0, "out"), []), "If takes a conditional jump .*, not if r0 == 0 goto out"),
    (lambda: Program(LoadMapPtr(R1, "m"), Exit()).encode({"m": "3"}),
     "map 'm': file descriptor must be an int, not '3'"),
])
def test_builder_input_of_the_wrong_kind_is_an_asm_error_that_names_it(build, message):
    with pytest.raises(AsmError, match=message):
        build()
