#!/usr/bin/env python3
"""How long netprof takes to answer its first BTF question (target: well under 1 s), and at what memory cost.

Each run loads /sys/kernel/btf/vmlinux into a fresh Btf object, then asks for a struct member (which builds
the name index) and a function prototype. Prints medians, the peak memory, and the time of
``bpftool btf dump file /sys/kernel/btf/vmlinux format raw > /dev/null`` when bpftool is installed
(bpftool decodes every type, netprof only what is asked; bpftool's time includes its process start-up).
"""

import resource
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netprof.loader.btf import VMLINUX, Btf  # noqa: E402

RUNS = 9


def one_run() -> tuple[float, float, float]:
    """Seconds for: load, then the first member lookup, then the first function lookup."""
    t0 = time.perf_counter()
    btf = Btf.load(VMLINUX)
    t1 = time.perf_counter()
    btf.member("struct sk_buff", "len")
    t2 = time.perf_counter()
    btf.function("tcp_v4_rcv")
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def peak_memory() -> int:
    """Peak bytes Python allocated for one load and the two lookups (tracemalloc)."""
    tracemalloc.start()
    btf = Btf.load(VMLINUX)
    btf.member("struct sk_buff", "len")
    btf.function("tcp_v4_rcv")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del btf
    return peak


def bpftool_time() -> float | None:
    exe = shutil.which("bpftool")
    if exe is None:
        return None
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run([exe, "btf", "dump", "file", VMLINUX, "format", "raw"], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    size = Path(VMLINUX).stat().st_size
    print(f"{VMLINUX}: {size / 1e6:.1f} MB, {len(Btf.load(VMLINUX)) - 1} types")
    runs = [one_run() for _ in range(RUNS)]
    load, member, function = (statistics.median(r[i] for r in runs) for i in range(3))
    total = statistics.median(sum(r) for r in runs)
    print(f"netprof  load                             {load * 1e3:7.1f} ms")
    print(f"netprof  + first member (builds index)    {member * 1e3:7.1f} ms")
    print(f"netprof  + first function lookup          {function * 1e3:7.1f} ms")
    print(f"netprof  load + first lookups, total      {total * 1e3:7.1f} ms  (median of {RUNS} fresh loads)")
    print(f"netprof  peak Python memory (tracemalloc) {peak_memory() / 2**20:7.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"process  max RSS (getrusage)              {rss:7.1f} MiB")
    bt = bpftool_time()
    if bt is None:
        print("bpftool  not installed (Debian: apt-get install bpftool): no comparison")
    else:
        print(f"bpftool  btf dump ... format raw          {bt * 1e3:7.1f} ms  (median of {RUNS}, output to /dev/null)")


if __name__ == "__main__":
    main()
