"""Whether each peer the benchmarks compare with can run here: installed is not enough (bcc
compiles its C with the running kernel's headers, which a custom kernel may not have). Each
check returns None when the peer works, else the reason, in one line, to print beside its name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"  # python3-bpfcc's bcc, for any CPython 3
_BCC_CHECK = (f"import sys; sys.path.append({DEBIAN_DIST_PACKAGES!r})\n"
              "try:\n    from bcc import BPF\nexcept ImportError:\n    sys.exit(3)\n"
              "BPF(text='int f(void *ctx) { return 0; }')\n")


def bpftrace_problem() -> str | None:
    if shutil.which("bpftrace") is None:
        return "not installed (apt-get install bpftrace)"
    try:
        done = subprocess.run(["bpftrace", "-e", "BEGIN { exit(); }"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "bpftrace -e 'BEGIN { exit(); }' did not finish within 60 s"
    return None if done.returncode == 0 else f"cannot run here: {_reason(done.stderr)}"


def bcc_problem(python: str = sys.executable) -> str | None:
    """None when bcc imports and compiles a program with ``python``; else why not."""
    try:
        done = subprocess.run([python, "-c", _BCC_CHECK], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "compiling a program did not finish within 120 s"
    if done.returncode == 3:
        return "not installed (apt-get install python3-bpfcc)"
    if done.returncode:
        return f"installed but cannot run here: {_reason(done.stdout + done.stderr)}"
    return None


def _reason(output: str) -> str:
    """The line that says why: the one about kernel headers where there is one, else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith(" ")]
    for line in lines:
        if "kernel headers" in line:
            return line.split(". Try")[0] + " (bcc compiles with the running kernel's, see bench_ringbuf.py)"
    return lines[-1] if lines else "no reason given"


def wait_for(proc: subprocess.Popen, stream, word: str, timeout: float = 120) -> None:
    """Read ``stream`` (a pipe, or a file the tool writes) until a line holds ``word``; RuntimeError
    when the tool exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if word in line:
            return
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"tool exited before '{word}': {proc.returncode}")
            time.sleep(0.01)
    raise RuntimeError(f"no '{word}' within {timeout} s")
