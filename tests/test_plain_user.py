"""What a plain user sees: each command that needs a privilege says in one line which capability
is missing and what for, and the commands that need none work.

The root tests run netprof as uid 65534 through setpriv (with ambient capabilities where a case
asks for some) and attach nothing: each capture asked for writes into a folder that does not
exist, so it stops before anything is loaded even when it is permitted.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import needs
from netprof import cli
from netprof.loader import xdp
from netprof.loader.syscall import BpfError

NOBODY = 65534
SOURCE = str(Path(cli.__file__).parents[1])  # the netprof under test, also for the user's subprocesses
NOWHERE = "/nonexistent-folder/x.trace"


# --- one line, not a traceback -------------------------------------------------------------------

def test_detach_refused_by_netlink_is_one_line(monkeypatch, capsys):
    from pyroute2.netlink.exceptions import NetlinkError

    def refused(everything=False):
        raise NetlinkError(errno.EPERM)

    monkeypatch.setattr(xdp, "detach_needs", lambda: [], raising=False)
    monkeypatch.setattr(xdp, "records", lambda: [])
    monkeypatch.setattr(xdp, "detach_stale", refused)
    assert cli.main(["detach", "--all"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CAP_NET_ADMIN" in err and "Operation not permitted" in err


def test_detaching_a_record_turns_a_netlink_refusal_into_a_bpf_error(monkeypatch):
    import pyroute2
    from pyroute2.netlink.exceptions import NetlinkError

    class FakeIPRoute:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def refuse(*args):
        raise NetlinkError(errno.EPERM)

    monkeypatch.setattr(pyroute2, "IPRoute", FakeIPRoute)
    monkeypatch.setattr(xdp, "current", lambda ipr, ifindex: (42, "generic"))
    monkeypatch.setattr(xdp, "_set", refuse)
    record = xdp.XdpRecord(7, "veth0", xdp._netns(), 42, "generic", 1, 1, 0.0)
    with pytest.raises(BpfError, match=r"detach XDP program 42 from veth0: .*CAP_NET_ADMIN"):
        xdp._detach(record)


# --- as another user (root runs setpriv) ----------------------------------------------------------

@pytest.fixture
def nobody_dir():
    """A folder uid 65534 may write: its working folder and its outputs."""
    folder = Path(tempfile.mkdtemp(prefix="np-nobody-", dir="/tmp"))
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody(*args: str, caps: str = "", run_dir: Path | None = None, cwd: Path | str = "/",
              command: tuple[str, ...] = (sys.executable, "-m", "netprof")) -> subprocess.CompletedProcess:
    setpriv = [needs.tool("setpriv", "util-linux"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if caps:
        setpriv += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1",
           "NETPROF_RUN_DIR": str(run_dir or "/nonexistent-run-dir"), "PYTHONPATH": SOURCE}
    return subprocess.run([*setpriv, *command, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)


@pytest.fixture(autouse=True)
def nobody_can_run_netprof(request):
    if request.node.get_closest_marker("root") and os.geteuid() == 0:
        if as_nobody(command=(sys.executable, "-c", "import netprof")).returncode != 0:
            needs.missing("uid 65534 cannot read this checkout or its .venv")
    yield


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.root
def test_features_as_a_plain_user_says_what_it_could_not_tell(run_dir):
    table = as_nobody("features", run_dir=run_dir)
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    assert re.search(r"socket_filter +could not tell \(not permitted: run as root or with CAP_BPF\)", table.stdout)
    assert re.search(r"xdp +could not tell \(not permitted: run as root or with CAP_BPF and CAP_NET_ADMIN\)",
                     table.stdout)
    found = json.loads(as_nobody("features", "--json", run_dir=run_dir).stdout)
    assert found["prog_types"]["tracepoint"]["state"] == "could not tell"
    assert found["attach"]["tracepoint"] == {"state": "could not tell",
                                             "detail": "not permitted: run as root or with CAP_DAC_READ_SEARCH"}
    assert not list(run_dir.iterdir())


@pytest.mark.root
def test_features_refresh_as_a_plain_user_is_one_line(run_dir):
    assert "CAP_BPF" in one_line(as_nobody("features", "--refresh", run_dir=run_dir))


@pytest.mark.root
def test_features_with_capabilities_probe_everything_and_cache_nothing(run_dir):
    result = as_nobody("features", "--refresh", "--json", caps="+bpf,+perfmon,+net_admin,+dac_read_search",
                       run_dir=run_dir)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    for group in ("prog_types", "map_types", "attach"):
        unsure = {name for name, f in found[group].items() if f["state"] == "could not tell"}
        # XDP links are tried in a network namespace of netprof's own, which takes CAP_SYS_ADMIN
        assert unsure <= {"xdp_link"}, found[group]
    assert "not permitted" in found["attach"]["xdp_link"]["detail"]
    assert found["prog_types"]["xdp"]["state"] == found["attach"]["tracepoint"]["state"] == "supported"
    assert not list(run_dir.iterdir())  # a user's probe is never cached


@pytest.mark.root
def test_a_plain_user_reads_roots_cache(run_dir):
    subprocess.run([sys.executable, "-m", "netprof", "features"], check=True, capture_output=True,
                   env={**os.environ, "NETPROF_RUN_DIR": str(run_dir)})
    [cache] = run_dir.glob("features-*.json")
    assert cache.stat().st_uid == 0 and stat.S_IMODE(cache.stat().st_mode) == 0o644
    table = as_nobody("features", run_dir=run_dir).stdout
    assert re.search(r"tracepoint +yes", table) and "could not tell" not in table


@pytest.mark.root
def test_detach_as_a_plain_user_names_cap_net_admin(run_dir):
    records = run_dir / "xdp"
    records.mkdir(mode=0o755)
    record = records / "0-999999.json"  # an interface that does not exist: nothing real is touched
    record.write_text(json.dumps({"ifindex": 999999, "ifname": "npgone", "netns": xdp._netns(), "prog_id": 1,
                                  "mode": "generic", "pid": 1, "pid_start": 1, "attached_at": 0.0}))
    for args in (("detach",), ("detach", "--all")):
        message = one_line(as_nobody(*args, run_dir=run_dir))
        assert re.findall(r"CAP_\w+", message) == ["CAP_NET_ADMIN", "CAP_DAC_OVERRIDE"], message
    message = one_line(as_nobody("detach", "--all", caps="+net_admin", run_dir=run_dir))
    assert re.findall(r"CAP_\w+", message) == ["CAP_DAC_OVERRIDE"], message
    assert record.exists()


@pytest.mark.root
@pytest.mark.parametrize("caps, asked, missing", [
    ("", ["--net"], ["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"]),
    ("+bpf,+perfmon", ["--net", "--throughput"], ["CAP_DAC_READ_SEARCH"]),
    ("+bpf,+perfmon", ["-u", "/bin/true:main"], ["CAP_SYS_ADMIN"]),
    ("+bpf,+perfmon,+dac_read_search", ["--net", "-x", "lo"], ["CAP_NET_ADMIN"]),  # a bpf_link: no record
    ("+bpf,+perfmon,+dac_read_search", ["-x", "lo", "--xdp-attach", "netlink"], ["CAP_NET_ADMIN", "CAP_DAC_OVERRIDE"]),
    ("+bpf", ["--memory"], []),
    ("+bpf,+perfmon,+dac_read_search", ["--net", "tracepoint:net:netif_rx"], []),
    ("+sys_admin", ["-u", "/bin/true:main"], []),
    ("+bpf,+perfmon,+net_admin,+dac_override", ["-x", "lo"], []),
])
def test_attach_names_exactly_the_missing_capabilities(run_dir, caps, asked, missing):
    message = one_line(as_nobody("attach", *asked, "-d", "1", "-o", NOWHERE, caps=caps, run_dir=run_dir))
    assert re.findall(r"CAP_\w+", message) == missing, message
    if not missing:  # permitted: stopped by the output folder, before anything was loaded
        assert "/nonexistent-folder is not a writable folder" in message


@pytest.mark.root
def test_commands_that_need_no_privileges_work_as_a_plain_user(nobody_dir):
    import viz_trace

    trace = nobody_dir / "t.trace"
    viz_trace.write(trace)
    os.chown(trace, NOBODY, NOBODY)
    (nobody_dir / "p.s").write_text("r0 = 0\nexit\n")
    for args in (("asm", "p.s", "-o", "p.bin"), ("disasm", "p.bin"), ("report", "t.trace"),
                 ("export", "t.trace", "--csv", "t.csv", "--perfetto", "t.json")):
        result = as_nobody(*args, cwd=nobody_dir)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr)
    assert "exit" in as_nobody("disasm", "p.bin", cwd=nobody_dir).stdout
    assert (nobody_dir / "t.csv").stat().st_uid == NOBODY


@pytest.mark.root
def test_view_needs_no_privileges(nobody_dir):
    needs.module("netprof_viz")
    import viz_trace

    viz_trace.write(nobody_dir / "t.trace")
    os.chown(nobody_dir / "t.trace", NOBODY, NOBODY)
    result = as_nobody("view", "t.trace", "--png", "t.png", "--size", "320x200", cwd=nobody_dir)
    assert result.returncode == 0, result.stderr
    assert (nobody_dir / "t.png").stat().st_uid == NOBODY
