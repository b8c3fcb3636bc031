"""What the viewer shows, laid out in lanes and rows, and what one view of it draws. Pure numpy:
the renderer only uploads what Scene.frame returns, and hit-testing works without a GL context.

Lanes, top to bottom: kernel call stacks per CPU (or merged over CPUs), user-function spans per
thread, XDP packets per interface, throughput per interface and direction, memory per process.
Times are ns since the start of the capture (the trace's first timestamp).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import spans as span_builder
from ..probes.layout import memory_source
from ..trace import Trace
from . import colors
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
    unit: str = ""


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


class Scene:
    def __init__(self, trace: Trace, options: Options | None = None):
        self.trace = trace
        self.options = options = options or Options()
        self.origin, last = trace.time_range
        self.limits = (0.0, float(max(last - self.origin, 1)))
        if options.filter is not None:
            self.limits = (max(float(options.filter[0]), 0.0), min(float(options.filter[1]), self.limits[1]))
            if self.limits[1] <= self.limits[0]:
                raise ValueError(f"the filter {options.filter[0]:.0f}-{options.filter[1]:.0f} ns holds nothing of "
                                 f"this capture (it lasts {last - self.origin} ns)")
        self.lanes: list[Lane] = []
        self.names = [p["name"] for p in trace.probes]
        self.color_keys = np.array([colors.key_of(n) for n in self.names] or [0], np.float32)
        self.color_rgb = np.round(colors.key_rgb(self.color_keys) * 255).astype(np.uint8)
        self._build_spans()
        self._build_packets()
        self._build_series()
        self.loss = trace.loss_marks()
        self._place_lanes()

    # --- building -----------------------------------------------------------------------------------

    def _wanted(self, flag: bool | None, present: bool) -> bool:
        return present if flag is None else flag

    def _build_spans(self) -> None:
        trace, options = self.trace, self.options
        kinds = np.array([p["kind"] for p in trace.probes] or ["none"])
        events = trace.events
        if events.size:
            events = events[~np.isin(events["probe"], trace.instant_probes)]
        user = np.isin(events["probe"], np.flatnonzero(kinds == "user")) if events.size else np.zeros(0, bool)
        first, last = trace.time_range
        # Built apart so each kind nests only in its own: a kernel span under a user function is at
        # depth 0 of its CPU's stack, not depth 1 with an empty row above it.
        kernel_spans = span_builder.build(events[~user], first, last)
        user_spans = span_builder.build(events[user], first, last)
        lo, hi = self.limits[0] + self.origin, self.limits[1] + self.origin
        parts, rows = [], []
        next_row = 0
        kernel_spans = kernel_spans[(kernel_spans["end"] >= lo) & (kernel_spans["start"] <= hi)
                                    & ~np.isin(kernel_spans["cpu"], list(options.ignored_cpus))]
        row_height = TALL_ROW_HEIGHT if options.vertical_label > 0 else ROW_HEIGHT
        if kernel_spans.size:
            groups = [("all CPUs", np.ones(len(kernel_spans), bool))] if options.stack == "merged" else [
                (f"CPU {cpu}", kernel_spans["cpu"] == cpu) for cpu in np.unique(kernel_spans["cpu"])]
            for title, mine in groups:
                depth = kernel_spans["depth"][mine].astype(np.int64)
                lane_rows = int(depth.max()) + 1
                self.lanes.append(Lane(title, "stack", next_row, lane_rows, row_height))
                parts.append(kernel_spans[mine])
                rows.append(next_row + depth)
                next_row += lane_rows
        user_spans = user_spans[(user_spans["end"] >= lo) & (user_spans["start"] <= hi)
                                & ~np.isin(user_spans["cpu"], list(options.ignored_cpus))]
        if user_spans.size:
            threads = np.unique(np.stack([user_spans["pid"], user_spans["tid"]]), axis=1).T
            for pid, tid in threads:
                mine = (user_spans["pid"] == pid) & (user_spans["tid"] == tid)
                depth = user_spans["depth"][mine].astype(np.int64)
                lane_rows = int(depth.max()) + 1
                title = f"pid {pid}" if pid == tid else f"tid {tid} ({pid})"
                self.lanes.append(Lane(title, "user", next_row, lane_rows, row_height))
                parts.append(user_spans[mine])
                rows.append(next_row + depth)
                next_row += lane_rows
        self.spans = np.concatenate(parts) if parts else np.empty(0, span_builder.SPAN)
        self.span_row = np.concatenate(rows) if rows else np.empty(0, np.int64)
        self.span_start = (self.spans["start"].astype(np.int64) - self.origin)
        self.span_end = (self.spans["end"].astype(np.int64) - self.origin)
        self.span_color = self.color_keys[np.minimum(self.spans["probe"], len(self.color_keys) - 1)]
        self.index = LodIndex(self.span_start, self.span_end, self.span_row,
                              self.spans["probe"].astype(np.int64))
        row_start = (self.span_row << self.index.shift) | np.maximum(self.span_start, 0)
        order = np.argsort(row_start, kind="stable")
        self._by_row_start = order
        self._row_start_key = row_start[order]
        self.span_rows = next_row

    def _build_packets(self) -> None:
        packets = self.trace.packets
        self.packet_lanes: dict[int, int] = {}
        lo, hi = self.limits
        if packets.size:
            ts = packets["ts"].astype(np.int64) - self.origin
            packets = packets[(ts >= lo) & (ts <= hi)]
        if not self._wanted(self.options.xdp, bool(packets.size)) or not packets.size:
            self.packets = packets[:0] if packets.size else packets
            self.packet_index = None
            return
        order = np.argsort(packets["ts"], kind="stable")
        self.packets = packets[order]
        interfaces = self.trace.header.get("interfaces", {})
        first_row = self.span_rows
        rows = np.zeros(len(self.packets), np.int64)
        for i, ifindex in enumerate(np.unique(self.packets["ifindex"])):
            rows[self.packets["ifindex"] == ifindex] = first_row + i
            name = interfaces.get(str(int(ifindex)), f"if {int(ifindex)}")
            self.lanes.append(Lane(f"XDP {name}", "xdp", first_row + i, 1, XDP_ROW_HEIGHT))
            self.packet_lanes[int(ifindex)] = first_row + i
        self.packet_row = rows
        self.packet_ts = self.packets["ts"].astype(np.int64) - self.origin
        self.packet_index = LodIndex(self.packet_ts, self.packet_ts, rows, np.zeros(len(rows), np.int64))

    def _build_series(self) -> None:
        self.series: list[tuple[Lane, np.ndarray, np.ndarray, str]] = []
        trace, options = self.trace, self.options
        next_row = self.span_rows + len(self.packet_lanes)
        interfaces = trace.header.get("interfaces", {})
        bin_ns = float(trace.header.get("bin_ns", 1e6) or 1e6)
        if self._wanted(options.throughput, bool(trace.throughput.size)) and trace.throughput.size:
            for (ifindex, direction), (times, values) in sorted(trace.series("throughput", bin_ns).items()):
                name = interfaces.get(str(ifindex), f"if {ifindex}")
                lane = Lane(f"{name} {'rx' if direction == 0 else 'tx'}", "throughput", next_row, 1, SERIES_HEIGHT,
                            scale=float(np.nanmax(values)) or 1.0, unit="B/s")
                self.series.append((lane, times.astype(np.int64) - self.origin, values, "rx" if direction == 0 else "tx"))
                next_row += 1
        if self._wanted(options.memory, bool(trace.memory.size)) and trace.memory.size:
            memory = trace.memory
            for pid in np.unique(memory["pid"]):
                mine = np.sort(memory[memory["pid"] == pid], order="ts")
                # memory changes little against its total: draw the range it moved in, not from 0
                low, high = float(mine["bytes"].min()), float(mine["bytes"].max())
                floor = max(low - (high - low) * 0.1, 0.0) if high > low else 0.0
                title = {"system": "memory", "socket buffers": "socket buffers"}.get(memory_source(pid), f"RSS {pid}")
                lane = Lane(title, "memory", next_row, 1, SERIES_HEIGHT,
                            scale=high or 1.0, floor=floor, unit="B")
                self.series.append((lane, mine["ts"].astype(np.int64) - self.origin,
                                    mine["bytes"].astype(np.float64), "memory"))
                next_row += 1
        self.lanes.extend(lane for lane, *_ in self.series)

    def _place_lanes(self) -> None:
        y = 0.0
        self.lanes.sort(key=lambda lane: lane.first_row)
        rows = max((lane.first_row + lane.rows for lane in self.lanes), default=0)
        self.row_y = np.zeros(rows + 1)
        self.row_h = np.full(rows + 1, float(ROW_HEIGHT))
        for lane in self.lanes:
            lane.y = y
            for r in range(lane.rows):
                self.row_y[lane.first_row + r] = y + r * lane.row_height
                self.row_h[lane.first_row + r] = lane.row_height
            y += lane.rows * lane.row_height + LANE_GAP
        self.height = y

    # --- one view -------------------------------------------------------------------------------------

    def initial_view(self, width_px: int) -> View:
        lo, hi = self.limits
        return View(lo, hi, max(width_px - LEFT, 1))

    def frame(self, view: View, height: int, y_offset: float = 0.0) -> Frame:
        """Everything to draw for ``view`` in a canvas ``height`` pixels high, scrolled ``y_offset`` down."""
        under, parts, labels = [], [], []
        width = view.width
        top = TOP - y_offset

        def xs(t):
            return LEFT + (np.asarray(t, np.float64) - view.t0) / view.ns_per_px

        # lane backgrounds: every other one a shade lighter than the cleared canvas
        for i, lane in enumerate(self.lanes):
            y0 = top + lane.y
            y1 = y0 + lane.rows * lane.row_height
            if y1 < TOP or y0 > height:
                continue
            if i % 2:
                under.append(_rects([LEFT], [LEFT + width], [max(y0, TOP)], [min(y1, height)], colors.FIXED_KEYS["lane"]))
            labels.append(Label(6, y0 + 2, lane.title[:18]))
            if lane.kind in ("throughput", "memory"):
                labels.append(Label(6, y0 + 16, f"max {_si(lane.scale)}{lane.unit}", color="grid"))
                if lane.floor:
                    labels.append(Label(6, y0 + 30, f"min {_si(lane.floor)}{lane.unit}", color="grid"))
        # time axis: grid lines and tick labels, over the lane backgrounds, under everything else
        step, marks = ticks(view.t0, view.t1, width)
        if marks:
            x = xs(marks)
            under.append(_rects(x, x + 1, np.full(len(x), float(TOP - 6)), np.full(len(x), float(height)),
                                colors.FIXED_KEYS["grid"]))
            labels += [Label(float(xi) + 3, 4, format_time(t, step)) for xi, t in zip(x, marks, strict=True)]
        # spans: in the rows on screen, cells of merged narrow spans as an image, then whole spans
        first_row = int(np.searchsorted(self.row_y[:-1] + self.row_h[:-1], y_offset, "right"))
        end_row = max(int(np.searchsorted(self.row_y[:-1], y_offset + height - TOP, "left")), first_row)
        drawn = self.index.query(view.t0, view.t1, width, (first_row, end_row))
        # Spans only a few pixels wide join the image too: a rectangle each would cost more to draw
        # than their texels, and they are too narrow for a label.
        narrow = (self.span_end[drawn.spans] - self.span_start[drawn.spans]) < TEXEL_SPAN_PX * view.ns_per_px
        small = drawn.spans[narrow]
        cells, cell_rows = self._cell_image(
            view, np.concatenate([drawn.cell_start, self.span_start[small]]),
            np.concatenate([drawn.cell_end, self.span_end[small]]), np.concatenate([drawn.cell_row, self.span_row[small]]),
            np.concatenate([drawn.cell_color, self.spans["probe"][small].astype(np.int64)]),
            np.concatenate([drawn.cell_busy, self.span_end[small] - self.span_start[small]]), first_row, end_row, top)
        spans = drawn.spans[~narrow]
        if spans.size:
            rows = self.span_row[spans]
            y0 = top + self.row_y[rows]
            parts.append(_rects(np.maximum(xs(self.span_start[spans]), LEFT),
                                np.minimum(xs(self.span_end[spans]), LEFT + width + 1),
                                y0 + 1, y0 + self.row_h[rows] - 1, self.span_color[spans]))
            if self.options.labels:
                labels += self._span_labels(view, spans, xs, top)
        # XDP packets
        if self.packet_index is not None:
            marks = self.packet_index.query(view.t0, view.t1, width)
            y0 = top + self.row_y[marks.cell_row]
            x = np.maximum(xs(marks.cell_start), LEFT)
            parts.append(_rects(x, np.maximum(xs(marks.cell_end), x + 2), y0 + 2, y0 + XDP_ROW_HEIGHT - 2,
                                colors.FIXED_KEYS["packet"]))
            if self.options.xdp_labels:
                labels += self._packet_labels(view, xs, top)
        for lane, times, values, kind in self.series:
            parts.append(self._series_rects(view, lane, times, values, kind, xs, top))
        # lost-event marks across every lane
        if self.loss.size:
            t = self.loss["ts"].astype(np.int64) - self.origin
            seen = (t >= view.t0) & (t <= view.t1)
            x = xs(t[seen])
            parts.append(_rects(x - 1, x + 1, np.full(len(x), float(TOP)), np.full(len(x), top + self.height),
                                colors.FIXED_KEYS["lost"]))
            labels += [Label(float(xi) + 3, TOP + 2, f"lost {int(n):,}", color="lost")
                       for xi, n in zip(x[:50], self.loss["lost"][seen][:50], strict=False)]
        labels.append(Label(6, 4, f"{format_duration(view.span)} shown", color="grid"))
        legend_rects, legend_labels = self._legend(width, height)
        parts.append(legend_rects)
        labels += legend_labels
        rects = np.concatenate(parts) if parts else np.empty(0, RECT)
        return Frame(rects, labels, spans, np.concatenate(under) if under else np.empty(0, RECT), cells, cell_rows)

    def _legend(self, width: int, height: int) -> tuple[np.ndarray, list[Label]]:
        """A colour swatch and the name of every function shown, along the bottom of the canvas."""
        from .font import CHAR_WIDTH

        probes = np.unique(self.spans["probe"]) if self.spans.size else []
        entries = [(self.names[p] if p < len(self.names) else f"probe {p}", self.color_keys[min(p, len(self.color_keys) - 1)])
                   for p in probes]
        if not entries:
            return np.empty(0, RECT), []
        lines, x, line = [], 6.0, 0
        for name, key in entries:
            step = 16 + len(name) * CHAR_WIDTH + 18
            if x + step > LEFT + width and x > 6:
                x, line = 6.0, line + 1
            lines.append((x, line, name, key))
            x += step
        top = height - 18 * (line + 1) - 4
        swatches = [(x, x + 11, top + 4 + 18 * n, top + 15 + 18 * n, key) for x, n, _, key in lines]
        band = _rects([0], [LEFT + width], [top], [height], colors.FIXED_KEYS["tooltip"])
        swatch = _rects(*(np.array(column, np.float64) for column in zip(*swatches, strict=True)))
        return np.concatenate([band, swatch]), [Label(x + 16, top + 3 + 18 * n, name) for x, n, name, _ in lines]

    def _cell_image(self, view: View, start, end, row, probe, busy, first_row: int, end_row: int, top: float):
        """Cells and narrow spans ([start, end) ns, row, probe, ns of spans in them) as RGBA
        texels, one image row per span row on screen, one texel per pixel column. The alpha says
        how much of its pixel's time spans fill: where they take 1% of it, a dim mark, not a solid bar."""
        rows = end_row - first_row
        if not start.size or rows <= 0:
            return None, None
        p = view.ns_per_px
        c0 = np.floor((start - view.t0) / p).astype(np.int64)
        c1 = np.maximum(np.ceil((end - view.t0) / p).astype(np.int64) - 1, c0)
        c0, c1 = np.clip(c0, 0, view.width - 1), np.clip(c1, 0, view.width - 1)
        counts = c1 - c0 + 1
        columns = gather(c0, c1 + 1)
        which = np.repeat(np.arange(len(c0)), counts)
        image = np.zeros((rows, view.width, 4), np.uint8)
        texel_row = row[which] - first_row
        image[texel_row, columns, :3] = self.color_rgb[np.minimum(probe, len(self.color_rgb) - 1)][which]
        flat = texel_row * view.width + columns
        time_in = np.bincount(flat, (busy / counts)[which], rows * view.width).reshape(rows, view.width)
        # A span's time counts in the column where it starts: one more or one fewer start in a
        # column makes neighbours flicker between 70% and 100%. Their mean evens that out.
        mean = time_in.copy()
        mean[:, 1:] += time_in[:, :-1]
        mean[:, :-1] += time_in[:, 1:]
        filled = np.minimum(np.maximum(time_in, mean / 3) / p, 1.0).reshape(-1)[flat]
        image[texel_row, columns, 3] = np.round(255 * (MIN_SHADE + (1 - MIN_SHADE) * filled)).astype(np.uint8)
        y0 = top + self.row_y[first_row:end_row]
        return image, np.stack([y0 + 1, y0 + self.row_h[first_row:end_row] - 1], axis=1).astype(np.float32)

    def _span_labels(self, view: View, spans: np.ndarray, xs, top: float) -> list[Label]:
        from .font import CHAR_HEIGHT, CHAR_WIDTH, VERTICAL_STEP

        x0 = np.maximum(xs(self.span_start[spans]), LEFT)
        x1 = np.minimum(xs(self.span_end[spans]), LEFT + view.width)
        wide = x1 - x0
        threshold = self.options.visible_threshold / 100.0 * view.width
        vertical = (self.span_end[spans] - self.span_start[spans]) <= self.options.vertical_label
        fits = np.where(vertical, wide >= CHAR_WIDTH + 2, wide >= 3 * CHAR_WIDTH + 4) & (wide >= threshold)
        out = []
        chosen = np.flatnonzero(fits)
        if chosen.size > 2000:  # keep the widest: a label per pixel row at most
            chosen = chosen[np.argsort(-wide[chosen])[:2000]]
        rows = self.span_row[spans]
        for i in chosen:
            name = self.names[int(self.spans["probe"][spans[i]])] if int(self.spans["probe"][spans[i]]) < len(
                self.names) else "?"
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
        from .font import CHAR_WIDTH

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

    def _series_rects(self, view: View, lane: Lane, times, values, kind, xs, top: float) -> np.ndarray:
        """Bars: each sample's value over its interval (to the next sample); where samples are denser
        than pixels, one bar per pixel column holding their maximum."""
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
        return _rects(x0, x1, y_base - height, np.full(len(v), y_base), colors.FIXED_KEYS[kind])

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
        s = self.spans[span]
        probe = int(s["probe"])
        name = self.names[probe] if probe < len(self.names) else f"probe {probe}"
        flags = [] if not s["flags"] else [n for bit, n in ((span_builder.OPEN, "open at the end"),
                                                            (span_builder.ORPHAN, "entry before the capture"),
                                                            (span_builder.MISMATCHED, "exit missing"))
                                             if s["flags"] & bit]
        return [name,
                f"start {format_time(int(s['start']) - self.origin, 1)}  duration {format_duration(int(s['duration']))}",
                f"self {format_duration(int(s['self']))}  depth {int(s['depth'])}",
                f"cpu {int(s['cpu'])}  pid {int(s['pid'])}  tid {int(s['tid'])}",
                f"arg {int(s['arg']):#x}  ret {int(s['ret']):#x}"] + ([", ".join(flags)] if flags else [])


def _fit(name: str, room: int) -> str:
    if len(name) <= room:
        return name
    return name[: max(room - 1, 1)] + "~" if room >= 2 else name[:room]


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} "


def ethernet_summary(frame: bytes) -> str:
    """``dst > src type`` of an Ethernet frame's first 14 bytes."""
    if len(frame) < 14:
        return frame.hex()
    ethertype = int.from_bytes(frame[12:14], "big")
    name = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP", 0x8100: "VLAN"}.get(ethertype, f"{ethertype:#06x}")
    return f"{_mac(frame[6:12])} > {_mac(frame[0:6])} {name}"


def _mac(raw: bytes) -> str:
    return ":".join(f"{x:02x}" for x in raw)
