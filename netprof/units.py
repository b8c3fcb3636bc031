"""How netprof writes amounts, the same in the report and the viewer: memory in MiB, throughput in
Mbit/s (as the interface counters and `ip -s link` users think of it). ASCII only: the viewer's
label font has nothing else."""

from __future__ import annotations


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def mbit_per_s(bytes_per_s: float) -> str:
    return f"{bytes_per_s * 8 / 1e6:,.1f} Mbit/s"
