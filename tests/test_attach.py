"""``netprof attach`` end to end on the real kernel: what the test generates is what the trace holds;
Ctrl-C and SIGKILL leave readable files; every bad input is one line and exit status 2."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from capture import Capture

from netprof.report import load

pytestmark = pytest.mark.root


def probe_spans(trace, name: str) -> np.ndarray:
    ids = [p["id"] for p in trace.probes if p["name"] == name]
    assert ids, f"no probe {name} in {[p['name'] for p in trace.probes]}"
    return trace.all_spans[trace.all_spans["probe"] == ids[0]]


def test_user_function_calls_become_spans(target_program, tmp_path):
    out = tmp_path / "user.trace"
    capture = Capture("-u", f"{target_program}:work", "-m", "-o", str(out))
    subprocess.run([str(target_program), "1000"], check=True, capture_output=True)
    code, err = capture.stop()
    assert code == 0, err
    assert "none lost" in err
    trace = load(out)
    spans = probe_spans(trace, "target:work")
    assert len(spans) == 1000 and set(spans["flags"]) == {0}
    raw = spans["end"] - spans["start"]
    assert np.all(raw > 0)
    # work() takes nanoseconds; its probes' own in-span cost (~0.7 µs) is taken off
    assert trace.corrected and np.all(spans["duration"] < raw) and np.median(spans["duration"]) < np.median(raw) / 2
    assert sorted(spans["arg"].tolist()) == list(range(1000))            # first argument at entry
    assert sorted(spans["ret"].tolist()) == [2 * i + 1 for i in range(1000)]  # return value at exit
    assert len(np.unique(spans["pid"])) == 1
    assert trace.memory.size and 0 in trace.memory["pid"]


def test_a_hot_function_has_no_lone_ends_when_capture_starts_and_stops(target_program, tmp_path):
    """The probes are gated: both ends start and stop recording at once, though the kernel takes
    ~100 ms to register or unregister each uprobe (ungated: ~18,000 lone entries or exits here)."""
    runner = subprocess.Popen([str(target_program), "2000000000"], stdout=subprocess.DEVNULL)
    try:
        out = tmp_path / "hot.trace"
        capture = Capture("-u", f"{target_program}:work", "-o", str(out))
        time.sleep(0.3)
        code, err = capture.stop()
        assert code == 0, err
    finally:
        runner.kill()
        runner.wait()
    spans = probe_spans(load(out), "target:work")
    assert len(spans) > 1000
    assert np.count_nonzero(spans["flags"]) <= 2  # at most the call in flight at each end


def test_socket_buffer_memory_follows_unread_datagrams(tmp_path):
    """--sockets samples the kernel's socket buffer memory: 3 MB of datagrams left unread on a
    loopback socket show up, and go away when the socket closes. (The kernel's counter moves in
    steps: each CPU keeps up to 1 MB of reserve before charging the global count.)"""
    import socket

    from netprof.format.layout import MEMORY_SOCKETS

    out = tmp_path / "sockets.trace"
    capture = Capture("-m", "--sockets", "-o", str(out))
    time.sleep(0.3)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root): past rmem_max
    receiver.bind(("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(3000):
            sender.sendto(b"x" * 1000, receiver.getsockname())
    time.sleep(0.3)
    receiver.close()
    time.sleep(0.3)
    code, err = capture.stop()
    assert code == 0, err
    memory = load(out).memory
    sockets = memory[memory["pid"] == MEMORY_SOCKETS]["bytes"].astype(np.int64)
    assert len(sockets) > 20
    assert sockets.max() - sockets[0] >= 3_000_000 and sockets[-1] - sockets[0] < 1_500_000, sockets


def test_xdp_records_every_packet_with_its_headers(veth_pair, tmp_path):
    host, netns, _, host_ip = veth_pair
    out = tmp_path / "xdp.trace"
    capture = Capture("-x", host, "-t", "--snaplen", "64", "-o", str(out))
    script = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              f"for i in range(200):\n s.sendto(b'netprof-%03d' % i,('{host_ip}',7777)); time.sleep(0.001)\n")
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script], check=True, timeout=60)
    time.sleep(0.2)
    code, err = capture.stop()
    assert code == 0, err
    packets = load(out).packets
    mine = packets[packets["ifindex"] == socket.if_nametoindex(host)]
    data = mine["data"]
    udp = (data[:, 12] == 0x08) & (data[:, 13] == 0x00) & (data[:, 23] == 17) & \
          (data[:, 36].astype(int) * 256 + data[:, 37] == 7777)
    assert udp.sum() == 200
    payloads = sorted(bytes(d[42:53]) for d in data[udp])
    assert payloads == sorted(b"netprof-%03d" % i for i in range(200))
    assert set(mine["len"][udp]) == {14 + 20 + 8 + 11} and set(mine["caplen"][udp]) == {53}


def test_sigint_leaves_a_readable_file_and_nothing_attached(tmp_path):
    out = tmp_path / "net.trace"
    capture = Capture("--net", "-t", "-m", "-o", str(out))
    time.sleep(0.3)
    code, err = capture.stop(signal.SIGINT)
    assert code == 0 and "wrote" in err
    trace = load(out)
    assert trace.problems == [] and trace.raw.end is not None


def xdp_on(host: str) -> str:
    return subprocess.run(["ip", "link", "show", host], capture_output=True, text=True).stdout


@pytest.mark.parametrize("method", ["bpf_link", "netlink"])
def test_sigkill_leaves_whole_chunks_and_nothing_attached(veth_pair, tmp_path, target_program, method):
    host, netns, _, host_ip = veth_pair
    out = tmp_path / "killed.trace"
    capture = Capture("-x", host, "--xdp-attach", method, "-u", f"{target_program}:work", "-o", str(out))
    subprocess.run([str(target_program), "500"], check=True, capture_output=True)
    time.sleep(0.3)
    capture.stop(signal.SIGKILL)
    assert capture.proc.returncode == -signal.SIGKILL
    trace = load(out)
    assert trace.raw.end is None                          # it never finished, and says so
    assert trace.problems[0].startswith("incomplete:")
    assert len(probe_spans(trace, "target:work")) == 500  # but every chunk written is there
    if method == "bpf_link":  # the kernel took the program off with the link's fd
        assert "xdp" not in xdp_on(host)
        return
    assert "xdp" in xdp_on(host)  # netlink: it stays until netprof detach, which knows it from its record
    detach = subprocess.run([sys.executable, "-m", "netprof", "detach"], capture_output=True, text=True)
    assert detach.returncode == 0 and f"from {host}" in detach.stdout
    assert "xdp" not in xdp_on(host)


def kill_at_random_moments(host: str, tmp_path, method: str, seed: int) -> list[str]:
    """Ten captures killed at random moments of their start-up and run; what each left on ``host``."""
    rng = random.Random(seed)
    left = []
    for i in range(10):
        proc = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "-x", host, "--xdp-attach", method,
                                 "-o", str(tmp_path / f"k{i}.trace")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.8))  # start-up (imports, load, attach) takes about 0.2-0.4 s here
        proc.kill()
        proc.wait()
        left.append(xdp_on(host))
    return left


def test_ten_random_sigkills_leave_no_xdp_program(veth_pair, tmp_path):
    host = veth_pair[0]
    seed = random.randrange(1 << 30)
    left = kill_at_random_moments(host, tmp_path, "bpf_link", seed)
    assert not [state for state in left if "xdp" in state], f"seed {seed}"
    code, err = Capture("-x", host, "-o", str(tmp_path / "next.trace")).stop()
    assert code == 0, err


def test_ten_random_sigkills_over_netlink_leave_nothing_unrecorded(veth_pair, tmp_path):
    from netprof.loader import xdp

    host = veth_pair[0]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for i in range(10):
        proc = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "-x", host, "--xdp-attach", "netlink",
                                 "-o", str(tmp_path / f"k{i}.trace")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.8))
        proc.kill()
        proc.wait()
        state = xdp_on(host)
        if "xdp" in state:  # whatever is attached, netprof has a record of it
            prog_id = int(state.split("prog/xdp id ")[1].split()[0])
            assert any(r.prog_id == prog_id and r.ifname == host for r in xdp.records()), f"seed {seed}"
        detach = subprocess.run([sys.executable, "-m", "netprof", "detach"], capture_output=True, text=True)
        assert detach.returncode == 0, detach.stderr
        assert "xdp" not in xdp_on(host), f"seed {seed}"


def test_sighup_ends_the_capture_like_sigterm(veth_pair, tmp_path):
    host = veth_pair[0]
    for method in ("bpf_link", "netlink"):
        out = tmp_path / f"hup-{method}.trace"
        capture = Capture("-x", host, "--xdp-attach", method, "-t", "-o", str(out))
        time.sleep(0.2)
        code, err = capture.stop(signal.SIGHUP)
        assert code == 0 and "wrote" in err, err
        assert load(out).raw.end is not None  # the end chunk was written
        assert "xdp" not in xdp_on(host)


def test_config_file_replaces_the_command_line(target_program, tmp_path):
    config = tmp_path / "profile.toml"
    out = tmp_path / "c.trace"
    config.write_text(f'user = ["{target_program}:work"]\nmemory = true\nduration = 3\noutput = "{out}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "-c", str(config)], stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.5)
    subprocess.run([str(target_program), "50"], check=True, capture_output=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(probe_spans(load(out), "target:work")) == 50


def test_bpftrace_style_names(target_program, tmp_path):
    out = tmp_path / "b.trace"
    capture = Capture(f"uprobe:{target_program}:work", f"uretprobe:{target_program}:work",
                      "tracepoint:syscalls:sys_enter_getpid", "-o", str(out))
    subprocess.run([str(target_program), "20"], check=True, capture_output=True)
    for _ in range(5):
        os.getpid()
    code, err = capture.stop()
    assert code == 0, err
    trace = load(out)
    assert len(probe_spans(trace, "target:work")) == 20
    assert [p["name"] for p in trace.probes] == ["target:work", "sys_enter_getpid"]


def stripped_copy(target_program, tmp_path):
    copy = tmp_path / "stripped"
    shutil.copy(target_program, copy)
    subprocess.run(["strip", str(copy)], check=True)
    return copy


@pytest.mark.parametrize("args,message", [
    ([], "nothing to capture"),
    (["-k", "no_such_function_xyz"], "no_such_function_xyz"),
    (["-u", "/nonexistent/binary:main"], "/nonexistent/binary"),
    (["-u", "TARGET:no_such_symbol"], "no function 'no_such_symbol'"),
    (["-u", "STRIPPED:work"], "stripped"),
    (["-x", "npnosuchif0"], "no network interface 'npnosuchif0'"),
    (["--net", "--snaplen", "7"], "--snaplen 7: expected a multiple of 8"),
    (["-c", "CONFIG"], "not valid TOML"),
    (["-c", "TYPED"], 'duration = "10": expected seconds above 0'),
    (["foo:bar"], "cannot read probe 'foo:bar'"),
    (["--net", "-p", "999999999"], "no process 999999999"),
    (["--net", "-d", "-1"], "-d/--duration -1: expected seconds above 0"),
    (["tracepoint:net:no_such_tp"], "no tracepoint net:no_such_tp"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, target_program, tmp_path):
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("user = [unclosed\n")
    typed = tmp_path / "typed.toml"
    typed.write_text('net = true\nduration = "10"\n')
    replace = {"TARGET": str(target_program), "STRIPPED": str(stripped_copy(target_program, tmp_path)),
               "CONFIG": str(bad_config), "TYPED": str(typed)}
    for placeholder, value in replace.items():
        args = [a.replace(placeholder, value) for a in args]
    result = subprocess.run([sys.executable, "-m", "netprof", "attach", *args, "-o", str(tmp_path / "x.trace")],
                            capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("netprof attach: "), lines
    if "-k" in args:
        assert "no kprobes" in lines[0] or "kallsyms" in lines[0] or "BTF" in lines[0]


def test_unwritable_output_is_refused_before_attaching(tmp_path):
    result = subprocess.run([sys.executable, "-m", "netprof", "attach", "--net", "-o", "/nonexistent/dir/x.trace"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("netprof attach: cannot write /nonexistent/dir/x.trace: /nonexistent/dir "
                                     "is not a writable folder")


def test_not_root_is_one_line_and_exit_2(tmp_path):
    from netprof import cli, session  # noqa: F401 - imported as root: the child cannot read site-packages

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops root and runs the CLI in-process
        os.close(read)
        sys.stderr = os.fdopen(write, "w")
        code = 99
        try:
            os.setegid(65534)
            os.seteuid(65534)
            code = cli.main(["attach", "--net", "-d", "1", "-o", "/tmp/netprof-not-root.trace"])
        except BaseException:  # noqa: BLE001 - report anything, never return into pytest
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    assert err.strip().splitlines() == ["netprof attach: not permitted: needs CAP_BPF (maps and ring buffers), "
                                        "CAP_PERFMON (tracepoints) and CAP_DAC_READ_SEARCH (reading tracefs): "
                                        "run it as root (sudo), or give it those capabilities"]


FORKER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
__attribute__((noinline)) int work(int x) { asm volatile("" ::: "memory"); return x * 2 + 1; }
int main(int argc, char **argv) {
    int mine = atoi(argv[1]), childs = atoi(argv[2]), sum = 0;
    char go;
    if (read(0, &go, 1) != 1) return 1;          /* the test says go once netprof is tracing */
    pid_t child = fork();
    if (child == 0) {
        if (fork() == 0) { for (int i = 0; i < childs; i++) sum += work(i); _exit(sum == 42); }  /* a grandchild */
        for (int i = 0; i < childs; i++) sum += work(i);
        wait(NULL);
        _exit(sum == 42);
    }
    for (int i = 0; i < mine; i++) sum += work(i);
    waitpid(child, NULL, 0);
    return sum == 42;
}
"""


