"""Instruction lengths of x86-64 machine code, so that a uprobe is only ever placed on an instruction boundary.

A length decoder, not a disassembler: it reads the prefixes, the opcode, the ModRM/SIB/displacement
bytes and the size of the immediate, and nothing of what an instruction does. Table-driven, pure
Python, under a microsecond an instruction. Where Intel and AMD differ (a 66 prefix on a near
jump or call), it follows Intel and the kernel's own decoder (arch/x86/lib/x86-opcode-map.txt).
"""

from __future__ import annotations

__all__ = ["MAX_LENGTH", "instruction_length", "instruction_starts"]

MAX_LENGTH = 15  # longer encodings fault (#GP) on every x86 CPU

# What follows an opcode byte, one small int per opcode: the immediate's kind in the low 4 bits,
# _MODRM when a ModRM byte (and any SIB and displacement) comes first.
_NONE, _IB, _IW, _IZ, _IV, _ID, _MOFFS, _ENTER, _TEST_B, _TEST_Z, _IB_IB = range(11)
_MODRM = 0x10
_REG_ONLY = 0x20  # mov to/from control and debug registers: the CPU ignores ModRM.mod, no memory operand
# Bytes that are not a whole opcode: prefixes and escapes, each handled by the decoding loop.
_PREFIX, _OPSIZE, _ADDRSIZE, _REX, _ESCAPE_0F, _VEX2, _VEX3, _EVEX, _POP_OR_XOP, _INVALID = range(0x40, 0x4A)
_SPECIAL = 0x40

_FIXED_IMMEDIATE = {_NONE: 0, _IB: 1, _IW: 2, _ID: 4, _ENTER: 3, _IB_IB: 2}


def _table(default: int, *entries: tuple[str, int]) -> bytes:
    """A 256-entry table from ("00-03 08 0c", kind) pairs: opcodes and opcode ranges, in hex."""
    table = bytearray([default]) * 256
    for opcodes, kind in entries:
        for item in opcodes.split():
            first, _, last = item.partition("-")
            for op in range(int(first, 16), int(last or first, 16) + 1):
                table[op] = kind
    return bytes(table)


# The one-byte opcode map in 64-bit mode (Intel SDM vol. 2, table A-2).
_ONE_BYTE = _table(
    _NONE,
    ("00-03 08-0b 10-13 18-1b 20-23 28-2b 30-33 38-3b 63 84-8e d0-d3 d8-df fe ff", _MODRM),
    ("04 0c 14 1c 24 2c 34 3c 6a 70-7f a8 b0-b7 cd e0-e7 eb", _IB),
    ("05 0d 15 1d 25 2d 35 3d 68 a9", _IZ),
    ("6b 80 83 c0 c1 c6", _MODRM | _IB),
    ("69 81 c7", _MODRM | _IZ),
    ("c2 ca", _IW),
    ("c8", _ENTER),
    ("e8 e9", _ID),  # call/jmp rel32: a 66 prefix does not shorten them in 64-bit mode
    ("b8-bf", _IV),  # mov $imm, reg: imm64 with REX.W (movabs)
    ("a0-a3", _MOFFS),  # mov moffs: an 8-byte address, 4 with a 67 prefix
    ("f6", _MODRM | _TEST_B),  # group 3: only test (/0, /1) has an immediate
    ("f7", _MODRM | _TEST_Z),
    ("26 2e 36 3e 64 65 f0 f2 f3", _PREFIX),
    ("66", _OPSIZE),
    ("67", _ADDRSIZE),
    ("40-4f", _REX),
    ("0f", _ESCAPE_0F),
    ("c5", _VEX2),
    ("c4", _VEX3),
    ("62", _EVEX),
    ("8f", _POP_OR_XOP),
    ("06 07 0e 16 17 1e 1f 27 2f 37 3f 60 61 82 9a ce d4 d5 d6 ea", _INVALID),
)

# The two-byte map, 0F xx (table A-3). The three-byte maps are uniform and need no table: every
# 0F 38 xx has a ModRM and no immediate, every 0F 3A xx a ModRM and an imm8. 0F 0F is 3DNow!, whose
# opcode comes after the operands, where an imm8 would be.
_TWO_BYTE = _table(
    _MODRM,
    ("05-09 0b 0e 30-35 37 77 a0-a2 a8-aa c8-cf", _NONE),
    ("04 0a 0c 24-27 36 39 3b-3f 7a 7b a6 a7", _INVALID),
    ("0f 70-73 a4 ac ba c2 c4-c6", _MODRM | _IB),
    ("80-8f", _ID),  # jcc rel32
    ("20-23", _MODRM | _REG_ONLY),
)

