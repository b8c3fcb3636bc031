"""Choosing user functions the way bpftrace, perf and uftrace users write them: globs over an
ELF's functions, C++ names matched demangled, libraries by their short names, bare functions of a
-p process. Each checked against what binutils, ldconfig or the kernel's maps say."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import needs
from netprof.capture.selection import SelectionError, split_spec, user_functions

C_SOURCE = r"""
#include <stdlib.h>
__attribute__((noinline)) int alpha_one(int x) { asm volatile("" ::: "memory"); return x + 1; }
__attribute__((noinline)) int alpha_two(int x) { asm volatile("" ::: "memory"); return x + 2; }
__attribute__((noinline)) int beta(int x) { asm volatile("" ::: "memory"); return x + 3; }
int main(int argc, char **argv) {
    int s = 0;
    for (int i = 0; i < 3; i++) s += alpha_one(i);
    for (int i = 0; i < 5; i++) s += alpha_two(i);
    for (int i = 0; i < 7; i++) s += beta(i);
    return s == 0;
}
"""
CXX_SOURCE = r"""
namespace ns {
__attribute__((noinline)) int fn(int x) { asm volatile("" ::: "memory"); return x + 1; }
__attribute__((noinline)) int fn(double x) { asm volatile("" ::: "memory"); return (int)x + 2; }
__attribute__((noinline)) int other(int x) { asm volatile("" ::: "memory"); return x + 3; }
}
struct Foo { __attribute__((noinline)) int bar() const { asm volatile("" ::: "memory"); return 4; } };
int main() { Foo f; int s = 0; for (int i = 0; i < 2; i++) s += ns::fn(i); for (int i = 0; i < 4; i++) s += ns::fn(1.0);
             for (int i = 0; i < 6; i++) s += ns::other(i); s += f.bar(); return s == 0; }
