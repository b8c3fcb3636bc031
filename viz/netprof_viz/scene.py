"""What the viewer shows, laid out in lanes and rows, and what one view of it draws. Pure numpy:
the renderer only uploads what Scene.frame returns, and hit-testing works without a GL context.

Lanes, top to bottom: kernel call stacks per CPU (or merged over CPUs), user-function spans per
thread, XDP packets per interface, throughput per interface and direction, memory per process.
Times are ns since the start of the capture (the trace's first timestamp). The spans are the
analysis layer's (trace.spans()), numbers and ids; the scene only lays them out in lanes and rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from netprof.trace import MEMORY_SOCKETS, MEMORY_SYSTEM, RX, Trace, flag_words
from netprof.units import mbit_per_s, mib

from . import colors
from .font import CHAR_HEIGHT, CHAR_WIDTH, VERTICAL_STEP
from .lod import LodIndex, gather
from .timeaxis import format_duration, format_time, ticks
from .view import View

LEFT = 132          # px: lane titles
TOP = 26            # px: the time axis
ROW_HEIGHT = 16     # px: one depth of a call stack
TALL_ROW_HEIGHT = 46  # px: rows with vertical labels
XDP_ROW_HEIGHT = 18
SERIES_HEIGHT = 56
TEXEL_SPAN_PX = 4   # spans narrower than this many pixels are drawn as texels, not rectangles
MIN_SHADE = 0.35    # how strongly a pixel column holding spans for almost none of its time is drawn
LEGEND_LINE = 18    # px
LANE_GAP = 6


@dataclass
class Options:
    stack: str = "per-cpu"            # or "merged"
    labels: bool = True
    visible_threshold: float = 0.0    # % of the view's width a span needs for its label
    vertical_label: float = 0.0       # ns: spans at most this long get vertical labels
    memory: bool | None = None        # None: shown when the trace has any
    throughput: bool | None = None
    xdp: bool | None = None
    xdp_labels: bool = False
    filter: tuple[float, float] | None = None   # [start, end] ns since the start of the capture
    ignored_cpus: tuple[int, ...] = ()


@dataclass
class Lane:
    title: str
    kind: str           # "stack", "user", "xdp", "throughput", "memory"
    first_row: int
    rows: int
    row_height: float
    y: float = 0.0      # top, px below the axis
    scale: float = 1.0  # series: the value drawn full height
    floor: float = 0.0  # series: the value drawn at the bottom


@dataclass
class Label:
    x: float
    y: float
    text: str
    vertical: bool = False
    color: str = "text"


@dataclass
class Frame:
    """One view's geometry in pixels, drawn in this order: ``under`` rectangles (lane backgrounds,
    grid), the ``cells`` image (spans narrower than a pixel, one texel per row and pixel column;
    ``cell_rows`` gives each image row's y0, y1 on screen), ``rects`` (whole spans, packets,
    series, loss marks), then labels. A rectangle is (x0, x1, y0, y1, colour key), negative keys
    being colors.FIXED entries."""

    rects: np.ndarray
    labels: list[Label] = field(default_factory=list)
    spans: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # drawn whole: label and hit candidates
    under: np.ndarray | None = None
    cells: np.ndarray | None = None        # uint8 RGBA [rows, width, 4]; alpha: how busy, 0 where nothing is
    cell_rows: np.ndarray | None = None    # float32 [rows, 2]: y0, y1


RECT = np.dtype([("x0", "<f4"), ("x1", "<f4"), ("y0", "<f4"), ("y1", "<f4"), ("color", "<f4")])


def _rects(x0, x1, y0, y1, color) -> np.ndarray:
    n = len(x0)
    out = np.empty(n, RECT)
    for name, values in (("x0", x0), ("x1", x1), ("y0", y0), ("y1", y1), ("color", color)):
        out[name] = np.broadcast_to(values, n) if n else values
    return out


@dataclass
class _Painter:
    """One frame being put together: the view, where things go, and what has been added."""

    view: View
    height: int
    y_offset: float
    under: list = field(default_factory=list)
    rects: list = field(default_factory=list)
    labels: list = field(default_factory=list)

    @property
    def top(self) -> float:
        """Where y = 0 of the lanes is on the canvas."""
        return TOP - self.y_offset

    def x(self, t) -> np.ndarray:
        return LEFT + (np.asarray(t, np.float64) - self.view.t0) / self.view.ns_per_px


class Scene:
    def __init__(self, trace: Trace, options: Options | None = None):
        self.trace = trace
        self.options = options = options or Options()
        self.origin, last = trace.time_range
        self.limits = (0.0, float(max(last - self.origin, 1)))
        if options.filter is not None:
            lo, hi = (float(v) for v in options.filter)
            if not (np.isfinite(lo) and lo < self.limits[1] and hi > max(lo, 0.0)):
                raise ValueError(f"the filter {lo:.0f}-{hi:.0f} ns holds nothing of this capture "
                                 f"(it lasts {last - self.origin} ns)")
            self.limits = (max(lo, 0.0), min(hi, self.limits[1]))
        self.lanes: list[Lane] = []
        self.names = [trace.probe_name(i) for i in range(len(trace.probes))] or ["?"]
        self.color_keys = np.array([colors.key_of(n) for n in self.names], np.float32)
        self.color_rgb = np.round(colors.key_rgb(self.color_keys) * 255).astype(np.uint8)
        self._rgb32 = self.color_rgb.astype(np.uint32) @ np.array([1, 1 << 8, 1 << 16], np.uint32)  # little-endian RGBA
        self._build_spans()
        self._build_packets()
        self._build_series()
        self.loss = trace.loss_marks()
        self._place_lanes()
        self.legend = [(self.names[p], float(self.color_keys[p])) for p in np.unique(self._span_probe)]

    # --- building -----------------------------------------------------------------------------------

    @staticmethod
    def _wanted(flag: bool | None, present: bool) -> bool:
        return present if flag is None else flag

    def _build_spans(self) -> None:
        options = self.options
        start, end = options.filter or (None, None)       # the same filter as `netprof report -f`
        if end is not None and not np.isfinite(end):
            end = None                                    # to the end of the capture
        spans = self.trace.spans(start=start, end=end, ignored_cpus=options.ignored_cpus)
        self.spans = spans.array
        self.span_ids = spans.id
        # Kernel spans go in their CPU's stack, user spans in their thread's, each a row per depth
        # among its own kind: a kernel function called from a user one heads its CPU's stack.
        user = spans.is_user
        row_in_lane = spans.kind_depth()
        kernel, users = np.flatnonzero(~user), np.flatnonzero(user)
        row_height = TALL_ROW_HEIGHT if options.vertical_label > 0 else ROW_HEIGHT
        merged = options.stack == "merged"
        cpus = np.zeros(len(kernel), np.int64) if merged else self.spans["cpu"][kernel].astype(np.int64)
        cpu_title = (lambda _: "all CPUs") if merged else (lambda cpu: f"CPU {cpu}")
        kernel_rows, next_row = self._span_lanes(cpus, row_in_lane[kernel], cpu_title, "stack", row_height, 0)
        threads = (self.spans["pid"][users].astype(np.int64) << 32) | self.spans["tid"][users]
        thread_title = functools.partial(_thread_title, self.trace.process_name)
        user_rows, self.span_rows = self._span_lanes(threads, row_in_lane[users], thread_title, "user", row_height,
                                                     next_row)
        self.span_row = np.empty(len(self.spans), np.int64)
        self.span_row[kernel], self.span_row[users] = kernel_rows, user_rows
        self.span_start = self.spans["start"].astype(np.int64) - self.origin
        self.span_end = self.spans["end"].astype(np.int64) - self.origin
        self._span_probe = np.minimum(self.spans["probe"], len(self.names) - 1).astype(np.int64)
        self.span_color = self.color_keys[self._span_probe]
        self.index = LodIndex(self.span_start, self.span_end, self.span_row, self._span_probe)
        self._by_row_start = self.index.by_row_start
        self._row_start_key = ((self.span_row << self.index.shift) | np.maximum(self.span_start, 0))[self._by_row_start]

    def _span_lanes(self, keys: np.ndarray, depth: np.ndarray, title, kind: str, row_height: float,
                    first_row: int) -> tuple[np.ndarray, int]:
        """A lane per distinct key (a CPU, a thread) from ``first_row`` on, a row per depth: (each
        span's row, the next free row). No mask per lane, no reordering of the spans."""
        if not keys.size:
            return np.empty(0, np.int64), first_row
        lanes, lane_of = np.unique(keys, return_inverse=True)
        # the deepest depth of each lane: which (lane, depth) pairs occur, then the last per lane
        seen = np.bincount(lane_of * (int(depth.max()) + 1) + depth, minlength=len(lanes) * (int(depth.max()) + 1))
        seen = seen.reshape(len(lanes), -1) > 0
        rows = seen.shape[1] - np.argmax(seen[:, ::-1], axis=1)
        first = first_row + np.r_[0, np.cumsum(rows)[:-1]]
        for key, row, count in zip(lanes.tolist(), first.tolist(), rows.tolist(), strict=True):
            self.lanes.append(Lane(title(key), kind, row, count, row_height))
        return first[lane_of] + depth, first_row + int(rows.sum())

    def _build_packets(self) -> None:
        packets = self.trace.packets
        self.packet_lanes: dict[int, int] = {}
        self.packet_index = None
        lo, hi = self.limits
        if packets.size:
            ts = packets["ts"].astype(np.int64) - self.origin
            packets = packets[(ts >= lo) & (ts <= hi)]
        self.packets = packets
        if not packets.size or not self._wanted(self.options.xdp, True):
            self.packets = packets[:0]
            return
        self.packets = packets = packets[np.argsort(packets["ts"], kind="stable")]
        interfaces = self.trace.header.get("interfaces", {})
        ifindexes, lane_of = np.unique(packets["ifindex"], return_inverse=True)
        for i, ifindex in enumerate(ifindexes.tolist()):
            self.lanes.append(Lane(f"XDP {interfaces.get(str(ifindex), f'if {ifindex}')}", "xdp", self.span_rows + i, 1,
                                   XDP_ROW_HEIGHT))
            self.packet_lanes[ifindex] = self.span_rows + i
        self.packet_row = self.span_rows + lane_of.astype(np.int64)
        self.packet_ts = packets["ts"].astype(np.int64) - self.origin
        self.packet_index = LodIndex(self.packet_ts, self.packet_ts, self.packet_row, np.zeros(len(packets), np.int64))

    def _build_series(self) -> None:
        self.series: list[tuple[Lane, np.ndarray, np.ndarray, str]] = []
        trace, options = self.trace, self.options
        next_row = self.span_rows + len(self.packet_lanes)
        bin_ns = float(trace.header.get("bin_ns", 1e6) or 1e6)
        lo, hi = self.limits

        def add(title: str, kind: str, color: str, times: np.ndarray, values: np.ndarray, floor_room: bool) -> None:
            nonlocal next_row
            times = times.astype(np.int64) - self.origin
            shown = values[(times >= lo - bin_ns) & (times <= hi) & ~np.isnan(values)]
            if not shown.size:
                return
            low, high = float(shown.min()), float(shown.max())
            # memory moves little against its total: draw the range it moved in, not from 0
            floor = max(low - (high - low) * 0.1, 0.0) if floor_room and high > low else 0.0
            lane = Lane(title, kind, next_row, 1, SERIES_HEIGHT, scale=high or 1.0, floor=floor)
            self.series.append((lane, times, values, color))
            self.lanes.append(lane)
            next_row += 1

        if trace.throughput.size and self._wanted(options.throughput, True):
            for (netns, ifindex, direction), (times, values) in sorted(trace.series("throughput", bin_ns).items()):
                way = "rx" if direction == RX else "tx"
                add(f"{trace.interface_name(netns, ifindex)} {way}", "throughput", way, times, values, False)
        if trace.memory.size and self._wanted(options.memory, True):
            memory = trace.memory
            for pid in np.unique(memory["pid"]).tolist():
                mine = np.sort(memory[memory["pid"] == pid], order="ts")
                name = trace.process_name(pid) or "pid"
                title = {MEMORY_SYSTEM: "memory", MEMORY_SOCKETS: "socket buffers"}.get(pid, f"RSS {name} {pid}")
                add(title, "memory", "memory", mine["ts"], mine["bytes"].astype(np.float64), True)

    def _place_lanes(self) -> None:
        self.lanes.sort(key=lambda lane: lane.first_row)
        rows = max((lane.first_row + lane.rows for lane in self.lanes), default=0)
        self.row_y = np.zeros(rows + 1)   # the extra entry: the end of the last row, keeping it sorted
        self.row_h = np.zeros(rows + 1)
        y = 0.0
        for lane in self.lanes:
            lane.y = y
            self.row_y[lane.first_row:lane.first_row + lane.rows] = y + np.arange(lane.rows) * lane.row_height
            self.row_h[lane.first_row:lane.first_row + lane.rows] = lane.row_height
            y += lane.rows * lane.row_height + LANE_GAP
        self.row_y[-1] = y
        self.height = y
        self.lane_y = np.array([lane.y for lane in self.lanes])
        self.lane_bottom = np.array([lane.y + lane.rows * lane.row_height for lane in self.lanes])

    # --- one view -------------------------------------------------------------------------------------

    def initial_view(self, width_px: int) -> View:
        lo, hi = self.limits
        return View(lo, hi, max(width_px - LEFT, 1))

    def frame(self, view: View, height: int, y_offset: float = 0.0) -> Frame:
        """Everything to draw for ``view`` in a canvas ``height`` pixels high, scrolled ``y_offset`` down."""
        paint = _Painter(view, height, y_offset)
        self._paint_lanes(paint)
        self._paint_axis(paint)
        cells, cell_rows, spans = self._paint_spans(paint)
        self._paint_packets(paint)
        for lane, times, values, color in self.series:
            paint.rects.append(self._series_rects(paint, lane, times, values, color))
        self._paint_loss(paint)
        self._paint_legend(paint)
        return Frame(_joined(paint.rects), paint.labels, spans, _joined(paint.under), cells, cell_rows)

    def _paint_lanes(self, paint: _Painter) -> None:
        """Lane backgrounds (every other one a shade lighter than the canvas) and titles."""
        if not self.lanes:
            return
        y0, y1 = paint.top + self.lane_y, paint.top + self.lane_bottom
        shown = np.flatnonzero((y1 >= TOP) & (y0 <= paint.height))
        shaded = shown[shown % 2 == 1]
        paint.under.append(_rects(np.full(len(shaded), float(LEFT)), float(LEFT + paint.view.width),
                                  np.maximum(y0[shaded], TOP), np.minimum(y1[shaded], paint.height),
                                  colors.FIXED_KEYS["lane"]))
        for i in shown.tolist():
            lane, top = self.lanes[i], float(y0[i])
            if top < TOP:
                continue  # scrolled under the time axis
            paint.labels.append(Label(6, top + 2, lane.title[:18]))
            if lane.kind in ("throughput", "memory"):
                amount = mib if lane.kind == "memory" else mbit_per_s   # as the report writes them
                paint.labels.append(Label(6, top + 16, f"max {amount(lane.scale)}", color="grid"))
                if lane.floor:
                    paint.labels.append(Label(6, top + 30, f"min {amount(lane.floor)}", color="grid"))

    def _paint_axis(self, paint: _Painter) -> None:
        """Grid lines and tick labels: over the lane backgrounds, under everything else."""
        view = paint.view
        step, marks = ticks(view.t0, view.t1, view.width)
        if marks:
            x = paint.x(marks)
            paint.under.append(_rects(x, x + 1, float(TOP - 6), float(paint.height), colors.FIXED_KEYS["grid"]))
            paint.labels += [Label(float(xi) + 3, 4, format_time(t, step)) for xi, t in zip(x, marks, strict=True)]
        paint.labels.append(Label(6, 4, f"{format_duration(view.span)} shown", color="grid"))

    def _paint_spans(self, paint: _Painter):
        """Spans in the rows on screen: merged cells and spans only a few pixels wide as an image
        (a rectangle each would cost more to draw than their texels, and they are too narrow for a
        label), wider spans as rectangles with their names."""
        view = paint.view
        first_row = int(np.searchsorted(self.row_y[1:], paint.y_offset, "right"))
        end_row = max(int(np.searchsorted(self.row_y[:-1], paint.y_offset + paint.height - TOP, "left")), first_row)
        drawn = self.index.query(view.t0, view.t1, view.width, (first_row, end_row))
        narrow = (self.span_end[drawn.spans] - self.span_start[drawn.spans]) < TEXEL_SPAN_PX * view.ns_per_px
        cells, cell_rows = self._cell_image(view, drawn, drawn.spans[narrow], first_row, end_row, paint.top)
        spans = drawn.spans[~narrow]
        if spans.size:
            y0 = paint.top + self.row_y[self.span_row[spans]]
            paint.rects.append(_rects(np.maximum(paint.x(self.span_start[spans]), LEFT),
                                      np.minimum(paint.x(self.span_end[spans]), LEFT + view.width),
                                      y0 + 1, y0 + self.row_h[self.span_row[spans]] - 1, self.span_color[spans]))
            if self.options.labels:
                paint.labels += self._span_labels(view, spans, paint.x, paint.top)
        return cells, cell_rows, spans

    def _paint_packets(self, paint: _Painter) -> None:
        if self.packet_index is None:
            return
        marks = self.packet_index.query(paint.view.t0, paint.view.t1, paint.view.width)
        y0 = paint.top + self.row_y[marks.cell_row]
        x = np.maximum(paint.x(marks.cell_start), LEFT)
        paint.rects.append(_rects(x, np.maximum(paint.x(marks.cell_end), x + 2), y0 + 2, y0 + XDP_ROW_HEIGHT - 2,
                                  colors.FIXED_KEYS["packet"]))
        if self.options.xdp_labels:
            paint.labels += self._packet_labels(paint.view, paint.x, paint.top)

    def _paint_loss(self, paint: _Painter) -> None:
        """A red mark across every lane where the kernel dropped records."""
        if not self.loss.size:
            return
        t = self.loss["ts"].astype(np.int64) - self.origin
        seen = (t >= paint.view.t0) & (t <= paint.view.t1)
        x = paint.x(t[seen])
        paint.rects.append(_rects(x - 1, x + 1, float(TOP), paint.top + self.height, colors.FIXED_KEYS["lost"]))
        paint.labels += [Label(float(xi) + 3, TOP + 2, f"lost {int(n):,}", color="lost")
                         for xi, n in zip(x[:50], self.loss["lost"][seen][:50], strict=False)]

    def _paint_legend(self, paint: _Painter) -> None:
        """A colour swatch and the name of every function, along the bottom of the canvas."""
        placed = self._legend_layout(LEFT + paint.view.width)
        if not placed:
            return
        top = paint.height - self.legend_height(LEFT + paint.view.width)
        paint.rects.append(_rects([0.0], float(LEFT + paint.view.width), top, float(paint.height),
                                  colors.FIXED_KEYS["tooltip"]))
        x0, line, _, keys = (np.array(column) for column in zip(*placed, strict=True))
        y0 = top + 4 + LEGEND_LINE * line.astype(np.float64)
        paint.rects.append(_rects(x0.astype(np.float64), x0.astype(np.float64) + 11, y0, y0 + 11, keys.astype(np.float32)))
        paint.labels += [Label(x + 16, top + 3 + LEGEND_LINE * line, name) for x, line, name, _ in placed]

    def legend_height(self, width_px: int) -> float:
        """Pixels the legend takes at the bottom of a canvas ``width_px`` wide."""
        placed = self._legend_layout(width_px)
        return LEGEND_LINE * (placed[-1][1] + 1) + 4 if placed else 0.0

    def _legend_layout(self, width_px: int) -> list[tuple[float, int, str, float]]:
        """(x, line, name, colour key) of each legend entry, wrapped to ``width_px``."""
        placed, x, line = [], 6.0, 0
        for name, key in self.legend:
            step = 16 + len(name) * CHAR_WIDTH + 18
            if x + step > width_px and x > 6:
                x, line = 6.0, line + 1
            placed.append((x, line, name, key))
            x += step
        return placed

    def _cell_image(self, view: View, drawn, small: np.ndarray, first_row: int, end_row: int, top: float):
        """The merged cells and the ``small`` spans as RGBA texels, one image row per span row on
        screen, one texel per pixel column. A cell's alpha says how much of its pixel's time spans
        fill (where they take 1% of it, a dim mark, not a solid bar); a small span's texels are opaque."""
        rows = end_row - first_row
        if not (drawn.cell_start.size or small.size) or rows <= 0:
            return None, None
        texels = np.zeros(rows * view.width, np.uint32)  # RGBA, one 32-bit store per texel
        texel_row, columns, which = self._texels(view, drawn.cell_start, drawn.cell_end, drawn.cell_row, first_row)
        if columns.size:
            flat = texel_row * view.width + columns
            counts = np.bincount(which, minlength=len(drawn.cell_start))
            time_in = np.bincount(flat, (drawn.cell_busy / counts)[which], rows * view.width).reshape(rows, -1)
            # A span's time counts in the column where it starts: one more or one fewer start in a
            # column makes neighbours flicker between 70% and 100%. Their mean evens that out.
            mean = time_in.copy()
            mean[:, 1:] += time_in[:, :-1]
            mean[:, :-1] += time_in[:, 1:]
            filled = np.minimum(np.maximum(time_in, mean / 3) / view.ns_per_px, 1.0).reshape(-1)[flat]
            alpha = np.round(255 * (MIN_SHADE + (1 - MIN_SHADE) * filled)).astype(np.uint32)
            texels[flat] = self._rgb32[drawn.cell_group][which] | (alpha << 24)
        texel_row, columns, which = self._texels(view, self.span_start[small], self.span_end[small],
                                                 self.span_row[small], first_row)
        texels[texel_row * view.width + columns] = self._rgb32[self._span_probe[small]][which] | np.uint32(255 << 24)
        image = texels.view(np.uint8).reshape(rows, view.width, 4)
        y0 = top + self.row_y[first_row:end_row]
        return image, np.stack([y0 + 1, y0 + self.row_h[first_row:end_row] - 1], axis=1).astype(np.float32)

    @staticmethod
    def _texels(view: View, start, end, row, first_row: int):
        """(image row, column, which interval) of every texel the intervals [start, end) cover."""
        c0 = np.floor((start - view.t0) / view.ns_per_px).astype(np.int64)
        c1 = np.maximum(np.ceil((end - view.t0) / view.ns_per_px).astype(np.int64) - 1, c0)
        c0, c1 = np.clip(c0, 0, view.width - 1), np.clip(c1, 0, view.width - 1)
        counts = c1 - c0 + 1
        which = np.repeat(np.arange(len(c0)), counts)
        return row[which] - first_row, gather(c0, c1 + 1), which

    def _span_labels(self, view: View, spans: np.ndarray, xs, top: float) -> list[Label]:
        x0 = np.maximum(xs(self.span_start[spans]), LEFT)
        x1 = np.minimum(xs(self.span_end[spans]), LEFT + view.width)
        wide = x1 - x0
        threshold = self.options.visible_threshold / 100.0 * view.width
        vertical = (self.span_end[spans] - self.span_start[spans]) <= self.options.vertical_label
        fits = np.where(vertical, wide >= CHAR_WIDTH + 2, wide >= 3 * CHAR_WIDTH + 4) & (wide >= threshold)
        out = []
        chosen = np.flatnonzero(fits)
        if chosen.size > 1000:  # keep the widest: more is more text than anyone reads, and costs fill rate
            chosen = chosen[np.argsort(-wide[chosen])[:1000]]
        rows = self.span_row[spans]
        for i in chosen:
            name = self.names[self._span_probe[spans[i]]]
            row_top = top + self.row_y[rows[i]]
            if vertical[i]:
                room = int((self.row_h[rows[i]] - 4) // VERTICAL_STEP)
                out.append(Label(float(x0[i]) + (wide[i] - CHAR_WIDTH) / 2, row_top + 1, _fit(name, room), True,
                                 color="background"))
            else:
                room = int((wide[i] - 4) // CHAR_WIDTH)
                out.append(Label(float(x0[i]) + 2, row_top + (self.row_h[rows[i]] - CHAR_HEIGHT) / 2,
                                 _fit(name, room), color="background"))
        return out

    def _packet_labels(self, view: View, xs, top: float) -> list[Label]:
        lo, hi = np.searchsorted(self.packet_ts, [view.t0, view.t1])
        if hi - lo > 400:
            return []
        out = []
        x = xs(self.packet_ts[lo:hi])
        for i, xi in zip(range(lo, hi), x, strict=True):
            text = ethernet_summary(bytes(self.packets["data"][i][: int(self.packets["caplen"][i])]))
            out.append(Label(float(xi) + 4, top + self.row_y[self.packet_row[i]] + 3, text, color="packet"))
        # drop labels that would overlap the next one
        keep, last_end = [], -1e9
        for label in out:
            if label.x >= last_end or label.y != (keep[-1].y if keep else None):
                keep.append(label)
                last_end = label.x + len(label.text) * CHAR_WIDTH + 6
        return keep

    def _series_rects(self, paint: _Painter, lane: Lane, times, values, color: str) -> np.ndarray:
        """Bars: each sample's value over its interval (to the next sample); where samples are denser
        than pixels, one bar per pixel column holding their maximum."""
        view, xs, top = paint.view, paint.x, paint.top
        if not times.size:
            return np.empty(0, RECT)
        ends = np.r_[times[1:], times[-1] + (times[-1] - times[-2] if times.size > 1 else 1)]
        seen = (ends >= view.t0) & (times <= view.t1) & ~np.isnan(values)
        t, e, v = times[seen], ends[seen], values[seen]
        x0, x1 = xs(t), xs(e)
        if t.size > view.width:
            column = np.clip(x0 - LEFT, 0, view.width).astype(np.int64)
            peak = np.full(view.width + 1, -np.inf)
            np.maximum.at(peak, column, v)
            has = np.isfinite(peak)
            x0 = LEFT + np.flatnonzero(has).astype(np.float64)
            x1, v = x0 + 1, peak[has]
        x0, x1 = np.maximum(x0, LEFT), np.minimum(np.maximum(x1, x0 + 1), LEFT + view.width)
        y_base = top + lane.y + lane.row_height - 1
        height = (lane.row_height - 4) * np.clip((v - lane.floor) / (lane.scale - lane.floor), 0, 1)
        return _rects(x0, x1, y_base - height, y_base, colors.FIXED_KEYS[color])

    # --- hit testing --------------------------------------------------------------------------------

    def row_at(self, y: float, y_offset: float = 0.0) -> int | None:
        y = y - TOP + y_offset
        if y < 0 or not self.lanes:
            return None
        row = int(np.searchsorted(self.row_y, y, "right")) - 1
        if row < 0 or row >= len(self.row_y) - 1 or y >= self.row_y[row] + self.row_h[row]:
            return None
        return row

    def span_at(self, view: View, x: float, y: float, y_offset: float = 0.0, slop_px: float = 1.0) -> int | None:
        """The span drawn under pixel (x, y) (canvas coordinates), as an index into self.spans."""
        row = self.row_at(y, y_offset)
        if row is None or x < LEFT or row >= self.span_rows:
            return None
        t = view.time_at(x - LEFT)
        slop = slop_px * view.ns_per_px
        key = (row << self.index.shift) | int(np.clip(t + slop, 0, self.index.horizon))
        at = int(np.searchsorted(self._row_start_key, key, "right"))
        best = None
        for i in range(at - 1, max(at - 64, -1), -1):  # the spans starting before t in this row
            span = self._by_row_start[i]
            if self.span_row[span] != row:
                break
            if self.span_end[span] >= t - slop:
                if best is None or self.span_end[span] - self.span_start[span] < self.span_end[best] - self.span_start[best]:
                    best = span
        return None if best is None else int(best)

    def packet_at(self, view: View, x: float, y: float, y_offset: float = 0.0, slop_px: float = 2.0) -> int | None:
        """The XDP packet drawn under pixel (x, y), as an index into self.packets."""
        row = self.row_at(y, y_offset)
        if row is None or x < LEFT or self.packet_index is None or row not in self.packet_lanes.values():
            return None
        t, slop = view.time_at(x - LEFT), slop_px * view.ns_per_px
        lo, hi = np.searchsorted(self.packet_ts, [t - slop, t + slop])
        near = np.arange(lo, hi)[self.packet_row[lo:hi] == row]
        return int(near[np.argmin(np.abs(self.packet_ts[near] - t))]) if near.size else None

    def describe_packet(self, packet: int) -> list[str]:
        p = self.packets[packet]
        name = self.trace.header.get("interfaces", {}).get(str(int(p["ifindex"])), f"if {int(p['ifindex'])}")
        return [f"packet on {name}, rx queue {int(p['rx_queue'])}, cpu {int(p['cpu'])}",
                f"at {format_time(int(self.packet_ts[packet]), 1)}  {int(p['len'])} bytes",
                ethernet_summary(bytes(p["data"][: int(p["caplen"])]))]

    def describe(self, span: int) -> list[str]:
        """The tooltip of a span: the analysis layer's numbers, and the id and parent that the CSV,
        Parquet and Perfetto exports give it."""
        s = self.spans[span]
        name = self.names[self._span_probe[span]]
        flags = flag_words(int(s["flags"]))
        parent = int(s["parent"])
        corrected = self.trace.corrected  # durations without netprof's probe cost; --raw: as recorded
        raw = f"  (raw {format_duration(int(s['end'] - s['start']))})" if corrected else ""
        return [name,
                f"start {format_time(int(s['start']) - self.origin, 1)}  duration {format_duration(int(s['duration']))}"
                f"{' corrected' if corrected else ''}{raw}",
                f"self {format_duration(int(s['self']))}  depth {int(s['depth'])}",
                f"id {int(self.span_ids[span])}  parent {parent if parent >= 0 else 'none'}",
                f"cpu {int(s['cpu'])}  pid {int(s['pid'])}  tid {int(s['tid'])}",
                f"arg {int(s['arg']):#x}  ret {int(s['ret']):#x}"] + ([", ".join(flags)] if flags else [])


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, RECT)


def _thread_title(process_name, key: int) -> str:
    """A thread lane's title: the process's name (comm) and pid, and the tid if not its main thread."""
    pid, tid = key >> 32, key & 0xFFFF_FFFF
    name = process_name(pid)
    who = f"{name} {pid}" if name else f"pid {pid}"
    return who if pid == tid else f"{who} tid {tid}"


def _fit(name: str, room: int) -> str:
    if len(name) <= room:
        return name
    return name[: max(room - 1, 1)] + "~" if room >= 2 else name[:room]


def ethernet_summary(frame: bytes) -> str:
    """``dst > src type`` of an Ethernet frame's first 14 bytes."""
    if len(frame) < 14:
        return frame.hex()
    ethertype = int.from_bytes(frame[12:14], "big")
    name = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP", 0x8100: "VLAN"}.get(ethertype, f"{ethertype:#06x}")
    return f"{_mac(frame[6:12])} > {_mac(frame[0:6])} {name}"


def _mac(raw: bytes) -> str:
    return ":".join(f"{x:02x}" for x in raw)
