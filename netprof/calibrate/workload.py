"""The calibration workload: an x86-64 executable, written byte by byte, that calls each of a
few tiny functions CALLS times in a row and exits. Each function starts with a different first
instruction, the one a uprobe on it is placed on, so that probing them all measures what a hit
costs at each kind of site on the running kernel (emulated or single-stepped, and how much).

It needs no compiler, no libc and no dynamic loader: an ELF header, one loadable segment, and a
symbol table so that the functions are probed by name like any other program's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

BASE = 0x400000
TEXT = 0x1000  # file offset (and BASE + TEXT the address) of the code
ALIGN = 16
ET_DYN = 3  # position independent (every jump and call is relative): loaded at a random address, as a PIE is


@dataclass(frozen=True)
class Site:
    """A function whose first instruction is ``first`` (hex); ``body(here, helper)`` is its code,
    given its own address and that of a function that only returns."""

    name: str
    insn: str      # as objdump would print it
    first: str     # its bytes, in hex
    rest: str = "c3"  # what follows it, in hex: by default a ret

    def code(self, here: int, helper: int) -> bytes:
        first = bytes.fromhex(self.first)
        if self.first in ("e8", "e9"):  # call/jmp rel32 to the helper
            first += struct.pack("<i", helper - (here + 5))
        return first + bytes.fromhex(self.rest)


# One site of each kind a function may start with: what arch/x86/kernel/uprobes.c may emulate
# (push, nop, call, jmp, jcc) and what compilers put first otherwise.
SITES = (
    Site("at_endbr64", "endbr64", "f30f1efa"),
    Site("at_push", "push %rbp", "55", "5dc3"),
    Site("at_push_rex", "push %r12", "4154", "415cc3"),
    Site("at_nop", "nop", "90"),
    Site("at_nopl", "nopl 0x0(%rax,%rax,1)", "0f1f440000"),
    Site("at_call", "call rel32", "e8"),
    Site("at_jmp", "jmp rel32", "e9", ""),
    Site("at_jcc", "je rel8", "7400"),
    Site("at_sub", "sub $0x8,%rsp", "4883ec08", "4883c408c3"),
    Site("at_mov", "mov %rdi,%rax", "4889f8"),
    Site("at_xor", "xor %eax,%eax", "31c0"),
    Site("at_ret", "ret", "c3", ""),
)


@dataclass(frozen=True)
class Workload:
    image: bytes
    symbols: dict[str, int]  # function name -> address


def build(calls: int, rounds: int = 1, sites: tuple[Site, ...] = SITES) -> Workload:
    """The executable: ``rounds`` times over, for each site in turn, ``calls`` calls of its function;
    then exit(0)."""
    if not (0 < calls < 1 << 31 and 0 < rounds < 1 << 31):
        raise ValueError(f"calls and rounds must be 1 to 2**31-1, not {calls} and {rounds}")
    start = BASE + TEXT
    # mov rounds (6); a site: mov (6), call (5), dec (3), jnz (6); dec and jnz rounds (9); exit (9)
    driver_size = 6 + 20 * len(sites) + 9 + 9
    helper = _aligned(start + driver_size)
    functions, at = {}, _aligned(helper + 1)
    for site in sites:
        functions[site.name] = at
        at = _aligned(at + len(site.code(at, helper)))
    code = bytearray(b"\x41\xbd" + struct.pack("<I", rounds))            # mov $rounds, %r13d
    again = start + len(code)
    for site in sites:
        code += b"\x41\xbc" + struct.pack("<I", calls)                      # mov $calls, %r12d
        top = start + len(code)
        code += b"\xe8" + struct.pack("<i", functions[site.name] - (top + 5))  # call site
        code += b"\x41\xff\xcc"                                              # dec %r12d
        code += b"\x0f\x85" + struct.pack("<i", top - (start + len(code) + 6))  # jnz top
    code += b"\x41\xff\xcd"                                                  # dec %r13d
    code += b"\x0f\x85" + struct.pack("<i", again - (start + len(code) + 6))    # jnz again
    code += bytes.fromhex("b83c000000" "31ff" "0f05")                        # exit(0)
    code += b"\xcc" * (helper - start - len(code)) + b"\xc3"
    for site in sites:
        code += b"\xcc" * (functions[site.name] - start - len(code))
        code += site.code(functions[site.name], helper)
    sizes = {s.name: len(s.code(functions[s.name], helper)) for s in sites}
    return Workload(_elf(bytes(code), start, functions, sizes), functions)


def _aligned(address: int) -> int:
    return -(-address // ALIGN) * ALIGN


def _elf(code: bytes, entry: int, functions: dict[str, int], sizes: dict[str, int]) -> bytes:
    """ELF64 little-endian ET_EXEC for x86-64: one R+X PT_LOAD of the file's first pages, then
    .symtab/.strtab/.shstrtab (not loaded) and the section headers."""
    strtab = bytearray(b"\0")
    symtab = bytearray(24)  # symbol 0 is null
    for name, address in functions.items():
        symtab += struct.pack("<IBBHQQ", len(strtab), 0x12, 0, 1, address, sizes[name])  # GLOBAL FUNC in .text
        strtab += name.encode() + b"\0"
    shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    text_end = TEXT + len(code)
    symtab_at = _aligned(text_end)
    strtab_at = symtab_at + len(symtab)
    shstrtab_at = strtab_at + len(strtab)
    sections_at = _aligned(shstrtab_at + len(shstrtab))
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), ET_DYN, 62, 1, entry, 64,
                         sections_at, 0, 64, 56, 1, 64, 5, 4)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, text_end, text_end, 0x1000)  # PT_LOAD, R+X
    image = bytearray(header + segment)
    image += bytes(TEXT - len(image)) + code
    image += bytes(symtab_at - len(image)) + symtab + strtab + shstrtab
    image += bytes(sections_at - len(image))
    shdr = struct.Struct("<IIQQQQIIQQ")
    image += bytes(64)                                                                    # null
    image += shdr.pack(1, 1, 6, BASE + TEXT, TEXT, len(code), 0, 0, 16, 0)               # .text: PROGBITS, AX
    image += shdr.pack(7, 2, 0, 0, symtab_at, len(symtab), 3, 1, 8, 24)                  # .symtab -> .strtab
    image += shdr.pack(15, 3, 0, 0, strtab_at, len(strtab), 0, 0, 1, 0)                  # .strtab
    image += shdr.pack(23, 3, 0, 0, shstrtab_at, len(shstrtab), 0, 0, 1, 0)              # .shstrtab
    return bytes(image)
