"""The interactive window under Xvfb with the Qt (PySide6) backend: it opens, renders something,
a real Qt wheel event changes the view, and it closes cleanly. Run in a child process: a process
can hold one vispy backend, and the offscreen tests use EGL."""

import shutil
import subprocess
import sys

import numpy as np
import needs

needs.module("netprof_viz")

import viz_trace

import netprof
from netprof_viz.scene import Scene

SCENARIO = r"""
import sys, time
import numpy as np
import vispy
vispy.use(app="pyside6", gl="gl2")
from vispy import app
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
import netprof
from netprof_viz.canvas import TimelineCanvas
from netprof_viz.scene import Scene

def pump(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.process_events()
        time.sleep(0.005)

canvas = TimelineCanvas(Scene(netprof.load(sys.argv[1])), (900, 400), title="netprof test")
pump(0.5)
assert canvas.native.isVisible(), "window not shown"
pixels = canvas.render()[..., :3]
np.save(sys.argv[2], pixels)
print("colours", len(np.unique(pixels.reshape(-1, 3), axis=0)))
before = canvas.controller.view
widget = canvas.native
where = QPoint(500, 100)
wheel = QWheelEvent(QPointF(where), QPointF(widget.mapToGlobal(where)), QPoint(0, 0), QPoint(0, 3 * 120),
                    Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
QApplication.sendEvent(widget, wheel)
pump(1.5)
after = canvas.controller.view
print("zoom", before.span / after.span)
print("anchor_moved_px", abs(after.x_of(before.time_at(500 - 132)) - (500 - 132)))
canvas.close()
pump(0.2)
print("closed", not canvas.native.isVisible())
"""


def test_window_opens_renders_zooms_on_a_wheel_event_and_closes(tmp_path):
    xvfb_run = needs.tool("xvfb-run", "xvfb xauth")
    path = tmp_path / "synthetic.trace"
    viz_trace.write(path)
    shot = tmp_path / "window.npy"
    done = subprocess.run([xvfb_run, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-c", SCENARIO, str(path),
                           str(shot)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert int(out["colours"]) > 10, "the window rendered blank"
    assert abs(float(out["zoom"]) - 1.25**3) < 0.01, out   # three wheel notches, eased to the end
    assert float(out["anchor_moved_px"]) < 1.0, out          # around the pointer
    assert out["closed"] == "True"
    # The window draws what --png draws for the same view: lanes, grid, cells, spans, labels, legend.
    from netprof_viz.headless import OffscreenRenderer

    window = np.load(shot).astype(int)
    scene = Scene(netprof.load(path))
    offscreen = OffscreenRenderer((900, 400))
    try:
        expected = offscreen.render(scene.frame(scene.initial_view(900), 400))[..., :3].astype(int)
    finally:
        offscreen.close()
    differs = np.any(np.abs(window - expected) > 3, axis=-1)
    assert differs.mean() < 0.005, f"{differs.sum()} of {differs.size} pixels differ from the offscreen render"