@pytest.fixture(scope="module")
def forker(tmp_path_factory):
    out = tmp_path_factory.mktemp("forker")
    (out / "forker.c").write_text(FORKER_C)
    subprocess.run(["gcc", "-O1", "-o", str(out / "forker"), str(out / "forker.c")], check=True)
    return out / "forker"


@pytest.mark.parametrize("how", ["uprobe_multi", "perf_event"])
@pytest.mark.parametrize("inherit", [True, False])
def test_pid_follows_the_processes_it_forks_unless_told_not_to(forker, tmp_path, inherit, how):
    out = tmp_path / "fork.trace"
    target = subprocess.Popen([str(forker), "300", "700"], stdin=subprocess.PIPE)
    try:
        capture = Capture("-u", f"{forker}:work", "-p", str(target.pid), "--uprobe-attach", how,
                          *([] if inherit else ["--no-inherit"]), "-o", str(out))
        target.stdin.write(b"g")
        target.stdin.close()
        target.wait(timeout=30)
        time.sleep(0.2)
        code, err = capture.stop()
        assert code == 0, err
    finally:
        target.kill()
    spans = probe_spans(load(out), "forker:work")
    by_process = np.unique(spans["pid"], return_counts=True)
    counts = dict(zip(by_process[0].tolist(), by_process[1].tolist(), strict=True))
    if inherit:  # the parent, its child and its grandchild: as perf record -p and bpftrace -p count
        assert counts.pop(target.pid) == 300 and sorted(counts.values()) == [700, 700], counts
    else:
        assert counts == {target.pid: 300}


