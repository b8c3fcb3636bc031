"""Builder, labels, linking (relaxation of far jumps) and the text forms other tools print."""

import pytest

from netprof.asm import (
    FP, R0, R1, R2, R6, U64, W1, Add, AsmError, Call, CallFunc, Exit, Helper, If, Ja, JEq, JLe, JNe, JSet, Label,
    LoadMapPtr, LoadMapValue, Loop, Mov, Program, Return, Store, assemble, decode, disassemble, parse,
    unique_label,
)


def test_builder_matches_text():
    built = Program(
        Mov(R0, 0),
        LoadMapPtr(R1, "events"),
        JEq(R2, 0, "out"),
        Add(W1, 1),
        Store(FP, -8, R0, U64),
        Call(Helper.map_lookup_elem),
        Label("out"),
        Exit(),
    )
    text = parse("""
        r0 = 0
        r1 = events ll
        if r2 == 0 goto out
        w1 += 1
        *(u64 *)(r10 - 8) = r0
        call bpf_map_lookup_elem
    out:
        exit
    """)
    assert built.instructions == text.instructions
    assert built.labels == text.labels == {"out": 6}
    assert built.encode({"events": 9}) == text.encode({"events": 9})
    assert str(built) == str(text)
    assert str(built).endswith("\tcall bpf_map_lookup_elem\nout:\n\texit")


def test_program_listing_reassembles():
    prog = Program(Mov(R0, 1), If(JNe(R0, 0, 0), [Mov(R1, 1)], [Mov(R1, 2)]), Loop(R6, 4, [Add(R0, R6)]), Exit())
    assert assemble(str(prog)) == prog.encode()


def test_calls_by_name_id_and_member():
    assert Call("map_lookup_elem") == Call("bpf_map_lookup_elem") == Call(Helper.map_lookup_elem) == Call(1)
    assert assemble("call bpf_ktime_get_ns") == assemble("call 5") == assemble("call bpf_ktime_get_ns#5")


def test_call_label_is_bpf_to_bpf_call():
    prog = parse("call f\nexit\nf:\nr0 = 1\nexit")
    assert prog[0].is_pseudo_call
    assert disassemble(prog.encode()).splitlines()[0] == "call pc+1"
    assert Program(CallFunc("f"), Exit(), Label("f"), Return(1)).encode() == prog.encode()


def test_label_ld_imm64_is_function_address_and_name_is_map():
    prog = parse("r2 = cb ll\nr1 = counts ll\nexit\ncb:\nexit")
    assert prog[0].is_func_ref and prog[0].target == "cb"
    assert prog[1].map == "counts"
    assert disassemble(prog.encode({"counts": 4})).splitlines()[:2] == ["r2 = func(+4) ll", "r1 = map_fd(4) ll"]


def test_map_value_symbol():
    assert assemble("r1 = map_value(data, 16) ll", {"data": 3}) == LoadMapValue(R1, 3, 16).encode()
    assert Program(LoadMapValue(R1, "data", 16), Exit()).link().map_slots() == [(0, "data")]


def _targets(linked):
    """Absolute target slot of every jump in a linked program."""
    out, slot = {}, 0
    for insn in linked.instructions:
        if insn.relative is not None:
            out[slot] = slot + 1 + insn.relative
        slot += insn.slots
    return out


def test_far_goto_becomes_gotol_and_far_condition_is_rewritten():
    filler = [Mov(R1, 0)] * 33000
    prog = Program(Ja("end"), JEq(R1, 5, "end"), JSet(W1, 1, "end"), filler, Label("end"), Exit())
    linked = prog.link()
    insns = linked.instructions
    assert str(insns[0]) == "gotol +33006"
    assert [str(i) for i in insns[1:4]] == ["if r1 == 5 goto +1", "goto +1", "gotol +33003"]
    assert [str(i) for i in insns[4:7]] == ["if w1 & 1 goto +1", "goto +1", "gotol +33000"]
    end = linked.slot_count - 1
    assert _targets(linked)[0] == _targets(linked)[3] == _targets(linked)[6] == end
    assert linked.origin[1:4] == [1, 1, 1]
    code = linked.encode()
    assert assemble(disassemble(code)) == code


def test_relaxation_keeps_numeric_offsets_pointing_at_the_same_instruction():
    filler = [Mov(R1, 0)] * 33000
    prog = Program(JEq(R1, 0, 2), Ja("far"), Mov(R0, 7), Exit(), filler, Label("far"), Exit())
    linked = prog.link()
    assert str(linked.instructions[0]) == "if r1 == 0 goto +2"  # ja -> gotol keeps its size
    assert linked.origin[_targets(linked)[0]] == 3
    prog = Program(JEq(R1, 0, 3), JNe(R1, 1, "far"), Mov(R0, 7), Exit(), filler, Label("far"), Exit())
    linked = prog.link()
    assert str(linked.instructions[0]) == "if r1 == 0 goto +5"  # the condition grew to three slots
    assert linked.origin[_targets(linked)[0]] == 4


