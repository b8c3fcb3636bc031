"""Helper-call edge cases, checked against llvm-mc itself (Debian's llvm-19) where it is installed:
the immediates it accepts, a call of a label as its linker resolves it, and the callx it encodes
but the kernel refuses."""

import re
import subprocess

import pytest

import needs

from netprof.asm import AsmError, assemble, decode, disassemble

LLVM = ("-triple", "bpfel", "-mcpu=v4")


@pytest.fixture(scope="module")
def llvm_mc():
    return needs.tool("llvm-mc-19", "llvm-19")


def llvm_encoding(llvm_mc: str, line: str) -> bytes:
    """The bytes llvm-mc encodes ``line`` to."""
    out = subprocess.run([llvm_mc, *LLVM, "-show-encoding"], input=line + "\n", capture_output=True, text=True,
                         check=True).stdout
    (encoding,) = re.findall(r"# encoding: \[([^\]]*)\]", out)
    return bytes(int(b, 16) for b in encoding.split(","))


@pytest.mark.parametrize("text", [
    "call 0", "call 1", "call -1", "call -0x1", "call 0xffffffff", "call 4294967295", "call 2147483647",
    "call 2147483648", "call -2147483648", "call 0x80000000", "call +5",
])
def test_helper_call_immediates_encode_as_llvm_mc_encodes_them(llvm_mc, text):
    assert assemble(text) == llvm_encoding(llvm_mc, text)
    assert assemble(disassemble(assemble(text))) == assemble(text)


@pytest.mark.parametrize("text", ["call 4294967296", "call -2147483649"])
def test_helper_ids_beyond_32_bits_are_refused_where_llvm_mc_truncates_them(llvm_mc, text):
    llvm_encoding(llvm_mc, text)  # llvm-mc keeps the low 32 bits without a word
    with pytest.raises(AsmError, match=r"helper id -?\d+ is out of range \[-2147483648, 4294967295\]"):
        assemble(text)


def test_a_call_of_a_label_encodes_as_llvm_mc_resolves_it(llvm_mc, tmp_path):
    source = "call f\nexit\nf:\nr0 = 1\nexit\ncall f\nexit\n"
    (tmp_path / "calls.s").write_text(source)
    subprocess.run([llvm_mc, *LLVM, "-filetype=obj", str(tmp_path / "calls.s"), "-o", str(tmp_path / "calls.o")],
                   check=True)
    objcopy = needs.tool("llvm-objcopy-19", "llvm-19")
    subprocess.run([objcopy, "-O", "binary", "--only-section=.text", str(tmp_path / "calls.o"),
                    str(tmp_path / "calls.bin")], check=True)
    assert assemble(source) == (tmp_path / "calls.bin").read_bytes()


def test_callx_is_refused_though_llvm_mc_encodes_it(llvm_mc):
    code = llvm_encoding(llvm_mc, "callx r1")
    assert code == bytes.fromhex("8d01000000000000")  # BPF_JMP | BPF_CALL | BPF_X, the register in dst
    for attempt in (lambda: assemble("callx r1"), lambda: assemble("call r1"), lambda: decode(code)):
        with pytest.raises(AsmError, match=r"callx \(a call through a register\) is reserved"):
            attempt()
