"""The README's demo, run as CI runs it: what it generated is what its trace holds."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netprof.report import load

pytestmark = pytest.mark.root
DEMO = Path(__file__).resolve().parent.parent / "demo/demo.py"


def test_demo_trace_matches_the_traffic(tmp_path):
    out = tmp_path / "demo.trace"
    result = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, NETPROF_DEMO_TRACE=str(out)))
    assert result.returncode == 0, result.stderr
    assert "spans per probe:" in result.stdout and "none lost" in result.stdout
    trace = load(out)
    names = {p["id"]: p["name"] for p in trace.probes}
    counts = {names[p]: int((trace.all_spans["probe"] == p).sum()) for p in np.unique(trace.all_spans["probe"])}
    for function in ("send_request", "parse_reply", "send_datagram"):
        assert counts[f"client:{function}"] == 2000
    assert counts.get("dev_xmit", 0) >= 4000  # each request and each datagram leaves through the stack
    data = trace.packets["data"]
    ipv4_tcp = (data[:, 12] == 8) & (data[:, 13] == 0) & (data[:, 23] == 6)
    from_server = ipv4_tcp & np.all(data[:, 26:30] == [10, 214, 0, 2], axis=1)
    ip_total = data[:, 16].astype(int) * 256 + data[:, 17]
    replies = from_server & (ip_total > 40 + 12 + 400)  # a 512-byte reply (TCP options make 32-byte headers)
    assert replies.sum() == 2000
    assert trace.throughput.size and trace.memory.size
    for picture in (tmp_path / "demo.png", tmp_path / "demo-overview.png"):
        assert picture.stat().st_size > 10_000, f"the demo did not draw {picture.name}"
