"""The command line: ``python -m netprof COMMAND``. Bad input is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys

from . import __version__, infile, outfile

EXAMPLES = """\
examples:
  python -m netprof asm probe.s -o probe.bin     assemble eBPF text to bytecode
  python -m netprof disasm probe.bin             print bytecode as text
  python -m netprof disasm --labels probe.bin    ... with labels instead of jump offsets
  python -m netprof features                     what this kernel can attach (kprobes, fentry, ...)
  python -m netprof calibrate                    what a probed call costs here (taken off span durations)
  python -m netprof detach                       remove XDP programs a killed netprof left behind
  python -m netprof view netprof.trace           fly through a capture (wheel, drag, W/S/A/D)
  python -m netprof view t.trace --png t.png     the same picture with no display, for reports and CI
"""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


# Far above any program the kernel loads (a million instructions), far below what hurts to read.
PROGRAM_FILE_LIMIT = 64 << 20
CONFIG_FILE_LIMIT = 1 << 20


def _read(path: str) -> bytes:
    """A program's text or bytecode: a regular file or stdin, at most PROGRAM_FILE_LIMIT bytes."""
    try:
        if path == "-":
            return infile.read_at_most(sys.stdin.buffer, PROGRAM_FILE_LIMIT, "stdin")
        return infile.read_regular(path, PROGRAM_FILE_LIMIT, hint="give a file, or - to read stdin")
    except infile.InputError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None


def _write(path: str | None, data: bytes) -> None:
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        return
    try:
        with outfile.writing(path) as f:
            f.write(data)
    except outfile.OutputError as err:
        raise UsageError(str(err)) from None
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


def _require(needs: list, instead: str = "") -> None:
    """One line naming every capability of ``needs`` this process lacks (and what else to do)."""
    from .loader.privileges import PrivilegeError, require

    try:
        require(needs)
    except PrivilegeError as err:
        raise UsageError(f"{err}{instead}") from None


