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

_HSV = """
vec3 hsv2rgb(vec3 c) {
    vec3 p = abs(fract(c.xxx + vec3(1.0, 2.0 / 3.0, 1.0 / 3.0)) * 6.0 - 3.0);
    return c.z * mix(vec3(1.0), clamp(p - 1.0, 0.0, 1.0), c.y);
}
"""

_COLOR = _HSV + f"""
uniform vec3 u_fixed[{len(colors.FIXED)}];
vec3 key_color(float key) {{
    if (key < 0.0) {{
        int i = int(-key - 0.5);
        vec3 c = u_fixed[0];
        for (int j = 0; j < {len(colors.FIXED)}; j++) {{ if (j == i) c = u_fixed[j]; }}
        return c;
    }}
    return hsv2rgb(vec3(fract(key * 0.618034), 0.45 + 0.25 * fract(key * 0.1373), 0.78 + 0.17 * fract(key * 0.3719)));
}}
"""

RECT_VERT = _COLOR + """
uniform vec2 u_size;
attribute vec2 a_position;
attribute float a_color;
varying vec3 v_color;
void main() {
    gl_Position = vec4(2.0 * a_position.x / u_size.x - 1.0, 1.0 - 2.0 * a_position.y / u_size.y, 0.0, 1.0);
    v_color = key_color(a_color);
}
"""

RECT_FRAG = """
varying vec3 v_color;
void main() { gl_FragColor = vec4(v_color, 1.0); }
"""

TEXT_VERT = _COLOR + """
uniform vec2 u_size;
attribute vec2 a_position;
attribute vec2 a_uv;
attribute float a_color;
varying vec2 v_uv;
varying vec3 v_color;
void main() {
    gl_Position = vec4(2.0 * a_position.x / u_size.x - 1.0, 1.0 - 2.0 * a_position.y / u_size.y, 0.0, 1.0);
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

# two triangles per rectangle: corners (x0|x1, y0|y1)
_CORNER_X = np.array([0, 1, 1, 0, 1, 0])
_CORNER_Y = np.array([0, 0, 1, 0, 1, 1])


def rect_vertices(rects: np.ndarray) -> np.ndarray:
    """Six vertices (x, y, colour key) per rectangle; rectangles narrower than a pixel made one wide."""
    x0 = rects["x0"].astype(np.float32)
    x1 = np.maximum(rects["x1"], x0 + 1).astype(np.float32)
    out = np.empty((len(rects), 6), [("a_position", "<f4", 2), ("a_color", "<f4")])
    out["a_position"][..., 0] = np.where(_CORNER_X, x1[:, None], x0[:, None])
    out["a_position"][..., 1] = np.where(_CORNER_Y, rects["y1"][:, None], rects["y0"][:, None])
    out["a_color"] = rects["color"][:, None]
    return out.reshape(-1)


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
        self._rect_buffer = gloo.VertexBuffer(np.zeros(6, [("a_position", "<f4", 2), ("a_color", "<f4")]))
        self._text_buffer = gloo.VertexBuffer(np.zeros(6, [("a_position", "<f4", 2), ("a_uv", "<f4", 2),
                                                           ("a_color", "<f4")]))
        self.rects.bind(self._rect_buffer)
        self.text.bind(self._text_buffer)

    def draw(self, frame: Frame, size: tuple[int, int]) -> None:
        width, height = size
        gloo.set_viewport(0, 0, width, height)
        gloo.set_clear_color(tuple(colors.FIXED["background"]) + (1.0,))
        gloo.clear(color=True)
        gloo.set_state(blend=True, blend_func=("src_alpha", "one_minus_src_alpha"), depth_test=False)
        for program, buffer, vertices in ((self.rects, self._rect_buffer, rect_vertices(frame.rects)),
                                          (self.text, self._text_buffer, text_vertices(frame.labels))):
            if not len(vertices):
                continue
            buffer.set_data(vertices)
            program.bind(buffer)  # the program counts the vertices to draw when bound
            program["u_size"] = (float(width), float(height))
            program.draw("triangles")
