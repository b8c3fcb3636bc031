"""``netprof attach ... -- COMMAND``: the command runs probed from its first instruction, is
followed into the processes it forks, ends the capture when it exits, passes its exit status
on, and runs as the user who ran sudo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import needs
from netprof.report import load

pytestmark = pytest.mark.root

FORKING_C = r"""
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((noinline)) int work(int x) { asm volatile("" ::: "memory"); return x + 1; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), sum = 0;
    for (int i = 0; i < n; i++) sum += work(i);                 /* the parent's calls, from the first */
    pid_t child = fork();
    if (child == 0) { for (int i = 0; i < 2 * n; i++) sum += work(1000 + i); _exit(0); }  /* the child's */
    waitpid(child, NULL, 0);
    return 7;
}
"""
LIBRARY_C = "__attribute__((noinline)) int hello(int x) { asm volatile(\"\" ::: \"memory\"); return x * 3; }\n"


@pytest.fixture(scope="module")
def built():
    """The programs, in a folder any user may read (pytest's own are root's alone): the command
    runs as the invoking user under sudo."""
    gcc = needs.tool("gcc")
    out = Path(tempfile.mkdtemp(prefix="np-command-", dir="/tmp"))
    (out / "forking.c").write_text(FORKING_C)
    (out / "hello.c").write_text(LIBRARY_C)
    subprocess.run([gcc, "-O1", "-o", str(out / "forking"), str(out / "forking.c")], check=True)
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", "-o", str(out / "libhello.so"), str(out / "hello.c")], check=True)
    for path in out.iterdir():
        path.chmod(0o755)
    out.chmod(0o755)
    yield out
    shutil.rmtree(out, ignore_errors=True)


def attach(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netprof", "attach", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def spans_of(trace_path, name: str) -> np.ndarray:
    trace = load(trace_path)
    [probe] = trace.probe_ids(name)
    return trace.all_spans[trace.all_spans["probe"] == probe]


def test_a_forking_command_is_traced_from_its_first_call_and_ends_the_capture(built, tmp_path):
    out = tmp_path / "cmd.trace"
    done = attach("-u", f"{built}/forking:work", "-o", str(out), "--", f"{built}/forking", "1000")
    assert done.returncode == 7, done.stderr  # the command's own exit status
    spans = spans_of(out, "forking:work")
    args = np.sort(spans["arg"])
    # the parent's 1,000 calls (0..999), the very first included, and its child's 2,000
    assert args.tolist() == list(range(1000)) + list(range(1000, 3000))
    assert len(np.unique(spans["pid"])) == 2 and set(spans["flags"]) == {0}
    assert "until" in done.stderr and "exited with status 7" in done.stderr


def test_a_library_loaded_later_is_probed_from_its_first_call(built, tmp_path):
    out = tmp_path / "lib.trace"
    program = f"import ctypes; lib = ctypes.CDLL({str(built / 'libhello.so')!r}); [lib.hello(i) for i in range(5)]"
    done = attach("-u", f"{built}/libhello.so:hello", "-o", str(out), "--", sys.executable, "-c", program)
    assert done.returncode == 0, done.stderr
    assert sorted(spans_of(out, "libhello.so:hello")["ret"].tolist()) == [0, 3, 6, 9, 12]


def test_under_sudo_the_command_runs_as_the_invoking_user(built, tmp_path):
    out = tmp_path / "user.trace"
    env = dict(os.environ, SUDO_UID="65534", SUDO_GID="65534", SUDO_USER="nobody")
    done = attach("-u", f"{built}/forking:work", "-o", str(out), "--", "sh", "-c",
                  f"id -u; id -g; {built}/forking 10", env=env)
    assert done.returncode == 7, done.stderr
    assert done.stdout.split() == ["65534", "65534"]
    assert len(spans_of(out, "forking:work")) == 30
    assert os.stat(out).st_uid == 65534  # the trace is the invoking user's too


@pytest.mark.parametrize("args, message", [
    (["--", "/nonexistent/program"], "cannot run '/nonexistent/program': no such file"),
    (["--", "no-such-command-here"], "cannot run 'no-such-command-here': not found in PATH"),
    (["--"], "nothing after --"),
    (["-p", "1", "--", "true"], "give -p PID or a command to run, not both"),
])
def test_a_command_that_cannot_run_is_one_line(built, tmp_path, args, message):
    done = attach("-u", f"{built}/forking:work", "-o", str(tmp_path / "x.trace"), *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "x.trace").exists()


def test_a_command_killed_by_a_signal_gives_the_shells_status(built, tmp_path):
    done = attach("-u", f"{built}/forking:work", "-o", str(tmp_path / "k.trace"), "--", "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + 15, done.stderr
    assert "killed by SIGTERM" in done.stderr
