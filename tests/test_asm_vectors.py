"""Golden vectors from llvm-mc (and the uapi layout for what llvm-19 cannot spell)."""

from pathlib import Path

import pytest

from netprof.asm import assemble, decode, disassemble

VECTORS = [
    line.rstrip("\n").split("\t")
    for line in (Path(__file__).parent / "data/asm_vectors.txt").read_text().splitlines()
    if line and not line.startswith("#")
]


def test_vectors_cover_every_class_and_source():
    codes = {bytes.fromhex(hx)[0] for _, hx, _ in VECTORS}
    assert {code & 7 for code in codes} == set(range(8))
    assert len(VECTORS) > 600
    assert {source for source, _, _ in VECTORS} == {"llvm", "uapi"}


@pytest.mark.parametrize("source,hexcode,text", VECTORS, ids=[v[2] for v in VECTORS])
def test_vector(source, hexcode, text):
    code = bytes.fromhex(hexcode)
    assert assemble(text) == code
    assert disassemble(code) == text + "\n"
    (insn,) = decode(code)
    assert insn.encode() == code
    assert str(insn) == text
