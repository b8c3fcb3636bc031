"""What this kernel accepts, found by trying tiny loads (as ``bpftool feature probe`` does),
cached per boot: program types, map types, attach mechanisms and helpers.

Never by version number: distribution kernels backport and disable features freely.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..asm import Call, Exit, Helper, Mov, Program, R0
from . import attach, perf
from .maps import Map
from .program import VerifierError, load
from .syscall import ENOTSUPP, AttachType, BpfError, MapType, ProgType

CACHE_DIR = Path(os.environ.get("NETPROF_RUN_DIR", "/run/netprof"))

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


@dataclass
class Features:
    kernel: str
    prog_types: dict[str, bool] = field(default_factory=dict)
    map_types: dict[str, bool] = field(default_factory=dict)
    attach: dict[str, str] = field(default_factory=dict)  # mechanism -> "yes" or why not
    helpers: dict[str, list[str]] = field(default_factory=dict)  # prog type -> helpers it may call

    def has(self, mechanism: str) -> bool:
        return self.attach.get(mechanism, "").startswith("yes")


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _trivial(prog_type: ProgType, **kwargs) -> str | None:
    """None if ``r0 = 0; exit`` loads as ``prog_type``, else why not."""
    try:
        load(Program(Mov(R0, 0), Exit()), prog_type, name="np_probe", **kwargs).close()
        return None
    except (BpfError, ValueError) as err:
        return str(err).split(": ", 1)[-1]


def probe_prog_types() -> dict[str, bool]:
    out = {}
    for prog_type in PROG_TYPES:
        if prog_type == ProgType.TRACING:
            out[prog_type.name.lower()] = probe_fentry() == "yes"
        else:
            out[prog_type.name.lower()] = _trivial(prog_type) is None
    return out


def probe_map_types() -> dict[str, bool]:
    out = {}
    for map_type in MAP_TYPES:
        sizes = {"key_size": 4, "value_size": 8, "max_entries": 1}
        if map_type == MapType.RINGBUF:
            sizes = {"key_size": 0, "value_size": 0, "max_entries": 4096}
        elif map_type == MapType.QUEUE:
            sizes["key_size"] = 0
        elif map_type == MapType.STACK_TRACE:
            sizes["value_size"] = 8 * 127
        try:
            Map.create(map_type, name="np_probe", **sizes).close()
            out[map_type.name.lower()] = True
        except BpfError:
            out[map_type.name.lower()] = False
    return out


def probe_fentry() -> str:
    """"yes", or why fentry/fexit programs cannot be used here."""
    try:
        from .btf import vmlinux

        btf_id = vmlinux().function("__task_pid_nr_ns").id
    except Exception as err:  # noqa: BLE001 - any failure means "no BTF to attach with"
        return f"no: no usable kernel BTF ({err})"
    why = _trivial(ProgType.TRACING, expected_attach_type=AttachType.TRACE_FENTRY, attach_btf_id=btf_id)
    return "yes" if why is None else f"no: {why}"


def probe_attach() -> dict[str, str]:
    out = {}
    try:
        attach.tracefs()
        out["tracepoint"] = "yes"
    except BpfError as err:
        out["tracepoint"] = str(err)
    kprobe = attach.kprobe_available()
    out["kprobe"] = f"yes ({kprobe})" if kprobe else "no: this kernel has no kprobes (CONFIG_KPROBES unset)"
    if perf.pmu_type("uprobe") is not None:
        out["uprobe"] = "yes (pmu)"
    elif out["tracepoint"] == "yes" and (attach.tracefs() / "uprobe_events").exists():
        out["uprobe"] = "yes (tracefs)"
    else:
        out["uprobe"] = "no: no uprobe PMU and no tracefs uprobe_events"
    out["raw_tracepoint"] = "yes" if _trivial(ProgType.RAW_TRACEPOINT) is None else "no"
    out["fentry"] = probe_fentry()
    out["xdp"] = "yes" if _trivial(ProgType.XDP) is None else "no"
    out.update(probe_links())
    return out


def probe_links() -> dict[str, str]:
    """How attachments are made here: bpf_links (they die with netprof, and carry BPF cookies)
    or the older ioctl and netlink paths."""
    from . import xdp

    out = {}
    try:
        with load(Program(Mov(R0, 0), Exit()), ProgType.TRACEPOINT, name="np_probe") as prog, \
                attach.attach_tracepoint(prog, "net:netif_receive_skb", method="bpf_link"):
            out["perf_event_link"] = "yes (tracepoints, kprobes and uprobes attach as bpf_links, with cookies)"
    except (BpfError, ValueError) as err:
        out["perf_event_link"] = f"no: PERF_EVENT_IOC_SET_BPF instead ({str(err).split(': ', 1)[-1]})"
    try:
        supported = xdp.xdp_links_supported()
        out["xdp_link"] = ("yes (XDP attaches as a bpf_link; --xdp-attach netlink for the old way)" if supported
                           else "no: XDP attaches over netlink, recorded in /run/netprof/xdp for netprof detach")
    except OSError as err:
        out["xdp_link"] = f"could not tell: {err}"
    return out


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


def features(refresh: bool = False) -> Features:
    """This boot's features, from the cache when there is one."""
    path = CACHE_DIR / f"features-{_boot_id()}.json"
    if not refresh:
        try:
            return Features(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            pass
    found = probe()
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(found)))
    except OSError:
        pass
    return found


def format_table(found: Features) -> str:
    """The features as a readable table."""
    lines = [f"kernel {found.kernel}", "", "attach mechanisms:"]
    width = max(map(len, found.attach)) + 2
    lines += [f"  {name:{width}}{why}" for name, why in found.attach.items()]
    lines += ["", "program types:"]
    lines += [f"  {name:{width + 8}}{'yes' if ok else 'no'}" for name, ok in found.prog_types.items()]
    lines += ["", "map types:"]
    lines += [f"  {name:{width + 8}}{'yes' if ok else 'no'}" for name, ok in found.map_types.items()]
    if found.helpers:
        lines += ["", "helpers netprof uses, per program type:"]
        for prog_type, helpers in found.helpers.items():
            missing = [str(h) for h in HELPERS if str(h) not in helpers]
            lines.append(f"  {prog_type:{width + 8}}{len(helpers)}/{len(HELPERS)}"
                         + (f" (not: {', '.join(missing)})" if missing else ""))
    return "\n".join(lines)
