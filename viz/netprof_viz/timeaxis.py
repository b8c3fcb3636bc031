"""Readable ticks for a time axis in s, ms, µs or ns."""

from __future__ import annotations

import math

UNITS = (("s", 1e9), ("ms", 1e6), ("us", 1e3), ("ns", 1.0))  # ASCII: the label font has no µ


def unit_for(step_ns: float) -> tuple[str, float]:
    """The largest unit in which ``step_ns`` is at least 1."""
    return next(((name, scale) for name, scale in UNITS if step_ns >= scale), UNITS[-1])


def format_time(t_ns: float, step_ns: float | None = None) -> str:
    """``t_ns`` in the unit that suits ``step_ns`` (the tick spacing; t_ns itself if None), with as
    many decimals as the spacing needs."""
    name, scale = unit_for(abs(step_ns if step_ns else t_ns) or 1.0)
    step = (step_ns or t_ns or 1.0) / scale
    decimals = max(0, -math.floor(math.log10(abs(step)) + 1e-9)) if step else 0
    return f"{t_ns / scale:.{min(decimals, 9)}f} {name}"


def format_duration(ns: float) -> str:
    name, scale = unit_for(ns or 1.0)
    value = ns / scale
    return f"{value:.3g} {name}" if value < 1000 else f"{value:,.0f} {name}"


def ticks(t0: float, t1: float, width_px: float, min_px: float = 110.0) -> tuple[float, list[float]]:
    """(spacing, tick times) for [t0, t1] shown over ``width_px``: a 1, 2 or 5 times a power of ten
    spacing, at least ``min_px`` pixels apart."""
    span = max(t1 - t0, 1e-9)
    raw = span * min_px / max(width_px, 1.0)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(t0 / step) * step
    count = int((t1 - first) / step) + 1
    return step, [first + i * step for i in range(max(count, 0))]
