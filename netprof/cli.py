"""The command line: ``python -m netprof COMMAND``. Bad input is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__

EXAMPLES = """\
examples:
  python -m netprof asm probe.s -o probe.bin     assemble eBPF text to bytecode
  python -m netprof disasm probe.bin             print bytecode as text
  python -m netprof disasm --labels probe.bin    ... with labels instead of jump offsets
  python -m netprof features                     what this kernel can attach (kprobes, fentry, ...)
  python -m netprof detach                       remove XDP programs a killed netprof left behind
"""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None


def _write(path: str | None, data: bytes) -> None:
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        return
    try:
        Path(path).write_bytes(data)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}") from None


def cmd_asm(args: argparse.Namespace) -> int:
    from .asm import AsmError, parse

    maps = {}
    for spec in args.map or ():
        name, _, fd = spec.partition("=")
        if not name or not fd.isdigit():
            raise UsageError(f"--map takes NAME=FD, not {spec!r}")
        maps[name] = int(fd)
    try:
        source = _read(args.source).decode()
    except UnicodeDecodeError as err:
        raise UsageError(f"{args.source} is not text: {err.reason} at byte {err.start}") from None
    try:
        program = parse(source)
        missing = [name for name in program.map_names if name not in maps]
        if missing:
            insn = next(i for i in program if i.map == missing[0])
            raise AsmError(f"map {missing[0]!r} has no file descriptor: give --map {missing[0]}=FD", insn.location)
        code = program.encode(maps)
    except AsmError as err:
        where = f"{args.source}:{err.line}:{err.column}: " if err.line else f"{args.source}: "
        raise UsageError(where + err.message) from None
    if args.output is None and sys.stdout.isatty():
        raise UsageError("bytecode is binary: give -o FILE (or redirect stdout)")
    _write(args.output, code)
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from .asm import AsmError, disassemble

    try:
        text = disassemble(_read(args.input), labels=args.labels)
    except AsmError as err:
        raise UsageError(f"{args.input}: {err.message}") from None
    sys.stdout.write(text)
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from .loader.features import features, format_table
    from .loader.syscall import BpfError

    try:
        found = features(refresh=args.refresh)
    except BpfError as err:
        raise UsageError(str(err)) from None
    if args.json:
        import dataclasses
        import json

        print(json.dumps(dataclasses.asdict(found), indent=2))
    else:
        print(format_table(found))
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    from .loader.syscall import BpfError
    from .loader.xdp import detach_stale, records

    try:
        before = records()
        done = detach_stale(everything=args.all)
    except (BpfError, OSError) as err:
        raise UsageError(f"detach: {err}") from None
    for record in done:
        print(f"detached XDP program {record.prog_id} from {record.ifname} (attached by pid {record.pid})")
    kept = [r for r in before if r not in done and r.path.exists()]
    for record in kept:
        print(f"kept XDP program {record.prog_id} on {record.ifname}: pid {record.pid} is still running "
              "(--all detaches it too)")
    if not before:
        print("nothing attached by netprof")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netprof",
        description="High-resolution Linux network profiling: kernel and user function spans, "
                    "XDP packets, throughput and memory, from eBPF probes netprof assembles itself.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"netprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("asm", help="assemble eBPF text (llvm-mc / verifier syntax) to bytecode")
    p.add_argument("source", help="assembler text file, or - for stdin")
    p.add_argument("-o", "--output", help="bytecode file to write (default: stdout)")
    p.add_argument("--map", action="append", metavar="NAME=FD",
                   help="file descriptor for a map symbol (r1 = NAME ll); repeatable")
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="print eBPF bytecode as text")
    p.add_argument("input", help="bytecode file, or - for stdin")
    p.add_argument("--labels", action="store_true", help="name jump targets instead of printing offsets")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("features", help="what this kernel supports: attach mechanisms, program and map types")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--refresh", action="store_true", help="probe again instead of using this boot's cache")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("detach", help="remove XDP programs left attached by a netprof that was killed")
    p.add_argument("--all", action="store_true", help="also those of netprof processes still running")
    p.set_defaults(func=cmd_detach)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as err:
        print(f"netprof {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
