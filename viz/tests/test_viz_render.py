"""The viewer rendered offscreen (EGL, Mesa's software renderer: no display, no GPU), checked by
reading pixels back: colours where the spans are, nothing where they are not, lanes in order,
the filter and ignored CPUs honoured, and the CLI's --png."""

import os
import subprocess
import sys

import numpy as np
import pytest
import needs

needs.module("netprof_viz")

import viz_trace

import netprof
from netprof_viz import colors
from netprof_viz.scene import LEFT, TOP, Options, Scene

SIZE = (1000, 400)


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("viz") / "synthetic.trace"
    viz_trace.write(path)
    return path


@pytest.fixture(scope="module")
def offscreen():
    from netprof_viz.headless import OffscreenRenderer

    renderer = OffscreenRenderer(SIZE)
    yield renderer
    renderer.close()


def render(offscreen, trace_path, **options):
    scene = Scene(netprof.load(trace_path), Options(**options))
    view = scene.initial_view(SIZE[0])
    return scene, view, offscreen.render(scene.frame(view, SIZE[1]))[..., :3].astype(int)


def rgb_of(name: str) -> np.ndarray:
    return np.round(colors.key_rgb(colors.key_of(name)) * 255).astype(int)


def fixed(name: str) -> np.ndarray:
    return np.round(np.array(colors.FIXED[name]) * 255).astype(int)


def near(pixel, rgb, tolerance=3) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel) - rgb) <= tolerance))


def x_of(view, t):
    return int(round(LEFT + (t - view.t0) / view.ns_per_px))


def row_middle(scene, lane_title, depth=0):
    lane = next(lane for lane in scene.lanes if lane.title == lane_title)
    return int(TOP + lane.y + (depth + 0.5) * lane.row_height)


def test_spans_are_drawn_in_their_colour_where_they_are(offscreen, trace_path):
    scene, view, img = render(offscreen, trace_path)
    cpu0, cpu0_depth1, cpu1 = row_middle(scene, "CPU 0"), row_middle(scene, "CPU 0", 1), row_middle(scene, "CPU 1")
    # near the end of each span, clear of its label
    assert near(img[cpu0, x_of(view, 390e6)], rgb_of("ip_rcv"))
    assert near(img[cpu0_depth1, x_of(view, 240e6)], rgb_of("tcp_v4_rcv"))
    assert near(img[cpu1, x_of(view, 890e6)], rgb_of("ip_rcv"))
    assert near(img[row_middle(scene, "client 300 tid 301"), x_of(view, 690e6)], rgb_of("client:send_all"))
    # lanes top to bottom: CPU 0 above CPU 1 above the user thread, as the scene laid them out
    assert cpu0 < cpu0_depth1 < cpu1 < row_middle(scene, "client 300 tid 301")


def test_nothing_is_drawn_where_there_is_no_span(offscreen, trace_path):
    scene, view, img = render(offscreen, trace_path)
    cpu0_depth1 = row_middle(scene, "CPU 0", 1)
    # depth 1 of CPU 0 holds only tcp_v4_rcv, 150-250 ms: the rest of the row is lane background
    for t in (55e6, 125e6, 330e6, 530e6, 730e6):  # clear of the grid lines (every 100 or 200 ms)
        assert near(img[cpu0_depth1, x_of(view, t)], fixed("background"), 1), t
    # and the span colours appear nowhere outside their rows
    function_colours = [rgb_of(n) for n in ("ip_rcv", "tcp_v4_rcv", "client:send_all")]
    lanes_end = int(TOP + max(lane.y + lane.rows * lane.row_height for lane in scene.lanes if lane.kind in ("stack", "user")))
    below = img[lanes_end + 2:-30, LEFT:]  # down to the legend, where the swatches are
    for rgb in function_colours:
        assert not np.any(np.all(np.abs(below - rgb) <= 2, axis=-1))


def test_packets_throughput_memory_and_loss_are_drawn(offscreen, trace_path):
    scene, view, img = render(offscreen, trace_path)
    xdp = row_middle(scene, "XDP veth0")
    assert near(img[xdp, x_of(view, viz_trace.PACKET_AT)], fixed("packet"))
    assert near(img[xdp, x_of(view, 300e6)], fixed("packet"), 60) is False  # one packet only
    rx = next(lane for lane in scene.lanes if lane.title == "veth0 rx")
    assert near(img[int(TOP + rx.y + rx.row_height - 4), x_of(view, 400e6)], fixed("rx"))
    memory = next(lane for lane in scene.lanes if lane.title == "memory")
    bottom = int(TOP + memory.y + memory.row_height - 3)
    top = int(TOP + memory.y + 5)
    assert near(img[bottom, x_of(view, 50e6)], fixed("memory"))   # 1 MiB of 10: a low bar
    assert not near(img[top, x_of(view, 50e6)], fixed("memory"))
    assert near(img[top, x_of(view, 950e6)], fixed("memory"))     # the maximum: full height
    # the loss reported at the end of the capture: a red mark across the lanes
    assert np.any(np.all(np.abs(img[TOP + 5:, -20:] - fixed("lost")) <= 3, axis=-1))


def test_nothing_is_drawn_over_the_lane_titles_when_zoomed(offscreen, trace_path):
    scene = Scene(netprof.load(trace_path))
    view = scene.initial_view(SIZE[0]).zoomed(300, 50)
    img = offscreen.render(scene.frame(view, SIZE[1]))[..., :3].astype(int)
    titles = img[TOP:, :LEFT - 2]
    for name in ("rx", "memory", "packet"):  # the series and packets reach beyond the view's left edge
        assert not np.any(np.all(np.abs(titles - fixed(name)) <= 2, axis=-1)), name