CET_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) int outer(int x) { volatile int a = x; return a * 2 + 1; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), sum = 0;
    char go;
    if (read(0, &go, 1) != 1) return 1;
    for (int i = 0; i < n; i++) sum += outer(i);
    return sum == 42;
}
"""


@pytest.fixture(scope="module")
def cet_program(tmp_path_factory):
    """Built as Ubuntu, Fedora and RHEL build: every function starts with endbr64 (-fcf-protection),
    here followed by push %rbp (-O0 keeps the frame pointer), which the kernel emulates."""
    out = tmp_path_factory.mktemp("cet")
    (out / "cet.c").write_text(CET_C)
    subprocess.run(["gcc", "-O0", "-fcf-protection=full", "-o", str(out / "cet"), str(out / "cet.c")], check=True)
    return out / "cet"


@pytest.mark.parametrize("exact", [False, True])
def test_entry_probes_skip_endbr64_unless_told_not_to(cet_program, tmp_path, exact):
    out = tmp_path / "cet.trace"
    target = subprocess.Popen([str(cet_program), "2000"], stdin=subprocess.PIPE)
    try:
        capture = Capture("-u", f"{cet_program}:outer", *(["--exact-entry"] if exact else []), "-o", str(out))
        target.stdin.write(b"g")
        target.stdin.close()
        target.wait(timeout=60)
        code, err = capture.stop()
        assert code == 0, err
    finally:
        target.kill()
    trace = load(out)
    [probe] = [p for p in trace.probes if p["name"] == "cet:outer"]
    assert ("outer+0x4" in probe["target"]) != exact, probe["target"]
    assert len(probe_spans(trace, "cet:outer")) == 2000  # the same calls, whichever site
    assert ("single-steps its probed instruction (endbr64" in err) == exact, err
    assert probe["cost_ns"] > probe["in_span_ns"] > 0  # measured on this kernel, kept with the trace
