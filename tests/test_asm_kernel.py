"""Programs built by netprof.asm pass this machine's real verifier and compute the right values.

Each case runs in the kernel through BPF_PROG_TEST_RUN (a socket filter on a dummy packet):
the program leaves a 64-bit result in r7, which an epilogue stores into an array map that the
test reads back. This checks the encodings by their effect, not only by their bytes.
"""

import os
import struct

import pytest

from netprof.asm import (
    FP, R0, R1, R2, R6, R7, R8, S8, S16, S32, U8, U16, U32, U64, W7, Add, Arsh,
    AtomicAdd, AtomicCmpXchg, AtomicOr, AtomicXchg, Bswap, Call, CallFunc, Exit, Helper, If, JEq,
    Ja, JSGt, JSLt, Label, Or, Load, LoadAbs, LoadAcquire, LoadImm64, LoadInd, LoadMapPtr,
    LoadMapValue, Loop, Lsh, MayGoto, Mov, MovSx, Mul, Neg, Program, Return, Rsh, SDiv, SMod, Store,
    StoreRelease, ToBE, ToLE, assemble, parse,
)
from netprof.loader.program import VerifierError, load
from netprof.loader.syscall import MapType, ProgType, map_create, map_lookup, prog_test_run

pytestmark = pytest.mark.root

PACKET = bytes(range(64))


