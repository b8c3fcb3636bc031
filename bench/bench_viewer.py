#!/usr/bin/env python3
"""Viewer frame times over a scripted fly-through, 1600x900, offscreen (EGL): the whole capture,
zoom in 1,000,000x around a point, pan, zoom back out; 120 frames. For 100 k, 1 M and 5 M spans
(synthetic, nested up to depth 20 on 2-8 CPUs, as bench_analysis.py builds them), each size in a
fresh process. Side by side: the naive way, every span in one vertex buffer uploaded once and
moved by shader uniforms, which is what a plain vispy/OpenGL timeline does.

Prints per size: scene build (span building + LOD index), frame time median and p95 (LOD query +
geometry + draw, finished), the LOD query alone, and the naive frame time. Set BENCH_SIZES to
change the sizes (e.g. BENCH_SIZES=100000).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "100000,1000000,5000000").split(",")]
SIZE = (1600, 900)
FRAMES = 40  # per leg: zoom in, pan, zoom out
NAIVE_FRAMES = {100_000: 20, 1_000_000: 5, 5_000_000: 2}


def p95(values: list[float]) -> float:
    return sorted(values)[max(int(len(values) * 0.95) - 1, 0)]


def fly_through(scene):
    """The views of the scripted fly-through."""
    from netprof_viz.scene import LEFT
    from netprof_viz.view import View

    full = scene.initial_view(SIZE[0])
    focus = full.t0 + 0.37 * full.span
    views = []
    for i in range(FRAMES):  # zoom in to 1,000,000x, keeping `focus` at the same pixel
        span = full.span / 1e6 ** (i / (FRAMES - 1))
        views.append(View(focus - 0.37 * span, focus + 0.63 * span, SIZE[0] - LEFT))
    deep = views[-1]
    for i in range(1, FRAMES + 1):  # pan 5% of the view each frame
        views.append(View(deep.t0 + i * 0.05 * deep.span, deep.t1 + i * 0.05 * deep.span, deep.width))
    last = views[-1]
    center = (last.t0 + last.t1) / 2
    for i in range(FRAMES):
        span = last.span * 1e6 ** (i / (FRAMES - 1))
        views.append(View(center - span / 2, center + span / 2, last.width))
    return views


NAIVE_VERT = """
uniform vec2 u_size;
uniform float u_t0;
uniform float u_scale;
attribute vec2 a_position;   // (ns since the start, row)
void main() {
    float x = 132.0 + (a_position.x - u_t0) * u_scale;
    float y = 26.0 + a_position.y * 16.0;
    gl_Position = vec4(2.0 * x / u_size.x - 1.0, 1.0 - 2.0 * y / u_size.y, 0.0, 1.0);
}
"""
NAIVE_FRAG = "void main() { gl_FragColor = vec4(0.4, 0.7, 0.3, 1.0); }"


def child(path: str) -> None:
    import numpy as np

    import netprof
    from netprof_viz.headless import OffscreenRenderer
    from netprof_viz.render import rect_vertices
    from netprof_viz.scene import Scene

    offscreen = OffscreenRenderer(SIZE)  # first: EGL before anything else touches vispy
    from vispy import gloo

    trace = netprof.load(path, progress=False)
    t = time.perf_counter()
    scene = Scene(trace)
    build = time.perf_counter() - t
    frames, lods, drawn = [], [], []
    views = fly_through(scene)
    for view in views:
        t = time.perf_counter()
        scene.index.query(view.t0, view.t1, view.width)
        lods.append(time.perf_counter() - t)
        t = time.perf_counter()
        frame = scene.frame(view, SIZE[1])
        offscreen.renderer.draw(frame, SIZE)
        gloo.gl.glFinish()
        frames.append(time.perf_counter() - t)
        drawn.append(len(frame.rects))
    # the naive way: every span's rectangle in one buffer, uploaded once; a frame only sets uniforms
    program = gloo.Program(NAIVE_VERT, NAIVE_FRAG)
    rects = np.zeros(len(scene.spans), [("x0", "<f4"), ("x1", "<f4"), ("y0", "<f4"), ("y1", "<f4"),
                                        ("color", "<f4")])
    rects["x0"], rects["x1"] = scene.span_start, scene.span_end
    rects["y0"], rects["y1"] = scene.span_row, scene.span_row + 0.9
    program["a_position"] = rect_vertices(rects)["a_position"]
    program["u_size"] = SIZE
    naive = []
    for view in views[:: max(len(views) // NAIVE_FRAMES.get(len(scene.spans), 3), 1)][: NAIVE_FRAMES.get(
            len(scene.spans), 3)]:
        t = time.perf_counter()
        gloo.clear(color=True)
        program["u_t0"], program["u_scale"] = view.t0, 1.0 / view.ns_per_px
        program.draw("triangles")
        gloo.gl.glFinish()
        naive.append(time.perf_counter() - t)
    renderer = gloo.gl.glGetParameter(gloo.gl.GL_RENDERER)
    offscreen.close()
    print(json.dumps({"spans": len(scene.spans), "build": build, "frames": frames, "lod": lods,
                      "rects_max": max(drawn), "naive": naive, "renderer": renderer}))


def main() -> None:
    if len(sys.argv) > 1:
        child(sys.argv[1])
        return
    from bench_analysis import synthetic, write

    tmp = Path(tempfile.mkdtemp(prefix="netprof-bench-viewer-"))
    print(f"viewer fly-through: {3 * FRAMES} frames at {SIZE[0]}x{SIZE[1]}, offscreen")
    header = f"{'spans':>10}  {'build':>7}  {'frame p50':>9}  {'p95':>7}  {'LOD p50':>8}  {'max rects':>9}  {'naive frame':>11}"
    for size in SIZES:
        path = tmp / f"{size}.trace"
        write(synthetic(2 * size, seed=1), path)
        out = subprocess.run([sys.executable, __file__, str(path)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if header:
            print(f"renderer: {r['renderer']}\n{header}")
            header = ""
        print(f"{r['spans']:>10,}  {r['build']:6.2f}s  {statistics.median(r['frames']) * 1e3:7.1f}ms  "
              f"{p95(r['frames']) * 1e3:5.1f}ms  {statistics.median(r['lod']) * 1e3:6.2f}ms  {r['rects_max']:>9,}  "
              f"{statistics.median(r['naive']) * 1e3:9.0f}ms", flush=True)
        path.unlink()


if __name__ == "__main__":
    main()