# VEX and EVEX maps by number: 1 is 0F, 2 is 0F 38, 3 is 0F 3A, 5 and 6 are AVX512-FP16's.
_VEX_0F = _table(_MODRM, ("70-73 c2 c4-c6", _MODRM | _IB), ("77", _NONE))  # 77: vzeroupper, vzeroall
_VEX_MAPS = {1: _VEX_0F, 2: _table(_MODRM), 3: _table(_MODRM | _IB)}
_EVEX_MAPS = {**_VEX_MAPS, 1: _table(_MODRM, ("70-73 c2 c4-c6", _MODRM | _IB)), 5: _table(_MODRM), 6: _table(_MODRM)}
# AMD's XOP (8F with map 8, 9 or 10; 8F with ModRM.reg 0 is pop).
_XOP_MAPS = {8: _table(_MODRM | _IB), 9: _table(_MODRM), 10: _table(_MODRM | _ID)}


def instruction_length(code: bytes, at: int = 0) -> int | None:
    """The length in bytes of the instruction at ``code[at]``; None when it is not one (or is cut short)."""
    i = at
    limit = min(len(code), at + MAX_LENGTH)
    opsize16 = addr32 = False
    rep = rex_w = 0
    try:
        kind = _ONE_BYTE[code[i]]
        while kind >= _SPECIAL:
            byte = code[i]
            i += 1
            if kind == _REX:
                rex_w = byte & 8  # a REX prefix counts only just before the opcode: cleared by any prefix after it
            elif kind == _PREFIX:
                rex_w = 0
                if byte >= 0xF2:
                    rep = byte
            elif kind == _OPSIZE:
                rex_w, opsize16 = 0, True
            elif kind == _ADDRSIZE:
                rex_w, addr32 = 0, True
            elif kind == _ESCAPE_0F:
                opcode = code[i]
                i += 1
                if opcode == 0x38:
                    kind, i = _MODRM, i + 1
                elif opcode == 0x3A:
                    kind, i = _MODRM | _IB, i + 1
                else:
                    kind = _TWO_BYTE[opcode]
                    if opcode == 0x78 and (opsize16 or rep == 0xF2):  # SSE4a extrq, insertq: two imm8
                        kind = _MODRM | _IB_IB
                break
            elif kind == _VEX2:  # C5 [R vvvv L pp], always map 0F
                kind, i = _VEX_0F[code[i + 1]], i + 2
                break
            elif kind == _VEX3:  # C4 [RXB mmmmm] [W vvvv L pp]
                kind, i = _VEX_MAPS[code[i] & 0x1F][code[i + 2]], i + 3
                break
            elif kind == _EVEX:  # 62 [RXBR' 0 mmm] [W vvvv 1 pp] [z L'L b V' aaa]
                kind, i = _EVEX_MAPS[code[i] & 0x07][code[i + 3]], i + 4
                break
            elif kind == _POP_OR_XOP:
                if code[i] & 0x38 == 0:
                    kind = _MODRM
                else:  # 8F [RXB mmmmm] [W vvvv L pp]
                    kind, i = _XOP_MAPS[code[i] & 0x1F][code[i + 2]], i + 3
                break
            else:
                return None
            kind = _ONE_BYTE[code[i]]
        else:
            i += 1
        if kind >= _SPECIAL:  # an invalid 0F xx
            return None
        if kind & _MODRM:
            modrm = code[i]
            i += 1
            mod = modrm >> 6
            if mod != 3 and not kind & _REG_ONLY:
                if modrm & 7 == 4:  # a SIB byte; base 5 with mod 0 means a disp32 and no base
                    i += 1
                    if mod == 0 and code[i - 1] & 7 == 5:
                        i += 4
                elif mod == 0 and modrm & 7 == 5:  # RIP-relative
                    i += 4
                i += (0, 1, 4)[mod]
        immediate = kind & 0x0F
        if immediate == _IZ:
            i += 2 if opsize16 and not rex_w else 4
        elif immediate == _IV:
            i += 8 if rex_w else 2 if opsize16 else 4
        elif immediate == _MOFFS:
            i += 4 if addr32 else 8
        elif immediate == _TEST_B or immediate == _TEST_Z:
            if modrm >> 3 & 6 == 0:  # ModRM.reg 0 or 1: test
                i += 1 if immediate == _TEST_B else 2 if opsize16 and not rex_w else 4
        else:
            i += _FIXED_IMMEDIATE[immediate]
    except (IndexError, KeyError):  # cut short, or a VEX/EVEX/XOP map that does not exist
        return None
    return i - at if i <= limit else None


def instruction_starts(code: bytes, stop: int | None = None) -> tuple[list[int], int]:
    """Where each instruction starts, decoding one after another from ``code[0]`` while before ``stop``.

    Returns (starts, end): ``end`` is where decoding stopped. ``end >= stop`` (default ``len(code)``)
    when every instruction was decoded, the last one possibly running past ``stop``; ``end < stop``
    when the bytes at ``end`` are not an instruction this decoder knows (data, or cut short).
    """
    stop = len(code) if stop is None else stop
    starts: list[int] = []
    at = 0
    length = instruction_length
    while at < stop:
        n = length(code, at)
        if n is None:
            break
        starts.append(at)
        at += n
    return starts, at
