"""One colour per function, stable across runs and traces: derived from a hash of its name. The
shader computes the same colour from the key (see render.py); key_rgb is the reference."""

from __future__ import annotations

import zlib

import numpy as np

KEYS = 4096  # colour keys are 0..KEYS-1: exact in float32, so shader and numpy agree

# Fixed colours for what is not a function, as negative keys: -1 - index.
FIXED = {
    "background": (0.10, 0.11, 0.13),
    "lane": (0.14, 0.15, 0.18),
    "grid": (0.28, 0.29, 0.33),
    "text": (0.90, 0.91, 0.93),
    "packet": (0.20, 0.80, 0.95),
    "lost": (0.95, 0.15, 0.15),
    "rx": (0.30, 0.75, 0.35),
    "tx": (0.95, 0.60, 0.20),
    "memory": (0.65, 0.45, 0.95),
    "tooltip": (0.05, 0.05, 0.06),
    "selected": (1.00, 1.00, 1.00),
}
FIXED_KEYS = {name: -1.0 - i for i, name in enumerate(FIXED)}


def key_of(name: str) -> int:
    return zlib.crc32(name.encode()) % KEYS


def key_rgb(key: np.ndarray | float) -> np.ndarray:
    """RGB in 0..1 of colour keys (float32 maths, as in the shader): hue from the golden ratio,
    saturation and value from other bits, so neighbours in key space look different."""
    key = np.asarray(key, np.float32)
    h = np.modf(key * np.float32(0.618034))[0]
    s = np.float32(0.45) + np.float32(0.25) * np.modf(key * np.float32(0.1373))[0]
    v = np.float32(0.78) + np.float32(0.17) * np.modf(key * np.float32(0.3719))[0]
    return hsv_to_rgb(h, s, v)


def hsv_to_rgb(h, s, v) -> np.ndarray:
    """The shader's branch-free hsv2rgb."""
    h, s, v = (np.asarray(x, np.float32) for x in (h, s, v))
    k = np.array([1.0, 2.0 / 3.0, 1.0 / 3.0], np.float32)
    p = np.abs(np.modf(h[..., None] + k)[0] * 6.0 - 3.0)
    return v[..., None] * (1.0 + (np.clip(p - 1.0, 0.0, 1.0) - 1.0) * s[..., None])
