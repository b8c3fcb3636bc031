"""Rendering to a PNG with no display: EGL on Mesa's surfaceless platform (no X, no GPU needed),
or OSMesa where there is no EGL. NETPROF_OFFSCREEN=egl|osmesa picks one (default: the first found).
"""

from __future__ import annotations

import ctypes.util
import glob
import os

import numpy as np


def use_offscreen() -> str:
    """Select vispy's offscreen backend for this process; returns its name."""
    import vispy

    wanted = os.environ.get("NETPROF_OFFSCREEN", "auto")
    if wanted in ("auto", "egl") and ctypes.util.find_library("EGL"):
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        vispy.use(app="egl", gl="gl2")
        return "egl"
    osmesa = sorted(glob.glob("/usr/lib/*/libOSMesa.so*") + glob.glob("/usr/lib*/libOSMesa.so*"))
    if wanted in ("auto", "osmesa") and (osmesa or os.environ.get("OSMESA_LIBRARY")):
        os.environ.setdefault("OSMESA_LIBRARY", osmesa[-1] if osmesa else "")
        vispy.use(app="osmesa")
        return "osmesa"
    raise RuntimeError(f"no offscreen OpenGL ({'EGL or OSMesa' if wanted == 'auto' else wanted}) found")


class OffscreenRenderer:
    """A hidden canvas that renders scene frames and reads the pixels back."""

    def __init__(self, size: tuple[int, int]):
        self.backend = use_offscreen()
        from vispy import app

        from .render import Renderer

        self.size = size
        self.canvas = app.Canvas(size=size, show=False)
        self.canvas.set_current()
        self.renderer = Renderer()

    def render(self, frame) -> np.ndarray:
        """RGBA pixels [height, width, 4] of ``frame``."""
        from vispy import gloo

        self.canvas.set_current()
        self.renderer.draw(frame, self.size)
        return gloo.read_pixels((0, 0, *self.size), alpha=True)

    def close(self) -> None:
        self.canvas.close()


def render_png(scene, path: str, size: tuple[int, int] = (1600, 900), view=None) -> np.ndarray:
    """Write ``scene`` (whole, or ``view``) to ``path`` as a PNG; returns the pixels."""
    from vispy.io.image import _make_png

    from netprof import outfile

    offscreen = OffscreenRenderer(size)
    try:
        view = view or scene.initial_view(size[0])
        pixels = offscreen.render(scene.frame(view, size[1]))
    finally:
        offscreen.close()
    with outfile.writing(path) as f:
        f.write(_make_png(pixels))
    return pixels
