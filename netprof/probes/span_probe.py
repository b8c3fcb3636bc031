"""Span probes: one small program per function entry or exit (kprobe/uprobe, fentry/fexit, or a
tracepoint) that writes a SPAN_EVENT to the "events" ring buffer without waking the reader, and
counts in the per-CPU "lost" array what the ring had no room for.

The program is the same for every source; only where it reads the argument differs:
``Arg(offset, size)`` into the program's context (pt_regs for kprobes and uprobes, the u64
argument array for fentry/fexit, the tracepoint's record for tracepoints).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..asm import (
    FP,
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    U8,
    U16,
    U32,
    U64,
    Add,
    Call,
    Frame,
    Helper,
    If,
    JEq,
    JNe,
    Label,
    Load,
    LoadMapPtr,
    LoadMapValue,
    Mov,
    Program,
    Return,
    Rsh,
    Store,
)
from ..format.layout import SPAN
from .interface import BPF_RB_NO_WAKEUP, MAX_PROBES, PT_REGS, Arg, pt_regs  # noqa: F401 (where they were)

_RECORD = SPAN.size


def span_program(probe: int | None, kind: int, arg: Arg | None = None, follow: bool = False) -> Program:
    """The program for one end (``kind`` ENTRY or EXIT) of probe ``probe``; ``probe`` None: of the
    probe whose id is the attachment's BPF cookie (one program for many functions: uprobe_multi,
    kprobe_multi).

    ``follow``: record only the processes (thread group ids) in the hash map "follow": the one
    given with -p and, unless told otherwise, every process it forks (fork_program keeps the map).

    Nothing is recorded while the u32 in the one-entry array map "control" is 0: the session
    opens this gate once every probe is attached and closes it before detaching any, so both
    ends of a span start and stop recording at the same instant, however long the kernel takes
    to attach or detach each (a uprobe's unregistering takes ~100 ms).
    """
    if probe is not None and not 0 <= probe < MAX_PROBES:
        raise ValueError(f"probe id {probe} is out of range (at most {MAX_PROBES} probes)")
    frame = Frame()
    rec = frame.slot(_RECORD)  # the record is built on the stack
    at = {name: rec + offset for name, (offset, _) in SPAN.fields.items()}
    lost_key = frame.slot(4)
    if probe is None:  # the cookie: below MAX_PROBES, as the attacher gives them (the verifier needs no bound)
        which = [Mov(R1, R6), Call(Helper.get_attach_cookie), Store(FP, at["probe"], R0, U16),
                 Store(FP, lost_key, R0, U32)]
    else:
        which = [Store(FP, at["probe"], probe, U16), Store(FP, lost_key, probe, U32)]
    return Program(
        Mov(R6, R1),
        LoadMapValue(R1, "control"), Load(R1, R1, 0, U32), JEq(R1, 0, "out"),
        which,
        Call(Helper.get_current_pid_tgid),
        Store(FP, at["tid"], R0, U32),                     # low half
        Rsh(R0, 32),
        Store(FP, at["pid"], R0, U32),                     # high half
        [LoadMapPtr(R1, "follow"), Mov(R2, FP), Add(R2, at["pid"]), Call(Helper.map_lookup_elem),
         JEq(R0, 0, "out")] if follow else [],
        [Load(R1, R6, arg.offset, arg.type), Store(FP, at["arg"], R1, U64)] if arg else
        [Store(FP, at["arg"], 0, U64)],
        Call(Helper.get_smp_processor_id),
        Store(FP, at["cpu"], R0, U16),
        Store(FP, at["kind"], kind, U32),                  # with the 3 bytes of padding after it
        Call(Helper.ktime_get_ns),                         # last: the closest to the event
        Store(FP, at["ts"], R0, U64),
        LoadMapPtr(R1, "events"), Mov(R2, FP), Add(R2, rec), Mov(R3, _RECORD), Mov(R4, BPF_RB_NO_WAKEUP),
        Call(Helper.ringbuf_output),
        JEq(R0, 0, "out"),
        count_lost_at(lost_key),
        Label("out"),
        Return(0),
    )


def fork_program(task_tgid: int) -> Program:
    """On the raw tracepoint sched_process_fork (parent, child task_struct): when the parent's
    process is in the hash map "follow", add the child's (a thread's is its parent's already).
    ``task_tgid``: offset of task_struct.tgid, from BTF."""
    frame = Frame()
    key, value = frame.slot(8), frame.slot(8)
    return Program(
        Load(R6, R1, 0, U64), Load(R7, R1, 8, U64),                          # parent, child
        Store(FP, key, 0, U64), Mov(R1, FP), Add(R1, key), Mov(R2, 4), Mov(R3, R6), Add(R3, task_tgid),
        Call(Helper.probe_read_kernel),
        LoadMapPtr(R1, "follow"), Mov(R2, FP), Add(R2, key), Call(Helper.map_lookup_elem),
        JEq(R0, 0, "out"),
        Mov(R1, FP), Add(R1, key), Mov(R2, 4), Mov(R3, R7), Add(R3, task_tgid),
        Call(Helper.probe_read_kernel),
        Store(FP, value, 1, U64),
        LoadMapPtr(R1, "follow"), Mov(R2, FP), Add(R2, key), Mov(R3, FP), Add(R3, value), Mov(R4, 0),
        Call(Helper.map_update_elem),                                        # BPF_ANY
        Label("out"),
        Return(0),
    )


def count_lost(probe: int, frame: Frame) -> list:
    """lost[probe] += 1 in the per-CPU "lost" array (no atomic needed: this CPU's slot); the key
    goes in a slot of ``frame``, the stack of the program it is part of."""
    key = frame.slot(4)
    return [Store(FP, key, probe, U32), count_lost_at(key)]


def count_lost_at(key: int) -> list:
    """lost[the u32 at stack offset ``key``] += 1 in the per-CPU "lost" array (an id past its end
    finds nothing, and counts nothing)."""
    return [
        LoadMapPtr(R1, "lost"), Mov(R2, FP), Add(R2, key),
        Call(Helper.map_lookup_elem),
        If(JNe(R0, 0, 0), [Load(R1, R0, 0, U64), Add(R1, 1), Store(R0, 0, R1, U64)]),
    ]
