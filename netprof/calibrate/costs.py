"""The measured cost of a uprobe span at each kind of probe site, on the running kernel: read from
this boot's cache, or measured (netprof.calibrate.measure) and cached, where only root can write.

Two figures per site, both for a whole span (the entry uprobe at the site and its uretprobe):
``cost_ns``, what a probed call costs its caller in all, and ``in_span_ns``, the part of it that
falls between the span's two timestamps (the entry handler after its timestamp, the single-step
or emulation of the probed instruction, the return trap before the exit timestamp). The analysis
layer takes ``in_span_ns`` off each span and ``cost_ns`` of every probed call below it off its
ancestors (netprof.correction).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field

from ..loader import rundir

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass(frozen=True)
class SiteCost:
    insn: str          # the instruction measured ("push %rbp")
    cost_ns: float     # a probed call's whole added cost to its caller
    in_span_ns: float  # the part of it inside the span
    emulated: bool     # measured: far cheaper than the single-stepped sites


@dataclass
class Calibration:
    kernel: str
    boot_id: str
    calls: int                      # calls measured per site
    sites: dict[str, SiteCost] = field(default_factory=dict)  # by site name (netprof.calibrate.workload)

    def to_json(self) -> dict:
        return {"format": FORMAT, "kernel": self.kernel, "boot_id": self.boot_id, "calls": self.calls,
                "sites": {name: asdict(cost) for name, cost in self.sites.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        if data.get("format") != FORMAT:
            raise ValueError(f"calibration format {data.get('format')!r}")
        return cls(str(data["kernel"]), str(data["boot_id"]), int(data["calls"]),
                   {str(name): SiteCost(str(c["insn"]), float(c["cost_ns"]), float(c["in_span_ns"]),
                                        bool(c["emulated"])) for name, c in data["sites"].items()})

    def for_instruction(self, code: bytes) -> SiteCost | None:
        """The measured cost of a probe on the instruction at the start of ``code`` (x86-64): the
        site measured for its kind; for an instruction of no measured kind, the median of the
        single-stepped sites (the kernel emulates only the kinds measured)."""
        name = site_kind(code)
        if name in self.sites:
            return self.sites[name]
        stepped = sorted((c for c in self.sites.values() if not c.emulated), key=lambda c: c.cost_ns)
        if not stepped:
            return None
        middle = stepped[len(stepped) // 2]
        return SiteCost("other", middle.cost_ns, middle.in_span_ns, False)

    def table(self) -> str:
        lines = [f"uprobe span cost per call, kernel {self.kernel} ({self.calls:,} calls a site):",
                 f"  {'first instruction':24} {'whole cost':>11} {'in the span':>12}  kernel"]
        for cost in sorted(self.sites.values(), key=lambda c: c.cost_ns):
            lines.append(f"  {cost.insn:24} {cost.cost_ns:8.0f} ns {cost.in_span_ns:9.0f} ns  "
                         f"{'emulates it' if cost.emulated else 'single-steps it'}")
        return "\n".join(lines)


def site_kind(code: bytes) -> str:
    """The workload site (netprof.calibrate.workload.SITES) of the same kind as the instruction at
    the start of ``code``; "" when there is none."""
    from ..loader.elf import decode_x86

    description = decode_x86(code)[0]
    if description == "endbr64":
        return "at_endbr64"
    if description.startswith("push %r") and description[7:].isdigit():
        return "at_push_rex"
    if description.startswith("push"):
        return "at_push"
    if description in ("nop", "xchg %ax,%ax (nop)"):
        return "at_nop"
    if description in ("nopl", "nopw"):
        return "at_nopl"
    if description == "call rel32":
        return "at_call"
    if description.startswith("jmp"):
        return "at_jmp"
    if description.startswith("j"):
        return "at_jcc"
    if description in ("ret", "repz ret"):
        return "at_ret"
    rex = code[1:] if code[:1] and 0x48 <= code[0] <= 0x4F else code
    if rex[:1] in (b"\x83", b"\x81") and len(rex) > 1 and rex[1] >> 3 & 7 == 5:
        return "at_sub"
    if rex[:1] in (b"\x89", b"\x8b"):
        return "at_mov"
    if rex[:1] in (b"\x31", b"\x33"):
        return "at_xor"
    return ""


measuring = False  # set while measuring: the capture that measures asks for no costs


def cache_name() -> str:
    from ..loader.features import boot_id

    return f"calibration-{boot_id()}.json"


def cached() -> Calibration | None:
    """This boot's calibration, if root cached it where only root can write."""
    data = rundir.read_cached(cache_name())
    if data is None:
        return None
    try:
        found = Calibration.from_json(json.loads(data))
    except (ValueError, TypeError, KeyError, AttributeError):  # another format, or damaged
        return None
    return found if found.kernel == os.uname().release else None


def save(found: Calibration) -> bool:
    """Cache ``found`` for this boot (root only, in root's own folder); True if written."""
    return rundir.write_cached(cache_name(), json.dumps(found.to_json()).encode(), "calibration")


def current(refresh: bool = False) -> Calibration | None:
    """This boot's calibration: cached, or measured now (about a second, once a boot) and cached.
    None off x86-64, while measuring, or when the measurement failed (a warning says why)."""
    if measuring or os.uname().machine != "x86_64":
        return None
    if not refresh and (found := cached()) is not None:
        return found
    from . import measure

    try:
        found = measure.measure()
    except measure.CalibrationError as err:
        log.warning("probe costs not measured (%s): span durations stay uncorrected", err)
        return None
    save(found)
    return found
