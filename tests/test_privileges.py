"""Capabilities, not uid 0: what this process holds (CapEff), what each capture needs and how a
lack of it reads, and the three answers of a feature probe (supported, not supported, could not tell)."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest

from netprof.loader import attach, features, privileges, xdp
from netprof.loader.features import Features, Finding, Support
from netprof.loader.privileges import Cap, Need
from netprof.loader.syscall import BpfError
from netprof.session import Session, SessionError

NOWHERE = "/nonexistent-folder/x.trace"  # a capture that gets past the privilege check stops here


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


# --- three answers --------------------------------------------------------------------------------

def test_a_refused_probe_could_not_tell_unless_every_privilege_was_there():
    refused = BpfError(errno.EPERM, "load xdp program 'np_probe': Operation not permitted")
    unknown = features.judge(refused, (Cap.BPF, Cap.NET_ADMIN), held=frozenset({Cap.BPF}))
    assert unknown.support is Support.UNKNOWN
    assert str(unknown) == "could not tell (not permitted: run as root or with CAP_NET_ADMIN)"
    assert features.judge(refused, (Cap.BPF,), held=frozenset({Cap.BPF})).support is Support.NOT_SUPPORTED
    invalid = BpfError(errno.EINVAL, "load xdp program 'np_probe': Invalid argument")
    assert features.judge(invalid, (Cap.BPF,), held=frozenset()) == Finding.no("Invalid argument")
    out_of_memory = BpfError(errno.ENOMEM, "create map: Cannot allocate memory")
    assert features.judge(out_of_memory, (Cap.BPF,), held=frozenset({Cap.BPF})).support is Support.UNKNOWN


def sample(*unknown: str) -> Features:
    found = Features(kernel="6.18", prog_types={"xdp": Finding.yes(), "tracing": Finding.no("EPERM even to root")},
                     map_types={"ringbuf": Finding.yes()}, attach={"uprobe": Finding.yes("pmu")},
                     helpers={"xdp": ["bpf_ktime_get_ns"]})
    for name in unknown:
        found.prog_types[name] = Finding.unknown("not permitted: run as root or with CAP_BPF")
    return found


def test_features_json_carries_the_three_states_and_only_settled_results_are_cacheable():
    data = json.loads(json.dumps(sample("kprobe").to_json()))
    assert data["prog_types"]["xdp"] == {"state": "supported", "detail": ""}
    assert data["prog_types"]["tracing"]["state"] == "not supported"
    assert data["prog_types"]["kprobe"]["state"] == "could not tell"
    assert Features.from_json(data) == sample("kprobe")
    assert sample().settled and not sample("kprobe").settled
    assert sample().has("uprobe") and not sample().has("kprobe")
    with pytest.raises(ValueError):  # a cache of the old format (booleans) is probed again
        Features.from_json({"kernel": "6.18", "prog_types": {"xdp": True}, "map_types": {}, "attach": {},
                            "helpers": {}})


def test_attach_names_the_capabilities_the_capture_lacks_before_anything_else(monkeypatch):
    monkeypatch.setattr(privileges, "effective", lambda *a: frozenset({Cap.BPF, Cap.PERFMON}))
    monkeypatch.setattr(attach, "tracefs_needs", lambda: [Need(Cap.DAC_READ_SEARCH, "reading tracefs")],
                        raising=False)
    with pytest.raises(SessionError) as caught:
        with Session(net=True, output=NOWHERE):
            pass
    assert re.findall(r"CAP_\w+", str(caught.value)) == ["CAP_DAC_READ_SEARCH"]


def test_a_captures_needs_follow_what_it_asks_for(monkeypatch):
    monkeypatch.setattr(attach, "tracefs_needs", lambda: [])
    monkeypatch.setattr(attach, "uprobes_permitted", lambda: False)
    monkeypatch.setattr(xdp, "_may_write", lambda folder: False)

    def caps(**asked):
        return {need.cap for need in Session(**asked).needs()}

    assert caps(memory=True) == {Cap.BPF}
    assert caps(net=True) == caps(throughput=True) == caps(tracepoints=["net:netif_rx"]) == {Cap.BPF, Cap.PERFMON}
    assert caps(user=["/bin/true:main"]) == {Cap.BPF, Cap.PERFMON, Cap.SYS_ADMIN}
    assert caps(xdp=["lo"]) == {Cap.BPF, Cap.NET_ADMIN}  # a bpf_link: nothing to record
    assert caps(xdp=["lo"], xdp_attach="netlink") == {Cap.BPF, Cap.NET_ADMIN, Cap.DAC_OVERRIDE}
