"""Shared fixtures: root-only tests, a veth pair into a network namespace, a C program built
with gcc, and a check after every root test that nothing of netprof stays in the kernel."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import needs

TEST_PROGRAM_PREFIX = "nptest"  # names of the BPF programs tests load


def loaded_program_names() -> list[str]:
    from netprof.loader import syscall

    names, ident = [], 0
    while (ident := syscall.next_id(syscall.Cmd.PROG_GET_NEXT_ID, ident)) is not None:
        try:
            fd = syscall.fd_by_id(syscall.Cmd.PROG_GET_FD_BY_ID, ident)
        except syscall.BpfError:
            continue  # freed in between
        try:
            names.append(syscall.obj_info(fd, syscall.ProgInfo(), "info").name.decode())
        finally:
            os.close(fd)
    return names


def leftovers() -> list[str]:
    found = []
    for events in ("kprobe_events", "uprobe_events"):
        for root in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
            path = root / events
            if path.exists() and "netprof" in path.read_text():
                found.append(f"{path}: {path.read_text().strip()}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    found += [line[:100] for line in links.splitlines() if "xdp" in line and "np" in line.split(":")[1]]
    found += [f"BPF program {name}" for name in loaded_program_names() if name.startswith(TEST_PROGRAM_PREFIX)]
    return found


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        needs.missing("needs root and the real kernel: sudo make test")


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    yield
    if not request.node.get_closest_marker("root") or os.geteuid() != 0:
        return
    gc.collect()
    deadline = time.monotonic() + 2  # program release is RCU-deferred
    while (left := leftovers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"left behind in the kernel: {left}"


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def veth_pair():
    """``(host_side, netns, peer_ip, host_ip)``: veth npH<id> here, npP<id> inside netns np<id>."""
    tag = uuid.uuid4().hex[:6]
    netns, host, peer = f"np{tag}", f"npH{tag}", f"npP{tag}"
    run("ip", "netns", "add", netns)
    try:
        run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        run("ip", "link", "set", peer, "netns", netns)
        run("ip", "addr", "add", "10.213.0.1/30", "dev", host)
        run("ip", "link", "set", host, "up")
        run("ip", "-n", netns, "addr", "add", "10.213.0.2/30", "dev", peer)
        run("ip", "-n", netns, "link", "set", peer, "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        yield host, netns, "10.213.0.2", "10.213.0.1"
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


TARGET_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) int work(int x) {
    asm volatile("" ::: "memory");
    return x * 2 + 1;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1, sum = 0;
    if (argc > 2) usleep(atoi(argv[2]) * 1000);   /* time for the tracer to attach */
    for (int i = 0; i < n; i++)
        sum += work(i);
    printf("%d\n", sum);
    return 0;
}
"""


@pytest.fixture(scope="session")
def target_program(tmp_path_factory) -> Path:
    """A small C program: ``target N [DELAY_MS]`` calls work() N times."""
    gcc = needs.tool("gcc")
    out = tmp_path_factory.mktemp("target")
    source = out / "target.c"
    source.write_text(TARGET_C)
    binary = out / "target"
    subprocess.run([gcc, "-O1", "-o", str(binary), str(source)], check=True)
    return binary