def test_pixels_holding_spans_for_little_of_their_time_are_dim(offscreen, tmp_path):
    """1 ms of 100 ns spans every µs (10% busy) then 1 ms of back-to-back 1 µs spans (100% busy),
    shown 2 µs to a pixel: the first half dim, the second in full colour."""
    from netprof.format import layout
    from netprof.format.tracefile import Kind, TraceWriter, new_header

    sparse = np.arange(0, 1_000_000, 1000)
    dense = np.arange(1_000_000, 2_000_000, 1000)
    starts, ends = np.r_[sparse, dense], np.r_[sparse + 100, dense + 1000]
    events = np.zeros(2 * len(starts), layout.SPAN.dtype())
    events["ts"] = viz_trace.T0 + np.c_[starts, ends].reshape(-1)
    events["kind"] = np.tile([0, 1], len(starts))
    events["tid"] = events["pid"] = 7
    path = tmp_path / "busy.trace"
    writer = TraceWriter(path, new_header([{"id": 0, "name": "napi_poll", "kind": "kernel", "mechanism": "x"}], 64))
    writer.write(Kind.SPANS, events)
    writer.close()
    scene = Scene(netprof.load(path))
    view = scene.initial_view(SIZE[0])
    img = offscreen.render(scene.frame(view, SIZE[1]))[..., :3].astype(float)
    row = row_middle(scene, "CPU 0")
    full, back = rgb_of("napi_poll"), fixed("background")
    dim = img[row, x_of(view, 530_000)]  # clear of the grid lines
    alpha = (dim - back) / (full - back)
    assert np.allclose(alpha, 0.35 + 0.65 * 0.1, atol=0.04), alpha
    assert near(img[row, x_of(view, 1_530_000)], full)


def test_filter_and_ignored_cpus_are_honoured(offscreen, trace_path):
    scene, view, img = render(offscreen, trace_path, filter=(550e6, 950e6))
    assert "CPU 0" not in [lane.title for lane in scene.lanes]
    assert not np.any(np.all(np.abs(img - rgb_of("tcp_v4_rcv")) <= 2, axis=-1))
    assert near(img[row_middle(scene, "CPU 1"), x_of(view, 890e6)], rgb_of("ip_rcv"))
    scene, view, img = render(offscreen, trace_path, ignored_cpus=(0,))
    assert [lane.title for lane in scene.lanes if lane.kind == "stack"] == ["CPU 1"]
    assert not np.any(np.all(np.abs(img - rgb_of("tcp_v4_rcv")) <= 2, axis=-1))


def test_labels_are_drawn_inside_wide_spans(offscreen, trace_path):
    scene, view, labelled = render(offscreen, trace_path)
    _, _, bare = render(offscreen, trace_path, labels=False)
    cpu0 = row_middle(scene, "CPU 0")
    start = x_of(view, 100e6)
    # the name "ip_rcv" is written at the start of the span: pixels there differ, the span's end does not
    assert np.any(labelled[cpu0 - 4:cpu0 + 4, start + 2:start + 44] != bare[cpu0 - 4:cpu0 + 4, start + 2:start + 44])
    assert np.array_equal(labelled[cpu0, x_of(view, 380e6):x_of(view, 395e6)],
                          bare[cpu0, x_of(view, 380e6):x_of(view, 395e6)])


def test_cli_writes_the_png(trace_path, tmp_path):
    from vispy.io import read_png

    out = tmp_path / "view.png"
    done = subprocess.run([sys.executable, "-m", "netprof", "view", str(trace_path), "--png", str(out), "--size",
                           "800x300", "--stack-merged", "-x"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    image = read_png(str(out))
    assert image.shape[:2] == (300, 800)
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10  # not blank


def test_osmesa_renders_what_egl_renders(trace_path, tmp_path):
    from vispy.io import read_png

    pictures = {}
    for backend in ("egl", "osmesa"):
        out = tmp_path / f"{backend}.png"
        done = subprocess.run([sys.executable, "-m", "netprof", "view", str(trace_path), "--png", str(out), "--size",
                               "640x360"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "NETPROF_OFFSCREEN": backend})
        assert done.returncode == 0, done.stderr
        pictures[backend] = read_png(str(out)).astype(int)
    differs = np.any(np.abs(pictures["egl"] - pictures["osmesa"]) > 2, axis=-1)
    assert differs.mean() < 0.001, f"{differs.sum()} pixels differ"


@pytest.mark.parametrize("args, message", [
    (["--size", "big"], "must be WIDTHxHEIGHT"),
    (["-f", "abc"], "START-END"),
    (["-f", "5000000000-6000000000"], "holds nothing"),
    (["-f", "nan-"], "START-END"),
])
def test_cli_bad_input_is_one_line(trace_path, tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "netprof", "view", str(trace_path), "--png", str(tmp_path / "x.png"),
                           *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_refuses_an_unwritable_png_and_a_window_without_a_display(trace_path):
    def view(*args, **env):
        return subprocess.run([sys.executable, "-m", "netprof", "view", str(trace_path), *args], capture_output=True,
                              text=True, timeout=120, env={k: v for k, v in {**os.environ, **env}.items() if v})

    done = view("--png", "/nonexistent-folder/x.png")
    assert done.returncode == 2 and "not a writable folder" in done.stderr
    done = view(DISPLAY="", WAYLAND_DISPLAY="")
    assert done.returncode == 2 and "no display" in done.stderr and len(done.stderr.strip().splitlines()) == 1
