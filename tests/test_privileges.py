"""Capabilities, not uid 0: what this process holds (CapEff), and how a lack of it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from netprof.loader import privileges
from netprof.loader.privileges import Cap, Need


def status_file(tmp_path: Path, *caps: Cap) -> Path:
    mask = sum(1 << cap for cap in caps)
    path = tmp_path / "status"
    path.write_text(f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{mask:016x}\nCapBnd:\t000001ffffffffff\n")
    return path


# --- capabilities ------------------------------------------------------------------------------

def test_effective_capabilities_come_from_capeff_with_what_they_imply(tmp_path):
    assert privileges.effective(status_file(tmp_path, Cap.BPF, Cap.PERFMON)) == {Cap.BPF, Cap.PERFMON}
    assert privileges.effective(status_file(tmp_path, Cap.SYS_ADMIN)) == {Cap.SYS_ADMIN, Cap.BPF, Cap.PERFMON}
    assert Cap.DAC_READ_SEARCH in privileges.effective(status_file(tmp_path, Cap.DAC_OVERRIDE))
    assert privileges.effective(status_file(tmp_path)) == frozenset()


def test_missing_names_only_what_to_grant():
    asked = [Need(Cap.BPF, "maps"), Need(Cap.PERFMON, "tracepoints"), Need(Cap.PERFMON, "uprobes"),
             Need(Cap.NET_ADMIN, "XDP on veth0")]
    assert privileges.missing(asked, frozenset({Cap.BPF})) == {Cap.PERFMON: ["tracepoints", "uprobes"],
                                                               Cap.NET_ADMIN: ["XDP on veth0"]}
    # CAP_SYS_ADMIN is asked anyway: granting it gives CAP_BPF and CAP_PERFMON too
    assert privileges.missing(asked[:2] + [Need(Cap.SYS_ADMIN, "uprobes")], frozenset()) == {
        Cap.SYS_ADMIN: ["uprobes", "maps", "tracepoints"]}
    assert privileges.missing(asked, frozenset(Cap)) == {}


def test_require_is_one_line_naming_each_capability_and_what_for():
    with pytest.raises(privileges.PrivilegeError) as caught:
        privileges.require([Need(Cap.BPF, "maps"), Need(Cap.NET_ADMIN, "XDP on lo")], frozenset())
    message = str(caught.value)
    assert "\n" not in message
    assert "CAP_BPF (maps) and CAP_NET_ADMIN (XDP on lo)" in message and "root" in message
    privileges.require([Need(Cap.BPF, "maps")], frozenset({Cap.BPF}))
