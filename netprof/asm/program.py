"""Programs: instructions with labels, linked into bytes.

Linking turns label references into relative offsets. A ``goto`` that does not reach in 16
bits becomes ``gotol``; a conditional jump that does not reach becomes
``if <cond> goto +1; goto +1; gotol <label>``, repeated until every jump fits (jumps only
grow, so this ends). Numeric offsets written by hand keep pointing at the same instruction.
Map references stay symbolic until ``encode(maps=...)`` or the loader supplies file descriptors.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from .errors import AsmError, Location
from .instruction import INT16_RANGE, INT32_RANGE, Instruction
from .isa import Class, JmpOp, Source


@dataclass(frozen=True, slots=True)
class Label:
    """Marks the instruction that follows it in a program."""

    name: str
    location: Location | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise AsmError(f"label {self.name!r} is not an identifier", self.location)


Item = Instruction | Label | Iterable["Item"]


class Program:
    """A sequence of instructions and labels, built from values or parsed from text."""

    def __init__(self, *items: Item):
        self.instructions: list[Instruction] = []
        self.labels: dict[str, int] = {}
        self._label_locations: dict[str, Location | None] = {}
        self.extend(items)

    def extend(self, items: Iterable[Item]) -> Program:
        for item in items:
            if isinstance(item, Instruction):
                self.instructions.append(item)
            elif isinstance(item, Label):
                if item.name in self.labels:
                    first = self._label_locations[item.name]
                    where = f" (first defined at {first})" if first else ""
                    raise AsmError(f"duplicate label {item.name!r}{where}", item.location)
                self.labels[item.name] = len(self.instructions)
                self._label_locations[item.name] = item.location
            elif isinstance(item, Program):
                self.extend(item.items())
            elif isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
                self.extend(item)
            else:
                raise TypeError(f"a program holds instructions and labels, not {item!r}")
        return self

    def append(self, *items: Item) -> Program:
        return self.extend(items)

    def items(self) -> Iterator[Instruction | Label]:
        """Instructions with their labels, in order, as given to the constructor."""
        by_index: dict[int, list[str]] = {}
        for name, index in self.labels.items():
            by_index.setdefault(index, []).append(name)
        for i, insn in enumerate(self.instructions):
            for name in by_index.get(i, ()):
                yield Label(name, self._label_locations[name])
            yield insn
        for name in by_index.get(len(self.instructions), ()):
            yield Label(name, self._label_locations[name])

    def __iter__(self) -> Iterator[Instruction]:
        return iter(self.instructions)

    def __len__(self) -> int:
        return len(self.instructions)

    def __getitem__(self, index: int) -> Instruction:
        return self.instructions[index]

    @property
    def map_names(self) -> list[str]:
        """The maps this program refers to, in order of first use."""
        return list(dict.fromkeys(i.map for i in self.instructions if i.map is not None))

    def __str__(self) -> str:
        return "\n".join(f"{item.name}:" if isinstance(item, Label) else f"\t{item}" for item in self.items())

    def __repr__(self) -> str:
        return f"<Program {len(self.instructions)} instructions, {len(self.labels)} labels>"

    def link(self) -> LinkedProgram:
        return _link(self)

    def encode(self, maps: Mapping[str, int] | None = None) -> bytes:
        """The bytecode, with ``maps`` giving the file descriptor of each map symbol."""
        return self.link().encode(maps)


@dataclass(frozen=True)
class LinkedProgram:
    """Jumps resolved to offsets; map symbols still open. ``origin[slot]`` is the index of
    the Program instruction each 8-byte slot came from."""

    instructions: list[Instruction]
    origin: list[int]
    source: Program

    @property
    def slot_count(self) -> int:
        return len(self.origin)

    def map_slots(self) -> list[tuple[int, str]]:
        """(slot, map name) of every map reference."""
        out, slot = [], 0
        for insn in self.instructions:
            if insn.map is not None:
                out.append((slot, insn.map))
            slot += insn.slots
        return out

    def encode(self, maps: Mapping[str, int] | None = None) -> bytes:
        maps = maps or {}
        parts = []
        for insn in self.instructions:
            if insn.map is not None:
                if insn.map not in maps:
                    raise AsmError(f"map {insn.map!r} is not resolved: no file descriptor was given for it",
                                   insn.location)
                fd = maps[insn.map]
                if isinstance(fd, bool) or not isinstance(fd, int):
                    raise AsmError(f"map {insn.map!r}: file descriptor must be an int, not {fd!r}", insn.location)
                lo = fd & 0xFFFF_FFFF
                insn = replace(insn, map=None, imm=(insn.imm & ~0xFFFF_FFFF) | lo)
            parts.append(insn.encode())
        return b"".join(parts)

    def describe_slot(self, slot: int) -> str:
        """Where slot ``slot`` came from: the source line, else the nearest label before it."""
        if not 0 <= slot < len(self.origin):
            return f"instruction {slot} (outside the program)"
        index = self.origin[slot]
        insn = self.source.instructions[index]
        if insn.location is not None:
            return f"{insn.location}: {insn.location.text or insn}".rstrip()
        label, start = None, -1
        for name, at in self.source.labels.items():
            if start < at <= index:
                label, start = name, at
        if label is None:
            return f"instruction {index}: {insn}"
        return f"{label}+{index - start}: {insn}"


_CONDITION_LONG = 3  # if <cond> goto +1; goto +1; gotol target


def _link(program: Program) -> LinkedProgram:
    insns = program.instructions
    count = len(insns)
    targets: list[int | None] = [None] * count  # index of the instruction a reference points at
    long_form = [False] * count

    sizes = [insn.slots for insn in insns]
    starts = list(itertools.accumulate(sizes, initial=0))
    slot_to_index = {slot: i for i, slot in enumerate(starts[:-1])}
    raw_jumps = []
    for i, insn in enumerate(insns):
        if insn.target is not None:
            if insn.target not in program.labels:
                raise AsmError(f"undefined label {insn.target!r}", insn.location)
            marked = program.labels[insn.target]
            if marked >= count:
                raise AsmError(f"label {insn.target!r} marks no instruction (it is at the end)",
                               insn.location)
            targets[i] = marked
        elif insn.relative is not None:
            # A hand-written offset: follow the instruction it lands on if it is in this program.
            landing = starts[i] + 1 + insn.relative
            if landing in slot_to_index:
                targets[i] = slot_to_index[landing]
            else:
                raw_jumps.append(i)
        if insn.is_gotol:
            long_form[i] = True

    while True:
        sizes = [_size(insn, long_form[i]) for i, insn in enumerate(insns)]
        starts = list(itertools.accumulate(sizes, initial=0))
        grew = False
        for i, insn in enumerate(insns):
            target = targets[i]
            if target is None or long_form[i] or not insn.is_jump:
                continue
            if not INT16_RANGE[0] <= starts[target] - starts[i] - 1 <= INT16_RANGE[1]:
                long_form[i] = grew = True
        if not grew:
            break
    if raw_jumps and any(long_form[i] and not insns[i].is_gotol for i in range(count)):
        i = raw_jumps[0]
        raise AsmError("a numeric jump offset points outside the program while other jumps had to be "
                       "lengthened: use a label", insns[i].location)

    out: list[Instruction] = []
    origin: list[int] = []
    for i, insn in enumerate(insns):
        target = targets[i]
        if target is None:
            emitted = [replace(insn, target=None)] if insn.target else [insn]
        else:
            emitted = _resolve(insn, starts[target] - starts[i] - 1, long_form[i])
        out.extend(emitted)
        origin.extend([i] * sizes[i])
    return LinkedProgram(out, origin, program)


def _size(insn: Instruction, long: bool) -> int:
    if long and insn.is_jump and not (insn.op == JmpOp.JA):
        return _CONDITION_LONG
    return insn.slots


def _resolve(insn: Instruction, distance: int, long: bool) -> list[Instruction]:
    """The instruction(s) for a reference ``distance`` slots after the next instruction."""
    if insn.is_pseudo_call or insn.is_func_ref or insn.is_gotol:
        return [insn._relocated(_check32(distance, insn))]
    if not long:
        return [insn._relocated(distance)]
    loc = insn.location
    if insn.op == JmpOp.JA:
        return [Instruction(Class.JMP32 | JmpOp.JA, imm=_check32(distance, insn), location=loc)]
    return [
        insn._relocated(1),
        Instruction(Class.JMP | JmpOp.JA | Source.K, off=1, location=loc),
        Instruction(Class.JMP32 | JmpOp.JA, imm=_check32(distance - 2, insn), location=loc),
    ]


def _check32(value: int, insn: Instruction) -> int:
    if not INT32_RANGE[0] <= value <= INT32_RANGE[1]:
        raise AsmError(f"reference to {insn.target!r} is out of range", insn.location)
    return value