def cmd_features(args: argparse.Namespace) -> int:
    from .loader.features import features, format_table
    from .loader.privileges import Cap, Need
    from .loader.syscall import BpfError

    if args.refresh:
        _require([Need(Cap.BPF, "test loads of programs and maps")],
                 "; without --refresh it shows root's cache, or what it can tell without privileges")
    try:
        found = features(refresh=args.refresh)
    except BpfError as err:
        raise UsageError(str(err)) from None
    if args.json:
        import json

        print(json.dumps(found.to_json(), indent=2))
    else:
        print(format_table(found))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import costs, measure

    if os.uname().machine != "x86_64":
        raise UsageError(f"probe costs are measured on x86-64 only, not {os.uname().machine}: span durations "
                         "stay as recorded")
    found = None if args.refresh else costs.cached()
    if found is None:
        try:
            found = measure.measure()
        except measure.CalibrationError as err:
            raise UsageError(f"cannot measure probe costs: {err}") from None
        costs.save(found)
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        print(found.table())
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    from pyroute2.netlink.exceptions import NetlinkError

    from .loader.rundir import UntrustedFolder

    from .loader.syscall import BpfError
    from .loader.xdp import detach_needs, detach_stale, owner_alive, records

    _require(detach_needs())
    try:
        before = records()
        done = detach_stale(everything=args.all)
    except (BpfError, UntrustedFolder) as err:
        raise UsageError(f"detach: {err}") from None
    except NetlinkError as err:
        advice = " (needs CAP_NET_ADMIN)" if err.code == errno.EPERM else ""
        raise UsageError(f"detach: {os.strerror(err.code)}{advice}") from None
    for record in done:
        print(f"detached XDP program {record.prog_id} from {record.ifname} (attached by pid {record.pid})")
    for record in before:
        if record in done:
            continue
        if not record.path.exists():
            print(f"forgot XDP program {record.prog_id} on {record.ifname}: it was no longer attached")
        elif owner_alive(record):
            print(f"kept XDP program {record.prog_id} on {record.ifname}: netprof pid {record.pid} is still "
                  "running (--all detaches it too)")
    if not before:
        print("nothing attached by netprof over netlink (what it attaches through bpf_links, the kernel "
              "detaches when netprof exits)")
    return 0


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def _probe_names(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """-k/-u values plus bpftrace-style names given as extra arguments."""
    from .capture.options import is_tracepoint

    kernel, user, tracepoints = _split(args.kernel), list(args.user or ()), []
    for name in args.probes or ():
        kind, _, rest = name.partition(":")
        if kind in ("kprobe", "kretprobe", "fentry", "fexit", "k", "kr", "f", "fr") and rest:
            kernel.append(rest)
        elif kind in ("uprobe", "uretprobe", "u", "ur") and rest:
            user.append(rest)
        elif kind in ("tracepoint", "t") and is_tracepoint(rest):
            tracepoints.append(rest)
        else:
            raise UsageError(f"cannot read probe {name!r}: use kprobe:FUNC, uprobe:PATH:SYMBOL or "
                             "tracepoint:CATEGORY:NAME")
    # Entry and return probes of one function make one span: name each function once.
    return list(dict.fromkeys(kernel)), list(dict.fromkeys(user)), list(dict.fromkeys(tracepoints))


def _config(path: str) -> dict:
    """The settings of a TOML profile, each checked as its command-line option is."""
    import tomllib

    try:
        data = infile.read_regular(path, CONFIG_FILE_LIMIT, "config", hint="give the profile's TOML file")
        config = tomllib.loads(data.decode())
    except infile.InputError as err:
        raise UsageError(str(err)) from None
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise UsageError(f"config {path} is not UTF-8 (byte {data[err.start]:#04x} on line {line}): TOML files "
                         "are UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config {path} is not valid TOML: {err}") from None
    from .capture.options import CaptureOptions, OptionError, check

    known = CaptureOptions.settings()
    unknown = set(config) - set(known)
    if unknown:
        raise UsageError(f"config {path}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
    for key, value in config.items():
        if known[key].kind == "names" and isinstance(value, str):
            config[key] = value = [value]
        try:
            check(key, value, source=path)
        except OptionError as err:
            raise UsageError(str(err)) from None
    return config


def cmd_list(pattern: str | None) -> int:
    from .capture.listing import ListingError, listing

    notes: list[str] = []
    try:
        for line in listing(pattern, notes):
            print(line)
    except ListingError as err:
        raise UsageError(str(err)) from None
    for note in notes:
        print(f"netprof: {note}", file=sys.stderr)
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    if args.list is not None:
        return cmd_list(args.list or None)
    from .capture.options import CaptureOptions, OptionError, from_sources
    from .loader.syscall import BpfError
    from .session import Session, SessionError

    profile = _config(args.config) if args.config else {}
    given = {name: getattr(args, name, None) for name in CaptureOptions.settings()}
    given["command"] = getattr(args, "command_argv", None)
    if given["command"] == []:
        raise UsageError("nothing after --: give the command to run, e.g. -- ./server --port 8080")
    given["kernel"], given["user"], given["tracepoints"] = _probe_names(args)
    given["xdp"] = _split(args.xdp)
    try:
        options = from_sources(given, profile)
    except OptionError as err:
        raise UsageError(str(err)) from None
    if options.pid is not None and not os.path.exists(f"/proc/{options.pid}"):
        raise UsageError(f"no process {options.pid}")
    duration = options.duration
    try:
        session = Session(options, status=args.verbose > 0)
    except SessionError as err:
        raise UsageError(str(err)) from None
    if args.verbose > 1:
        import logging

        logging.basicConfig(level=logging.INFO, format="netprof: %(message)s")
    # SIGHUP too: an ssh session that drops must end the capture as cleanly as Ctrl-C does.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def stop(sig: int, _frame) -> None:
        session.stop()
        if session.command is not None and sig != signal.SIGINT:  # Ctrl-C reached it from the terminal
            session.command.signal(sig)

    for sig in previous:
        signal.signal(sig, stop)
    try:
        try:
            with session:
                for note in session.notes:
                    print(f"netprof: {note}", file=sys.stderr)
                what = ", ".join(f"{p.mechanism}:{p.name}" for p in session.probes[:6])
                more = f" and {len(session.probes) - 6} more" if len(session.probes) > 6 else ""
                until = (f" until {options.command[0]} exits" + (f" or for {duration:g} s" if duration else "")
                         if options.command else f" for {duration:g} s" if duration else "")
                print(f"Tracing {what or 'throughput/memory'}{more}{until}. Hit Ctrl-C to end.", file=sys.stderr)
                session.run(duration)
        except (SessionError, BpfError, OSError) as err:
            raise UsageError(str(err)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = session.summary
    from .loss import loss_line

    print(f"{summary.events:,} events, {summary.packets:,} packets in {summary.seconds:.1f} s, "
          f"{loss_line(summary.lost)}; "
          f"wrote {summary.output} ({summary.bytes_written / 2**20:.1f} MiB). Read it with: netprof report "
          f"{summary.output}", file=sys.stderr)
    return _command_status(session.command)


def _command_status(command) -> int:
    """netprof's exit status: the command's, as a shell gives it, when it ran one (it gets a few
    seconds to end after a capture stopped first: Ctrl-C reached it too); else 0."""
    if command is None or command.process is None:
        return 0
    from .capture.command import describe_status

    if not command.exited.wait(5):
        print(f"netprof attach: {command.argv[0]} (pid {command.pid}) is still running; the capture ended before it",
              file=sys.stderr)
        return 0
    if command.status:
        print(f"netprof attach: {command.argv[0]} {describe_status(command.status)}", file=sys.stderr)
    return command.status or 0


def _time_filter(text: str | None) -> tuple[float | None, float | None]:
    """The prototype's ``-f START-END`` (ns since the start of the capture; either side may be empty)."""
    if not text:
        return None, None
    start, _, end = text.partition("-")
    try:
        window = (float(start) if start else None), (float(end) if end else None)
    except ValueError:
        window = (float("nan"), None)
    if not all(v is None or math.isfinite(v) for v in window):
        raise UsageError(f"filter {text!r} must be START-END in nanoseconds, e.g. 1000000000-2000000000")
    return window


def _load(path: str, raw: bool = False):
    from .trace import load
    from .format.tracefile import TraceError

    try:
        return load(path, raw_durations=raw)
    except TraceError as err:
        raise UsageError(str(err)) from None


def cmd_report(args: argparse.Namespace) -> int:
    from .report import format_report

    trace = _load(args.trace, args.raw)
    start, end = _time_filter(args.filter)
    try:
        print(format_report(trace, start, end, tuple(args.ignored_cpus or ()), _split(args.probe) or None,
                            args.pid or None, args.by_pattern))
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from . import export

    if not (args.perfetto or args.pcap or args.csv or args.parquet):
        raise UsageError("nothing to export: give --perfetto FILE, --pcap FILE, --csv FILE or --parquet FILE")
    trace = _load(args.trace, args.raw)
    start, end = _time_filter(args.filter)
    spans = trace.spans(start=start, end=end, ignored_cpus=args.ignored_cpus or ())
    try:
        if args.perfetto:
            counts = export.perfetto(trace, args.perfetto, spans)
            print(f"wrote {args.perfetto}: {counts['spans']:,} spans, {counts['counters']:,} counter samples, "
                  f"{counts['packets']:,} packets (open it in https://ui.perfetto.dev)")
        if args.pcap:
            print(f"wrote {args.pcap}: {export.pcap(trace, args.pcap):,} packets")
        if args.csv:
            spans.to_csv(args.csv)
            print(f"wrote {args.csv}: {len(spans):,} spans")
        if args.parquet:
            spans.to_parquet(args.parquet)
            print(f"wrote {args.parquet}: {len(spans):,} spans")
    except BrokenPipeError:
        raise  # stdout's reader went away: not a file that could not be written (see main)
    except (OSError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    return 0


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise UsageError(f"size {text!r} must be WIDTHxHEIGHT in pixels, e.g. 1600x900") from None
    if not (64 <= size[0] <= 16384 and 64 <= size[1] <= 16384):
        raise UsageError(f"size {text!r}: each side must be between 64 and 16384 pixels")
    return size


def _viz_missing(err: ImportError) -> UsageError:
    return UsageError(f"netprof view needs the viewer, netprof-viz ({err.name or err} is missing): make install "
                      "installs it (or: .venv/bin/pip install -e viz)")


def cmd_view(args: argparse.Namespace) -> int:
    """The viewer is a package of its own (viz/, netprof_viz): imported here, and only here."""
    try:
        from netprof_viz.cli import ViewError, view
    except ImportError as err:
        raise _viz_missing(err) from None
    size = _size(args.size)
    start, end = _time_filter(args.filter)
    trace = _load(args.trace, args.raw)
    try:
        return view(trace, args, size, start, end)
    except ImportError as err:
        raise _viz_missing(err) from None
    except ViewError as err:
        raise UsageError(str(err)) from None


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

    p = sub.add_parser("attach", help="capture spans, packets, throughput and memory into a trace file",
                       epilog="examples:\n  netprof attach --net -d 5\n"
                              "  netprof attach -k ip_rcv,tcp_v4_rcv -x eth0 -t -m -o run.trace\n"
                              "  netprof attach -u /usr/bin/curl:main -p 1234 -v\n"
                              "  netprof attach uprobe:/bin/bash:readline tracepoint:net:net_dev_queue",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("probes", nargs="*", metavar="PROBE",
                   help="bpftrace-style names: kprobe:FUNC, uprobe:PATH:SYMBOL, tracepoint:CATEGORY:NAME")
    from .capture.options import add_arguments

    add_arguments(p)  # -k, -u, --net, -x, -t, -m, -p, -d, -o ...: declared once, in capture/options.py
    p.add_argument("-l", "--list", nargs="?", const="", metavar="PATTERN",
                   help="list the probe points netprof can attach here (kprobe:GLOB, tracepoint:CAT:GLOB, "
                        "uprobe:PATH[:GLOB], or a bare glob), one per line in bpftrace's spelling; attaches nothing")
    p.add_argument("-c", "--config", metavar="FILE", help="a TOML profile with the same settings")
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: live status line; -vv: probe details")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("report", help="summarise a trace: spans per probe, CPUs, loss, packets, throughput")
    p.add_argument("trace", help="trace file written by netprof attach")
    p.add_argument("-f", "--filter", metavar="START-END", help="only spans in this window (ns since the start)")
    p.add_argument("--ignored-cpus", type=int, nargs="+", metavar="CPU", help="leave these CPUs out")
    p.add_argument("--probe", action="append", metavar="NAME[,NAME]", help="only these probes")
    p.add_argument("--pid", type=int, action="append", help="only this process (repeatable)")
    p.add_argument("--by-pattern", action="store_true",
                   help="one row per -u/-k glob or short name, its functions folded together")
    p.add_argument("--raw", action="store_true",
                   help="span durations as measured, netprof's own probe cost left in (default: corrected for it)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a trace as Perfetto JSON, pcap, CSV or Parquet")
    p.add_argument("trace", help="trace file written by netprof attach")
    p.add_argument("--perfetto", metavar="FILE", help="Chrome/Perfetto trace JSON (ui.perfetto.dev)")
    p.add_argument("--pcap", metavar="FILE", help="the XDP packets, for tcpdump/tshark/Wireshark")
    p.add_argument("--csv", metavar="FILE", help="spans as CSV")
    p.add_argument("--parquet", metavar="FILE", help="spans as Parquet (needs pyarrow)")
    p.add_argument("-f", "--filter", metavar="START-END", help="only spans in this window (ns since the start)")
    p.add_argument("--ignored-cpus", type=int, nargs="+", metavar="CPU", help="leave these CPUs out")
    p.add_argument("--raw", action="store_true",
                   help="span durations as measured, netprof's own probe cost left in (default: corrected for it)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("view", help="the timeline viewer: call stacks per CPU, user spans, packets, throughput, "
                                    "memory (or --png for a picture with no display)")
    p.add_argument("trace", help="trace file written by netprof attach")
    p.add_argument("--png", metavar="FILE", help="render offscreen to this PNG instead of opening a window")
    p.add_argument("--size", default="1600x900", metavar="WxH", help="window or picture size (default 1600x900)")
    stack = p.add_mutually_exclusive_group()
    stack.add_argument("--stack-per-cpu", action="store_true", help="a call stack per CPU (the default)")
    stack.add_argument("--stack-merged", action="store_true", help="one call stack, CPUs merged")
    p.add_argument("-m", "--memory", action="store_true", help="show memory (with -t/-x: only what is asked; "
                                                               "none of them: everything the trace has)")
    p.add_argument("-t", "--throughput", action="store_true", help="show throughput per interface and direction")
    p.add_argument("-x", "--xdp", action="store_true", help="show XDP packets")
    p.add_argument("--xdp-labels", action="store_true", help="label packets with their Ethernet header")
    p.add_argument("--no-stack-labels", action="store_true", help="no function names inside spans")
    p.add_argument("--visible-threshold", type=float, default=0.0, metavar="PERCENT",
                   help="label only spans at least this wide, in %% of the view (default 0: all that fit)")
    p.add_argument("--vertical-label", type=float, default=0.0, metavar="NS",
                   help="spans at most this long get vertical labels (taller rows)")
    p.add_argument("-f", "--filter", metavar="START-END", help="only this window (ns since the start)")
    p.add_argument("--ignored-cpus", type=int, nargs="+", metavar="CPU", help="leave these CPUs out")
    p.add_argument("--backend", default="pyside6", help="vispy backend for the window (default pyside6)")
    p.add_argument("--raw", action="store_true",
                   help="span durations as measured, netprof's own probe cost left in (default: corrected for it)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("features", help="what this kernel supports: attach mechanisms, program and map types")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--refresh", action="store_true",
                   help="probe again instead of using this boot's cache (needs CAP_BPF; only root rewrites the cache)")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("calibrate", help="what a uprobe span costs at each kind of site on this kernel: measured "
                                         "once a boot, and taken off span durations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--refresh", action="store_true", help="measure again instead of using this boot's cache")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("detach", help="remove XDP programs left attached by a netprof that was killed "
                                      "(needs CAP_NET_ADMIN)")
    p.add_argument("--all", action="store_true", help="also those of netprof processes still running")
    p.set_defaults(func=cmd_detach)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    command: list[str] | None = None
    if "attach" in argv and "--" in argv[argv.index("attach"):]:  # attach [options] -- COMMAND ARGS
        split = argv.index("--", argv.index("attach"))
        argv, command = argv[:split], argv[split + 1:]
    args = parser.parse_args(argv)
    if command is not None:
        args.command_argv = command
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()  # output that fit in the buffer meets a closed pipe only here
        return code
    except BrokenPipeError:
        return _reader_gone()
    except UsageError as err:
        print(f"netprof {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _reader_gone() -> int:
    """Whoever read our stdout has stopped (``netprof report T | head -1``): end quietly, the way
    cat or grep do. 141 (128 + SIGPIPE) is the status a shell shows for them, so a pipeline under
    ``set -o pipefail`` treats netprof alike, and 141 is no status netprof uses for anything else.
    SIGPIPE itself stays ignored, as Python sets it: dying of it in the middle of a capture could
    leave probes attached. stdout now points to /dev/null, so that Python's last flush at exit
    does not fail again (the recipe of Python's documentation, signal module, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE
