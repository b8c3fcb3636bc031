"""Draws a scene Frame with two small gloo programs: coloured rectangles and bitmap-font labels.

Vertices are pixel coordinates computed in float64 by the scene and sent as float32 relative to
the canvas (never absolute nanoseconds: float32 ns are off by pixels at deep zoom). A colour is a
key: the shader turns a function's key into its colour (colors.key_rgb is the same formula),
negative keys pick colors.FIXED entries.
"""

from __future__ import annotations

import numpy as np
from vispy import gloo

from . import colors, font
from .scene import Frame

# Vertices come in canvas pixels (y down): to clip space.
_CLIP = """
uniform vec2 u_size;
vec4 clip(vec2 pixel) {
    return vec4(2.0 * pixel.x / u_size.x - 1.0, 1.0 - 2.0 * pixel.y / u_size.y, 0.0, 1.0);
}
"""

_HSV = """
vec3 hsv2rgb(vec3 c) {
    vec3 p = abs(fract(c.xxx + vec3(1.0, 2.0 / 3.0, 1.0 / 3.0)) * 6.0 - 3.0);
    return c.z * mix(vec3(1.0), clamp(p - 1.0, 0.0, 1.0), c.y);
}
"""

_COLOR = _HSV + f"""
uniform vec3 u_fixed[{len(colors.FIXED)}];
vec3 key_color(float key) {{
    if (key < 0.0) return u_fixed[int(-key - 0.5)];
    return hsv2rgb(vec3(fract(key * 0.618034), 0.45 + 0.25 * fract(key * 0.1373), 0.78 + 0.17 * fract(key * 0.3719)));
}}
"""

RECT_VERT = _CLIP + _COLOR + """
attribute vec2 a_position;
attribute float a_color;
varying vec3 v_color;
void main() {
    gl_Position = clip(a_position);
    v_color = key_color(a_color);
}
"""

RECT_FRAG = """
varying vec3 v_color;
void main() { gl_FragColor = vec4(v_color, 1.0); }
"""

TEXT_VERT = _CLIP + _COLOR + """
attribute vec2 a_position;
attribute vec2 a_uv;
attribute float a_color;
varying vec2 v_uv;
varying vec3 v_color;
void main() {
    gl_Position = clip(a_position);
    v_uv = a_uv;
    v_color = key_color(a_color);
}
"""

TEXT_FRAG = """
uniform sampler2D u_atlas;
varying vec2 v_uv;
varying vec3 v_color;
void main() { gl_FragColor = vec4(v_color, texture2D(u_atlas, v_uv).r); }
"""

_RECT_VERTEX = np.dtype([("a_position", "<f4", 2), ("a_color", "<f4")])

CELL_VERT = _CLIP + """
attribute vec2 a_position;
attribute vec2 a_uv;
varying vec2 v_uv;
void main() {
    gl_Position = clip(a_position);
    v_uv = a_uv;
}
"""

CELL_FRAG = """
uniform sampler2D u_cells;
varying vec2 v_uv;
void main() {
    vec4 texel = texture2D(u_cells, v_uv);
    if (texel.a < 0.002) discard;
    gl_FragColor = texel;
}
"""

# two triangles per rectangle: corners (x0|x1, y0|y1)
_CORNER_X = np.array([0, 1, 1, 0, 1, 0])
_CORNER_Y = np.array([0, 0, 1, 0, 1, 1])


def rect_vertices(rects: np.ndarray) -> np.ndarray:
    """Six vertices (x, y, colour key) per rectangle; rectangles narrower than a pixel made one wide."""
    x0, y0, y1, color = rects["x0"], rects["y0"], rects["y1"], rects["color"]
    x1 = np.maximum(rects["x1"], x0 + 1)
    out = np.empty((len(rects), 6, 3), np.float32)  # the layout of _RECT_VERTEX
    out[:, :, 0] = np.stack([x0, x1, x1, x0, x1, x0], axis=1)
    out[:, :, 1] = np.stack([y0, y0, y1, y0, y1, y1], axis=1)
    out[:, :, 2] = color[:, None]
    return out.reshape(-1).view(_RECT_VERTEX)


def cell_vertices(cell_rows: np.ndarray, x0: float, width: int) -> np.ndarray:
    """A quad per image row, stretched over that span row's pixels: texel (row, column) lands on
    pixel column x0 + column exactly (nearest sampling, one texel per pixel)."""
    rows = len(cell_rows)
    out = np.empty((rows, 6, 4), np.float32)  # x, y, u, v
    out[:, :, 0] = x0 + _CORNER_X * width
    out[:, :, 1] = np.where(_CORNER_Y, cell_rows[:, 1:2], cell_rows[:, 0:1])
    out[:, :, 2] = _CORNER_X
    out[:, :, 3] = (np.arange(rows)[:, None] + 0.5) / rows
    return out.reshape(-1).view([("a_position", "<f4", 2), ("a_uv", "<f4", 2)])


def text_vertices(labels) -> np.ndarray:
    corner, glyph, owner = font.layout(labels)
    out = np.empty((len(glyph), 6), [("a_position", "<f4", 2), ("a_uv", "<f4", 2), ("a_color", "<f4")])
    if not len(glyph):
        return out.reshape(-1)
    atlas_width = font.CHAR_WIDTH * (font.LAST - font.FIRST + 1)
    corner = np.round(corner)  # whole pixels: the glyphs stay crisp
    out["a_position"][..., 0] = corner[:, 0:1] + _CORNER_X * font.CHAR_WIDTH
    out["a_position"][..., 1] = corner[:, 1:2] + _CORNER_Y * font.CHAR_HEIGHT
    out["a_uv"][..., 0] = ((glyph[:, None] + _CORNER_X) * font.CHAR_WIDTH) / atlas_width
    out["a_uv"][..., 1] = _CORNER_Y.astype(np.float32)[None, :]
    keys = np.array([colors.FIXED_KEYS[label.color] for label in labels], np.float32)
    out["a_color"] = keys[owner][:, None]
    return out.reshape(-1)


class Renderer:
    """GL state for drawing frames; create and use it with the canvas's context current."""

    def __init__(self):
        fixed = np.array(list(colors.FIXED.values()), np.float32)
        self.rects = gloo.Program(RECT_VERT, RECT_FRAG)
        self.text = gloo.Program(TEXT_VERT, TEXT_FRAG)
        for program in (self.rects, self.text):
            for i, rgb in enumerate(fixed):
                program[f"u_fixed[{i}]"] = tuple(rgb)
        self.text["u_atlas"] = gloo.Texture2D(font.atlas(), interpolation="nearest", format="luminance")
        self.cells = gloo.Program(CELL_VERT, CELL_FRAG)
        self._cell_texture = gloo.Texture2D(np.zeros((1, 1, 4), np.uint8), interpolation="nearest")
        self.cells["u_cells"] = self._cell_texture
        self._rect_buffer = gloo.VertexBuffer(np.zeros(6, _RECT_VERTEX))
        self._under_buffer = gloo.VertexBuffer(np.zeros(6, _RECT_VERTEX))
        self._cell_buffer = gloo.VertexBuffer(np.zeros(6, [("a_position", "<f4", 2), ("a_uv", "<f4", 2)]))
        self._text_buffer = gloo.VertexBuffer(np.zeros(6, [("a_position", "<f4", 2), ("a_uv", "<f4", 2),
                                                           ("a_color", "<f4")]))
        self.rects.bind(self._rect_buffer)
        self.text.bind(self._text_buffer)

    def draw(self, frame: Frame, size: tuple[int, int]) -> None:
        width, height = size
        gloo.set_viewport(0, 0, width, height)
        gloo.set_clear_color(tuple(colors.FIXED["background"]) + (1.0,))
        gloo.clear(color=True)
        # Rectangles are opaque: blending them would only cost fill rate, and software renderers
        # are fill-bound. Cells blend by how busy their pixel is, labels by their glyphs' coverage.
        gloo.set_state(blend=False, depth_test=False)
        if frame.under is not None and len(frame.under):
            self._draw(self.rects, self._under_buffer, rect_vertices(frame.under), size)
        if frame.cells is not None:
            from .scene import LEFT

            self._cell_texture.set_data(frame.cells)  # resized to the image as needed
            gloo.set_state(blend=True, blend_func=("src_alpha", "one_minus_src_alpha"))  # alpha: how busy
            self._draw(self.cells, self._cell_buffer, cell_vertices(frame.cell_rows, LEFT, frame.cells.shape[1]), size)
            gloo.set_state(blend=False)
        self._draw(self.rects, self._rect_buffer, rect_vertices(frame.rects), size)
        gloo.set_state(blend=True, blend_func=("src_alpha", "one_minus_src_alpha"))
        self._draw(self.text, self._text_buffer, text_vertices(frame.labels), size)

    @staticmethod
    def _draw(program, buffer, vertices: np.ndarray, size: tuple[int, int]) -> None:
        if not len(vertices):
            return
        buffer.set_data(vertices)
        program.bind(buffer)  # the program counts the vertices to draw when bound
        program["u_size"] = (float(size[0]), float(size[1]))
        program.draw("triangles")
