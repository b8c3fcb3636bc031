"""Input to view changes: wheel zoom around the cursor (eased), drag to pan, W/S/A/D as in Perfetto
and Tracy, double-click to zoom to a span, hover for a tooltip, click to select. Independent of
any GUI backend, so it is tested directly."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import colors
from .font import CHAR_HEIGHT, CHAR_WIDTH
from .scene import LEFT, RECT, TOP, Frame, Label, Scene
from .view import Easing, View

WHEEL_ZOOM = 1.25     # per wheel notch
KEY_ZOOM = 1.6        # per W/S press
KEY_PAN = 0.2         # of the view's width per A/D press


class Controller:
    def __init__(self, scene: Scene, size: tuple[int, int]):
        self.scene = scene
        self.size = size
        self.easing = Easing(scene.initial_view(size[0]))
        self.y_offset = 0.0
        self.hover: int | None = None          # a span
        self.hover_packet: int | None = None
        self.pointer: tuple[float, float] | None = None
        self.selected: int | None = None

    @property
    def view(self) -> View:
        return self.easing.current

    @property
    def moving(self) -> bool:
        return self.easing.moving

    def resize(self, size: tuple[int, int]) -> None:
        self.size = size
        width = max(size[0] - LEFT, 1)
        for name in ("current", "target"):
            v = getattr(self.easing, name)
            setattr(self.easing, name, View(v.t0, v.t0 + v.ns_per_px * width, width))

    def _limits(self):
        return self.scene.limits

    def wheel(self, x: float, notches: float) -> None:
        """Zoom in (notches > 0) or out around the time under pixel column ``x``."""
        target = self.easing.target
        self.easing.set_target(target.zoomed(max(x - LEFT, 0), WHEEL_ZOOM ** notches, self._limits()))

    def scroll(self, dy: float) -> None:
        """Scroll the lanes vertically by ``dy`` pixels."""
        room = max(self.scene.height + TOP + self.scene.legend_height(self.size[0]) - self.size[1], 0)
        self.y_offset = float(np.clip(self.y_offset + dy, 0, room))

    def drag(self, dx: float, dy: float = 0.0) -> None:
        """The content follows the pointer: no easing, it must feel attached to the hand."""
        self.easing.jump(self.easing.current.panned(dx, self._limits()))
        if dy:
            self.scroll(-dy)

    def key(self, name: str) -> bool:
        """W/S zoom in/out around the view's centre (or the pointer), A/D pan. True if handled."""
        name = name.upper()
        target = self.easing.target
        x = (self.pointer[0] - LEFT) if self.pointer and self.pointer[0] >= LEFT else target.width / 2
        if name == "W":
            self.easing.set_target(target.zoomed(x, KEY_ZOOM, self._limits()))
        elif name == "S":
            self.easing.set_target(target.zoomed(x, 1 / KEY_ZOOM, self._limits()))
        elif name == "A":
            self.easing.set_target(target.panned(KEY_PAN * target.width, self._limits()))
        elif name == "D":
            self.easing.set_target(target.panned(-KEY_PAN * target.width, self._limits()))
        elif name in ("0", "HOME"):
            self.easing.set_target(self.scene.initial_view(self.size[0]))
        else:
            return False
        return True

    def double_click(self, x: float, y: float) -> bool:
        """Zoom to the span under the pointer, with a margin of a tenth of it either side."""
        span = self.scene.span_at(self.view, x, y, self.y_offset)
        if span is None:
            return False
        start, end = float(self.scene.span_start[span]), float(self.scene.span_end[span])
        margin = max((end - start) * 0.1, 5.0)
        self.easing.set_target(View(start - margin, end + margin, self.view.width))
        return True

    def move(self, x: float, y: float) -> None:
        self.pointer = (x, y)
        self._hit()

    def _hit(self) -> None:
        self.hover = self.scene.span_at(self.view, *self.pointer, self.y_offset)
        self.hover_packet = None if self.hover is not None else self.scene.packet_at(self.view, *self.pointer,
                                                                                      self.y_offset)

    def click(self, x: float, y: float) -> list[str] | None:
        """Select the span under the pointer: its details, or None where there is none."""
        self.selected = self.scene.span_at(self.view, x, y, self.y_offset)
        return None if self.selected is None else self.scene.describe(self.selected)

    def step(self) -> bool:
        """Advance the easing one frame; True while still moving."""
        moving = self.easing.step()
        if self.pointer is not None:
            self._hit()
        return moving

    def frame(self) -> Frame:
        frame = self.scene.frame(self.view, self.size[1], self.y_offset)
        overlays = [frame.rects]
        labels = list(frame.labels)
        if self.selected is not None:
            overlays.append(self._outline(self.selected))
        if self.pointer is not None and (self.hover is not None or self.hover_packet is not None):
            text = (self.scene.describe(self.hover) if self.hover is not None else
                    self.scene.describe_packet(self.hover_packet))
            rects, lines = self._tooltip(text)
            overlays.append(rects)
            labels += lines
        return dataclasses.replace(frame, rects=np.concatenate(overlays), labels=labels)

    def _outline(self, span: int) -> np.ndarray:
        scene, view = self.scene, self.view
        x0 = LEFT + (scene.span_start[span] - view.t0) / view.ns_per_px
        x1 = max(LEFT + (scene.span_end[span] - view.t0) / view.ns_per_px, x0 + 1)
        y0 = TOP - self.y_offset + scene.row_y[scene.span_row[span]]
        y1 = y0 + scene.row_h[scene.span_row[span]]
        key = colors.FIXED_KEYS["selected"]
        edges = [(x0 - 1, x1 + 1, y0 - 1, y0), (x0 - 1, x1 + 1, y1 - 1, y1), (x0 - 1, x0, y0, y1), (x1, x1 + 1, y0, y1)]
        out = np.empty(4, RECT)
        for i, (a, b, c, d) in enumerate(edges):
            out[i] = (a, b, c, d, key)
        return out

    def _tooltip(self, lines: list[str]) -> tuple[np.ndarray, list[Label]]:
        x, y = self.pointer
        width = max(len(line) for line in lines) * CHAR_WIDTH + 12
        height = len(lines) * (CHAR_HEIGHT + 3) + 8
        x = min(x + 14, self.size[0] - width - 2)
        y = min(y + 14, self.size[1] - height - 2)
        box = np.empty(2, RECT)
        box[0] = (x - 1, x + width + 1, y - 1, y + height + 1, colors.FIXED_KEYS["grid"])
        box[1] = (x, x + width, y, y + height, colors.FIXED_KEYS["tooltip"])
        return box, [Label(x + 6, y + 5 + i * (CHAR_HEIGHT + 3), line) for i, line in enumerate(lines)]
