"""The interactive window: a vispy Canvas (Qt through PySide6, or any vispy backend) that feeds
input to a Controller and draws its frames."""

from __future__ import annotations

import sys

from vispy import app

from .controller import Controller
from .render import Renderer
from .scene import Scene


class TimelineCanvas(app.Canvas):
    def __init__(self, scene: Scene, size: tuple[int, int] = (1600, 900), title: str = "netprof", show: bool = True,
                 out=sys.stdout):
        super().__init__(size=size, title=title, show=False, keys=None)
        self.controller = Controller(scene, tuple(self.physical_size))
        self.renderer: Renderer | None = None
        self.out = out
        self._press: tuple[float, float] | None = None
        self._dragged = False
        self.timer = app.Timer(1 / 60, connect=self._on_tick, start=False)
        if show:
            self.show()

    def on_initialize(self, event) -> None:
        self.renderer = Renderer()

    def on_resize(self, event) -> None:
        self.controller.resize(tuple(self.physical_size))
        self.update()

    def on_draw(self, event) -> None:
        if self.renderer is None:
            self.renderer = Renderer()
        self.renderer.draw(self.controller.frame(), tuple(self.physical_size))

    def _pixels(self, pos) -> tuple[float, float]:
        ratio = self.pixel_scale
        return float(pos[0]) * ratio, float(pos[1]) * ratio

    def _animate(self) -> None:
        if self.controller.moving and not self.timer.running:
            self.timer.start()
        self.update()

    def _on_tick(self, event) -> None:
        if not self.controller.step():
            self.timer.stop()
        self.update()

    def on_mouse_wheel(self, event) -> None:
        x, _ = self._pixels(event.pos)
        dy = event.delta[1]
        if "Shift" in [k.name for k in event.modifiers]:
            self.controller.scroll(-dy * 40)
        else:
            self.controller.wheel(x, dy)
        self._animate()

    def on_mouse_press(self, event) -> None:
        self._press = self._pixels(event.pos)
        self._dragged = False

    def on_mouse_move(self, event) -> None:
        x, y = self._pixels(event.pos)
        if self._press is not None and event.is_dragging:
            self.controller.drag(x - self._press[0], y - self._press[1])
            self._press, self._dragged = (x, y), True
        self.controller.move(x, y)
        self.update()

    def on_mouse_release(self, event) -> None:
        if self._press is not None and not self._dragged:
            details = self.controller.click(*self._pixels(event.pos))
            if details:
                print(" | ".join(details), file=self.out, flush=True)
        self._press = None
        self.update()

    def on_mouse_double_click(self, event) -> None:
        if self.controller.double_click(*self._pixels(event.pos)):
            self._animate()

    def on_key_press(self, event) -> None:
        if event.key is None:
            return
        if event.key.name in ("Escape", "Q"):
            self.close()
        elif self.controller.key(event.key.name):
            self._animate()
