"""``python -m netprof asm`` and ``disasm`` from the shell: round trip, one-line errors."""

import subprocess
import sys

from netprof.asm import assemble

SOURCE = """\
start:
    r1 = *(u32 *)(r10 - 8)
    if w1 s< 5 goto out
    lock *(u64 *)(r10 - 16) += r1
    r1 = bswap16 r1
out:
    r0 = 0
    exit
"""


def netprof(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "netprof", *args], capture_output=True, input=stdin)


def test_help():
    result = netprof("--help")
    assert result.returncode == 0
    assert b"asm" in result.stdout and b"disasm" in result.stdout


def test_asm_then_disasm_round_trip(tmp_path):
    source, binary = tmp_path / "p.s", tmp_path / "p.bin"
    source.write_text(SOURCE)
    assert netprof("asm", str(source), "-o", str(binary)).returncode == 0
    assert binary.read_bytes() == assemble(SOURCE)
    shown = netprof("disasm", str(binary))
    assert shown.returncode == 0
    assert assemble(shown.stdout.decode()) == binary.read_bytes()
    labelled = netprof("disasm", "--labels", str(binary)).stdout.decode()
    assert "goto L4" in labelled and "L4:" in labelled


def test_stdin_and_map_option(tmp_path):
    result = netprof("asm", "-", "--map", "events=7", stdin=b"r1 = events ll\nr0 = 0\nexit\n")
    assert result.returncode == 0
    assert result.stdout == assemble("r1 = map_fd(7) ll\nr0 = 0\nexit")


def test_errors_are_one_line_and_exit_2(tmp_path):
    source = tmp_path / "bad.s"
    source.write_text("r0 = 0\n  r11 = 1\nexit\n")
    for args, expected in [
        (("asm", str(source), "-o", str(tmp_path / "x")), f"{source}:2:3: bad register 'r11'"),
        (("asm", str(tmp_path / "missing.s")), "cannot read"),
        (("asm", "-", "-o", "-"), "map 'm' has no file descriptor: give --map m=FD"),
        (("disasm", str(source)), "not a multiple of 8"),
    ]:
        result = netprof(*args, stdin=b"r1 = m ll\nexit\n")
        assert result.returncode == 2, result
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1 and expected in lines[0], lines
        assert b"Traceback" not in result.stderr
