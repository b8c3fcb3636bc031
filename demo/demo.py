#!/usr/bin/env python3
"""netprof's demo: two network namespaces joined by a veth pair, TCP and UDP traffic between
them from a small C program, captured for a few seconds (network-stack spans, the C program's
functions as user spans, every packet XDP sees, throughput and memory), then the report and two
pictures of it (netprof view --png): the whole capture, and one request and its reply.

Run as root from the repository: ``sudo make demo`` (or ``sudo .venv/bin/python demo/demo.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS_CLIENT, NS_SERVER = "npdemo-client", "npdemo-server"
VETH_CLIENT, VETH_SERVER = "npdemo-c", "npdemo-s"
CLIENT_IP, SERVER_IP, PORT = "10.214.0.1", "10.214.0.2", 7000
REQUESTS = 2000
SECONDS = 5

SERVER = f"""
import socket, threading
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("{SERVER_IP}", {PORT})); tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("{SERVER_IP}", {PORT}))
threading.Thread(target=lambda: [udp.recv(2048) for _ in iter(int, 1)], daemon=True).start()
conn, _ = tcp.accept()
buf = b""
while True:
    data = conn.recv(65536)
    if not data:
        break
    buf += data
    while len(buf) >= 512:
        conn.sendall(b"r" + buf[1:512]); buf = buf[512:]
"""


def run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def install_missing() -> None:
    """gcc, iproute2, and what `netprof view --png` needs with no display (Mesa's EGL, a font)."""
    if shutil.which("dpkg-query"):
        run(str(HERE.parent / "tools/system-packages"), "--install")


def make_network() -> None:
    for ns in (NS_CLIENT, NS_SERVER):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        run("ip", "netns", "add", ns)
    run("ip", "link", "add", VETH_CLIENT, "netns", NS_CLIENT, "type", "veth", "peer", "name", VETH_SERVER,
        "netns", NS_SERVER)
    for ns, dev, ip in ((NS_CLIENT, VETH_CLIENT, CLIENT_IP), (NS_SERVER, VETH_SERVER, SERVER_IP)):
        run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")


def remove_network() -> None:
    for ns in (NS_CLIENT, NS_SERVER):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (it makes network namespaces and loads BPF programs): sudo make demo",
              file=sys.stderr)
        return 2
    install_missing()
    work = Path(tempfile.mkdtemp(prefix="netprof-demo-"))
    client = work / "client"
    run("gcc", "-O1", "-g", "-o", str(client), str(HERE / "client.c"))
    output = Path(os.environ.get("NETPROF_DEMO_TRACE", "demo.trace")).resolve()
    from netprof.loader.features import features

    kernel = ["-k", "ip_rcv,tcp_v4_rcv"] if features().has("kprobe") or features().has("fentry") else []
    make_network()
    server = capture = None
    try:
        server = subprocess.Popen(["ip", "netns", "exec", NS_SERVER, sys.executable, "-c", SERVER])
        attach = [sys.executable, "-m", "netprof", "attach", "--net", *kernel,
                  "-u", f"{client}:send_request", "-u", f"{client}:parse_reply", "-u", f"{client}:send_datagram",
                  "-x", VETH_CLIENT, "-t", "-m", "-d", str(SECONDS), "-o", str(output)]
        print("demo: $", " ".join(["ip", "netns", "exec", NS_CLIENT, "python -m netprof", *attach[3:]]), flush=True)
        capture = subprocess.Popen(["ip", "netns", "exec", NS_CLIENT, *attach], stderr=subprocess.PIPE, text=True)
        while (line := capture.stderr.readline()) and not line.startswith("Tracing"):
            print(line, end="", file=sys.stderr)
        print(line, end="", file=sys.stderr)
        time.sleep(0.3)
        run("ip", "netns", "exec", NS_CLIENT, str(client), SERVER_IP, str(PORT), str(REQUESTS))
        print(capture.communicate()[1], end="", file=sys.stderr)
        if capture.returncode:
            return capture.returncode
    finally:
        for proc in (capture, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait()
        remove_network()
        shutil.rmtree(work, ignore_errors=True)
    print()
    report = subprocess.run([sys.executable, "-m", "netprof", "report", str(output)]).returncode
    return report or draw(output)


def draw(trace_path: Path) -> int:
    """The capture as pictures: all of it, and one request from send_request to parse_reply."""
    import numpy as np

    import netprof

    trace = netprof.load(trace_path)
    origin = trace.time_range[0]
    sends, replies = (trace.spans(probe=f"client:{f}").array for f in ("send_request", "parse_reply"))
    window = []
    if len(sends) > 100 and len(replies):
        start = int(sends["start"][100])
        reply = replies[np.searchsorted(replies["start"], start):][:1]
        end = int(reply["end"][0]) if len(reply) else start + 100_000
        margin = (end - start) // 10
        window = ["--filter", f"{start - origin - margin}-{end - origin + margin}"]
    for path, extra in ((trace_path.with_name(trace_path.stem + "-overview.png"), []),
                        (trace_path.with_suffix(".png"), [*window, "--xdp-labels"])):
        done = subprocess.run([sys.executable, "-m", "netprof", "view", str(trace_path), "--png", str(path),
                               "--size", "1600x900", *extra])
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
