"""What part of the timeline is on screen, and how zoom, pan and easing move it. No GL here."""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_SPAN_NS = 10.0  # the narrowest view: 10 ns across the whole width


@dataclass
class View:
    """The time range [t0, t1] (ns since the start of the capture) shown across ``width`` pixels."""

    t0: float
    t1: float
    width: int  # pixels of the timeline area

    @property
    def span(self) -> float:
        return self.t1 - self.t0

    @property
    def ns_per_px(self) -> float:
        return self.span / max(self.width, 1)

    def time_at(self, x: float) -> float:
        return self.t0 + x * self.ns_per_px

    def x_of(self, t: float) -> float:
        return (t - self.t0) / self.ns_per_px

    def zoomed(self, x: float, factor: float, limits: tuple[float, float] | None = None) -> View:
        """Zoomed by ``factor`` (>1 zooms in) keeping the time under pixel ``x`` where it is."""
        anchor = self.time_at(x)
        span = max(self.span / factor, MIN_SPAN_NS)
        if limits is not None:
            span = min(span, (limits[1] - limits[0]) * 1.05)
        t0 = anchor - (x / max(self.width, 1)) * span
        return View(t0, t0 + span, self.width).clamped(limits)

    def panned(self, dx: float, limits: tuple[float, float] | None = None) -> View:
        """Moved by ``dx`` pixels (positive: the content moves right, so earlier times come in)."""
        shift = -dx * self.ns_per_px
        return View(self.t0 + shift, self.t1 + shift, self.width).clamped(limits)

    def clamped(self, limits: tuple[float, float] | None) -> View:
        """Kept overlapping the capture: at most half a screen of empty time on either side."""
        if limits is None:
            return self
        lo, hi = limits
        slack = self.span / 2
        shift = 0.0
        if self.t1 < lo + slack:
            shift = lo + slack - self.t1
        elif self.t0 > hi - slack:
            shift = hi - slack - self.t0
        return View(self.t0 + shift, self.t1 + shift, self.width)

    def close_to(self, other: View, pixels: float = 0.25) -> bool:
        tolerance = pixels * min(self.ns_per_px, other.ns_per_px)
        return abs(self.t0 - other.t0) <= tolerance and abs(self.t1 - other.t1) <= tolerance


class Easing:
    """Moves the shown view toward a target a fraction of the way each frame, in log space for the
    zoom (so a 1000x zoom feels as smooth as a 2x one). ``step`` returns False once it is there."""

    def __init__(self, view: View, rate: float = 0.35):
        self.current = self.target = view
        self.rate = rate

    def set_target(self, view: View) -> None:
        self.target = view

    def jump(self, view: View) -> None:
        self.current = self.target = view

    @property
    def moving(self) -> bool:
        return not self.current.close_to(self.target)

    def step(self) -> bool:
        if not self.moving:
            self.current = self.target
            return False
        cur, tgt = self.current, self.target
        span = math.exp(math.log(cur.span) + (math.log(tgt.span) - math.log(cur.span)) * self.rate)
        if abs(tgt.span - cur.span) > 1e-9 * cur.span:
            # Zoom about the one time both views put at the same fraction of the width (the time
            # under the pointer, for a wheel zoom), so it stays put through the animation.
            fixed = (cur.t0 * tgt.span - tgt.t0 * cur.span) / (tgt.span - cur.span)
            t0 = fixed - (fixed - cur.t0) * span / cur.span
        else:  # a pan: glide
            t0 = cur.t0 + (tgt.t0 - cur.t0) * self.rate
        self.current = View(t0, t0 + span, tgt.width)
        return True
