"""Shared fixtures: root-only tests, a veth pair into a network namespace, a C program built
with gcc, and a check after every root test that nothing of netprof stays in the kernel."""

from __future__ import annotations

import ctypes
import gc
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import needs

def bpf_ids() -> set[tuple[str, int]]:
    """Every BPF program, map and link in the kernel, as (kind, id)."""
    from netprof.loader import syscall

    found = set()
    for kind, cmd in (("prog", syscall.Cmd.PROG_GET_NEXT_ID), ("map", syscall.Cmd.MAP_GET_NEXT_ID),
                      ("link", syscall.Cmd.LINK_GET_NEXT_ID)):
        ident = 0
        while (ident := syscall.next_id(cmd, ident)) is not None:
            found.add((kind, ident))
    return found


def held_by_other_processes() -> set[tuple[str, int]]:
    """The BPF objects that another process holds an fd of (from /proc/*/fdinfo), and the maps
    their programs use: another netprof capture running on this machine, not ours to judge."""
    from netprof.loader import syscall

    held = set()
    for fdinfo in Path("/proc").glob("[0-9]*/fdinfo"):
        if fdinfo.parent.name == str(os.getpid()):
            continue
        try:
            entries = list(fdinfo.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                text = entry.read_text()
            except OSError:
                continue
            for kind in ("prog", "map", "link"):
                for line in text.splitlines():
                    if line.startswith(f"{kind}_id:"):
                        held.add((kind, int(line.split()[1])))
    for _, prog_id in [h for h in held if h[0] == "prog"]:
        ids = (ctypes.c_uint32 * 64)()
        try:
            fd = syscall.fd_by_id(syscall.Cmd.PROG_GET_FD_BY_ID, prog_id)
        except syscall.BpfError:
            continue
        try:
            info = syscall.ProgInfo(nr_map_ids=64, map_ids=ctypes.addressof(ids))
            syscall.obj_info(fd, info, "info")
            held.update(("map", ids[i]) for i in range(min(info.nr_map_ids, 64)))
        finally:
            os.close(fd)
    return held


def leftovers(before: set[tuple[str, int]]) -> list[str]:
    """What this test left: every BPF program, map and link created since ``before`` that no
    other process holds (whatever its name), netprof's tracefs probe events, and XDP programs
    on the tests' interfaces."""
    found = []
    for events in ("kprobe_events", "uprobe_events"):
        for root in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
            path = root / events
            if not path.exists():
                continue
            for pid in re.findall(r"netprof_(\d+)_", path.read_text()):  # a live process's are its own
                if int(pid) == os.getpid() or not Path(f"/proc/{pid}").exists():
                    found.append(f"{path}: netprof_{pid}_...")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    found += [line[:100] for line in links.splitlines() if "xdp" in line and "np" in line.split(":")[1]]
    new = bpf_ids() - before
    if new:
        new -= held_by_other_processes()
    found += [f"BPF {kind} id {ident}" for kind, ident in sorted(new)]
    return found


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        needs.missing("needs root and the real kernel: sudo make test")


@pytest.fixture(scope="session")
def measured_costs(tmp_path_factory) -> tuple[str, bytes] | None:
    """The probe costs of this kernel as netprof caches them (file name, content), measured once a
    test run: netprof measures them once a boot, but every root test has a state folder of its own."""
    if os.geteuid() != 0 or os.uname().machine != "x86_64":
        return None
    from netprof.calibrate import costs, measure

    folder = tmp_path_factory.mktemp("netprof-calibration")
    folder.chmod(0o755)
    before = os.environ.get("NETPROF_RUN_DIR")
    os.environ["NETPROF_RUN_DIR"] = str(folder)
    try:
        found = measure.measure()
    except measure.CalibrationError:
        return None  # the tests that need it say so
    finally:
        if before is None:
            del os.environ["NETPROF_RUN_DIR"]
        else:
            os.environ["NETPROF_RUN_DIR"] = before
    import json

    return costs.cache_name(), json.dumps(found.to_json()).encode()


@pytest.fixture(autouse=True)
def own_state_folder(request, tmp_path_factory, monkeypatch):
    """Root tests keep netprof's state (the records of netlink XDP attachments) in a folder of
    their own: a `netprof detach` run elsewhere on the machine, or by another test run, never
    sees or removes what a test recorded, and a test never touches another capture's records.
    It starts with this run's measured probe costs, as /run/netprof has them after a boot's first capture."""
    if not request.node.get_closest_marker("root") or os.geteuid() != 0:
        return
    folder = tmp_path_factory.mktemp("netprof-run")
    folder.chmod(0o755)
    monkeypatch.setenv("NETPROF_RUN_DIR", str(folder))
    costs = request.getfixturevalue("measured_costs")
    if costs is not None:
        name, content = costs
        (folder / name).write_bytes(content)
        (folder / name).chmod(0o644)


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    root = request.node.get_closest_marker("root") and os.geteuid() == 0
    before = bpf_ids() if root else set()
    yield
    if not root:
        return
    gc.collect()
    deadline = time.monotonic() + 2  # program release is RCU-deferred
    while (left := leftovers(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"left behind in the kernel: {left}"


@pytest.fixture
def run_dir():
    """An empty state folder of root's (0755 under /tmp, so uid 65534 may read it)."""
    folder = Path(tempfile.mkdtemp(prefix="np-run-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


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
