"""Throughput (-t) against the interfaces' own counters (/sys/class/net/IF/statistics): two
network namespaces joined by a veth pair, a capture running in each at once, traffic both ways
and on loopback. Every packet and byte netprof counts per interface and direction must equal the
counters' deltas, and a capture sees only its own namespace unless asked for all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from capture import Capture

import netprof

pytestmark = pytest.mark.root
STATS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def two_namespaces():
    """{"a": (netns, veth), "b": (netns, veth)}: veth a<->b, 10.214.7.1/.2, IPv6 off (no router
    solicitations or neighbour discovery arriving on their own), loopback up."""
    tag = uuid.uuid4().hex[:6]
    sides = {"a": (f"npta{tag}", f"npTa{tag}"), "b": (f"nptb{tag}", f"npTb{tag}")}
    try:
        for netns, _ in sides.values():
            sh("ip", "netns", "add", netns)
            sh("ip", "netns", "exec", netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
               "net.ipv6.conf.default.disable_ipv6=1")
        (na, va), (nb, vb) = sides["a"], sides["b"]
        sh("ip", "-n", na, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", nb)
        for i, (netns, veth) in enumerate(sides.values(), 1):
            sh("ip", "-n", netns, "addr", "add", f"10.214.7.{i}/24", "dev", veth)
            sh("ip", "-n", netns, "link", "set", veth, "up")
            sh("ip", "-n", netns, "link", "set", "lo", "up")
        yield sides
    finally:
        for netns, _ in sides.values():
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def counters(netns: str, interface: str) -> dict[str, int]:
    out = sh("ip", "netns", "exec", netns, "sh", "-c",
             " ".join(f"cat /sys/class/net/{interface}/statistics/{s};" for s in STATS))
    return dict(zip(STATS, map(int, out.split()), strict=True))


def capture(netns: str, path, *extra: str) -> Capture:
    return Capture("-t", *extra, "-o", str(path), prefix=("ip", "netns", "exec", netns))


def stopped(capture: Capture) -> None:
    code, err = capture.stop()
    assert code == 0, err


def traffic(sides) -> None:
    """UDP a->b, a TCP exchange b->a (a reply, ACKs both ways), pings on each side's loopback."""
    (na, _), (nb, _) = sides["a"], sides["b"]
    server = subprocess.Popen(["ip", "netns", "exec", na, sys.executable, "-c", (
        "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('10.214.7.1', 7400)); s.listen(); c,_=s.accept(); n=0\n"
        "while n < 200000:\n d=c.recv(65536)\n if not d: break\n n+=len(d)\nc.sendall(b'ok'); c.close()\n")])
    time.sleep(0.3)
    sh("ip", "netns", "exec", na, sys.executable, "-c", (
        "import socket,time\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for i in range(500): s.sendto(b'x' * (i % 1400), ('10.214.7.2', 9)); time.sleep(0.0005)\n"))
    sh("ip", "netns", "exec", nb, sys.executable, "-c", (
        "import socket\nc=socket.create_connection(('10.214.7.1', 7400)); c.sendall(b'y' * 200000)\n"
        "assert c.recv(2) == b'ok'\n"))
    server.wait(timeout=30)
    for netns in (na, nb):
        sh("ip", "netns", "exec", netns, "ping", "-q", "-c", "20", "-i", "0.01", "127.0.0.1")
    time.sleep(0.1)


def measured(trace, netns_inode: int, ifname: str) -> dict[str, int]:
    tput = trace.throughput
    names = {ifindex: name for ifindex, name in trace.header["interfaces"].items()}
    ifindex = int(next(i for i, n in names.items() if n == ifname))
    mine = tput[(tput["netns"] == netns_inode) & (tput["ifindex"] == ifindex)]
    out = {}
    for direction, prefix in ((0, "rx"), (1, "tx")):
        rows = mine[mine["direction"] == direction]
        out[f"{prefix}_packets"], out[f"{prefix}_bytes"] = int(rows["packets"].sum()), int(rows["bytes"].sum())
    return out


def test_throughput_equals_the_interface_counters_in_both_namespaces(two_namespaces, tmp_path):
    sides = two_namespaces
    inodes = {side: os.stat(f"/run/netns/{netns}").st_ino for side, (netns, _) in sides.items()}
    interfaces = [(side, netns, name) for side, (netns, veth) in sides.items() for name in (veth, "lo")]
    before = {(side, name): counters(netns, name) for side, netns, name in interfaces}
    captures = {side: capture(netns, tmp_path / f"{side}.trace") for side, (netns, _) in sides.items()}
    traffic(sides)
    for running in captures.values():
        stopped(running)
    after = {(side, name): counters(netns, name) for side, netns, name in interfaces}
    for side, netns, name in interfaces:
        trace = netprof.load(tmp_path / f"{side}.trace")
        truth = {s: after[side, name][s] - before[side, name][s] for s in STATS}
        assert truth["tx_packets"] > 0 and truth["rx_packets"] > 0, (side, name, truth)
        assert measured(trace, inodes[side], name) == truth, (side, name)
        # only this namespace's interfaces
        assert set(trace.throughput["netns"].tolist()) == {inodes[side]}, side


def test_all_netns_counts_the_others_and_names_them(two_namespaces, tmp_path):
    sides = two_namespaces
    (na, va), (nb, vb) = sides["a"], sides["b"]
    before = counters(nb, vb)
    running = capture(na, tmp_path / "all.trace", "--all-netns")
    traffic(sides)
    stopped(running)
    truth = {s: counters(nb, vb)[s] - before[s] for s in STATS}
    trace = netprof.load(tmp_path / "all.trace")
    inode_b = os.stat(f"/run/netns/{nb}").st_ino
    assert inode_b in set(trace.throughput["netns"].tolist())
    b_index = int(sh("ip", "netns", "exec", nb, "cat", f"/sys/class/net/{vb}/ifindex"))
    assert trace.interface_name(inode_b, b_index) == f"{vb}@{nb}"
    tput = trace.throughput
    mine = tput[(tput["netns"] == inode_b) & (tput["ifindex"] == b_index)]
    for direction, prefix in ((0, "rx"), (1, "tx")):
        rows = mine[mine["direction"] == direction]
        assert int(rows["packets"].sum()) == truth[f"{prefix}_packets"]
        assert int(rows["bytes"].sum()) == truth[f"{prefix}_bytes"]
    report = subprocess.run([sys.executable, "-m", "netprof", "report", str(tmp_path / "all.trace")],
                            capture_output=True, text=True, check=True).stdout
    assert f"{vb}@{nb}" in report


def test_a_full_throughput_map_is_counted_as_lost(tmp_path, monkeypatch):
    """Room for one (bin, interface, direction) key: the packets of the others are lost, and said so."""
    from netprof import session

    monkeypatch.setattr(session, "THROUGHPUT_ENTRIES", 1)
    out = tmp_path / "full.trace"
    with session.Session(throughput=True, output=out) as s:
        pinger = subprocess.Popen(["ping", "-q", "-c", "50", "-i", "0.002", "127.0.0.1"], stdout=subprocess.DEVNULL)
        s.run(duration=0.5)
        pinger.wait(timeout=10)
    name = "throughput (its map was full, or another BPF program ran on the CPU)"
    lost = s.summary.lost.get(name, 0)
    assert lost > 0, s.summary.lost
    assert netprof.load(out).lost.get(name) == lost
