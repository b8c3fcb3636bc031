"""What this kernel accepts, found by trying tiny loads (as ``bpftool feature probe`` does),
cached per boot: program types, map types, attach mechanisms and helpers.

Never by version number: distribution kernels backport and disable features freely. Each probe
has three answers, as in cilium/ebpf's internal/feature: supported, not supported, or could not
tell (the probe itself was refused: EPERM or EACCES while this process lacks a capability the
probe needs). "Could not tell" is never cached, and only root writes the cache, in a folder that
is root's alone (rundir.py); other users read root's cache, or probe what they may and cache
nothing (a probe takes about 0.1 s, and a second, per-user copy would only go stale).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from ..asm import Call, Exit, Helper, Mov, Program, R0
from . import attach, perf, privileges, rundir
from .maps import Map
from .privileges import Cap, Need
from .program import VerifierError, load
from .syscall import ENOTSUPP, AttachType, BpfError, MapType, ProgType


CACHE_FORMAT = 3  # 3: uprobe_multi and kprobe_multi; 1: bare booleans and "yes"/"no: why" strings, with no "could not tell"

PROG_TYPES = [ProgType.SOCKET_FILTER, ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.RAW_TRACEPOINT,
              ProgType.XDP, ProgType.SCHED_CLS, ProgType.PERF_EVENT, ProgType.TRACING]
MAP_TYPES = [MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH,
             MapType.LRU_PERCPU_HASH, MapType.RINGBUF, MapType.PERF_EVENT_ARRAY, MapType.STACK_TRACE,
             MapType.QUEUE]
# Helpers netprof's probes use, probed for the program types that run them.
HELPERS = [Helper.ktime_get_ns, Helper.ktime_get_boot_ns, Helper.get_smp_processor_id,
           Helper.get_current_pid_tgid, Helper.ringbuf_output, Helper.ringbuf_reserve, Helper.ringbuf_submit,
           Helper.ringbuf_query, Helper.probe_read_kernel, Helper.probe_read_user, Helper.get_stackid,
           Helper.perf_event_output, Helper.xdp_adjust_head, Helper.get_func_ip, Helper.get_attach_cookie,
           Helper.loop]
HELPER_PROG_TYPES = [ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.RAW_TRACEPOINT, ProgType.XDP]

# What the kernel asks before it will load a program of each type (measured: privileges.py).
_MAPS_NEED = (Cap.BPF,)
_PROG_NEEDS = {ProgType.SOCKET_FILTER: (Cap.BPF,), ProgType.XDP: (Cap.BPF, Cap.NET_ADMIN),
               ProgType.SCHED_CLS: (Cap.BPF, Cap.NET_ADMIN)}
_TRACING_NEED = (Cap.BPF, Cap.PERFMON)  # kprobe, tracepoint, raw tracepoint, perf_event, tracing


class Support(Enum):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    UNKNOWN = "could not tell"


@dataclass(frozen=True)
class Finding:
    """One probe's answer, and ``detail``: how (supported), why not, or what stopped the probe."""

    support: Support
    detail: str = ""

    @classmethod
    def yes(cls, how: str = "") -> Finding:
        return cls(Support.SUPPORTED, how)

    @classmethod
    def no(cls, why: str = "") -> Finding:
        return cls(Support.NOT_SUPPORTED, why)

    @classmethod
    def unknown(cls, why: str) -> Finding:
        return cls(Support.UNKNOWN, why)

    def __bool__(self) -> bool:
        return self.support is Support.SUPPORTED

    def __str__(self) -> str:
        if self.support is Support.SUPPORTED:
            return f"yes ({self.detail})" if self.detail else "yes"
        if self.support is Support.NOT_SUPPORTED:
            return f"no: {self.detail}" if self.detail else "no"
        return f"could not tell ({self.detail})"

    def to_json(self) -> dict[str, str]:
        return {"state": self.support.value, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Finding:
        return cls(Support(data["state"]), str(data.get("detail", "")))


@dataclass
class Features:
    kernel: str
    prog_types: dict[str, Finding] = field(default_factory=dict)
    map_types: dict[str, Finding] = field(default_factory=dict)
    attach: dict[str, Finding] = field(default_factory=dict)
    helpers: dict[str, list[str]] = field(default_factory=dict)  # prog type -> helpers it may call

    def has(self, mechanism: str) -> bool:
        return bool(self.attach.get(mechanism))

    def findings(self) -> Iterable[Finding]:
        for group in (self.prog_types, self.map_types, self.attach):
            yield from group.values()

    @property
    def settled(self) -> bool:
        """Every probe gave a definite answer: the only kind of result that may be cached."""
        return all(f.support is not Support.UNKNOWN for f in self.findings())

    def to_json(self) -> dict:
        groups = {name: {key: f.to_json() for key, f in getattr(self, name).items()}
                  for name in ("prog_types", "map_types", "attach")}
        return {"format": CACHE_FORMAT, "kernel": self.kernel, **groups, "helpers": self.helpers}

    @classmethod
    def from_json(cls, data: dict) -> Features:
        if data.get("format") != CACHE_FORMAT:
            raise ValueError(f"feature cache format {data.get('format')!r}, not {CACHE_FORMAT}")
        groups = {name: {key: Finding.from_json(f) for key, f in data[name].items()}
                  for name in ("prog_types", "map_types", "attach")}
        return cls(kernel=data["kernel"], **groups, helpers=dict(data["helpers"]))


def judge(err: OSError, needs: Iterable[Cap], why: str | None = None,
          held: frozenset[Cap] | None = None) -> Finding:
    """What a failed probe tells: a refusal (EPERM, EACCES) while this process lacks one of
    ``needs`` tells nothing; one with every privilege the probe needs is the kernel's answer, and so
    is "invalid" or "not supported"; anything else (out of memory, ...) tells nothing either."""
    why = why if why is not None else str(err).split(": ", 1)[-1]
    if err.errno in (errno.EPERM, errno.EACCES):
        refused = privileges.not_permitted((Need(cap, "probe") for cap in needs), held)
        return Finding.unknown(refused) if refused else Finding.no(why)
    if err.errno in (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, ENOTSUPP):
        return Finding.no(why)
    return Finding.unknown(why)


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _prog_needs(prog_type: ProgType) -> tuple[Cap, ...]:
    return _PROG_NEEDS.get(prog_type, _TRACING_NEED)


def _trivial(prog_type: ProgType, **kwargs) -> Finding:
    """Whether ``r0 = 0; exit`` loads as ``prog_type``."""
    try:
        load(Program(Mov(R0, 0), Exit()), prog_type, name="np_probe", **kwargs).close()
    except BpfError as err:
        return judge(err, _prog_needs(prog_type))
    except ValueError as err:
        return Finding.no(str(err))
    return Finding.yes()


def probe_prog_types() -> dict[str, Finding]:
    out = {}
    for prog_type in PROG_TYPES:
        if prog_type == ProgType.TRACING:
            out[prog_type.name.lower()] = probe_fentry()
        else:
            out[prog_type.name.lower()] = _trivial(prog_type)
    return out


def _map_sizes(map_type: MapType) -> dict[str, int]:
    sizes = {"key_size": 4, "value_size": 8, "max_entries": 1}
    if map_type == MapType.RINGBUF:
        sizes = {"key_size": 0, "value_size": 0, "max_entries": 4096}
    elif map_type == MapType.QUEUE:
        sizes["key_size"] = 0
    elif map_type == MapType.STACK_TRACE:
        sizes["value_size"] = 8 * 127
    return sizes


def probe_map_types() -> dict[str, Finding]:
    out = {}
    for map_type in MAP_TYPES:
        try:
            Map.create(map_type, name="np_probe", **_map_sizes(map_type)).close()
            out[map_type.name.lower()] = Finding.yes()
        except BpfError as err:
            out[map_type.name.lower()] = judge(err, _MAPS_NEED)
    return out


def probe_fentry() -> Finding:
    """Whether fentry/fexit programs can be used here, and why not."""
    try:
        from .btf import vmlinux

        btf_id = vmlinux().function("__task_pid_nr_ns").id
    except Exception as err:  # noqa: BLE001 - any failure means "no BTF to attach with"
        return Finding.no(f"no usable kernel BTF ({err})")
    return _trivial(ProgType.TRACING, expected_attach_type=AttachType.TRACE_FENTRY, attach_btf_id=btf_id)


def probe_tracefs() -> Finding:
    try:
        attach.tracefs()
    except BpfError as err:  # EACCES: mounted but root's; EPERM: not mounted, and we may not mount it
        return judge(err, (Cap.SYS_ADMIN,) if err.errno == errno.EPERM else (Cap.DAC_READ_SEARCH,), str(err))
    return Finding.yes()


def probe_kprobe() -> Finding:
    try:
        how = attach.kprobe_available()
    except BpfError as err:
        return judge(err, (Cap.DAC_READ_SEARCH,), str(err))
    return Finding.yes(how) if how else Finding.no("this kernel has no kprobes (CONFIG_KPROBES unset)")


def probe_uprobe(tracefs: Finding) -> Finding:
    if perf.pmu_type("uprobe") is not None:
        return Finding.yes("pmu")
    if not tracefs:
        return tracefs if tracefs.support is Support.UNKNOWN else Finding.no("no uprobe PMU and no tracefs")
    if (attach.tracefs() / "uprobe_events").exists():
        return Finding.yes("tracefs")
    return Finding.no("no uprobe PMU and no tracefs uprobe_events")


def probe_attach() -> dict[str, Finding]:
    out = {"tracepoint": probe_tracefs(), "kprobe": probe_kprobe()}
    out["uprobe"] = probe_uprobe(out["tracepoint"])
    out["raw_tracepoint"] = _trivial(ProgType.RAW_TRACEPOINT)
    out["fentry"] = probe_fentry()
    out["xdp"] = _trivial(ProgType.XDP)
    out.update(probe_links())
    return out


def probe_links() -> dict[str, Finding]:
    """How attachments are made here: bpf_links (they die with netprof, and carry BPF cookies)
    or the older ioctl and netlink paths."""
    from . import xdp

    out = {}
    try:
        with load(Program(Mov(R0, 0), Exit()), ProgType.TRACEPOINT, name="np_probe") as prog, \
                attach.attach_tracepoint(prog, "net:netif_receive_skb", method="bpf_link"):
            out["perf_event_link"] = Finding.yes("tracepoints, kprobes and uprobes attach as bpf_links, with cookies")
    except BpfError as err:
        out["perf_event_link"] = judge(err, (Cap.BPF, Cap.PERFMON),
                                       f"PERF_EVENT_IOC_SET_BPF instead ({str(err).split(': ', 1)[-1]})")
    out["uprobe_multi"] = probe_uprobe_multi()
    out["kprobe_multi"] = probe_kprobe_multi()
    try:
        supported = xdp.xdp_links_supported()
        out["xdp_link"] = (Finding.yes("XDP attaches as a bpf_link; --xdp-attach netlink for the old way")
                           if supported else
                           Finding.no("XDP attaches over netlink, recorded in /run/netprof/xdp for netprof detach"))
    except OSError as err:  # EPERM: a network namespace of our own to try it in takes CAP_SYS_ADMIN
        out["xdp_link"] = judge(err, (Cap.SYS_ADMIN, Cap.BPF), f"could not tell ({err})")
    return out


def probe_uprobe_multi() -> Finding:
    """Whether many uprobes attach through one uprobe_multi link (Linux 6.6), with the per-process
    filter that 6.9 fixed: asked as libbpf asks, with a path that is no ELF file (EBADF: the kind
    of link exists) and pid -1 (EINVAL: the fixed filter checks it), so nothing is attached."""
    try:
        with load(Program(Mov(R0, 0), Exit()), ProgType.KPROBE, name="np_probe",
                  expected_attach_type=AttachType.TRACE_UPROBE_MULTI) as prog:
            for pid, wanted in ((0, errno.EBADF), (0xFFFFFFFF, errno.EINVAL)):
                try:
                    attach.attach_uprobe_multi(prog, "/", [0], [0], pid=pid).close()
                except BpfError as err:
                    if err.errno != wanted:
                        return (judge(err, (Cap.BPF, Cap.PERFMON)) if err.errno == errno.EPERM else
                                Finding.no(f"one perf-event uprobe per function ({os.strerror(err.errno or 0)})"))
                else:
                    return Finding.no("one perf-event uprobe per function (this kernel's uprobe_multi filters "
                                      "threads, not processes)")
    except BpfError as err:
        return judge(err, (Cap.BPF, Cap.PERFMON), f"one perf-event uprobe per function ({err})")
    return Finding.yes("one link, one program, for every user function of a file (BPF cookies tell them apart)")


def probe_kprobe_multi() -> Finding:
    """Whether many kernel functions attach through one kprobe_multi link (Linux 5.18, on fprobe,
    which needs ftrace, not CONFIG_KPROBES): a function that does not exist says ENOENT where the
    link exists, EOPNOTSUPP or EINVAL where it does not."""
    try:
        with load(Program(Mov(R0, 0), Exit()), ProgType.KPROBE, name="np_probe",
                  expected_attach_type=AttachType.TRACE_KPROBE_MULTI) as prog:
            attach.attach_kprobe_multi(prog, ["__netprof_no_such_function__"], [0]).close()
    except BpfError as err:
        if err.errno in (errno.ENOENT, errno.ESRCH):
            return Finding.yes("one link, one program, for many kernel functions (BPF cookies tell them apart)")
        if err.errno in (errno.EPERM, errno.EACCES):
            return judge(err, (Cap.BPF, Cap.PERFMON))
        return Finding.no(f"no kprobe_multi links ({os.strerror(err.errno or 0)}: no fprobe in this kernel)")
    return Finding.no("kprobe_multi attached a function that does not exist: not trusted")


def probe_helpers(prog_type: ProgType) -> list[str]:
    """The helpers of HELPERS that ``prog_type`` programs may call: the verifier says "unknown
    func" or "program of this type cannot use helper" for the others."""
    ok = []
    for helper in HELPERS:
        try:
            load(Program(Call(helper), Mov(R0, 0), Exit()), prog_type, name="np_probe").close()
            ok.append(str(helper))
        except VerifierError as err:
            if not any(s in err.log for s in ("unknown func", "invalid func", "cannot use helper", "not supported")):
                ok.append(str(helper))  # refused for its arguments, not for being unavailable
        except BpfError as err:
            if err.errno not in (errno.EINVAL, errno.EACCES, errno.EPERM, ENOTSUPP):
                raise
    return ok


def probe() -> Features:
    features = Features(kernel=os.uname().release)
    features.prog_types = probe_prog_types()
    features.map_types = probe_map_types()
    features.attach = probe_attach()
    for prog_type in HELPER_PROG_TYPES:
        if features.prog_types.get(prog_type.name.lower()):
            features.helpers[prog_type.name.lower()] = probe_helpers(prog_type)
    return features


def _cache_name() -> str:
    return f"features-{boot_id()}.json"


def cached() -> Features | None:
    """This boot's features as root probed them, if root cached them where only root can write."""
    data = rundir.read_cached(_cache_name())
    if data is None:
        return None
    try:
        found = Features.from_json(json.loads(data))
    except (ValueError, TypeError, KeyError, AttributeError):  # another format, or damaged
        return None
    return found if found.settled else None


def save(found: Features) -> bool:
    """Cache ``found`` for this boot: only as root, only a settled result, only in a folder that
    is root's alone (else a warning, and nothing written). True if written."""
    return found.settled and rundir.write_cached(_cache_name(), json.dumps(found.to_json()).encode(), "features")


def features(refresh: bool = False) -> Features:
    """This boot's features, from the cache when there is one."""
    if not refresh and (found := cached()) is not None:
        return found
    found = probe()
    save(found)
    return found


def format_table(found: Features) -> str:
    """The features as a readable table."""
    lines = [f"kernel {found.kernel}", "", "attach mechanisms:"]
    width = max(map(len, found.attach)) + 2
    lines += [f"  {name:{width}}{finding}" for name, finding in found.attach.items()]
    lines += ["", "program types:"]
    lines += [f"  {name:{width + 8}}{finding}" for name, finding in found.prog_types.items()]
    lines += ["", "map types:"]
    lines += [f"  {name:{width + 8}}{finding}" for name, finding in found.map_types.items()]
    if found.helpers:
        lines += ["", "helpers netprof uses, per program type:"]
        for prog_type, helpers in found.helpers.items():
            missing = [str(h) for h in HELPERS if str(h) not in helpers]
            lines.append(f"  {prog_type:{width + 8}}{len(helpers)}/{len(HELPERS)}"
                         + (f" (not: {', '.join(missing)})" if missing else ""))
    return "\n".join(lines)