@pytest.fixture(scope="module", autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.fail("the kernel tests need root: run them with sudo (CI runs as root)")


@pytest.fixture(scope="module")
def result_map():
    fd = map_create(MapType.ARRAY, 4, 8, 1, "asm_result")
    yield fd
    os.close(fd)


def epilogue():
    """Store r7 in result[0], return 0."""
    return [
        Store(FP, -4, 0, U32), LoadMapPtr(R1, "result"), Mov(R2, FP), Add(R2, -4),
        Call(Helper.map_lookup_elem), JEq(R0, 0, "__out"), Store(R0, 0, R7, U64),
        Label("__out"), Return(0),
    ]


def run(result_map, *body, subprograms=()):
    """Run ``body`` (result in r7); bpf-to-bpf functions go after the main program's exit."""
    program = Program(Mov(R6, R1), body, epilogue(), subprograms)
    with load(program, ProgType.SOCKET_FILTER, name="asm_test", maps={"result": result_map}) as prog:
        retval, _ = prog_test_run(prog.fd, PACKET)
    assert retval == 0
    return struct.unpack("<Q", map_lookup(result_map, bytes(4), 8))[0]


def u64(value):
    return value & 0xFFFF_FFFF_FFFF_FFFF


CASES = {
    "sdiv": ([Mov(R7, -7), SDiv(R7, 2)], u64(-3)),
    "smod": ([Mov(R7, -7), SMod(R7, 3)], u64(-1)),
    "rsh": ([Mov(R7, -7), Rsh(R7, 1)], u64(-7) >> 1),
    "sdiv32 zero-extends": ([Mov(W7, -9), SDiv(W7, 3)], u64(-3) & 0xFFFF_FFFF),
    "movsx8": ([Mov(R1, 0x80), MovSx(R7, R1, 8)], u64(-128)),
    "movsx16": ([Mov(R1, 0x8001), MovSx(R7, R1, 16)], u64(-32767)),
    "movsx32": ([LoadImm64(R1, 0x1_8000_0000), MovSx(R7, R1, 32)], u64(-(1 << 31))),
    "neg": ([Mov(R7, 5), Neg(R7)], u64(-5)),
    "arsh": ([Mov(R7, -64), Arsh(R7, 3)], u64(-8)),
    "ld_imm64": ([LoadImm64(R7, 0x0123_4567_89AB_CDEF)], 0x0123_4567_89AB_CDEF),
    "bswap64": ([LoadImm64(R7, 0x0102_0304_0506_0708), Bswap(R7, 64)], 0x0807_0605_0403_0201),
    "bswap16 truncates": ([LoadImm64(R7, 0x0102_0304_0506_0708), Bswap(R7, 16)], 0x0807),
    "be32": ([Mov(R7, 0x11223344), ToBE(R7, 32)], 0x44332211),
    "le64 is identity here": ([LoadImm64(R7, 0x1122_3344_5566_7788), ToLE(R7, 64)], 0x1122_3344_5566_7788),
    "load s8": ([Store(FP, -16, 0xF0, U8), Load(R7, FP, -16, S8)], u64(-16)),
    "load s16": ([Store(FP, -16, 0x8000, U16), Load(R7, FP, -16, S16)], u64(-32768)),
    "load s32": ([Store(FP, -16, -2, U32), Load(R7, FP, -16, S32)], u64(-2)),
    "load u32": ([Store(FP, -16, -2, U32), Load(R7, FP, -16, U32)], 0xFFFF_FFFE),
    "atomic fetch add": ([Store(FP, -16, 40, U64), Mov(R7, 2), AtomicAdd(FP, -16, R7, fetch=True),
                          Load(R1, FP, -16, U64), Lsh(R1, 32), Or(R7, R1)], (42 << 32) | 40),
    "atomic or": ([Store(FP, -16, 1, U64), Mov(R1, 6), AtomicOr(FP, -16, R1), Load(R7, FP, -16, U64)], 7),
    "xchg": ([Store(FP, -16, 9, U64), Mov(R7, 3), AtomicXchg(FP, -16, R7), Load(R1, FP, -16, U64),
              Mul(R7, 10), Add(R7, R1)], 93),
    "cmpxchg hit": ([Store(FP, -16, 5, U64), Mov(R0, 5), Mov(R1, 8), AtomicCmpXchg(FP, -16, R1),
                     Load(R7, FP, -16, U64)], 8),
    "cmpxchg miss": ([Store(FP, -16, 5, U64), Mov(R0, 4), Mov(R1, 8), AtomicCmpXchg(FP, -16, R1),
                      Mov(R7, R0)], 5),
    "load-acquire/store-release": ([Mov(R1, 77), StoreRelease(FP, -16, R1, U64), LoadAcquire(R7, FP, -16, U64)],
                                   77),
    # Socket filters see the packet after its 14-byte Ethernet header; loads are big-endian.
    "ld_abs": ([LoadAbs(5, U16), Mov(R7, R0)], 0x1314),
    "ld_ind": ([Mov(R8, 10), LoadInd(R8, 2, U32), Mov(R7, R0)], 0x1A1B1C1D),
    "jmp32 compares low halves": ([LoadImm64(R1, 0x1_0000_0000), Mov(R7, 1),
                                   JEq(R1.narrow, 0, "zero"), Mov(R7, 2), Label("zero")], 1),
    "signed compare": ([Mov(R1, -1), Mov(R7, 0), If(JSLt(R1, 0, 0), [Mov(R7, 1)], [Mov(R7, 2)])], 1),
    "bounded loop": ([Mov(R7, 0), Loop(R8, 10, [Add(R7, R8)])], 45),
    "may_goto": ([Mov(R7, 0), Label("again"), MayGoto("done"), Add(R7, 1), Ja("again"), Label("done")],
                 None),
}


def test_bpf_to_bpf_call(result_map):
    double = [Label("double"), Mov(R0, R1), Add(R0, R1), Exit()]
    assert run(result_map, Mov(R1, 20), CallFunc("double"), Mov(R7, R0), subprograms=double) == 40


@pytest.mark.parametrize("name", list(CASES))
def test_semantics(result_map, name):
    body, expected = CASES[name]
    got = run(result_map, *body)
    if expected is None:  # may_goto: the kernel's budget (count or time) decides how often
        assert got > 1000
    else:
        assert got == expected, f"{name}: {got:#x} != {expected:#x}"


def test_far_jumps_are_relaxed_and_land_right(result_map):
    filler = [Add(R1, 1)] * 40000  # beyond a 16-bit offset
    program = [
        Mov(R1, 0), Mov(R7, 1),
        JSGt(R7, 0, "far"),         # conditional, too far: becomes if/goto/gotol
        filler, Ja("end"),          # too far as well
        Label("far"), Add(R7, 10),
        JEq(R7, 0, "filler"),
        Ja("end"),                  # unconditional, too far: becomes gotol
        Label("filler"), filler,
        Label("end"),
    ]
    linked = Program(program, Exit()).link()
    assert sum(insn.is_gotol for insn in linked.instructions) == 3
    assert linked.slot_count == len(Program(program, Exit())) + 2
    assert run(result_map, *program) == 11


def test_global_data_through_map_value(result_map):
    got = run(result_map, LoadMapValue(R1, "result", 0), Store(R1, 0, 1234, U64), Load(R7, R1, 0, U64))
    assert got == 1234


def test_text_program_passes_the_verifier(result_map):
    code = assemble("""
        r6 = r1
        *(u32 *)(r10 - 4) = 0
        r2 = r10
        r2 += -4
        r1 = result ll
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 0x1122334455667788 ll
        r1 = bswap64 r1
        w2 = (s8)w1                 # 0x11 -> 17
        r2 = (s32)r2
        r3 = 5
        r3 s%= 3
        r2 += r3
        *(u64 *)(r10 - 16) = r2
        r4 = 1
        lock *(u64 *)(r10 - 16) += r4
        r4 = atomic_fetch_add((u64 *)(r10 - 16), r4)
        r4 = *(u64 *)(r10 - 16)
        *(u64 *)(r0 + 0) = r4
    out:
        r0 = 0
        exit
    """, maps={"result": result_map})
    with load(code, ProgType.SOCKET_FILTER, name="asm_text") as prog:
        prog_test_run(prog.fd, PACKET)
    assert struct.unpack("<Q", map_lookup(result_map, bytes(4), 8))[0] == 17 + 2 + 2


def test_verifier_rejects_what_the_assembler_cannot_catch():
    # Reading an uninitialised register is legal bytecode: the kernel, not the assembler, refuses it.
    program = parse("r0 = 1\nr0 = r5\nexit")
    with pytest.raises(VerifierError) as info:
        load(program, ProgType.SOCKET_FILTER, name="asm_bad")
    assert "R5 !read_ok" in info.value.log
    assert info.value.slot == 1
    assert info.value.source == "line 2, column 1: r0 = r5"


def probe_programs():
    """(name, program, type) of netprof's own probe programs, in each of their variants."""
    from netprof.loader.btf import vmlinux
    from netprof.probes import packets, span_probe as spans
    from netprof.format.layout import RX, TX

    offsets = packets.Offsets.from_btf(vmlinux())
    tgid = vmlinux().member_offset("struct task_struct", "tgid")
    out = [(f"span kind={kind} arg={arg} follow={follow}", spans.span_program(7, kind, arg, follow),
            ProgType.TRACEPOINT)
           for kind in (0, 1) for arg in (spans.Arg(8), spans.Arg(8, 2), None) for follow in (False, True)]
    out.append(("fork", spans.fork_program(tgid), ProgType.RAW_TRACEPOINT))
    out.append(("xdp", packets.xdp_program(7, 256), ProgType.XDP))
    out += [(f"throughput direction={direction} netns={netns}",
             packets.throughput_program(direction, offsets, netns, 1_000_000), ProgType.RAW_TRACEPOINT)
            for direction in (RX, TX) for netns in (0, 4026531840)]
    return out


def test_the_probe_programs_pass_the_verifier():
    """Loaded only, with maps of the session's kinds and sizes: nothing is attached."""
    from netprof.probes import packets, span_probe as spans

    u32, u64, fds = 4, 8, {}
    maps = {"events": (MapType.RINGBUF, 0, 0, 1 << 16), "packets": (MapType.RINGBUF, 0, 0, 1 << 16),
            "lost": (MapType.PERCPU_ARRAY, u32, u64, spans.MAX_PROBES), "control": (MapType.ARRAY, u32, u32, 1),
            "follow": (MapType.HASH, u32, u64, 16), "overflow": (MapType.ARRAY, u32, u64, 1),
            "counts": (MapType.PERCPU_HASH, packets.THROUGHPUT_KEY, packets.THROUGHPUT_VALUE, 16)}
    try:
        for name, (map_type, key, value, entries) in maps.items():
            fds[name] = map_create(map_type, key, value, entries, f"np_{name}")
        for what, program, prog_type in probe_programs():
            try:
                with load(program, prog_type, name="np_check", maps={m: fds[m] for m in program.map_names}):
                    pass
            except VerifierError as err:
                pytest.fail(f"{what}: {err}")
    finally:
        for fd in fds.values():
            os.close(fd)
