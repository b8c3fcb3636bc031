"""How netprof words what the kernel could not deliver: one phrase for attach's summary, the
report and the viewer, so that a user reads the same numbers the same way everywhere."""

from __future__ import annotations


def loss_line(lost: dict[str, int]) -> str:
    """'none lost', or 'LOST 1,234 events (ip_rcv: 1,200, xdp:veth0: 34)'."""
    total = sum(lost.values())
    if not total:
        return "none lost"
    detail = ", ".join(f"{name}: {count:,}" for name, count in sorted(lost.items()) if count)
    return f"LOST {total:,} events ({detail})"
