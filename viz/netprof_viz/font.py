"""A bitmap font for labels: printable ASCII rasterised once into a texture atlas (with vispy's
own FreeType glyph loader), laid out with numpy. vispy's TextVisual costs 60-140 ms for 200
labels; this costs about a millisecond."""

from __future__ import annotations

from functools import cache

import numpy as np

CHAR_WIDTH = 7     # px: every glyph's cell (monospaced layout)
CHAR_HEIGHT = 12
BASELINE = 9       # px from the top of a cell
VERTICAL_STEP = 10  # px between the upright letters of a vertical label
FIRST, LAST = 32, 126
FACES = ("DejaVu Sans Mono", "Liberation Mono", "OpenSans")  # the last ships with vispy


@cache
def atlas() -> np.ndarray:
    """uint8 coverage [CHAR_HEIGHT, CHAR_WIDTH * glyphs], glyph c at column (c - FIRST) * CHAR_WIDTH."""
    # vispy's own glyph loader (FreeType through fontconfig), which its TextVisual uses too
    from vispy.util.fonts import _load_glyph, list_fonts

    installed = set(list_fonts())
    face = next((f for f in FACES if f in installed), FACES[-1])
    out = np.zeros((CHAR_HEIGHT, CHAR_WIDTH * (LAST - FIRST + 1)), np.uint8)
    glyphs: dict = {}
    for code in range(FIRST + 1, LAST + 1):
        char = chr(code)
        _load_glyph({"face": face, "size": 11, "bold": False, "italic": False}, char, glyphs)
        glyph = glyphs[char]
        bitmap = np.asarray(glyph["bitmap"]).reshape(np.shape(glyph["bitmap"])[:2])
        left, top = glyph["offset"]
        y0, x0 = BASELINE - top, (code - FIRST) * CHAR_WIDTH + max(left, 0)
        h = max(0, min(bitmap.shape[0], CHAR_HEIGHT - max(y0, 0)))
        w = max(0, min(bitmap.shape[1], (code - FIRST + 1) * CHAR_WIDTH - x0))
        src = bitmap[max(-y0, 0):max(-y0, 0) + h, :w]
        out[max(y0, 0):max(y0, 0) + src.shape[0], x0:x0 + src.shape[1]] = src
    return out


def layout(labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per character of ``labels`` (objects with x, y, text, vertical): its cell's top-left corner
    on screen, its glyph index, and which label it belongs to."""
    texts = [label.text.encode("ascii", "replace") for label in labels]
    counts = np.array([len(t) for t in texts], np.int64)
    if not counts.sum():
        return np.empty((0, 2), np.float32), np.empty(0, np.int64), np.empty(0, np.int64)
    codes = np.frombuffer(b"".join(texts), np.uint8).astype(np.int64)
    owner = np.repeat(np.arange(len(labels)), counts)
    position = np.arange(codes.size) - np.repeat(np.cumsum(counts) - counts, counts)
    x = np.array([label.x for label in labels])[owner]
    y = np.array([label.y for label in labels])[owner]
    vertical = np.array([label.vertical for label in labels], bool)[owner]
    corner = np.stack([np.where(vertical, x, x + position * CHAR_WIDTH),
                       np.where(vertical, y + position * VERTICAL_STEP, y)], axis=1).astype(np.float32)
    glyph = np.clip(codes, FIRST, LAST) - FIRST
    return corner, glyph, owner
