"""The examples/ scripts, run as a user would run them."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def start(script: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith(("Counting", "Tracing")), line + proc.stderr.read()
    return proc


def test_xdp_protocols_counts_udp(veth_pair):
    host, netns, _, host_ip = veth_pair
    proc = start("xdp_protocols.py", host, "-d", "3")
    script = (f"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              f"[s.sendto(b'x',('{host_ip}',9)) for _ in range(100)]\n")
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script], check=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    rows = dict(line.split() for line in out.splitlines()[1:])
    assert rows["UDP"] == "100"


def test_funclatency_histogram_counts_every_call(target_program):
    proc = start("funclatency.py", f"{target_program}:work", "-d", "2")
    subprocess.run([str(target_program), "500"], check=True, capture_output=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "total 500 calls"
    assert "->" in out and "*" in out


def test_softirq_time_sees_timer_softirqs():
    proc = start("softirq_time.py", "-d", "1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    names = {line.split()[0] for line in out.splitlines()[1:-1]}
    assert "TIMER" in names or "SCHED" in names or "RCU" in names, out


def test_funclatency_bad_target_is_one_line():
    result = subprocess.run([sys.executable, str(EXAMPLES / "funclatency.py"), "/nonexistent:main", "-d", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
