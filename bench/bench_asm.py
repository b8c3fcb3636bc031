#!/usr/bin/env python3
"""How long assembling and disassembling a 4,096-instruction program takes (target: well under 50 ms).

Prints medians over repeated runs, next to llvm-mc-19 on the same text when it is installed
(llvm-mc's time includes its process start-up, which is what a user of it pays too).
"""

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netprof.asm import Program, assemble, decode, disassemble, parse  # noqa: E402

VECTORS = Path(__file__).resolve().parent.parent / "tests/data/asm_vectors.txt"
COUNT = 4096
RUNS = 15


def program_text() -> str:
    """4,096 instruction slots cycling through every form in the golden vectors."""
    lines, slots = [], 0
    forms = [line.split("\t") for line in VECTORS.read_text().splitlines() if line and not line.startswith("#")]
    while slots < COUNT:
        for _, hexcode, text in forms:
            if slots + len(hexcode) // 16 > COUNT:
                continue
            lines.append(text)
            slots += len(hexcode) // 16
            if slots == COUNT:
                break
    return "\n".join(lines) + "\n"


def distinct_text() -> str:
    """4,096 instruction slots, no line repeated: the vector forms with varied offsets and immediates."""
    from dataclasses import replace

    from netprof.asm import AsmError

    forms = [decode(bytes.fromhex(line.split("\t")[1]))[0]
             for line in VECTORS.read_text().splitlines() if line and not line.startswith("#")]
    lines, seen, slots, k = [], set(), 0, 0
    while slots < COUNT:
        for insn in forms:
            k += 1
            for field in ("off", "imm"):
                try:
                    insn = replace(insn, **{field: k % 30000 + 1})
                except AsmError:
                    pass
            text = str(insn)
            if text in seen or slots + insn.slots > COUNT:
                continue
            seen.add(text)
            lines.append(text)
            slots += insn.slots
            if slots == COUNT:
                break
    return "\n".join(lines) + "\n"


def median_ms(fn, runs=RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    text = program_text()
    code = assemble(text)
    assert len(code) == COUNT * 8 and assemble(disassemble(code)) == code
    program = parse(text)
    distinct = distinct_text()
    assert len(assemble(distinct)) == COUNT * 8
    rows = [
        ("assemble(text) -> bytes", median_ms(lambda: assemble(text))),
        ("assemble(text), no line repeated", median_ms(lambda: (_forget(), assemble(distinct)))),
        ("  parse(text) -> Program", median_ms(lambda: parse(text))),
        ("  Program.encode()", median_ms(program.encode)),
        ("disassemble(bytes) -> text", median_ms(lambda: disassemble(code))),
        ("  decode(bytes)", median_ms(lambda: decode(code))),
        ("Program(builder values).encode()", median_ms(lambda: Program(list(program)).encode())),
    ]
    llvm = shutil.which("llvm-mc-19")
    if llvm:
        with tempfile.NamedTemporaryFile("w", suffix=".s") as f:
            f.write(_llvm_text(text))
            f.flush()
            cmd = [llvm, "-triple", "bpfel", "-mcpu=v4", "-filetype=obj", "-o", "/dev/null", f.name]
            if subprocess.run(cmd, capture_output=True, check=False).returncode == 0:
                rows.append(("llvm-mc-19 -filetype=obj (same program)",
                             median_ms(lambda: subprocess.run(cmd, capture_output=True, check=True), runs=7)))
    print(f"{COUNT} instructions, median of {RUNS} runs, Python {sys.version.split()[0]}")
    for name, ms in rows:
        print(f"  {name:42s} {ms:8.2f} ms")


def _forget() -> None:
    """Empty the parser's statement cache, so every line is parsed afresh."""
    from netprof.asm import syntax

    syntax._parsed.clear()


def _llvm_text(text: str) -> str:
    """The program spelled for llvm-mc: only the forms it knows (the llvm vectors)."""
    spelled = {t for s, _, t in (line.split("\t") for line in VECTORS.read_text().splitlines()[1:]) if s == "llvm"}
    netprof_only = ("call ", "map_", "btf_id(", "func(")  # spellings only netprof reads
    return "\n".join(line for line in text.splitlines()
                     if line in spelled and not any(word in line for word in netprof_only)) + "\n"


if __name__ == "__main__":
    main()
