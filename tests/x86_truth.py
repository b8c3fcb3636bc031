"""Instruction boundaries from netprof.loader.x86 checked against ``objdump -d``, function by function.

Used by tests/test_x86.py; run it by hand for the coverage of any binaries:
    .venv/bin/python tests/x86_truth.py /lib/x86_64-linux-gnu/libc.so.6 /usr/bin/python3
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netprof.loader.elf import _PF_X, _Elf
from netprof.loader.x86 import instruction_starts

# An instruction (address, bytes, text), a label (address), or a section heading.
_LINE = re.compile(rb"^ *([0-9a-f]+):\t([0-9a-f ]+)\t(.*)$|^([0-9a-f]+) <.*>:$|^Disassembly of section",
                   re.MULTILINE)


@dataclass
class Listing:
    """What ``objdump -d`` printed: instruction starts, (bad) ones, and the stretches between its labels."""

    starts: set[int]
    bad: set[int]
    regions: list[tuple[int, int, list[int]]]  # (first address, end address, instruction starts) after a label


@dataclass
class Coverage:
    """What a comparison found: counts, and the functions (or regions) that differ."""

    unit: str = "functions"  # or "regions": the stretches objdump decodes from one label to the next
    functions: int = 0  # functions (or regions) compared, objdump and netprof agreeing or not
    instructions: int = 0  # objdump's instructions in the compared functions
    bytes: int = 0
    skipped_bad: list[str] = field(default_factory=list)  # objdump printed (bad) in them: not compared
    mismatches: list[str] = field(default_factory=list)  # "name: first difference"
    seconds: float = 0.0  # netprof's decoding time, all compared functions together

    def add(self, other: Coverage) -> None:
        self.functions += other.functions
        self.instructions += other.instructions
        self.bytes += other.bytes
        self.skipped_bad += other.skipped_bad
        self.mismatches += other.mismatches
        self.seconds += other.seconds

    def __str__(self) -> str:
        per = self.seconds / self.functions * 1e6 if self.functions else 0.0
        per_insn = self.seconds / self.instructions * 1e6 if self.instructions else 0.0
        return (f"{self.functions} {self.unit}, {self.instructions} instructions ({self.bytes} bytes) compared, "
                f"{len(self.mismatches)} mismatches, {len(self.skipped_bad)} skipped for objdump's (bad); "
                f"{per:.1f} µs a {self.unit[:-1]}, {per_insn:.2f} µs an instruction")


def objdump_listing(path: str | Path) -> Listing:
    """Run ``objdump -d`` on ``path`` (-z: zeroes too, one line an instruction) and read its listing."""
    out = subprocess.run(["objdump", "-d", "-z", "-w", "--insn-width=15", str(path)],
                         check=True, capture_output=True).stdout
    listing = Listing(set(), set(), [])
    region: list[int] | None = None
    end = 0
    for m in _LINE.finditer(out):
        if m.group(1) is None:  # a label or a new section: objdump starts decoding afresh
            if region:
                listing.regions.append((region[0], end, region))
            region = [] if m.group(4) else None
            continue
        address = int(m.group(1), 16)
        end = address + len(m.group(2).split())
        listing.starts.add(address)
        if region is not None:
            region.append(address)
        if b"(bad)" in m.group(3):
            listing.bad.add(address)
    if region:
        listing.regions.append((region[0], end, region))
    return listing


def functions(path: str | Path) -> list[tuple[str, int, int, int]]:
    """[(name, address, size, file offset)] of the defined, sized functions (.symtab, then .dynsym), one per address."""
    with _Elf.open(str(path)) as elf:
        seen: dict[int, tuple[str, int, int, int]] = {}
        for table in elf.tables():
            for s in table:
                offset = _file_offset(elf, s.address)
                if s.defined and s.is_function and s.size and s.address not in seen and offset is not None:
                    seen[s.address] = (s.name, s.address, s.size, offset)
        return sorted(seen.values(), key=lambda f: f[1])


def compare(path: str | Path) -> tuple[Coverage, Coverage]:
    """netprof's instruction starts against objdump's: (every sized function of the symbol tables,
    every stretch objdump decodes from one of its labels to the next, local code of stripped files too)."""
    listing = objdump_listing(path)
    data = Path(path).read_bytes()
    with _Elf.open(str(path)) as elf:
        offset_of = {r[0]: _file_offset(elf, r[0]) for r in listing.regions}
    by_function = Coverage()
    for name, address, size, offset in functions(path):
        want = [a - address for a in range(address, address + size) if a in listing.starts]
        _check(by_function, name, data[offset:offset + size], want, listing.bad, address)
    by_region = Coverage("regions")
    for start, end, starts in listing.regions:
        if offset_of[start] is not None:
            code = data[offset_of[start]:offset_of[start] + end - start]
            _check(by_region, f"{start:#x}", code, [a - start for a in starts], listing.bad, start)
    return by_function, by_region


def _file_offset(elf: _Elf, address: int) -> int | None:
    """The file offset of ``address`` when it is in an executable segment."""
    seg = elf.segment_of_address(address)
    return None if seg is None or not seg.flags & _PF_X else address - seg.vaddr + seg.offset


def _check(cov: Coverage, name: str, code: bytes, want: list[int], bad: set[int], address: int) -> None:
    if any(address + w in bad for w in want):
        cov.skipped_bad.append(name)
        return
    t0 = time.perf_counter()
    got, end = instruction_starts(code)
    cov.seconds += time.perf_counter() - t0
    cov.functions += 1
    cov.instructions += len(want)
    cov.bytes += len(code)
    if got != want or end != len(code):
        first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        at = want[first] if first < len(want) else got[first] if first < len(got) else end
        cov.mismatches.append(f"{name}+{at:#x}: objdump {want[first:first + 2]} netprof {got[first:first + 2]} "
                              f"end {end:#x}/{len(code):#x} bytes {code[at:at + 15].hex()}")


if __name__ == "__main__":
    totals = Coverage(), Coverage("regions")
    for arg in sys.argv[1:]:
        for cov, total in zip(compare(arg), totals):
            print(f"{arg}: {cov}")
            for line in cov.mismatches[:20]:
                print("   ", line)
            total.add(cov)
    for total in totals:
        print(f"total: {total}")