def test_jumps_into_the_middle_of_ld_imm64_or_outside_stay_raw():
    assert assemble("goto +5") == bytes.fromhex("0500050000000000")
    code = assemble("goto +1\nr1 = 1 ll\nexit")
    assert disassemble(code, labels=True).splitlines()[0] == "\tgoto +1"


def test_verifier_log_and_objdump_lines_are_accepted():
    log = """
    0: (bf) r6 = r1
    1: (b7) r0 = 0
    2: (7b) *(u64 *)(r10 -8) = r0
    3: (18) r1 = 0xffff888003a4c000
    5: (85) call bpf_map_lookup_elem#1
    6: (15) if r0 == 0x0 goto pc+1
    7: (db) lock *(u64 *)(r0 +0) += r6
    8: (95) exit
    """
    prog = parse(log)
    assert [str(i) for i in prog] == [
        "r6 = r1", "r0 = 0", "*(u64 *)(r10 - 8) = r0", "r1 = 0xffff888003a4c000 ll", "call bpf_map_lookup_elem",
        "if r0 == 0 goto +1", "lock *(u64 *)(r0 + 0) += r6", "exit",
    ]
    dump = """
       0:\t85 00 00 00 03 00 00 00\tcall 0x3
       1:\t18 01 00 00 34 12 00 00 00 00 00 00 01 00 00 00\tr1 = 0x100001234 ll
       3:\t15 01 00 00 00 00 00 00\tif r1 == 0x0 goto +0x0 <.text+0x88>
       4:\t71 10 00 00 00 00 00 00\tw0 = *(u8 *)(r1 + 0x0)
    """
    assert [str(i) for i in parse(dump)] == [
        "call bpf_map_delete_elem",
        "r1 = 0x100001234 ll", "if r1 == 0 goto +0", "r0 = *(u8 *)(r1 + 0)",
    ]


def test_kernel_atomic_spellings():
    assert assemble("r2 = atomic64_fetch_add((u64 *)(r1 +8), r2)") == \
        assemble("r2 = atomic_fetch_add((u64 *)(r1 + 8), r2)")
    assert assemble("r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)") == assemble("r0 = cmpxchg_64(r1 + 0, r0, r2)")
    assert assemble("w0 = atomic_cmpxchg((u32 *)(r1 +0), w0, w2)") == assemble("w0 = cmpxchg32_32(r1 + 0, w0, w2)")
    assert assemble("r2 = atomic64_xchg((u64 *)(r1 +0), r2)") == assemble("r2 = xchg_64(r1 + 0, r2)")


def test_comments_labels_on_one_line_and_llvm_header():
    text = "\t.text\nstart: r0 = 1 # one\n; a comment line\n// another\nend: exit\n"
    prog = parse(text)
    assert prog.labels == {"start": 0, "end": 1}
    assert len(prog) == 2


def test_decode_rejects_garbage_with_the_slot():
    try:
        decode(bytes.fromhex("b700000000000000" + "9500000001000000"))
    except AsmError as err:
        assert str(err).startswith("instruction 1 (95 00 00 00 01 00 00 00): imm must be 0")
    else:
        raise AssertionError("exit with imm=1 decoded")
    try:
        decode(bytes(7))
    except AsmError as err:
        assert "not a multiple of 8" in str(err)


def test_a_name_means_the_same_thing_in_every_assembler_module():
    """isa.py names the ISA's types and constants; no other module may give one of those names to
    something else (instruction.S16 was a value range while isa.S16 is a memory type)."""
    import netprof.asm
    from netprof.asm import builder, instruction, isa, plain, printer, program, syntax

    for module in (netprof.asm, builder, instruction, plain, printer, program, syntax):
        for name in vars(isa).keys() & vars(module).keys():
            if not name.startswith("_"):
                assert getattr(module, name) is getattr(isa, name), f"{module.__name__}.{name}"


def clamp(register, limit):
    """A fragment with a jump of its own: ``register = min(register, limit)``."""
    done = unique_label("clamp_done")
    return [JLe(register, limit, done), Mov(register, limit), Label(done)]


def test_a_fragment_with_unique_labels_can_be_used_twice_in_one_program():
    program = Program(Mov(R0, 90), clamp(R0, 50), clamp(R0, 10), Exit())
    assert len(program.labels) == 2 and all(name.startswith("__clamp_done") for name in program.labels)
    assert disassemble(program.encode()) == (
        "r0 = 90\nif r0 <= 50 goto +1\nr0 = 50\nif r0 <= 10 goto +1\nr0 = 10\nexit\n")
    assert assemble(str(program)) == program.encode()


def test_unique_label_takes_an_identifier():
    with pytest.raises(AsmError, match="label stem 'a b' is not an identifier"):
        unique_label("a b")


def test_any_32_bit_helper_id_is_a_call_as_llvm_mc_has_it():
    assert Call(-1) == Call(0xFFFF_FFFF) == parse("call -1")[0] == parse("call 4294967295")[0]
    assert Call(-1).encode() == bytes.fromhex("85000000ffffffff")
    assert disassemble(Call(-1).encode()) == "call -1\n"
