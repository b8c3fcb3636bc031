"""vm/run --net: the guest reaches the host over a tap link, and netprof in the guest sees the
packets that cross it (XDP on the guest's eth0). Runs on the host; part of make test-vm."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.root]
PROJECT = Path(__file__).resolve().parent.parent
GUEST = "192.168.179.2"

RECEIVER = """
import pathlib, socket, subprocess, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999)); s.settimeout(60)
capture = subprocess.Popen([sys.executable, "-m", "netprof", "attach", "-x", "eth0", "-o", sys.argv[2]],
                           stderr=subprocess.PIPE, text=True)
assert capture.stderr.readline().startswith("Tracing")
pathlib.Path(sys.argv[1]).write_text("ready")
got = 0
while got < 50:
    s.recv(100); got += 1
capture.send_signal(2); capture.wait()
print("received", got)
"""


def test_guest_network_link_and_xdp_capture(tmp_path):
    run_dir = PROJECT / "vm/.run"
    run_dir.mkdir(exist_ok=True)
    ready, trace = run_dir / "net-ready", run_dir / "net.trace"
    ready.unlink(missing_ok=True)
    (run_dir / "receiver.py").write_text(RECEIVER)
    guest = subprocess.Popen([str(PROJECT / "vm/run"), "--net", "--timeout", "600", sys.executable,
                              str(run_dir / "receiver.py"), str(ready), str(trace)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not ready.exists():
        assert guest.poll() is None and time.monotonic() < deadline, guest.stderr.read()
        time.sleep(0.2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(50):
        sender.sendto(b"netprof %d" % i, (GUEST, 9999))
        time.sleep(0.01)
    _, err = guest.communicate(timeout=600)
    assert guest.returncode == 0, err
    from netprof.report import load

    packets = load(trace).packets
    data = packets["data"].astype(int)
    udp = packets[(data[:, 23] == 17) & (data[:, 36] * 256 + data[:, 37] == 9999)]
    assert len(udp) == 50
    assert "npvm0" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