"""
LIB_SOURCE = "int lib_open(int x) { return x; }\nint lib_close(int x) { return -x; }\nint other(int x) { return 0; }\n"


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    out = tmp_path_factory.mktemp("selection")
    (out / "prog.c").write_text(C_SOURCE)
    (out / "cxx.cc").write_text(CXX_SOURCE)
    (out / "lib.c").write_text(LIB_SOURCE)
    subprocess.run([needs.tool("gcc"), "-O1", "-o", str(out / "prog"), str(out / "prog.c")], check=True)
    subprocess.run([needs.tool("g++"), "-O1", "-o", str(out / "cxx"), str(out / "cxx.cc")], check=True)
    subprocess.run([needs.tool("gcc"), "-O1", "-shared", "-fPIC", "-o", str(out / "libdemo.so"), str(out / "lib.c")],
                   check=True)
    return out


def names(spec, **kwargs):
    return sorted(f.name for f in user_functions(spec, **kwargs))


def nm_functions(path) -> dict[str, int]:
    """binutils' view: defined text symbols and their addresses."""
    out = subprocess.run([needs.tool("nm", "binutils"), "--defined-only", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return {f[2]: int(f[0], 16) for f in (line.split() for line in out.splitlines()) if len(f) == 3 and f[1] in "TtWw"}


@pytest.mark.parametrize("spec, expected", [
    ("/bin/x:main", ("/bin/x", "main")),
    ("libc:malloc", ("libc", "malloc")),
    ("malloc", (None, "malloc")),
    ("/bin/x:ns::fn", ("/bin/x", "ns::fn")),
])
def test_split_spec(spec, expected):
    assert split_spec(spec) == expected


def test_globs_in_an_executable_and_a_library(programs):
    assert names(f"{programs}/prog:alpha_*") == ["alpha_one", "alpha_two"]
    assert names(f"{programs}/prog:*a") == ["beta"]
    assert names(f"{programs}/libdemo.so:lib_*") == ["lib_close", "lib_open"]
    everything = user_functions(f"{programs}/prog:*")
    truth = nm_functions(programs / "prog")
    assert {"alpha_one", "alpha_two", "beta", "main"} <= {f.name for f in everything}
    for f in everything:  # each where binutils says it is
        if f.name in truth:
            assert f.target.address == truth[f.name], f.name


def test_exclude_narrows_a_glob(programs):
    assert names(f"{programs}/prog:alpha_*", exclude=("*_two",)) == ["alpha_one"]


def test_cxx_names_match_demangled(programs):
    assert names(f"{programs}/cxx:ns::*") == ["ns::fn(double)", "ns::fn(int)", "ns::other(int)"]
    assert names(f"{programs}/cxx:ns::fn") == ["ns::fn(double)", "ns::fn(int)"]  # every overload
    assert names(f"{programs}/cxx:ns::fn(int)") == ["ns::fn(int)"]
    assert names(f"{programs}/cxx:Foo::bar") == ["Foo::bar() const"]
    cxxfilt = subprocess.run([needs.tool("c++filt", "binutils")], input="\n".join(nm_functions(programs / "cxx")),
                             capture_output=True, text=True, check=True).stdout.split("\n")
    assert {"ns::fn(int)", "ns::fn(double)", "Foo::bar() const"} <= set(cxxfilt)  # binutils agrees


def ldconfig_path(file: str) -> str:
    out = subprocess.run([needs.tool("ldconfig", "libc-bin"), "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith(file + " "):
            return os.path.realpath(line.rsplit("=>", 1)[1].strip())
    raise AssertionError(f"ldconfig -p lists no {file}")


def test_short_library_names_resolve_as_the_dynamic_linker_does():
    [malloc] = user_functions("libc:malloc")
    assert malloc.target.path == ldconfig_path("libc.so.6")
    assert malloc.name == "malloc"


def test_short_names_and_bare_functions_through_a_process(programs):
    import time

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while "libc.so" not in (maps := open(f"/proc/{sleeper.pid}/maps").read()) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the dynamic linker has mapped it
        [malloc] = user_functions("libc:malloc", pid=sleeper.pid)
        assert malloc.target.path in maps
        [bare] = user_functions("malloc", pid=sleeper.pid)
        assert bare.target == malloc.target
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("spec, message", [
    ("PROG:zeta_*", "no function matches 'zeta_*' in"),
    ("PROG:nothing_here", "no function 'nothing_here'"),
    ("malloc", "names a function but no file"),
    ("libnosuchthing:f", "cannot find 'libnosuchthing'"),
])
def test_what_names_nothing_says_so(programs, spec, message):
    with pytest.raises(SelectionError, match=re.escape(message)):
        user_functions(spec.replace("PROG", str(programs / "prog")))


def run_attach(*args):
    return subprocess.run([sys.executable, "-m", "netprof", "attach", *args], capture_output=True, text=True,
                          timeout=120)


def test_attach_refuses_an_empty_glob_and_too_many_functions_in_one_line(programs, tmp_path):
    out = str(tmp_path / "x.trace")
    done = run_attach("-u", f"{programs}/prog:zeta_*", "-o", out)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no function matches 'zeta_*'" in done.stderr
    done = run_attach("-u", f"{programs}/prog:*", "--max-probes", "2", "-o", out)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--max-probes 2" in done.stderr, done.stderr
    assert not os.path.exists(out)


@pytest.mark.root
def test_a_glob_and_a_cxx_name_trace_every_function_they_name(programs, tmp_path):
    from netprof.report import load

    for spec, expected in ((f"{programs}/prog:*a*", {"alpha_one": 3, "alpha_two": 5, "beta": 7, "main": 1}),
                           (f"uprobe:{programs}/cxx:ns::*", {"ns::fn(int)": 2, "ns::fn(double)": 4, "ns::other(int)": 6})):
        out = tmp_path / "glob.trace"
        out.unlink(missing_ok=True)
        program = spec.removeprefix("uprobe:").split(":")[0]
        args = ("-u", spec) if not spec.startswith("uprobe:") else (spec,)
        done = run_attach(*args, "-o", str(out), "--", program)
        assert done.returncode in (0, 1), done.stderr
        trace = load(out)
        spans = trace.all_spans
        counts = {p["name"].split(":", 1)[1]: int((spans["probe"] == p["id"]).sum()) for p in trace.probes}
        assert {k: counts.get(k) for k in expected} == expected, counts
        assert all(p.get("pattern") == spec.removeprefix("uprobe:") for p in trace.probes)
        folded = subprocess.run([sys.executable, "-m", "netprof", "report", "--by-pattern", str(out)],
                                capture_output=True, text=True, check=True).stdout
        [row] = [line for line in folded.splitlines() if line.startswith(spec.removeprefix("uprobe:") + " ")]
        assert row.split()[1] == f"{int((spans['flags'] == 0).sum()):,}"  # one row: every function the pattern chose


# -- attach -l ---------------------------------------------------------------------------------


def list_probes(pattern=None):
    done = subprocess.run([sys.executable, "-m", "netprof", "attach", "-l", *([pattern] if pattern else [])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), done.stderr


def test_list_user_functions_as_binutils_sees_them(programs):
    lines, _ = list_probes(f"uprobe:{programs}/prog:*")
    truth = nm_functions(programs / "prog")
    listed = {line.rsplit(":", 1)[1] for line in lines}
    assert {"alpha_one", "alpha_two", "beta", "main"} <= listed <= set(truth)
    assert all(line.startswith(f"uprobe:{programs}/prog:") for line in lines)
    lines, _ = list_probes(f"uprobe:{programs}/cxx:ns::*")
    assert sorted(lines) == sorted(f"uprobe:{programs}/cxx:{n}" for n in ("ns::fn(int)", "ns::fn(double)",
                                                                            "ns::other(int)"))


@pytest.mark.root
def test_list_tracepoints_as_tracefs_has_them():
    from netprof.loader.attach import tracefs

    lines, _ = list_probes("tracepoint:net:*")
    truth = sorted(f"tracepoint:net:{e.name}" for e in (tracefs() / "events/net").iterdir() if e.is_dir())
    assert lines == truth
    lines, _ = list_probes("netif_rx*")  # a bare glob: kernel functions and tracepoints
    assert {"tracepoint:net:netif_rx", "tracepoint:net:netif_rx_entry"} <= set(lines)


@pytest.mark.root
def test_list_kernel_functions_with_the_mechanism_netprof_would_use():
    from netprof.capture.listing import kernel_mechanism

    lines, err = list_probes("kprobe:tcp_v4_*")
    mechanism = kernel_mechanism()
    if mechanism is None:  # this project's kernel: no kprobes, fentry refused
        assert lines == [] and "probe no kernel function" in err
    else:
        assert lines and all(line.startswith(f"{mechanism}:tcp_v4_") for line in lines)
        assert f"{mechanism}:tcp_v4_rcv" in lines


@pytest.mark.root
def test_a_kernel_glob_that_matches_nothing_is_one_line(tmp_path):
    done = run_attach("-k", "zzz_no_such_function_*", "-o", str(tmp_path / "k.trace"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no kernel function that can be probed matches 'zzz_no_such_function_*'" in done.stderr


def test_kernel_globs_leave_out_what_cannot_be_probed_and_say_so():
    from netprof.capture import kernel_functions

    found = kernel_functions.select("tcp_v4_*")
    allowed, _ = kernel_functions.traceable()
    in_kallsyms = {n for n in kernel_functions.kallsyms_text() if n.startswith("tcp_v4_")}
    assert found.functions and set(found.functions) <= allowed & in_kallsyms | allowed
    assert len(found.functions) + sum(found.left_out.values()) == len(in_kallsyms | {n for n in allowed
                                                                                    if n.startswith("tcp_v4_")})
    assert "tcp_v4_rcv" in found.functions
