"""Many user functions at once: one uprobe_multi link and one program for every function of a
file, the function told by its BPF cookie; the perf-event path (two programs and two events per
function) where the kernel lacks the links, or when asked. Both count every call."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import needs
from netprof.loader.features import features
from netprof.report import load

pytestmark = pytest.mark.root
FUNCTIONS = 1000


def calls(i: int) -> int:
    return i % 7 + 1


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A program of FUNCTIONS functions f0..f999, f<i> called calls(i) times, with argument k for
    its k-th call."""
    out = tmp_path_factory.mktemp("many")
    lines = [f'__attribute__((noinline)) int f{i}(int x) {{ asm volatile("" ::: "memory"); return x + {i}; }}'
             for i in range(FUNCTIONS)]
    lines.append("int main(void) { int s = 0;")
    lines += [f"  for (int k = 0; k < {calls(i)}; k++) s += f{i}(k);" for i in range(FUNCTIONS)]
    lines.append("  return s == 42; }")
    (out / "many.c").write_text("\n".join(lines))
    subprocess.run([needs.tool("gcc"), "-O1", "-o", str(out / "many"), str(out / "many.c")], check=True)
    return out / "many"


def capture(tmp_path, spec: str, *options: str, program) -> tuple[subprocess.CompletedProcess, object]:
    out = tmp_path / "many.trace"
    done = subprocess.run([sys.executable, "-m", "netprof", "attach", "-u", spec, *options, "-o", str(out), "--",
                           str(program)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done, load(out)


def counts(trace) -> dict[str, int]:
    spans = trace.all_spans
    per_probe = np.bincount(spans["probe"], minlength=len(trace.probes))
    return {p["name"].split(":", 1)[1]: int(per_probe[p["id"]]) for p in trace.probes}


def test_a_thousand_functions_through_one_link_each_call_counted(many, tmp_path):
    if not features().has("uprobe_multi"):
        needs.missing("this kernel has no uprobe_multi links (Linux 6.6)")
    done, trace = capture(tmp_path, f"{many}:f[0-9]*", program=many)
    assert {p["mechanism"] for p in trace.probes} == {"uprobe_multi"}
    assert counts(trace) == {f"f{i}": calls(i) for i in range(FUNCTIONS)}
    spans = trace.all_spans
    names = np.array([p["name"] for p in trace.probes])
    for i in (0, 1, 500, 999):  # each span's argument says which call of which function it was
        mine = spans[names[spans["probe"]] == f"many:f{i}"]
        assert sorted(mine["arg"].tolist()) == list(range(calls(i)))
        assert sorted(mine["ret"].tolist()) == [k + i for k in range(calls(i))]
    assert "none lost" in done.stderr


@pytest.mark.parametrize("how", ["perf_event", "uprobe_multi"])
def test_perf_events_and_multi_links_count_alike(many, tmp_path, how):
    if how == "uprobe_multi" and not features().has("uprobe_multi"):
        needs.missing("this kernel has no uprobe_multi links (Linux 6.6)")
    _, trace = capture(tmp_path, f"{many}:f1[0-9]", "--uprobe-attach", how, program=many)
    assert {p["mechanism"] for p in trace.probes} == {"uprobe" if how == "perf_event" else "uprobe_multi"}
    assert counts(trace) == {f"f{i}": calls(i) for i in range(10, 20)}


def test_a_kernel_glob_plans_one_kprobe_multi_link_where_the_kernel_has_one(monkeypatch, tmp_path):
    """Planning only (neither this kernel nor the vm/ guest has kprobe_multi: no fprobe): a glob's
    functions go to one KprobeMultiPlan, each its own probe and cookie; a named function to fentry."""
    from netprof.capture.options import CaptureOptions
    from netprof.capture.plan import FentryPlan, KprobeMultiPlan, Planner
    from netprof.loader import features as features_module
    from netprof.loader.features import Features, Finding

    pretend = Features(kernel="test", attach={"kprobe_multi": Finding.yes(), "fentry": Finding.yes(),
                                              "kprobe": Finding.yes()})
    monkeypatch.setattr(features_module, "features", lambda refresh=False: pretend)
    planner = Planner(CaptureOptions(kernel=["tcp_v4_*", "ip_rcv"], output=str(tmp_path / "t.trace")))
    plans = planner.plan()
    [multi] = [p for p in plans if isinstance(p, KprobeMultiPlan)]
    assert "tcp_v4_connect" in multi.functions and len(multi.functions) == len(multi.probes) > 10
    assert all(p.mechanism == "kprobe_multi" and p.pattern == "tcp_v4_*" for p in multi.probes)
    assert [p.name for p in multi.probes] == multi.functions
    assert len({p.id for p in multi.probes}) == len(multi.probes)  # a cookie each
    [named] = [p for p in plans if isinstance(p, FentryPlan)]
    assert named.probe.name == "ip_rcv" and named.probe.pattern is None


@pytest.mark.parametrize("attach_type", ["TRACE_UPROBE_MULTI", "TRACE_KPROBE_MULTI"])
def test_the_cookie_span_program_loads_for_multi_links(attach_type):
    """The one-program-for-many span program passes this kernel's verifier as a multi-link program
    (loading needs no fprobe: only the link does)."""
    import ctypes

    from netprof.loader.maps import Map
    from netprof.loader.program import load
    from netprof.loader.ringbuf import RingBuffer
    from netprof.loader.syscall import AttachType, MapType, ProgType
    from netprof.probes import interface, span_probe
    from netprof.format.layout import ENTRY

    with RingBuffer.create(1 << 16, "np_t_events") as events, \
            Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64,
                       max_entries=span_probe.MAX_PROBES, name="np_t_lost") as lost, \
            Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint32, max_entries=1,
                       name="np_t_ctl") as control:
        program = span_probe.span_program(None, ENTRY, interface.pt_regs("arg0"))
        with load(program, ProgType.KPROBE, name="np_t_multi", maps={"events": events.map, "lost": lost,
                                                                      "control": control},
                  expected_attach_type=getattr(AttachType, attach_type)) as prog:
            assert prog.fd >= 0
