"""What a plain user sees: each command that needs a privilege says in one line which capability
is missing and what for, and the commands that need none work.

The root tests run netprof as uid 65534 through setpriv (with ambient capabilities where a case
asks for some) and attach nothing.
"""

from __future__ import annotations

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

NOBODY = 65534
SOURCE = str(Path(cli.__file__).parents[1])  # the netprof under test, also for the user's subprocesses


# --- as another user (root runs setpriv) ----------------------------------------------------------

@pytest.fixture
def run_dir():
    """An empty state folder of root's (0755 under /tmp, so uid 65534 may read it)."""
    folder = Path(tempfile.mkdtemp(prefix="np-run-", dir="/tmp"))
    folder.chmod(0o755)
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
        assert all(f["state"] != "could not tell" for f in found[group].values()), found[group]
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
